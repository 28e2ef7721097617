"""When to poll and when to retry: pure arithmetic, no clock and no network.

Every function here takes the random source as an argument, so tests pin jitter.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from statistics import NormalDist
from typing import Any

import attrs
import backoff

from ._learning import ExpectedDuration
from ._progress import ALL_SHAPES, ProgressFit, ProgressSample
from ._validate import boolean, fraction, is_number, non_negative, positive_or_none
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
# Where the next poll goes: at the time t where the chance that the task has ended by t,
# over the chance density of an end at t, equals the poll cost plus this share of the
# estimate's spread (what a poll that comes too early costs in later lag). Far from the
# end (a wide estimate) that is early, to see the task again before it ends; near it (a
# sharp one) just past the end.
_RETRY_SHARE = 0.5
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
# Below this chance that the task still runs, it is overdue: past 3.09 standard
# deviations after the estimate's mean.
_SURE = 1e-3
_OVERDUE_AT = 3.09
# While a task sits on a value, each gap is at least this share of the time it has sat
# there and, once past the late edge of the estimate (its 90 % quantile), this multiple
# of the gap before.
_SITTING_SHARE = 0.1
_SITTING_GROWTH = 1.25
_LATE_EDGE_Z = 1.2816
# While pending with an expected processing time, sleep at most this share of it: a
# short task that starts right after a poll is not missed by much.
_PENDING_SHARE_OF_EXPECTED = 0.5
# An expectation wider than this (log-normal spread) says too little to plan by: the
# durations of that kind are not predictable from what keys them.
_PRIOR_MAX_SPREAD = 0.5
_SQRT2 = math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_NORMAL = NormalDist()


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

    The first poll is immediate (unless the wait knows the task was just created: see
    :meth:`PollPlan.first_delay`). By default (``progress_aware``, see :class:`PollPlan`
    for the algorithm) the wait sleeps in proportion to the time waited while nothing
    moves (the task pending, or at 0 %); once progress rises it estimates when the task
    will end, polls to see it again before then, and once just past the end: about
    two thirds of the polls of a hand-written exponential backoff, the end seen a fifth
    as late. Without ``progress_aware`` the wait sleeps
    ``min(max_delay, initial_delay * factor ** n)`` after the n-th poll, whatever the
    task says (:meth:`backoff`). :meth:`efficient` and :meth:`interactive` are presets
    for fewer polls and for a progress bar. Every delay is spread by ``±jitter`` so
    that waits started together drift apart. The whole wait ends at ``timeout``; a task
    whose status and progress do not change for ``stall_timeout`` ends the wait with
    ``TaskStalledError``.

    Attributes:
        initial_delay: Seconds between the first and second poll; progress-aware, a
            fifth of it is also the shortest gap but one per new progress value.
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
        poll_cost: Seconds of detection lag one poll is worth saving. Progress-aware,
            each poll goes where polling later would cost more lag than a poll:
            larger means fewer polls and later detection.
        stall_timeout: Seconds without any change of status or progress after which
            the wait ends with ``TaskStalledError``; ``None`` never.
    """

    initial_delay: float = attrs.field(default=10.0, validator=non_negative)
    factor: float = attrs.field(default=2.5, validator=non_negative)
    max_delay: float = attrs.field(default=120.0, validator=non_negative)
    jitter: float = attrs.field(default=0.1, validator=fraction)
    timeout: float | None = attrs.field(default=DEFAULT_TIMEOUT, validator=positive_or_none)
    retry_initial_delay: float = attrs.field(default=0.5, validator=non_negative)
    retry_max_delay: float = attrs.field(default=30.0, validator=non_negative)
    retry_after_min: float = attrs.field(default=0.5, validator=non_negative)
    retry_after_max: float = attrs.field(default=120.0, validator=non_negative)
    progress_aware: bool = attrs.field(default=True, validator=boolean)
    progress_max_delay: float = attrs.field(default=120.0, validator=non_negative)
    poll_cost: float = attrs.field(default=1.0, validator=non_negative)
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
    def backoff(cls, **changes: Any) -> PollPolicy:
        """Plain exponential backoff, progress ignored: 2 s, then 4, 8, 16, 30, 30 ... s.

        Predictable: the schedule of a hand-written backoff loop, with jitter.

        Args:
            **changes: Fields to set differently (``initial_delay``, ``timeout`` ...).
        """
        settings: dict[str, Any] = {
            "initial_delay": 2.0,
            "factor": 2.0,
            "max_delay": 30.0,
            "progress_aware": False,
        }
        return cls(**{**settings, **changes})

    @classmethod
    def efficient(cls, **changes: Any) -> PollPolicy:
        """Progress-aware polling for workers that mind polls more than seconds.

        The default with ``poll_cost=2``: fewer polls, the end seen a little later; with
        learned durations (``PollPlan(policy, expected=...)``) about half the polls of a
        hand-written backoff loop.

        Args:
            **changes: Fields to set differently (``timeout``, ``stall_timeout`` ...).
        """
        return cls(**{"poll_cost": 2.0, **changes})

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
            "poll_cost": 0.1,
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

    Progress-aware (see :class:`PollPolicy`), while the task is pending the plan sleeps
    ``factor - 1`` times the time waited (at least ``initial_delay``, at most
    ``max_delay``); at 0 %, a multiple of the processing time watched. Once progress
    rises, it fits what it has seen to four shapes of progress over time (steady,
    speeding up, slowing down towards the end, S-shaped: see ``_progress.py``), newer
    values weighing more, and sums the shapes' estimates up, weighted by how well each
    fits, as a normal distribution of the end. The next poll goes to the time ``t``
    where ``P(ended by t) / density(t)``, given the task was running at the last poll,
    equals ``poll_cost`` plus half the estimate's spread: polling later would cost more
    lag than a poll. A wide estimate puts it before the end, to see the task again
    closer to it; a sharp one just past the end. It is never later than a share of the
    processing time watched so far (0.6, widened for each new value that confirms the
    estimate). A task past every estimate is polled again after half its overrun. An
    expected duration (learned from finished tasks of the same kind) sharpens the
    estimate while it agrees with the progress, and is dropped when it does not.

    Memory is bounded however long the wait: the first value seen, the newest, and a
    few running sums per shape; the values in between are not kept.

    Args:
        policy: The wait's policy.
        expected: How long the task's processing is expected to take; see
            :attr:`expected`.
        created_at: When the task was created, on the wait's clock, if the caller
            knows (it created the task itself). The first poll then waits
            :meth:`first_delay` instead of going at once, and the time pending counts
            from the creation.
    """

    __slots__ = (
        "_aimed",
        "_alive",
        "_created_at",
        "_end",
        "_expected",
        "_first_at",
        "_last_gap",
        "_last_running_at",
        "_pending_at",
        "_prior_used",
        "_progress",
        "_sd",
        "_started_after",
        "_trust",
        "policy",
        "polls",
    )

    def __init__(
        self,
        policy: PollPolicy,
        *,
        expected: ExpectedDuration | None = None,
        created_at: float | None = None,
    ) -> None:
        self.policy = policy
        self.polls = 0
        """Successful polls so far; a resumed wait sets it to continue its backoff."""
        self._expected: ExpectedDuration | None = None
        self._end: float | None = None  # the estimate's mean; None without an estimate
        self.expected = expected
        if created_at is not None and not (is_number(created_at) and math.isfinite(created_at)):
            raise InvalidArgumentError(f"created_at must be a finite time, got {created_at!r}")
        self._created_at = created_at
        self._first_at = created_at  # what the time pending counts from
        self._progress: ProgressFit | None = None  # the first value seen, then the newest
        self._pending_at = created_at  # a task is pending when it is created
        self._started_after: float | None = None
        self._last_running_at: float | None = None
        self._alive = ALL_SHAPES  # shapes of progress still in play
        self._sd = 0.0
        self._trust = 0  # new values in a row that confirmed the estimate
        self._aimed = False  # a poll was aimed past the end since the last new value
        self._prior_used = False  # the estimate holds the expectation
        self._last_gap = 0.0  # the delay the last observation returned

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
        self._end = None  # rebuilt with the expectation at the next observation

    @property
    def samples(self) -> tuple[ProgressSample, ...]:
        """The first progress value seen while processing and the newest.

        Each with the time it was first seen; one sample while they are the same, none
        before processing. The values in between are folded into the estimate, not kept.
        """
        seen = self._progress
        if seen is None:
            return ()
        first = ProgressSample(seen.first_at, seen.first_value)
        if seen.last_at == seen.first_at:
            return (first,)
        return (first, ProgressSample(seen.last_at, seen.last_value))

    @property
    def started_after(self) -> float | None:
        """The last poll that saw the task pending before any saw it processing."""
        return self._started_after

    def first_delay(self, now: float) -> float:
        """Seconds from ``now`` to the first poll.

        At once, unless the plan knows when the task was created (``created_at``): a
        task of unknown age may have ended long ago. A task known to be fresh is first
        polled ``initial_delay`` after its creation (half its expected processing time,
        if shorter), when it may have started.

        Args:
            now: The monotonic time the wait starts.
        """
        created = self._created_at
        if created is None or self.polls:
            return 0.0
        first = self.policy.initial_delay
        if self._expected is not None:
            first = min(first, _PENDING_SHARE_OF_EXPECTED * self._expected.seconds)
        return max(0.0, created + first - now)

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
        seen = self._progress
        if seen is None:
            return self._quiet(now - self._first_at, pending=True, rand=rand)
        if changed or self._end is None:
            self._believe(now)
        gap = self._decide(now, rand)
        if not changed and seen.last_value > 0:
            # Sitting on a value (a stall, a slow tail): gaps grow with the time it has
            # sat there, and past the late edge of its estimate by a factor each, so a
            # task that does not move is never hammered.
            floor = _SITTING_SHARE * (now - seen.last_at)
            end = self._end
            late = end is not None and now > end + _LATE_EDGE_Z * self._sd
            if late and _SITTING_GROWTH * self._last_gap > floor:
                floor = _SITTING_GROWTH * self._last_gap
            if gap < floor:
                gap = floor if floor < policy.progress_max_delay else policy.progress_max_delay
        self._last_gap = gap
        return gap

    def _record(self, now: float, processing: bool, progress: int) -> bool:
        """Keep what an answer tells; whether it shows a new progress value."""
        seen = self._progress
        if not processing:
            if seen is None:
                self._pending_at = now
            return False
        if seen is None:
            self._started_after = self._pending_at
            self._progress = ProgressFit(now, progress)
            return True
        if progress < seen.last_value:
            # Progress went back (a restart, or noise): what came before says nothing
            # about the run from here, nor does the old start.
            self._started_after = None
            self._alive = ALL_SHAPES
            self._progress = ProgressFit(now, progress)
            return True
        if seen.last_value == progress:
            return False
        if self.policy.progress_aware:
            # Without progress_aware only the first sighting is kept (it dates the start
            # for observed_duration): the rest would cost memory per wait.
            seen.add(now, progress)
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
        if not (is_number(level) and 0 < level < 1):
            raise InvalidArgumentError(f"level must be between 0 and 1, got {level!r}")
        end = self._end
        if end is None:
            return None
        at = self._last_running_at if now is None else now
        sd = self._sd
        if at is None:
            return end + sd * _NORMAL.inv_cdf(level)
        ended = _cdf((at - end) / sd)
        if ended > 1 - _SURE:  # past every estimate: it should have ended already
            return at
        return max(at, end + sd * _NORMAL.inv_cdf(ended + level * (1 - ended)))

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
        seen = self._progress
        if self._started_after is None or seen is None or self._last_running_at is None:
            return None
        start = (self._started_after + seen.first_at) / 2
        end = (self._last_running_at + ended_at) / 2
        return end - start if end > start else None

    # --- the schedule ------------------------------------------------------------------

    def _start(self, seen: ProgressFit) -> float:
        """The estimated start of processing: the middle of its bracket."""
        first = seen.first_at
        return first if self._started_after is None else (self._started_after + first) / 2

    def _believe(self, now: float) -> None:
        """Rebuild the estimate of the end after a new value (or a new expectation)."""
        seen = self._progress
        assert seen is not None  # noqa: S101 - called once processing was seen
        expected = self._expected
        prior_end: float | None = None
        deviation = 0.0
        if expected is not None:
            start = self._start(seen)
            after = self._started_after
            half = (seen.first_at - after) / 2 if after is not None else 0.0
            prior_end = start + expected.seconds
            deviation = math.hypot(expected.spread * expected.seconds, half)
        previous = self._end
        fitted = seen.fit(self._started_after, self._alive, prior_end, deviation)
        self._end = None
        self._prior_used = False
        if fitted is not None:
            self._end, self._sd, self._alive, self._prior_used = fitted
        elif prior_end is not None and seen.last_value == 0 and prior_end > now:
            # No rate yet: the expectation alone says when the end should come.
            self._end, self._sd, self._prior_used = prior_end, max(deviation, 0.5), True
        end = self._end
        if end is None or seen.last_value == 0:
            self._trust = 0
            return
        confirmed = previous is not None and abs(end - previous) <= _CONFIRMED * (end - now)
        self._trust = self._trust + 1 if confirmed else 0
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
        seen = self._progress
        assert seen is not None  # noqa: S101 - called once processing was seen
        after = self._started_after
        start = seen.first_at if after is None else (after + seen.first_at) / 2
        watched = now - start if now > start else 0.0
        end = self._end
        if end is None:
            return self._quiet(watched, pending=False, rand=rand)
        sd = self._sd
        shortest = policy.initial_delay * _MIN_GAP
        at = (now - end) / sd
        if at > _OVERDUE_AT:
            if seen.last_value == 0:
                # The expected end has passed at 0 %: the expectation is off for this task.
                return self._quiet(watched, pending=False, rand=rand)
            # Overdue: slower than every estimate, or stalled. Gaps grow with the overrun.
            base = max(shortest, _OVERDUE * (now - end))
        else:
            base = end + sd * _best_poll(at, policy.poll_cost / sd + _RETRY_SHARE) - now
            if base > shortest and not self._prior_used:
                # No later than a share of the processing time watched (see _HORIZON).
                share = _HORIZON * (1 + _TRUST_GROWTH * self._trust)
                speedup = _SPEEDUP * (((seen.last_value + 0.5) / 100) ** -0.5 - 1)
                horizon = (share if share > speedup else speedup) * watched
                if horizon < base:
                    base = horizon if horizon > shortest else shortest
            elif base < shortest:
                if self._aimed:
                    # At most one poll below the shortest gap per new value: a task
                    # sitting on a value is never hammered.
                    base = shortest
                elif base < 0:
                    base = 0.0
                self._aimed = True
        ceiling = policy.progress_max_delay
        base *= 1 + policy.jitter * (2 * rand() - 1)
        return base if base < ceiling else ceiling


def _cdf(z: float) -> float:
    """The standard normal distribution function."""
    return 0.5 * (1 + math.erf(z / _SQRT2))


def _solve_best_poll(ended: float, ratio: float) -> float:
    """Where to poll, in standard deviations of the estimate from its mean.

    Solves ``cdf(z) - ended = ratio * pdf(z)``: polling at ``z`` costs the lag
    ``t - end`` when the task ended before, and ``ratio`` spreads' worth (a poll and
    the lag of the next try) when it did not; this ``z`` minimises the sum. ``ended``
    is the chance that the task ended before the last poll, which saw it running.
    Safeguarded Newton steps on a bracket that holds the only root.
    """
    low, high = -1 / ratio, 12.0
    z = max(0.0, low + 0.5)
    for _ in range(60):
        pdf = math.exp(-z * z / 2) * _INV_SQRT_2PI
        value = 0.5 * (1 + math.erf(z / _SQRT2)) - ended - ratio * pdf
        if value < 0:
            low = z
        else:
            high = z
        slope = pdf * (1 + ratio * z)
        guess = z - value / slope if slope > 0 else math.inf
        if not low < guess < high:
            guess = (low + high) / 2
        if abs(guess - z) < 1e-9:
            return guess
        z = guess
    return z


# _best_poll reads a table of _solve_best_poll over where the last poll stands in the
# estimate (standard deviations from its mean) and over log(ratio): bilinear
# interpolation is within 0.01 of the solution, at a fraction of its cost.
_AT_LOW, _AT_STEP, _AT_COUNT = -4.0, 0.25, 30
_RATIO_LOW, _RATIO_STEP, _RATIO_COUNT = math.log(0.125), 0.125, 57
_BEST_POLL = [
    [
        _solve_best_poll(
            0.5 * (1 + math.erf((_AT_LOW + i * _AT_STEP) / _SQRT2)),
            math.exp(_RATIO_LOW + j * _RATIO_STEP),
        )
        for j in range(_RATIO_COUNT)
    ]
    for i in range(_AT_COUNT)
]


def _best_poll(at: float, ratio: float) -> float:
    """``_solve_best_poll(cdf(at), ratio)``, read from its table."""
    x = (at - _AT_LOW) / _AT_STEP
    y = (math.log(ratio) - _RATIO_LOW) / _RATIO_STEP
    i = int(x) if x > 0 else 0
    j = int(y) if y > 0 else 0
    if i >= _AT_COUNT - 1:
        i, x = _AT_COUNT - 2, _AT_COUNT - 1.0
    elif x < 0:
        x = 0.0
    if j >= _RATIO_COUNT - 1:
        j, y = _RATIO_COUNT - 2, _RATIO_COUNT - 1.0
    elif y < 0:
        y = 0.0
    x -= i
    y -= j
    row, below = _BEST_POLL[i + 1], _BEST_POLL[i]
    low = below[j] + (below[j + 1] - below[j]) * y
    high = row[j] + (row[j + 1] - row[j]) * y
    return low + (high - low) * x
