"""Where a running task's end lies, judged from its progress: pure arithmetic.

A task's progress is assumed to follow one of a few shapes over its processing time:
steady, speeding up, slowing down towards the end, or S-shaped. Each shape maps a
progress value to the share of the processing time elapsed when it is reached, so every
sample becomes a point ``(elapsed share, time)`` and a straight line through the points
gives the start and the length of the processing, hence its end. The shapes that fit
the samples best get the most weight; the result is a mixture of log-normal estimates of
the time left, which the schedule reads as quantiles, given that the task was still
running at the last poll.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

import attrs


@attrs.frozen
class ProgressSample:
    """When a running task's progress was first seen at a value.

    Attributes:
        at: Monotonic time of the first observation at ``progress``.
        progress: Percent done.
    """

    at: float
    progress: int


# Progress is rounded down to whole percents: a value p is taken to be p + 0.5 % done.
_HALF_STEP = 0.5


def _shape_table(inverse: Callable[[float], float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Elapsed share at each value's middle, and the variance of the share over its step."""
    middles = tuple(inverse((p + _HALF_STEP) / 100) for p in range(100))
    widths = tuple(inverse((p + 1) / 100) - inverse(p / 100) for p in range(100))
    return middles, tuple(width * width / 12 for width in widths)


def _smoothstep_inverse(done: float) -> float:
    # 3x^2 - 2x^3 = done, solved on [0, 1].
    return 0.5 - math.sin(math.asin(1 - 2 * done) / 3)


# (elapsed share at each value, rounding variance of it, prior weight) per shape. A steady
# rate is the most common shape and gets twice the weight of each of the others, so that
# when the samples cannot tell the shapes apart (a few points early on) the estimate leans
# to a steady rate rather than to an extreme.
_SHAPES = (
    (*_shape_table(lambda p: p), 2.0),
    (*_shape_table(lambda p: p ** (1 / 1.5)), 1.0),
    (*_shape_table(math.sqrt), 1.0),
    (*_shape_table(lambda p: 1 - (1 - p) ** (1 / 1.5)), 1.0),
    (*_shape_table(lambda p: 1 - math.sqrt(1 - p)), 1.0),
    (*_shape_table(_smoothstep_inverse), 1.0),
)
# How far a real task strays from its shape, as a share of its processing time (its
# rate wobbles): the fit's tolerance for each point beyond rounding.
_SHAPE_NOISE = 0.02
# The newest samples only: the end is decided by the recent part of the curve, and a
# bounded fit keeps the cost per poll flat however long the wait.
_FIT_POINTS = 6
_NOISE = _SHAPE_NOISE * _SHAPE_NOISE
# Weights below this share of the best are dropped: they would not move any quantile.
_NEGLIGIBLE = 1e-3
# Below this chance the task is taken to have ended (or an expectation to disagree).
_SURE = 1e-3
# An expectation is never taken to be sharper than this (log-normal spread).
_MIN_SPREAD = 0.05
# An expectation further than this (squared, in spreads) from every shape's estimate is
# off for this task: about 3.7 spreads, a chance below 1 in 1,000 each.
_DISAGREE = 13.8
# The time left recorded for a task that every shape says should have ended already.
_OVERDUE_LEFT = 1e-3
_SQRT2 = math.sqrt(2)
_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)
# A quantile's log is found to within this (0.3 % of the time left), in a few steps.
_ROOT_TOLERANCE = 0.003
_ROOT_STEPS = 30
_NORMAL = statistics.NormalDist()


