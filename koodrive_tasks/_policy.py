"""When to poll and when to retry: pure arithmetic, no clock and no network.

Every function here takes the random source as an argument, so tests pin jitter.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import attrs
import backoff

from ._validate import boolean, fraction, non_negative, positive_or_none
from .exceptions import InvalidArgumentError

DEFAULT_TIMEOUT = 3600.0
"""A wait gives up after one hour unless told otherwise: tasks of a few GB finish well within."""

Random = Callable[[], float]

# Tuned with benchmarks/bench_polling.py: far from the estimated end, sleep half the
# estimated remainder, but never longer than the processing time watched so far.
_APPROACH = 0.5
_HORIZON = 1.0


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
    default: it trades about 20 % more polls for about 5x less detection lag), it
    estimates when the task will finish from the observed rate and polls shortly
    after that moment, approaching it in halving steps when it is far away.
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
    # Off by default: benchmarks/bench_polling.py measures 0.19x the detection lag of a
    # naive backoff loop but 1.22x its polls, short of the 0.5x-polls bar for a default.
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
    ) -> float:
        """Seconds to sleep after ``polls`` successful polls of a task still running.

        Args:
            polls: Successful polls so far (>= 1).
            first: When processing was first seen, at which progress.
            latest: When the current progress value was first seen.
            now: The current monotonic time.
            rand: Source of jitter.
            previous: When the value before the current one was first seen: the recent
                rate catches tasks that speed up, where the average lags behind.
        """
        eta = estimate_remaining(first, latest, now)
        recent = estimate_remaining(previous, latest, now)
        if eta is not None and recent is not None:
            eta = min(eta, recent)
        if not self.progress_aware or eta is None or first is None:
            return self.poll_delay(polls, rand)
        if eta <= 0:
            # Overdue (slower than it was, or stalled): back off as the overrun grows.
            base = -eta / 2
        elif eta <= 2 * self.initial_delay:
            # Close to the end: poll just after the estimated finish.
            base = eta * (1 + self.eta_margin) + self.eta_margin * self.initial_delay
        else:
            # Far away: halve the distance, so an early misestimate costs few polls, and
            # never look further ahead than the processing time watched so far.
            base = min(eta * _APPROACH, max(self.initial_delay, (now - first.at) * _HORIZON))
        base = min(self.progress_max_delay, max(self.initial_delay, base))
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


def estimate_remaining(
    first: ProgressSample | None, latest: ProgressSample | None, now: float
) -> float | None:
    """Seconds from ``now`` until the task reaches 100 %, at its average rate since ``first``.

    Progress is an integer: a task may sit at 99 % for minutes. Counting from when the
    current value was first seen, rather than from now, keeps the estimate from
    receding while the task sits on one value. Negative when the task is overdue.
    ``None`` when progress gives no signal: no samples, no time between them, or no
    progress made (pending, just started, or stalled from the start).
    """
    if first is None or latest is None:
        return None
    elapsed = latest.at - first.at
    gained = latest.progress - first.progress
    if elapsed <= 0 or gained <= 0:
        return None
    return latest.at + (100 - latest.progress) * elapsed / gained - now


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

    __slots__ = ("first", "latest", "policy", "polls", "previous")

    def __init__(self, policy: PollPolicy) -> None:
        self.policy = policy
        self.polls = 0
        self.first: ProgressSample | None = None
        self.previous: ProgressSample | None = None
        self.latest: ProgressSample | None = None

    def observe(
        self, now: float, processing: bool, progress: int, rand: Random = random.random
    ) -> float:
        """Record a poll's answer for a task still running; return the delay until the next."""
        self.polls += 1
        if processing and (self.latest is None or self.latest.progress != progress):
            self.previous, self.latest = self.latest, ProgressSample(now, progress)
            if self.first is None:
                self.first = self.latest
        return self.policy.next_delay(self.polls, self.first, self.latest, now, rand, self.previous)
