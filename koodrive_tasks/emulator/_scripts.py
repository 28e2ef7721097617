"""Task scripts: how an emulated task behaves over time, and the progress curves.

A script is a value; the task's state at any moment is a pure function of the
script and the seconds since creation (see ``_tasks.py``), so no timer runs per task.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable
from typing import Literal

import attrs

from ._faults import Fault

Shape = Literal["A", "B"]
"""``"A"``: ``code`` ``"0"``, ``taskInfo``; ``"B"``: ``code`` ``0``, ``jobInfo``, ``taskInfos``."""

FileResultsForm = Literal["list", "object"]
"""How shape B renders ``taskInfos``: a list, or (as one edition documents) a single object."""

_WARP_KNOTS = 8


class Curve(enum.Enum):
    """How progress rises over the processing time."""

    LINEAR = "linear"
    EASE_IN = "ease-in"
    EASE_OUT = "ease-out"
    EASE_IN_OUT = "ease-in-out"

    def __call__(self, fraction: float) -> float:
        """Map elapsed fraction (0 to 1) to done fraction (0 to 1), monotonically."""
        if self is Curve.EASE_IN:
            return fraction * fraction
        if self is Curve.EASE_OUT:
            return 1 - (1 - fraction) * (1 - fraction)
        if self is Curve.EASE_IN_OUT:
            return fraction * fraction * (3 - 2 * fraction)
        return fraction


class Outcome(enum.Enum):
    """How a task that runs to the end completes."""

    ALL_SUCCEEDED = 1
    PARTIALLY_FAILED = 2
    ALL_FAILED = 3


@attrs.frozen
class Stall:
    """A flat section of the progress curve, as fractions of ``duration_s``.

    Attributes:
        start: Where the stall begins, 0 to 1 of the processing time.
        length: How long it lasts, as a fraction of the processing time.

    """

    start: float = attrs.field(validator=[attrs.validators.ge(0), attrs.validators.lt(1)])
    length: float = attrs.field(validator=[attrs.validators.gt(0), attrs.validators.lt(1)])


def _stall_tuple(stalls: Iterable[Stall]) -> tuple[Stall, ...]:
    return tuple(stalls)


def _fault_tuple(faults: Iterable[Fault | None]) -> tuple[Fault | None, ...]:
    return tuple(faults)


def _check_stalls(
    _: object, __: attrs.Attribute[tuple[Stall, ...]], stalls: tuple[Stall, ...]
) -> None:
    end = 0.0
    for stall in stalls:
        if stall.start < end:
            raise ValueError("stalls must be sorted and must not overlap")
        end = stall.start + stall.length
    if end > 1 or sum(s.length for s in stalls) >= 1:
        raise ValueError("stalls must end within the processing time and leave some of it")


@attrs.frozen
class TaskScript:
    """What one emulated task does.

    Attributes:
        pending_s: Seconds in ``taskStatus`` 0 after creation.
        duration_s: Seconds in ``taskStatus`` 1 (stalls included) before completing.
        outcome: How the task completes if not canceled. With ``PARTIALLY_FAILED`` the
            files in ``failed_file_ids`` fail, or by default every other file counted
            from the last. ``taskResultCode`` always agrees with the files, so a
            one-file task scripted to fail partially reports all failed.
        curve: The shape of the progress rise.
        stalls: Flat sections of the rise.
        noise: 0 to 1: how far a seeded, still monotonic, random warp bends the curve.
        noise_seed: Seed of that warp; derived from the task id when ``None``.
        cancel_after_s: Seconds after creation at which the task is canceled (progress
            frozen), or ``None``. Ignored if the task has ended by then.
        result_code: The ``resultCode`` reported once the task has ended.
        failed_file_ids: Files that fail under ``PARTIALLY_FAILED``.
        shape: Response shape for this task, or ``None`` for the emulator's.
        file_results: ``taskInfos`` form for this task, or ``None`` for the emulator's.
        faults: Faults for successive detail requests of this task; ``None`` entries
            answer normally. Requests beyond the sequence follow the emulator's fault plan.

    """

    pending_s: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    duration_s: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    outcome: Outcome = Outcome.ALL_SUCCEEDED
    curve: Curve = Curve.LINEAR
    stalls: tuple[Stall, ...] = attrs.field(
        default=(), converter=_stall_tuple, validator=_check_stalls
    )
    noise: float = attrs.field(
        default=0.0, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )
    noise_seed: int | None = None
    cancel_after_s: float | None = None
    result_code: int = 0
    failed_file_ids: frozenset[str] | None = attrs.field(
        default=None, converter=attrs.converters.optional(frozenset)
    )
    shape: Shape | None = None
    file_results: FileResultsForm | None = None
    faults: tuple[Fault | None, ...] = attrs.field(default=(), converter=_fault_tuple)

    @property
    def end_s(self) -> float:
        """Seconds after creation at which the task completes, unless canceled first."""
        return self.pending_s + self.duration_s


def make_warp(seed: int) -> tuple[float, ...]:
    """Knots of a seeded monotonic map of [0, 1] onto itself (for curve noise).

    Returns:
        ``_WARP_KNOTS + 1`` increasing values from 0.0 to 1.0.

    """
    rng = random.Random(seed)
    steps = [rng.uniform(0.2, 1.8) for _ in range(_WARP_KNOTS)]
    total = sum(steps)
    knots = [0.0]
    for step in steps:
        knots.append(knots[-1] + step / total)
    knots[-1] = 1.0
    return tuple(knots)


def _apply_warp(knots: tuple[float, ...], fraction: float) -> float:
    scaled = fraction * _WARP_KNOTS
    index = min(int(scaled), _WARP_KNOTS - 1)
    low, high = knots[index], knots[index + 1]
    return low + (high - low) * (scaled - index)


def _effective_fraction(script: TaskScript, elapsed_s: float) -> float:
    """Fraction of the non-stalled processing time that has passed."""
    duration = script.duration_s
    if not script.stalls:
        return elapsed_s / duration
    stalled = 0.0
    total_stalled = 0.0
    for stall in script.stalls:
        begin, length = stall.start * duration, stall.length * duration
        total_stalled += length
        stalled += min(max(elapsed_s - begin, 0.0), length)
    return (elapsed_s - stalled) / (duration - total_stalled)


def processing_progress(
    script: TaskScript, warp: tuple[float, ...] | None, elapsed_s: float
) -> int:
    """Integer percent done ``elapsed_s`` seconds into processing.

    Non-decreasing in ``elapsed_s``; 0 at the start and at most 99, since 100 means
    completed.

    Args:
        script: The task's script.
        warp: Noise knots from :func:`make_warp`, or ``None`` when ``script.noise`` is 0.
        elapsed_s: Seconds since processing started.

    Returns:
        The progress percentage.

    """
    fraction = min(max(_effective_fraction(script, elapsed_s), 0.0), 1.0)
    if warp is not None and script.noise > 0:
        fraction = (1 - script.noise) * fraction + script.noise * _apply_warp(warp, fraction)
    return min(99, math.floor(100 * script.curve(fraction) + 1e-9))


def _check_weights(
    _: object,
    __: attrs.Attribute[tuple[tuple[Outcome, float], ...]],
    weights: tuple[tuple[Outcome, float], ...],
) -> None:
    if any(not weight >= 0 for _, weight in weights) or not sum(w for _, w in weights) > 0:
        raise ValueError("outcome weights must be >= 0 with a positive sum")


def _probability(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be a probability (0 to 1), not {value!r}")


@attrs.frozen
class RandomScripts:
    """A seeded distribution of scripts, for demos, benchmarks and ``koodrive-tasks serve``.

    Durations are log-normal (``median_duration_s``, ``sigma``) clipped to
    ``[min_duration_s, max_duration_s]``.

    Attributes:
        min_duration_s: Shortest processing time.
        max_duration_s: Longest processing time.
        median_duration_s: Median processing time before clipping.
        sigma: Spread of the log-normal distribution.
        max_pending_s: Pending time is uniform in ``[0, max_pending_s]``.
        outcome_weights: Relative weights of the outcomes of tasks that are not canceled.
        cancel_rate: Probability that a task is canceled part way.
        curves: Curves to choose from, uniformly.
        stall_rate: Probability that a task has one stall.
        max_noise: Noise is uniform in ``[0, max_noise]``.

    Raises:
        ValueError: If a duration is not positive, ``min_duration_s`` exceeds
            ``max_duration_s``, a probability lies outside 0 to 1, or the outcome
            weights are negative or all zero.

    """

    min_duration_s: float = 1.0
    max_duration_s: float = 600.0
    median_duration_s: float = attrs.field(default=20.0, validator=attrs.validators.gt(0))
    sigma: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    max_pending_s: float = attrs.field(default=2.0, validator=attrs.validators.ge(0))
    outcome_weights: tuple[tuple[Outcome, float], ...] = attrs.field(
        default=(
            (Outcome.ALL_SUCCEEDED, 0.8),
            (Outcome.PARTIALLY_FAILED, 0.1),
            (Outcome.ALL_FAILED, 0.1),
        ),
        validator=_check_weights,
    )
    cancel_rate: float = attrs.field(default=0.0, validator=_probability)
    curves: tuple[Curve, ...] = tuple(Curve)
    stall_rate: float = attrs.field(default=0.2, validator=_probability)
    max_noise: float = attrs.field(default=0.3, validator=_probability)

    def __attrs_post_init__(self) -> None:
        if not 0 < self.min_duration_s <= self.max_duration_s:
            raise ValueError("need 0 < min_duration_s <= max_duration_s")

    @classmethod
    def from_outcome_mix(
        cls,
        *,
        completed: float = 0.0,
        partially_failed: float = 0.0,
        failed: float = 0.0,
        canceled: float = 0.0,
        **fields: object,
    ) -> RandomScripts:
        """Build a distribution from relative weights of the four ways a task ends.

        ``completed=80, partially_failed=10, failed=5, canceled=5`` makes 80 % of tasks
        succeed, 10 % fail partially, 5 % fail and 5 % get canceled part way.

        Args:
            completed: Weight of tasks whose files all succeed.
            partially_failed: Weight of tasks with some files failed.
            failed: Weight of tasks whose files all fail.
            canceled: Weight of tasks canceled while pending or processing.
            **fields: Further :class:`RandomScripts` attributes (durations, pending time...).

        Raises:
            ValueError: If a weight is negative or all are zero.

        """
        weights = (completed, partially_failed, failed, canceled)
        if any(not w >= 0 for w in weights) or not sum(weights) > 0:
            raise ValueError("outcome weights must be >= 0 with a positive sum")
        ending: tuple[tuple[Outcome, float], ...] = (
            (Outcome.ALL_SUCCEEDED, completed),
            (Outcome.PARTIALLY_FAILED, partially_failed),
            (Outcome.ALL_FAILED, failed),
        )
        if completed + partially_failed + failed == 0:
            # Every task is canceled; the outcome it would have had is never seen.
            ending = ((Outcome.ALL_SUCCEEDED, 1.0),)
        return cls(
            outcome_weights=tuple((o, w) for o, w in ending if w > 0),
            cancel_rate=canceled / sum(weights),
            **fields,  # type: ignore[arg-type]
        )

    def draw(self, rng: random.Random) -> TaskScript:
        """Draw one script; the same ``rng`` state always gives the same script."""
        duration = rng.lognormvariate(math.log(self.median_duration_s), self.sigma)
        duration = min(max(duration, self.min_duration_s), self.max_duration_s)
        pending = rng.uniform(0, self.max_pending_s)
        outcomes = [o for o, _ in self.outcome_weights]
        outcome = rng.choices(outcomes, weights=[w for _, w in self.outcome_weights])[0]
        curve = rng.choice(self.curves)
        stalls: list[Stall] = []
        if rng.random() < self.stall_rate:
            stalls.append(Stall(start=rng.uniform(0.05, 0.6), length=rng.uniform(0.05, 0.3)))
        cancel = None
        if rng.random() < self.cancel_rate:
            cancel = pending + rng.uniform(0, duration)
        return TaskScript(
            pending_s=round(pending, 3),
            duration_s=round(duration, 3),
            outcome=outcome,
            curve=curve,
            stalls=stalls,
            noise=round(rng.uniform(0, self.max_noise), 3),
            noise_seed=rng.getrandbits(32),
            cancel_after_s=cancel,
        )