class EndBelief:
    """A mixture of log-normal estimates of the time from ``origin`` to the end.

    Attributes:
        origin: The time the estimates count from (the newest value's first sighting).
        components: ``(weight, mean, spread)`` of the log of the time left after
            ``origin``; weights sum to 1.
    """

    __slots__ = ("_high", "_low", "_terms", "components", "origin")

    def __init__(self, origin: float, components: Sequence[tuple[float, float, float]]) -> None:
        top = max(weight for weight, _, _ in components)
        kept = [c for c in components if c[0] >= _NEGLIGIBLE * top]
        total = sum(weight for weight, _, _ in kept)
        self.origin = origin
        self.components = tuple((w / total, mean, spread) for w, mean, spread in kept)
        # (half weight, mean, 1 / (spread * sqrt 2)) for the hot loops below.
        self._terms = tuple(
            (w / 2, mean, 1 / (spread * _SQRT2)) for w, mean, spread in self.components
        )
        # 3.5 spreads beyond the outer components hold every quantile that matters.
        self._low = min(mean - 3.5 * spread for _, mean, spread in self.components)
        self._high = max(mean + 3.5 * spread for _, mean, spread in self.components)

    def cdf(self, at: float) -> float:
        """Probability that the task has ended by ``at``."""
        if at <= self.origin:
            return 0.0
        x = math.log(at - self.origin)
        erf = math.erf
        return sum(half * (1 + erf((x - mean) * scale)) for half, mean, scale in self._terms)

    def quantile(self, level: float, now: float) -> float | None:
        """When the task ends with probability ``level``, given it was running at ``now``.

        ``None`` when the belief leaves (almost) no chance that it runs past ``now``.
        """
        ended = self.cdf(now)
        if ended > 1 - _SURE:
            return None
        target = ended + level * (1 - ended)
        terms = self._terms
        if len(terms) == 1:
            _, mean, spread = self.components[0]
            return self.origin + math.exp(mean + spread * _NORMAL.inv_cdf(target))
        # Newton's method on the log of the time left, kept inside a bracket that holds
        # the root, falling back to halving when a step would leave it.
        low, high = self._low, self._high
        if now > self.origin:
            low = max(low, math.log(now - self.origin))
        x = (low + high) / 2
        erf, exp = math.erf, math.exp
        for _ in range(_ROOT_STEPS):
            value = -target
            slope = 0.0
            for half, mean, scale in terms:
                z = (x - mean) * scale
                value += half * (1 + erf(z))
                slope += half * scale * exp(-z * z)
            if value < 0:
                low = x
            else:
                high = x
            step = value / (slope * _TWO_OVER_SQRT_PI) if slope > 0 else math.inf
            guess = x - step
            if not low < guess < high:
                guess = (low + high) / 2
            if abs(guess - x) < _ROOT_TOLERANCE:
                x = guess
                break
            x = guess
        return self.origin + math.exp(x)

    def latest_middle(self) -> float:
        """The middle of the latest component: where an overrun is counted from."""
        return self.origin + math.exp(max(mean for _, mean, _ in self.components))

    def with_prior(self, end: float, deviation: float) -> EndBelief | None:
        """The belief combined with an expected end (``end ± deviation`` seconds).

        Each component is narrowed towards the expectation and weighted by how well it
        agrees with it. ``None`` when no component agrees (the expectation is off for
        this task, which then goes by its progress alone).
        """
        left = end - self.origin
        if left <= 0:
            return None
        prior_mean = math.log(left)
        prior_var = max(_MIN_SPREAD, deviation / left) ** 2
        merged = []
        agrees = False
        for weight, mean, spread in self.components:
            var = spread * spread
            joint = var + prior_var
            distance = (mean - prior_mean) ** 2 / joint
            agrees = agrees or distance <= _DISAGREE
            precision = 1 / var + 1 / prior_var
            merged.append(
                (
                    weight * math.exp(-distance / 2) / math.sqrt(joint),
                    (mean / var + prior_mean / prior_var) / precision,
                    math.sqrt(1 / precision),
                )
            )
        if not agrees:
            return None
        return EndBelief(self.origin, merged)


def expected_end(origin: float, end: float, deviation: float) -> EndBelief | None:
    """A belief from an expectation alone (``end ± deviation``), before any rate is seen."""
    left = end - origin
    if left <= 0:
        return None
    return EndBelief(origin, [(1.0, math.log(left), max(_MIN_SPREAD, deviation / left))])


