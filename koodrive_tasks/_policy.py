"""When to poll and when to retry: pure arithmetic, no clock and no network.

Every function here takes the random source as an argument, so tests pin jitter.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import attrs
import backoff

from ._learning import ExpectedDuration
from ._progress import EndBelief, ProgressSample, expected_end, fit_end
from ._validate import boolean, fraction, non_negative, positive_or_none
from .exceptions import InvalidArgumentError

DEFAULT_TIMEOUT = 3600.0
"""A wait gives up after one hour unless told otherwise: tasks of a few GB finish well within."""

Random = Callable[[], float]

# Constants of the progress-aware schedule (see PollPlan); benchmarks/README.md says how
# they were chosen.
#
# At 0 % after w seconds of processing, even a task speeding up like t^2 needs about
# 10 w in all: sleep a multiple of the time watched instead of a fixed backoff.
_ZERO_GROWTH = 12.0
# Progress-aware gaps are at least this share of initial_delay (except one poll aimed
# just past an estimated end per change of progress).
_MIN_GAP = 0.2
# Far from the end, the next poll lands at this share of the time to the early edge of
# the estimate (the _EARLY quantile), to see the task again before it ends.
_APPROACH = 0.9
_EARLY = 0.15
# The late edge of the estimate: once it is within end_window, the next poll is aimed
# there, just past the end with probability 1 - _LATE.
_LATE = 0.1
# Shapes' estimates of the time left are each spread this much (log-normal): how far a
# real task strays from the shape that fits it best.
_SPREAD = 0.2
# Never sleep more than this share of the processing time watched so far: an estimate
# built on a little progress (a stall ahead, a task speeding up) cannot send the wait
# far past the end. Each new value that confirms the estimate (its middle moves by at
# most _CONFIRMED of the time left) widens the bound by _TRUST_GROWTH of it.
_HORIZON = 0.6
_CONFIRMED = 0.2
_TRUST_GROWTH = 2.0
# Early on, the bound is also what a task speeding up like t^2 would still need
# (1 / sqrt(progress) - 1 of the time watched), times this share.
_SPEEDUP = 0.5
# An overdue task (past every estimate: a stall, a slow tail) is polled again after
# this share of its overrun, so gaps grow while it sits on a value.
_OVERDUE = 0.5
# While a task sits on a value, each gap is at least this share of the time it has sat
# there and, once past the late edge of the estimate, this multiple of the gap before.
_SITTING_SHARE = 0.1
_SITTING_GROWTH = 1.25
# A poll aimed past the end lands this share of end_window after the late edge.
_AIM_MARGIN = 1 / 30
# While pending with an expected processing time, sleep at most this share of it: a
# short task that starts right after a poll is not missed by much.
_PENDING_SHARE_OF_EXPECTED = 0.5
# An expectation wider than this (log-normal spread) says too little to plan by: the
# durations of that kind are not predictable from what keys them.
_PRIOR_MAX_SPREAD = 0.5


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
class PollPolicy:
    """How a wait polls one task.

    The first poll is immediate. Without ``progress_aware`` the wait then sleeps
    ``min(max_delay, initial_delay * factor ** n)`` after the n-th poll, whatever the
    task says. With it (see :class:`PollPlan` for the algorithm), the wait sleeps in
    proportion to the time waited while nothing moves (the task pending, or at 0 %),
    and once progress rises it estimates when the task will end and polls to see it
    again before then, then once just past the end. :meth:`efficient` and
    :meth:`interactive` are tuned presets of it. Every delay is spread by ``±jitter`` so
    that waits started together drift apart. The whole wait ends at ``timeout``; a task
    whose status and progress do not change for ``stall_timeout`` ends the wait with
    ``TaskStalledError``.

    Attributes:
        initial_delay: Seconds between the first and second poll.
        factor: Growth of the delay per poll (>= 1). Progress-aware, while the task is
            pending each delay is ``factor - 1`` times the time waited so far.
        max_delay: Upper bound of any delay while the task gives no progress signal
            (of every delay without ``progress_aware``); >= initial_delay.
        jitter: Relative spread of each delay, 0 to 1 (0.1 = ±10 %).
        timeout: Seconds after which the wait raises ``WaitTimeoutError``;
            ``None`` waits for as long as it takes.
        retry_initial_delay: First delay after a transient failure (full jitter).
        retry_max_delay: Upper bound of a delay after transient failures.
        retry_after_min: Floor applied to a server's ``Retry-After``.
        retry_after_max: Ceiling applied to a server's ``Retry-After``: a server asking
            for a day must not wedge a worker.
        progress_aware: Schedule polls from the observed progress (and, when the wait
            has one, from the expected duration of tasks of its kind).
        progress_max_delay: Upper bound of a delay chosen from progress
            (>= initial_delay).
        end_window: Seconds. Once the late edge of the estimated end is this close, the
            next poll is aimed just past it instead of looking once more before it:
            larger means fewer polls and later detection.
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
    progress_aware: bool = attrs.field(default=False, validator=boolean)
    progress_max_delay: float = attrs.field(default=300.0, validator=non_negative)
    end_window: float = attrs.field(default=6.0, validator=non_negative)
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

    @classmethod
    def efficient(cls, **changes: Any) -> PollPolicy:
        """Progress-aware polling for workers: few polls, the end seen a few seconds late.

        Args:
            **changes: Fields to set differently (``timeout``, ``stall_timeout`` ...).
        """
        settings: dict[str, Any] = {
            "initial_delay": 10.0,
            "factor": 2.5,
            "max_delay": 120.0,
            "progress_aware": True,
            "progress_max_delay": 120.0,
            "end_window": 6.0,
        }
        return cls(**{**settings, **changes})

    @classmethod
    def interactive(cls, **changes: Any) -> PollPolicy:
        """Progress-aware polling for a progress bar: a short task's end seen within a second.

        The bar moves at least every ``progress_max_delay`` (5 s); a long task costs a
        poll every few seconds, a short one a poll or two per second.

        Args:
            **changes: Fields to set differently (``timeout``, ``stall_timeout`` ...).
        """
        settings: dict[str, Any] = {
            "initial_delay": 0.5,
            "factor": 1.5,
            "max_delay": 2.0,
            "progress_aware": True,
            "progress_max_delay": 5.0,
            "end_window": 1.0,
        }
        return cls(**{**settings, **changes})

    def poll_delay(self, polls: int, rand: Random = random.random) -> float:
        """Seconds to sleep after ``polls`` successful polls (1 after the first), ignoring progress."""
        base = exponential(polls - 1, self.initial_delay, self.factor, self.max_delay)
        spread = base * self.jitter * (2 * rand() - 1)
        return max(0.0, min(self.max_delay, base + spread))

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

    def _spread(self, base: float, ceiling: float, rand: Random) -> float:
        """``base`` spread by ±jitter, within ``[0, ceiling]``."""
        return max(0.0, min(ceiling, base * (1 + self.jitter * (2 * rand() - 1))))


