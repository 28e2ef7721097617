"""When to poll and when to retry: pure arithmetic, no clock and no network.

Every function here takes the random source as an argument, so tests pin jitter.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import attrs
import backoff

from ._validate import boolean, fraction, non_negative, positive_or_none
from .exceptions import InvalidArgumentError

DEFAULT_TIMEOUT = 3600.0
"""A wait gives up after one hour unless told otherwise: tasks of a few GB finish well within."""

Random = Callable[[], float]

# Constants of the progress-aware schedule (see PollPolicy for the algorithm), tuned with
# benchmarks/bench_polling.py on seed 20261129 and checked on seeds 1-4 and --quick.
# Far from the end, sleep this share of the estimated remainder: the next look lands
# before the end unless the estimate is more than 10 % early, and sees the task closer.
_APPROACH = 0.9
# ...but never longer than this share of the processing time watched so far, so that an
# estimate built on a few percent of progress (an accelerating task looks slow at first)
# cannot send the wait far past the end.
_HORIZON = 0.85
# Points this many percent apart (or more) fit the rate: a 1 % step is mostly rounding.
_SPAN = 5
# The estimates with and without the value just seen agree when they differ by at most
# this share of the remainder (plus initial_delay): then the next poll goes past the end.
_AGREE = 0.25
# A jump straight past the end costs eta_margin of the remainder in lag: only take it
# when that is at most this many initial_delay; further away, approach once more.
_JUMP_REACH = 2.0
# An overdue task is polled again after this share of its overrun: gaps grow by half
# each time (a stall, or a slow tail) instead of hammering the server.
_OVERDUE = 0.5


def exponential(attempt: int, initial: float, factor: float, maximum: float) -> float:
    """``initial * factor ** attempt``, capped at ``maximum``, without overflow.

    ``backoff.expo`` computes ``base ** n`` before capping and overflows a float after
    about a thousand steps, which a day-long wait reaches; this caps in log space.
    """
    if attempt <= 0 or factor == 1 or initial == 0:
        return min(initial, maximum)
    if initial >= maximum or attempt * math.log(factor) >= math.log(maximum) - math.log(initial):
        return maximum
    return initial * factor**attempt


@attrs.frozen
class ProgressSample:
    """When a running task's progress was first seen at a value.

    Attributes:
        at: Monotonic time of the first observation at ``progress``.
        progress: Percent done.
    """

    at: float
    progress: int


@attrs.frozen
class PollPolicy:
    """How a wait polls one task.

    The first poll is immediate. While the task gives no progress signal (pending,
    or no progress yet) the wait sleeps ``min(max_delay, initial_delay * factor ** n)``
    after the n-th poll. Once progress rises, and ``progress_aware`` is on (off by
    default, see below), it estimates when the task will reach 100 % (see
    :func:`estimate_end`): each value is placed at the middle of its rounding step
    when first seen, the start of processing halfway between the last poll that saw
    the task pending and the first that saw it running; the rate comes from points at
    least 5 % apart, and with three such points whose two rates differ by more than
    rounding explains, a parabola through them catches tasks that speed up (where it
    crosses 100 %) or slow down (its top, where the rate runs out). The next poll
    then comes:

    - just after the estimated end (``eta_margin`` later, plus ``eta_margin *
      initial_delay``) when the end is within ``initial_delay``, or when the value just
      seen confirms the estimate made without it (within 25 % of the remainder plus
      ``initial_delay``) and that margin costs at most ``2 * initial_delay``;
    - otherwise after 90 % of the estimated remainder, so that it usually sees the
      task again, closer to the end, and refines the estimate;
    - in both cases no later than 0.85x the processing time watched so far: an
      estimate built on a few percent of progress cannot send the wait far past the end;
    - for an overdue task (past its estimated end: a stall, a slow tail at 99 %), after
      half the overrun, so gaps grow by half each time while it sits on a value.

    Progress-aware delays are at most ``progress_max_delay`` and at least
    ``initial_delay``, except a poll aimed just after an estimated end that lies closer
    than that. There is at most one such poll per change of progress, so a task sitting
    on one value is never polled faster; on the benchmark below a task gets 0.66 of them
    on average, at most 6. On benchmarks/bench_polling.py it sends
    0.90x-0.92x the polls of a naive backoff loop for 0.20x-0.23x its mean detection
    lag (3000 tasks, 5 seeds): the lag half of the goal for a default (<= 0.25x) is
    met, the polls half (<= 0.5x) is not, hence off by default.
    Every delay is spread by ``±jitter`` so that waits started together drift apart.
    The whole wait ends at ``timeout``; a task whose status and progress do not
    change for ``stall_timeout`` ends the wait with ``TaskStalledError``.

    Attributes:
        initial_delay: Seconds between the first and second poll.
        factor: Growth of the delay per poll (>= 1).
        max_delay: Upper bound of any delay between polls (>= initial_delay).
        jitter: Relative spread of each delay, 0 to 1 (0.1 = ±10 %).
        timeout: Seconds after which the wait raises ``WaitTimeoutError``;
            ``None`` waits for as long as it takes.
        retry_initial_delay: First delay after a transient failure (full jitter).
        retry_max_delay: Upper bound of a delay after transient failures.
        retry_after_min: Floor applied to a server's ``Retry-After``.
        retry_after_max: Ceiling applied to a server's ``Retry-After``: a server asking
            for a day must not wedge a worker.
        progress_aware: Schedule polls from the observed progress rate.
        progress_max_delay: Upper bound of a delay chosen from the progress rate; a
            task estimated to need half an hour is not polled every ``max_delay``.
        eta_margin: Safety margin added to an estimated finish (0.1 = 10 % later).
        stall_timeout: Seconds without any change of status or progress after which
            the wait ends with ``TaskStalledError``; ``None`` never.
    """

    initial_delay: float = attrs.field(default=2.0, validator=non_negative)
    factor: float = attrs.field(default=2.0, validator=non_negative)
    max_delay: float = attrs.field(default=30.0, validator=non_negative)
    jitter: float = attrs.field(default=0.1, validator=fraction)
    timeout: float | None = attrs.field(default=DEFAULT_TIMEOUT, validator=positive_or_none)
    retry_initial_delay: float = attrs.field(default=0.5, validator=non_negative)
    retry_max_delay: float = attrs.field(default=30.0, validator=non_negative)
    retry_after_min: float = attrs.field(default=0.5, validator=non_negative)
    retry_after_max: float = attrs.field(default=120.0, validator=non_negative)
    # Off by default: benchmarks/bench_polling.py measures 0.20x-0.23x the mean detection
    # lag of a naive backoff loop at 0.90x-0.92x its polls (5 seeds): the 0.25x-lag bar
    # is met, the 0.5x-polls bar is not.
    progress_aware: bool = attrs.field(default=False, validator=boolean)
    progress_max_delay: float = attrs.field(default=300.0, validator=non_negative)
    eta_margin: float = attrs.field(default=0.1, validator=fraction)
    stall_timeout: float | None = attrs.field(default=None, validator=positive_or_none)

    def __attrs_post_init__(self) -> None:
        if self.factor < 1:
            raise InvalidArgumentError(f"factor must be >= 1, got {self.factor!r}")
        if self.max_delay < self.initial_delay:
            raise InvalidArgumentError(
                f"max_delay ({self.max_delay}) must be >= initial_delay ({self.initial_delay})"
            )
        if self.retry_max_delay < self.retry_initial_delay:
            raise InvalidArgumentError(
                f"retry_max_delay ({self.retry_max_delay}) must be >= "
                f"retry_initial_delay ({self.retry_initial_delay})"
            )
        if self.progress_max_delay < self.initial_delay:
            raise InvalidArgumentError(
                f"progress_max_delay ({self.progress_max_delay}) must be >= "
                f"initial_delay ({self.initial_delay})"
            )
        if self.retry_after_max < self.retry_after_min:
            raise InvalidArgumentError(
                f"retry_after_max ({self.retry_after_max}) must be >= "
                f"retry_after_min ({self.retry_after_min})"
            )

    def poll_delay(self, polls: int, rand: Random = random.random) -> float:
        """Seconds to sleep after ``polls`` successful polls (1 after the first)."""
        base = exponential(polls - 1, self.initial_delay, self.factor, self.max_delay)
        spread = base * self.jitter * (2 * rand() - 1)
        return max(0.0, min(self.max_delay, base + spread))

    def next_delay(
        self,
        polls: int,
        first: ProgressSample | None,
        latest: ProgressSample | None,
        now: float,
        rand: Random = random.random,
        previous: ProgressSample | None = None,
        *,
        samples: Sequence[ProgressSample] | None = None,
        started_after: float | None = None,
    ) -> float:
        """Seconds to sleep after ``polls`` successful polls of a task still running.

        Args:
            polls: Successful polls so far (>= 1).
            first: When processing was first seen, at which progress.
            latest: When the current progress value was first seen.
            now: The current monotonic time.
            rand: Source of jitter.
            previous: When the value before the current one was first seen.
            samples: Every progress value seen while processing, each when first seen,
                oldest first (``latest`` last); defaults to ``first``, ``previous``,
                ``latest``.
            started_after: The last time the task was seen pending before it was seen
                processing (processing started between then and ``first.at``).
        """
        if samples is None:
            samples = _distinct(first, previous, latest)
        end = estimate_end(samples, started_after) if self.progress_aware else None
        if end is None or not samples:
            return self.poll_delay(polls, rand)
        remaining = end - now
        if remaining <= 0:
            # Overdue (slower than it was, or stalled): back off as the overrun grows.
            return self._progress_jitter(max(self.initial_delay, -remaining * _OVERDUE), rand)
        watched = now - (samples[0].at if started_after is None else started_after)
        horizon = max(self.initial_delay, watched * _HORIZON)
        after_end = remaining * (1 + self.eta_margin) + self.eta_margin * self.initial_delay
        if after_end <= horizon and (
            remaining <= self.initial_delay
            or (
                remaining * self.eta_margin <= _JUMP_REACH * self.initial_delay
                and self._agrees(samples, started_after, end, now)
            )
        ):
            return self._progress_jitter(after_end, rand)
        base = max(self.initial_delay, min(remaining * _APPROACH, horizon))
        return self._progress_jitter(base, rand)

    def _agrees(
        self, samples: Sequence[ProgressSample], started_after: float | None, end: float, now: float
    ) -> bool:
        """Whether the value just seen confirms the estimate made without it."""
        if samples[-1].at != now:
            return False  # nothing new since the last estimate
        before = estimate_end(samples[:-1], started_after)
        return before is not None and abs(end - before) <= _AGREE * (end - now) + self.initial_delay

    def _progress_jitter(self, base: float, rand: Random) -> float:
        base = min(self.progress_max_delay, base)
        spread = base * self.jitter * (2 * rand() - 1)
        return max(0.0, min(self.progress_max_delay, base + spread))

    def retry_delay(
        self, failures: int, retry_after: float | None = None, rand: Random = random.random
    ) -> float:
        """Seconds to sleep after ``failures`` consecutive transient failures (>= 1).

        A server's ``Retry-After`` wins, clamped to ``[retry_after_min, retry_after_max]``
        and then stretched by up to 20 % so that throttled clients do not return in
        lockstep (so the longest wait is ``1.2 * retry_after_max``).
        Otherwise capped exponential backoff with full jitter.
        """
        if retry_after is not None:
            clamped = min(self.retry_after_max, max(self.retry_after_min, retry_after))
            return clamped * (1 + 0.2 * rand())
        ceiling = exponential(failures - 1, self.retry_initial_delay, 2.0, self.retry_max_delay)
        return _full_jitter(ceiling, rand)


def estimate_end(
    samples: Sequence[ProgressSample], started_after: float | None = None
) -> float | None:
    """Monotonic time at which the task should reach 100 %, from its progress so far.

    Args:
        samples: Each progress value seen while processing, when first seen, oldest
            first. A value is taken to be half a percent in (progress is rounded
            down): ``p`` first seen at ``t`` is the point ``(t, p + 0.5)``.
        started_after: When the task was last seen pending before the first sample:
            processing started at 0 % halfway between then and the first sample.

    The newest point and the latest point at least 5 % below it give the rate (or,
    failing that, 1 % below). When a third point lies 5 % below that one, the two
    chords tell whether the rate changes: if by no more than rounding explains, the
    straight line from the third point to the newest is used (the widest span, the
    least rounding); otherwise the parabola through the three: where it crosses 100 %
    for a task speeding up, or its top (where the rate falls to zero) for a task
    slowing down too fast to get there. Counting from when the current value was first
    seen keeps the estimate from receding while a task sits on one value, so that it
    becomes overdue instead. ``None`` when progress gives no signal: no samples, or no
    rise of at least 1 % (pending, just started, stalled from the start).
    """
    points = [(sample.at, sample.progress + 0.5) for sample in samples]
    if not points:
        return None
    if started_after is not None:
        points.insert(0, ((started_after + samples[0].at) / 2, 0.0))
    at, done = points[-1]
    anchor = _below(points, at, done, _SPAN) or _below(points, at, done, 1)
    if anchor is None:
        return None
    rate = (done - anchor[1]) / (at - anchor[0])
    end = at + (100 - done) / rate
    oldest = _below(points, anchor[0], anchor[1], _SPAN)
    if oldest is None:
        return end
    # Each point is off by up to half a percent, so each chord's rate by up to
    # 1 % / its duration: a change of rate within that is rounding, not a curve, and
    # the straight line over the widest span is then the best estimate.
    earlier = (anchor[1] - oldest[1]) / (anchor[0] - oldest[0])
    if abs(rate - earlier) <= 1 / (at - anchor[0]) + 1 / (anchor[0] - oldest[0]):
        return at + (100 - done) * (at - oldest[0]) / (done - oldest[1])
    curved = _parabola_end(oldest, anchor, (at, done))
    if curved is not None:
        end = curved
    return end


def _below(
    points: list[tuple[float, float]], at: float, done: float, span: float
) -> tuple[float, float] | None:
    """The latest point before ``at`` at least ``span`` percent below ``done``."""
    for point in reversed(points):
        if point[0] < at and done - point[1] >= span:
            return point
    return None


def _parabola_end(
    p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float]
) -> float | None:
    """When the parabola through three (time, percent) points reaches 100 % or tops out.

    ``None`` when it is not rising at the last point.
    """
    (t0, y0), (t1, y1), (t2, y2) = p0, p1, p2
    slope01 = (y1 - y0) / (t1 - t0)
    slope12 = (y2 - y1) / (t2 - t1)
    curve = (slope12 - slope01) / (t2 - t0)  # half the second derivative
    rate = slope12 + curve * (t2 - t1)  # the derivative at t2
    if rate <= 0:
        return None
    left = 100 - y2
    if abs(curve) * left < 1e-12 * rate * rate:
        return t2 + left / rate
    disc = rate * rate + 4 * curve * left
    if disc < 0:
        return t2 + rate / (-2 * curve)  # slowing down: the rate runs out before 100 %
    return t2 + 2 * left / (rate + math.sqrt(disc))


def _distinct(*samples: ProgressSample | None) -> list[ProgressSample]:
    """The given samples, oldest first, without gaps or repeated values."""
    out: list[ProgressSample] = []
    for sample in samples:
        if sample is not None and (not out or sample.progress != out[-1].progress):
            out.append(sample)
    return out


def _full_jitter(value: float, rand: Random) -> float:
    # backoff.full_jitter draws from the global random module; tests inject `rand`.
    if rand is random.random:
        return backoff.full_jitter(value)
    return value * rand()


def clip_to_deadline(delay: float, now: float, deadline: float | None) -> float:
    """Shorten ``delay`` so that a sleep starting at ``now`` never passes ``deadline``."""
    if deadline is None:
        return delay
    return max(0.0, min(delay, deadline - now))


class PollPlan:
    """The poll schedule of one task: what has been seen, and when to look next.

    Kept apart from the network so that the benchmarks simulate exactly what a wait does.
    """

    __slots__ = ("pending_at", "policy", "polls", "samples", "started_after")

    def __init__(self, policy: PollPolicy) -> None:
        self.policy = policy
        self.polls = 0
        self.samples: list[ProgressSample] = []
        """Each progress value seen while processing, when first seen (at most 101)."""
        self.pending_at: float | None = None
        """The last poll that saw the task pending, before any saw it processing."""
        self.started_after: float | None = None
        """``pending_at`` frozen when processing is first seen: it started after that."""

    @property
    def first(self) -> ProgressSample | None:
        """When processing was first seen, at which progress."""
        return self.samples[0] if self.samples else None

    @property
    def latest(self) -> ProgressSample | None:
        """When the current progress value was first seen."""
        return self.samples[-1] if self.samples else None

    def observe(
        self, now: float, processing: bool, progress: int, rand: Random = random.random
    ) -> float:
        """Record a poll's answer for a task still running; return the delay until the next."""
        self.polls += 1
        if not self.policy.progress_aware:
            # Samples only feed the estimate: without it they would cost memory per wait.
            return self.policy.poll_delay(self.polls, rand)
        if processing:
            if not self.samples:
                self.started_after = self.pending_at
            samples = self.samples
            if samples and progress < samples[-1].progress:
                # Progress went back (a restart, or noise): the values above it are void.
                # Kept rising, the list holds at most 101 samples however long the wait.
                del samples[next(i for i, s in enumerate(samples) if s.progress >= progress) :]
                if not samples:
                    self.started_after = None  # started again: the old start says nothing
            if not samples or samples[-1].progress != progress:
                samples.append(ProgressSample(now, progress))
        elif not self.samples:
            self.pending_at = now
        return self.policy.next_delay(
            self.polls,
            self.first,
            self.latest,
            now,
            rand,
            samples=self.samples,
            started_after=self.started_after,
        )