def fit_end(
    samples: Sequence[ProgressSample],
    started_after: float | None,
    spread: float,
) -> EndBelief | None:
    """The belief about a task's end, from its progress samples.

    Args:
        samples: Each value seen while processing, when first seen, rising, oldest
            first.
        started_after: The last time the task was seen pending before the first
            sample: processing started between then and the first sample.
        spread: The log-normal spread of each shape's estimate of the time left.

    Returns:
        ``None`` without a rate: fewer than two points (a start bracket counts as one)
        or no value above 0.
    """
    if not samples or samples[-1].progress <= 0:
        return None
    points = samples[-_FIT_POINTS:]
    origin = points[-1].at
    first_seen = samples[0].at - origin  # times count from the origin: small numbers
    bracket = None
    if started_after is not None:
        # Processing began at share 0 somewhere in [started_after, first sample]: a
        # point at the middle, as uncertain as half the bracket (in shares of a rough
        # length, from the newest value as if the shape were steady).
        low = started_after - origin
        middle = (low + first_seen) / 2
        rough = -middle / max((points[-1].progress + _HALF_STEP) / 100, 1e-9)
        half = max(first_seen - low, 1e-9) / 2
        weight = 1 / (_NOISE + (half / max(rough, 1e-9)) ** 2 / 3)
        bracket = (low, middle, weight)
    rows = [(point.at - origin, point.progress) for point in points]
    ahead: list[tuple[float, float, float]] = []  # (chi-square, prior, end)
    for middles, variances, prior in _SHAPES:
        fit = _fit_line(rows, middles, variances, bracket, first_seen)
        if fit is not None and fit[1] > 0:
            ahead.append((fit[0], prior, fit[1]))
    if not ahead:
        if len(points) + (bracket is not None) < 2:
            return None
        # Every shape says the task should have ended by its newest value: overdue.
        return EndBelief(origin, [(1.0, math.log(_OVERDUE_LEFT), spread)])
    best = min(chi for chi, _, _ in ahead)
    return EndBelief(
        origin,
        [(prior * math.exp((best - chi) / 2), math.log(end), spread) for chi, prior, end in ahead],
    )


def _fit_line(
    rows: Sequence[tuple[float, int]],
    middles: tuple[float, ...],
    variances: tuple[float, ...],
    bracket: tuple[float, float, float] | None,
    first_seen: float,
) -> tuple[float, float] | None:
    """Weighted least squares of ``time = start + length * share``: (chi-square, end).

    ``rows`` hold ``(time, percent)`` with times counted from the newest sample; so is
    the end returned.
    """
    sw = sx = st = sxx = sxt = stt = 0.0
    for at, progress in rows:
        share = middles[progress]
        weight = 1 / (_NOISE + variances[progress])
        ws = weight * share
        sw += weight
        sx += ws
        st += weight * at
        sxx += ws * share
        sxt += ws * at
        stt += weight * at * at
    if bracket is not None:
        _, middle, weight = bracket
        sw += weight
        st += weight * middle
        stt += weight * middle * middle
    det = sw * sxx - sx * sx
    if det <= 1e-12 * sw * sxx:
        return None  # one point, or all at one share: no rate
    length = (sw * sxt - sx * st) / det
    if length <= 0:
        return None
    start = (st - length * sx) / sw
    squares = (
        stt
        - 2 * start * st
        - 2 * length * sxt
        + start * start * sw
        + 2 * start * length * sx
        + length * length * sxx
    )
    chi = max(squares, 0.0) / (length * length)
    if bracket is not None and not bracket[0] - 1e-9 <= start <= first_seen + 1e-9:
        # A start outside the bracket contradicts what the polls saw.
        outside = bracket[0] - start if start < bracket[0] else start - first_seen
        chi += (outside / length / _SHAPE_NOISE) ** 2
    return chi, start + length
