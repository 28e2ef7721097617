"""Where a running task's end lies, judged from its progress: pure arithmetic.

A task's progress is assumed to follow one of a few shapes over its processing time:
steady, speeding up, slowing down towards the end, or S-shaped. Each shape maps a
progress value to the share of the processing time elapsed when it is reached, so every
sample becomes a point ``(elapsed share, time)`` and a straight line through the points
gives the start and the length of the processing, hence its end. The shapes that fit
the samples best get the most weight; the estimates are summed up as one normal
distribution of the end (its mean and spread), which the schedule reads given that the
task was still running at the last poll.

The cost is bounded: a wait keeps a few sums per shape (:class:`ProgressFit`), newer
values weigh more, and a shape that fits far worse than the best is dropped for good.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable

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
# How far a real task strays from its shape, as a share of its processing time (its
# rate wobbles): the fit's tolerance for each point beyond rounding.
_SHAPE_NOISE = 0.02
_NOISE = _SHAPE_NOISE * _SHAPE_NOISE

Shape = tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...], tuple[float, ...], float]


def _shape(inverse: Callable[[float], float], prior: float) -> Shape:
    """The tables of one shape, indexed by progress value, and its prior weight.

    Per value: the elapsed share at its middle, the weight of a point there (the inverse
    of the noise plus the rounding variance of the share over the value's step), weight
    times share, and weight times share squared.
    """
    middles = tuple(inverse((p + _HALF_STEP) / 100) for p in range(100))
    widths = tuple(inverse((p + 1) / 100) - inverse(p / 100) for p in range(100))
    weights = tuple(1 / (_NOISE + width * width / 12) for width in widths)
    return (
        middles,
        weights,
        tuple(w * u for w, u in zip(weights, middles, strict=True)),
        tuple(w * u * u for w, u in zip(weights, middles, strict=True)),
        prior,
    )


def _smoothstep_inverse(done: float) -> float:
    # 3x^2 - 2x^3 = done, solved on [0, 1].
    return 0.5 - math.sin(math.asin(1 - 2 * done) / 3)


# A steady rate is the most common shape and gets twice the weight of each of the
# others, so that when the samples cannot tell the shapes apart (a few points early on)
# the estimate leans to a steady rate rather than to an extreme.
SHAPES: tuple[Shape, ...] = (
    _shape(lambda p: p, 2.0),
    _shape(math.sqrt, 1.0),
    _shape(lambda p: 1 - math.sqrt(1 - p), 1.0),
    _shape(_smoothstep_inverse, 1.0),
)
ALL_SHAPES = (1 << len(SHAPES)) - 1
"""A bit per shape still in play: the mask a new wait starts with."""

# Each new value multiplies the weight of the values before it (but the first) by
# DECAY: the recent part of the curve decides the end, and no sample is kept.
DECAY = 0.8
# Each shape's estimate of the time left is spread by this share of it: how far a real
# task strays from the shape that fits it best.
SPREAD = 0.15
# A shape whose chi-square exceeds the best one's by this much is dropped for good
# (its weight is below 1e-6 of the best): it would not move the estimate.
_PRUNE = 28.0
# Seconds: no estimate of an end is sharper than this.
_FLOOR = 0.7
# An expectation is off for this task (and dropped) when the shapes' estimates, by
# their weights, agree with it less on average than one 3 spreads away would.
_AGREE = math.exp(-9 / 2)
_SUMS = 6  # per shape: weight, weight * share, weight * share^2, and the same times time


class ProgressFit:
    """What a wait keeps of a task's progress, in a few numbers.

    The first value seen, the newest, and per shape the weighted sums of a least-squares
    line through all the values since. The sums take each new value in as it comes (older values weigh less and less), so
    the cost of a fit and the memory do not grow with the wait. The attributes are
    read-only for users of the class.

    Attributes:
        first_at: When the first value was seen.
        first_value: The first value seen while processing.
        last_at: When the newest value was first seen.
        last_value: The newest value.
    """

    __slots__ = ("_sums", "_unfolded", "first_at", "first_value", "last_at", "last_value")

    def __init__(self, at: float, progress: int) -> None:
        self.first_at = self.last_at = at
        self.first_value = self.last_value = progress
        self._sums: array[float] | None = None  # allocated with the second value
        self._unfolded = False  # the newest value is not in the sums yet

    def add(self, at: float, progress: int) -> None:
        """Take a new value (above the newest), seen first at ``at``.

        It enters the sums at the next :meth:`fit` (one pass over the shapes for both).
        """
        if self._unfolded:
            self._fold()
        self.last_at = at
        self.last_value = progress
        self._unfolded = True

    def _fold(self) -> None:
        """Put the newest value into the sums, older values decaying."""
        sums = self._sums
        if sums is None:
            sums = self._sums = array("d", bytes(8 * _SUMS * len(SHAPES)))
        decay = DECAY
        progress = self.last_value
        time = self.last_at - self.first_at
        i = 0
        for _, weights, wu, wuu, _ in SHAPES:
            weight = weights[progress]
            wx = wu[progress]
            sums[i] = sums[i] * decay + weight
            sums[i + 1] = sums[i + 1] * decay + wx
            sums[i + 2] = sums[i + 2] * decay + wuu[progress]
            sums[i + 3] = sums[i + 3] * decay + weight * time
            sums[i + 4] = sums[i + 4] * decay + wx * time
            sums[i + 5] = sums[i + 5] * decay + weight * time * time
            i += _SUMS
        self._unfolded = False

    def fit(  # noqa: PLR0912, PLR0915 - one inlined pass over the shapes, run on every new value
        self,
        started_after: float | None,
        alive: int,
        expected_end: float | None = None,
        expected_deviation: float = 0.0,
    ) -> tuple[float, float, int, bool] | None:
        """The end of processing, as a normal distribution, from the values seen.

        Args:
            started_after: The last time the task was seen pending before the first
                value: processing started between then and the first value.
            alive: The shapes still in play (a bit each).
            expected_end: An end expected from earlier tasks of the same kind, or
                ``None``.
            expected_deviation: Its standard deviation in seconds.

        Returns:
            ``(mean, standard deviation, shapes still in play, whether the expectation
            was used)`` with the mean a monotonic time, or ``None`` without a rate (a
            single point, or no value above 0).
        """
        last = self.last_value
        first_at = self.first_at
        fold = self._unfolded
        if fold and self._sums is None:
            self._sums = array("d", bytes(8 * _SUMS * len(SHAPES)))
        sums = self._sums
        self._unfolded = False
        if last == 0:
            if fold:  # keep the sums whole, though nothing is estimated at 0 %
                self._unfolded = True
                self._fold()
            return None
        first_value = self.first_value
        newest = self.last_at - first_at  # times count from the first value
        decay = DECAY
        # The start bracket is a point at share 0, as uncertain as half the bracket, in
        # shares of a rough length (from the newest value as if the rate were steady).
        b_weight = b_time = b_time2 = b_low = 0.0
        if started_after is not None:
            b_low = started_after - first_at
            middle = b_low / 2
            rough = (newest - middle) / ((last + _HALF_STEP) / 100)
            if rough > 0 and middle < 0:
                b_weight = 1 / (_NOISE + (middle / rough) ** 2 / 3)
                b_time = b_weight * middle
                b_time2 = b_time * middle
        elif sums is None:
            return None
        with_prior = expected_end is not None
        prior_var = expected_deviation * expected_deviation
        prior_mean = expected_end - first_at if expected_end is not None else 0.0
        spread2 = SPREAD * SPREAD
        floor2 = _FLOOR * _FLOOR
        exp = math.exp
        best = math.inf
        # Running sums of weight, weight * end and weight * (variance + end^2), without
        # and with the expectation; rescaled whenever a better fit shows up.
        w0 = m0 = s0 = w1 = m1 = s1 = 0.0
        agreement = 0.0
        bit = 1
        i = 0
        for _, weights, wu, wuu, prior in SHAPES:
            if sums is None:
                sw = sx = sxx = st = sxt = stt = 0.0
            elif fold:
                weight = weights[last]
                wx = wu[last]
                sw = sums[i] * decay + weight
                sx = sums[i + 1] * decay + wx
                sxx = sums[i + 2] * decay + wuu[last]
                st = sums[i + 3] * decay + weight * newest
                sxt = sums[i + 4] * decay + wx * newest
                stt = sums[i + 5] * decay + weight * newest * newest
                sums[i] = sw
                sums[i + 1] = sx
                sums[i + 2] = sxx
                sums[i + 3] = st
                sums[i + 4] = sxt
                sums[i + 5] = stt
            else:
                sw = sums[i]
                sx = sums[i + 1]
                sxx = sums[i + 2]
                st = sums[i + 3]
                sxt = sums[i + 4]
                stt = sums[i + 5]
            i += _SUMS
            if not alive & bit:
                bit <<= 1
                continue
            # The first value weighs fully (its time is 0), as does the start bracket.
            sw += b_weight + weights[first_value]
            sx += wu[first_value]
            sxx += wuu[first_value]
            st += b_time
            stt += b_time2
            det = sw * sxx - sx * sx
            length = (sw * sxt - sx * st) / det if det > 1e-12 * sw * sxx else 0.0
            if length <= 0:  # one point, or all at one share: no rate
                bit <<= 1
                continue
            start = (st - length * sx) / sw
            squares = stt - start * st - length * sxt
            chi = squares / (length * length) if squares > 0 else 0.0
            if b_weight and not b_low - 1e-9 <= start <= 1e-9:
                # A start outside the bracket contradicts what the polls saw.
                outside = b_low - start if start < b_low else start
                chi += (outside / length / _SHAPE_NOISE) ** 2
            if chi > best + _PRUNE:
                alive &= ~bit
                bit <<= 1
                continue
            bit <<= 1
            if chi < best:
                if best < math.inf:
                    rescale = exp((chi - best) / 2)
                    w0 *= rescale
                    m0 *= rescale
                    s0 *= rescale
                    w1 *= rescale
                    m1 *= rescale
                    s1 *= rescale
                best = chi
            end = start + length
            var = length * length * (sxx - 2 * sx + sw) / det + floor2
            left = end - newest
            if left > 0:
                var += spread2 * left * left
            weight = prior * exp((best - chi) / 2)
            w0 += weight
            m0 += weight * end
            s0 += weight * (var + end * end)
            if with_prior:
                joint = var + prior_var
                fits = exp(-((end - prior_mean) ** 2) / joint / 2)
                agreement += weight * fits
                combined = (end * prior_var + prior_mean * var) / joint
                weight *= fits / math.sqrt(joint)
                w1 += weight
                m1 += weight * combined
                s1 += weight * (var * prior_var / joint + combined * combined)
        if w0 <= 0:
            return None
        used = w1 > 0 and agreement >= _AGREE * w0
        if used:
            w0, m0, s0 = w1, m1, s1
        mean = m0 / w0
        variance = s0 / w0 - mean * mean
        return first_at + mean, math.sqrt(variance if variance > floor2 else floor2), alive, used
