"""How long tasks of a kind take, learned from the waits that saw them finish.

Pure and bounded: no clock, no I/O, a fixed number of kinds remembered. The schedule of
a wait reads an :class:`ExpectedDuration` as a prior (see ``PollPlan``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import attrs

from ._validate import is_number, non_negative
from .exceptions import InvalidArgumentError

# A kind needs this many finished tasks before its expectation is used.
_MIN_COUNT = 3
# What one wait's view of a duration is worth: its start and end are each known only
# between two polls, so even identical tasks look a few percent apart.
_OBSERVATION_SPREAD = 0.05
# Falling back from a file-count bucket to all sizes of a kind widens the spread by this
# much: a per-file rate carried to another size is a guess.
_COARSE_SPREAD = 0.35
# A duration more than this many spreads from the mean moves it only as far as that
# bound: one stalled task must not drag the expectation of its kind.
_OUTLIER = 3.0


def _count(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    """An integer >= 0."""
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        raise InvalidArgumentError(f"{attribute.name} must be an integer >= 0, got {value!r}")


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """A finite number > 0."""
    if not (is_number(value) and math.isfinite(value) and value > 0):
        raise InvalidArgumentError(f"{attribute.name} must be a finite number > 0, got {value!r}")


@attrs.frozen
class TaskKind:
    """What a task's duration is learned by.

    Attributes:
        family: What the task is (``"share"`` for share tasks).
        task_type: The task's type (``TaskType``), or 0 when not reported.
        files: How many files the task processes, or 0 when not reported.
    """

    family: str
    task_type: int = attrs.field(default=0, validator=_count)
    files: int = attrs.field(default=0, validator=_count)

    @property
    def size_class(self) -> int:
        """The file-count bucket: 0 for no files, then 1, 2-3, 4-7, 8-15 ..."""
        return self.files.bit_length()


@attrs.frozen
class ExpectedDuration:
    """How long processing is expected to take.

    Attributes:
        seconds: The typical processing time (the median of a log-normal).
        spread: Its log-normal spread: about ``seconds * exp(±spread)`` covers two
            tasks in three.
        count: How many finished tasks it was learned from.
    """

    seconds: float = attrs.field(validator=_positive)
    spread: float = attrs.field(validator=non_negative)
    count: int = attrs.field(default=0, validator=_count)


@attrs.define
class _Stats:
    """A running mean and variance of log(seconds per file) that forgets old tasks."""

    count: int = 0
    mean: float = 0.0
    variance: float = 0.0

    def add(self, value: float, memory: int) -> None:
        if self.count >= _MIN_COUNT:
            bound = _OUTLIER * (math.sqrt(self.variance) + _OBSERVATION_SPREAD)
            value = min(max(value, self.mean - bound), self.mean + bound)
        self.count += 1
        # Equal weights until `memory` tasks, then exponential forgetting: the
        # expectation follows a server that gets faster or slower.
        weight = max(1 / self.count, 1 / memory)
        delta = value - self.mean
        self.mean += weight * delta
        self.variance = (1 - weight) * (self.variance + weight * delta * delta)


class DurationModel:
    """Learns how long tasks of each kind take, from tasks a client saw finish.

    Durations are learned per file, in log space, for each kind (family, task type,
    file-count bucket) and for each family and type across sizes (used while a bucket
    has too few tasks). Memory is bounded: the least recently used kinds are forgotten.

    Args:
        max_kinds: How many kinds are remembered.
        memory: How many recent tasks of a kind weigh in (older ones fade).

    Raises:
        InvalidArgumentError: If ``max_kinds`` or ``memory`` is not an integer >= 1.
    """

    __slots__ = ("_max_kinds", "_memory", "_stats")

    def __init__(self, max_kinds: int = 512, memory: int = 50) -> None:
        for name, value in (("max_kinds", max_kinds), ("memory", memory)):
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
        self._max_kinds = max_kinds
        self._memory = memory
        self._stats: OrderedDict[tuple[str, int, int | None], _Stats] = OrderedDict()

    def __len__(self) -> int:
        return len(self._stats)

    def __repr__(self) -> str:
        return f"<DurationModel kinds={len(self._stats)}/{self._max_kinds}>"

    def learn(self, kind: TaskKind, seconds: float) -> None:
        """Record that a task of ``kind`` took ``seconds`` to process.

        Args:
            kind: The finished task's kind.
            seconds: Its processing time as the wait observed it (see
                ``PollPlan.observed_duration``); not positive or not finite is ignored.
        """
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
            return
        value = math.log(seconds / max(kind.files, 1))
        for key in self._keys(kind):
            stats = self._stats.get(key)
            if stats is None:
                stats = self._stats[key] = _Stats()
                if len(self._stats) > self._max_kinds:
                    self._stats.popitem(last=False)
            else:
                self._stats.move_to_end(key)
            stats.add(value, self._memory)

    def expect(self, kind: TaskKind) -> ExpectedDuration | None:
        """How long a task of ``kind`` is expected to take; ``None`` before enough tasks."""
        for key, widen in zip(self._keys(kind), (0.0, _COARSE_SPREAD), strict=True):
            stats = self._stats.get(key)
            if stats is not None and stats.count >= _MIN_COUNT:
                # The spread of the durations, of the mean itself, and of one observation.
                spread = math.sqrt(
                    stats.variance * (1 + 1 / stats.count)
                    + widen * widen
                    + _OBSERVATION_SPREAD * _OBSERVATION_SPREAD
                )
                seconds = max(kind.files, 1) * math.exp(stats.mean)
                return ExpectedDuration(seconds, spread, stats.count)
        return None

    @staticmethod
    def _keys(kind: TaskKind) -> tuple[tuple[str, int, int | None], ...]:
        return (
            (kind.family, kind.task_type, kind.size_class),
            (kind.family, kind.task_type, None),
        )