def _full_jitter(value: float, rand: Random) -> float:
    # backoff.full_jitter draws from the global random module; tests inject `rand`.
    if rand is random.random:
        return backoff.full_jitter(value)
    return value * rand()


class PollPlan:
    """The poll schedule of one wait: what it has seen of a task, and when to look next.

    A wait builds one plan per task and calls :meth:`observe` with each answer that
    shows the task still running; the delay it returns is the time until the next
    poll. No clock and no network: the benchmarks replay exactly what a wait does.

    Progress-aware (see :class:`PollPolicy`), the plan keeps each progress value with
    the time it was first seen. While the task is pending it sleeps ``factor - 1``
    times the time waited (at least ``initial_delay``, at most ``max_delay``); at 0 %, a
    multiple of the processing time watched. Once progress rises, it fits the samples
    to a few shapes of progress over time (steady, speeding up, slowing down towards
    the end, S-shaped: see ``_progress.py``) and holds a belief about the end: a mixture
    of log-normal estimates weighted by how well each shape fits, given that the task
    was still running at the last poll. When the late edge of that belief (its 90 %
    quantile) is within ``end_window`` seconds, the next poll is aimed there; otherwise
    it lands before the early edge (90 % of the way to the 15 % quantile), no later than
    a share of the processing time watched so far: 0.6 of it, widened for each new value
    that confirms the estimate. A task past every estimate is polled again after half
    its overrun. An expected duration (learned from finished tasks of the same kind)
    sharpens the belief while it agrees with the progress, and is dropped when it does
    not.

    Args:
        policy: The wait's policy.
        expected: How long the task's processing is expected to take; see
            :attr:`expected`.
    """

    __slots__ = (
        "_aimed",
        "_belief",
        "_expected",
        "_first_at",
        "_last_gap",
        "_last_running_at",
        "_late_edge",
        "_middle",
        "_pending_at",
        "_prior_used",
        "_samples",
        "_started_after",
        "_trust",
        "policy",
        "polls",
    )

    def __init__(self, policy: PollPolicy, *, expected: ExpectedDuration | None = None) -> None:
        self.policy = policy
        self.polls = 0
        """Successful polls so far; a resumed wait sets it to continue its backoff."""
        self._expected: ExpectedDuration | None = None
        self.expected = expected
        self._samples: list[ProgressSample] = []  # rising: at most 101, however long the wait
        self._first_at: float | None = None
        self._pending_at: float | None = None
        self._started_after: float | None = None
        self._last_running_at: float | None = None
        self._belief: EndBelief | None = None
        self._middle: float | None = None  # the belief's middle when it was made
        self._trust = 0  # new values in a row that confirmed the estimate
        self._aimed = False  # a poll was aimed past the end since the last new value
        self._prior_used = False  # the belief holds the expectation
        self._last_gap = 0.0  # the delay the last observation returned
        self._late_edge: float | None = None  # the estimate's late edge when last rebuilt

    @property
    def expected(self) -> ExpectedDuration | None:
        """The expected processing time, when tasks of this kind are predictable.

        Set it once the task's kind is known (after the first answer, before
        :meth:`observe` reads that answer). An expectation with a spread over 0.5 is
        ignored: durations of that kind are not predictable from what keys them.
        """
        return self._expected

    @expected.setter
    def expected(self, value: ExpectedDuration | None) -> None:
        self._expected = value if value is None or value.spread <= _PRIOR_MAX_SPREAD else None
        self._belief = None  # rebuilt with the expectation at the next observation

    @property
    def samples(self) -> tuple[ProgressSample, ...]:
        """Each progress value seen while processing, when first seen, oldest first."""
        return tuple(self._samples)

    @property
    def started_after(self) -> float | None:
        """The last poll that saw the task pending before any saw it processing."""
        return self._started_after

    def observe(
        self, now: float, processing: bool, progress: int, rand: Random = random.random
    ) -> float:
        """Record a poll's answer for a task still running; return the delay until the next.

        Args:
            now: The monotonic time of the answer.
            processing: Whether the task is processing (else pending).
            progress: Its percent done.
            rand: Source of jitter.
        """
        policy = self.policy
        self.polls += 1
        if self._first_at is None:
            self._first_at = now
        self._last_running_at = now
        changed = self._record(now, processing, progress)
        if not policy.progress_aware:
            return policy.poll_delay(self.polls, rand)
        samples = self._samples
        if not samples:
            return self._quiet(now - self._first_at, pending=True, rand=rand)
        if changed or self._belief is None:
            self._believe(now)
        gap = self._decide(now, rand)
        if not changed and samples[-1].progress > 0:
            # Sitting on a value (a stall, a slow tail): gaps grow with the time it has
            # sat there, and past the late edge of its estimate by a factor each, so a
            # task that does not move is never hammered.
            floor = _SITTING_SHARE * (now - samples[-1].at)
            if self._late_edge is not None and now > self._late_edge:
                floor = max(floor, _SITTING_GROWTH * self._last_gap)
            gap = min(max(gap, floor), policy.progress_max_delay)
        self._last_gap = gap
        return gap

    def _record(self, now: float, processing: bool, progress: int) -> bool:
        """Keep what an answer tells; whether it shows a new progress value."""
        samples = self._samples
        if not processing:
            if not samples:
                self._pending_at = now
            return False
        if not samples:
            self._started_after = self._pending_at
        elif progress < samples[-1].progress:
            # Progress went back (a restart, or noise): the values above it are void.
            del samples[next(i for i, s in enumerate(samples) if s.progress >= progress) :]
            if not samples:
                self._started_after = None  # started again: the old start says nothing
        if samples and samples[-1].progress == progress:
            return False
        if self.policy.progress_aware or not samples:
            # Without progress_aware only the first sighting is kept (it dates the start
            # for observed_duration): the rest would cost memory per wait.
            samples.append(ProgressSample(now, progress))
        return True

    def estimated_end(self, now: float | None = None, *, level: float = 0.5) -> float | None:
        """When the task should reach 100 %, given it was still running at ``now``.

        Args:
            now: When the task was last seen running; the last observation by default.
            level: How sure: 0.5 is the middle of the estimate, 0.9 a time by which the
                task has ended nine times in ten, 0.1 one it reaches only once in ten.

        Returns:
            A monotonic time, or ``None`` while nothing tells it (pending, no progress
            yet and no expected duration, or ``progress_aware`` off).

        Raises:
            InvalidArgumentError: If ``level`` is not strictly between 0 and 1.
        """
        if not (isinstance(level, (int, float)) and 0 < level < 1):
            raise InvalidArgumentError(f"level must be between 0 and 1, got {level!r}")
        belief = self._belief
        if belief is None:
            return None
        at = self._last_running_at if now is None else now
        end = belief.quantile(level, belief.origin if at is None else at)
        if end is None:  # past every estimate: it should have ended already
            return at
        return end

    def observed_duration(self, ended_at: float) -> float | None:
        """The processing time this wait saw: what a :class:`DurationModel` learns.

        Processing started between the last poll that saw the task pending and the first
        that saw it processing, and ended between the last that saw it running and
        ``ended_at``: the middles of those brackets.

        Args:
            ended_at: When the wait first saw the task ended.

        Returns:
            Seconds, or ``None`` when the start was not bracketed (the wait never saw the
            task pending, or never saw it processing).
        """
        if self._started_after is None or not self._samples or self._last_running_at is None:
            return None
        start = (self._started_after + self._samples[0].at) / 2
        end = (self._last_running_at + ended_at) / 2
        return end - start if end > start else None

    # --- the schedule ------------------------------------------------------------------

    def _start(self) -> float:
        """The estimated start of processing: the middle of its bracket."""
        first = self._samples[0].at
        return first if self._started_after is None else (self._started_after + first) / 2

    def _believe(self, now: float) -> None:
        """Rebuild the belief about the end after a new value (or a new expectation)."""
        samples = self._samples
        expected = self._expected
        belief = fit_end(samples, self._started_after, _SPREAD)
        self._prior_used = False
        if expected is not None:
            start = self._start()
            half = (samples[0].at - self._started_after) / 2 if self._started_after else 0.0
            deviation = math.hypot(expected.spread * expected.seconds, half)
            if belief is None:
                if samples[-1].progress == 0:
                    belief = expected_end(now, start + expected.seconds, deviation)
                    self._prior_used = belief is not None
            else:
                combined = belief.with_prior(start + expected.seconds, deviation)
                self._prior_used = combined is not None
                belief = combined or belief
        self._belief = belief
        self._late_edge = None if belief is None else belief.quantile(1 - _LATE, now)
        if belief is None or samples[-1].progress == 0:
            self._middle = None
            self._trust = 0
            return
        middle = belief.quantile(0.5, now)
        previous = self._middle
        confirmed = (
            previous is not None
            and middle is not None
            and abs(middle - previous) <= _CONFIRMED * (middle - now)
        )
        self._trust = self._trust + 1 if confirmed else 0
        self._middle = middle
        self._aimed = False

    def _quiet(self, waited: float, *, pending: bool, rand: Random) -> float:
        """The delay while nothing moves: pending, or processing at 0 %."""
        policy = self.policy
        growth = policy.factor - 1 if pending else _ZERO_GROWTH
        base = max(policy.initial_delay, growth * waited)
        expected = self._expected
        if pending and expected is not None:
            # A short task starting right after this poll must not be missed by much.
            floor = policy.initial_delay * _MIN_GAP
            base = min(base, max(floor, _PENDING_SHARE_OF_EXPECTED * expected.seconds))
        return policy._spread(min(policy.max_delay, base), policy.max_delay, rand)

    def _decide(self, now: float, rand: Random) -> float:
        """The delay once processing was seen."""
        policy = self.policy
        belief = self._belief
        watched = max(now - self._start(), 0.0)
        if belief is None:
            return self._quiet(watched, pending=False, rand=rand)
        shortest = policy.initial_delay * _MIN_GAP
        late = belief.quantile(1 - _LATE, now)
        progress = self._samples[-1].progress
        if late is None and progress == 0:
            # The expected end has passed at 0 %: the expectation is off for this task.
            return self._quiet(watched, pending=False, rand=rand)
        if late is None:
            # Overdue: slower than every estimate, or stalled. Gaps grow with the overrun.
            overrun = now - belief.latest_middle()
            base = max(shortest, _OVERDUE * overrun)
            return policy._spread(base, policy.progress_max_delay, rand)
        if late - now <= policy.end_window:
            base = late - now + _AIM_MARGIN * policy.end_window
            if self._aimed:
                # At most one poll below the shortest gap per new value: a task sitting
                # on a value is never hammered.
                base = max(base, shortest)
            self._aimed = True
            return policy._spread(base, policy.progress_max_delay, rand)
        early = belief.quantile(_EARLY, now)
        assert early is not None  # noqa: S101 - the late quantile exists, so does this one
        base = max(shortest, _APPROACH * (early - now))
        if not self._prior_used:
            done = (progress + 0.5) / 100
            share = max(_HORIZON * (1 + _TRUST_GROWTH * self._trust), _SPEEDUP * (done**-0.5 - 1))
            base = min(base, max(shortest, share * watched))
        return policy._spread(base, policy.progress_max_delay, rand)
