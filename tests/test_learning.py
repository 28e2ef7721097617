"""Learned durations: DurationModel learns per kind from finished tasks, bounded in memory."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from koodrive_tasks import DurationModel, ExpectedDuration, InvalidArgumentError, TaskKind

DUMP_10 = TaskKind("share", task_type=2, files=10)


def test_nothing_is_expected_before_three_tasks() -> None:
    """A kind seen finishing fewer than three times gives no expectation."""
    model = DurationModel()
    for _ in range(2):
        model.learn(DUMP_10, 100.0)
        assert model.expect(DUMP_10) is None
    model.learn(DUMP_10, 100.0)
    expected = model.expect(DUMP_10)
    assert expected is not None
    assert expected.seconds == pytest.approx(100.0)
    assert expected.count == 3


def test_identical_tasks_give_a_narrow_expectation() -> None:
    """Tasks that all took 100 s give 100 s with only the spread of one wait's view."""
    model = DurationModel()
    for _ in range(20):
        model.learn(DUMP_10, 100.0)
    expected = model.expect(DUMP_10)
    assert expected is not None
    assert 0.04 <= expected.spread <= 0.06


def test_spread_follows_the_durations() -> None:
    """Durations spread log-normally by 0.3 give a spread near 0.3."""
    model = DurationModel(memory=1000)
    for i in range(400):
        z = (i % 20 - 9.5) / 5.77 * 0.3  # an even spread with standard deviation 0.3
        model.learn(DUMP_10, 100.0 * math.exp(z))
    expected = model.expect(DUMP_10)
    assert expected is not None
    assert expected.seconds == pytest.approx(100.0, rel=0.02)
    assert expected.spread == pytest.approx(0.3, rel=0.1)


def test_durations_scale_with_files_within_a_size_class() -> None:
    """Learned per file: 10 files in 100 s means 12 files (the same bucket, 8-15) in 120 s."""
    model = DurationModel()
    for _ in range(5):
        model.learn(DUMP_10, 100.0)
    expected = model.expect(TaskKind("share", 2, files=12))
    assert expected is not None
    assert expected.seconds == pytest.approx(120.0)


def test_another_size_falls_back_to_the_type_with_a_wider_spread() -> None:
    """An unseen size class borrows the per-file rate of its type, less sure of it."""
    model = DurationModel()
    for _ in range(5):
        model.learn(DUMP_10, 100.0)
    same = model.expect(DUMP_10)
    other = model.expect(TaskKind("share", 2, files=100))
    assert same is not None
    assert other is not None
    assert other.seconds == pytest.approx(1000.0)
    assert other.spread > same.spread + 0.3
    assert model.expect(TaskKind("share", 1, files=10)) is None  # another type: nothing
    assert model.expect(TaskKind("batch", 2, files=10)) is None  # another family: nothing


def test_one_outlier_does_not_drag_the_expectation() -> None:
    """A task that stalled for ten times as long moves the mean only as far as a bound."""
    model = DurationModel()
    for _ in range(20):
        model.learn(DUMP_10, 100.0 * (1.1 if _ % 2 else 0.9))
    before = model.expect(DUMP_10)
    model.learn(DUMP_10, 1000.0)
    after = model.expect(DUMP_10)
    assert before is not None
    assert after is not None
    assert after.seconds < before.seconds * 1.05


def test_the_expectation_follows_a_server_that_slows_down() -> None:
    """After many tasks at a new speed, old ones have faded."""
    model = DurationModel(memory=20)
    for _ in range(50):
        model.learn(DUMP_10, 100.0)
    for _ in range(100):
        model.learn(DUMP_10, 200.0)
    expected = model.expect(DUMP_10)
    assert expected is not None
    assert expected.seconds == pytest.approx(200.0, rel=0.02)


def test_memory_is_bounded() -> None:
    """At most max_kinds kinds are held; the least recently used go first."""
    model = DurationModel(max_kinds=4)
    for files in (1, 2, 4, 8, 16, 32):
        model.learn(TaskKind("share", 1, files), 10.0)
    assert len(model) == 4
    assert "4/4" in repr(model)


@pytest.mark.parametrize("seconds", [0.0, -5.0, math.nan, math.inf])
def test_impossible_durations_are_ignored(seconds: float) -> None:
    """A duration that is not a finite positive number teaches nothing."""
    model = DurationModel()
    model.learn(DUMP_10, seconds)
    assert len(model) == 0


@pytest.mark.parametrize(
    "build",
    [
        lambda: DurationModel(max_kinds=0),
        lambda: DurationModel(memory=0),
        lambda: DurationModel(memory=2.5),  # type: ignore[arg-type]
        lambda: TaskKind("share", files=-1),
        lambda: TaskKind("share", task_type=True),  # type: ignore[arg-type]
        lambda: ExpectedDuration(seconds=0, spread=0.1),
        lambda: ExpectedDuration(seconds=10, spread=-0.1),
        lambda: ExpectedDuration(seconds=math.inf, spread=0.1),
    ],
)
def test_invalid_settings_are_refused(build: object) -> None:
    """Bad sizes, counts and durations raise InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError):
        build()  # type: ignore[operator]


@given(st.lists(st.floats(min_value=0.01, max_value=1e6), min_size=3, max_size=60))
def test_expectations_are_finite_and_positive(durations: list[float]) -> None:
    """Whatever durations were learned, the expectation is a finite positive time and spread."""
    model = DurationModel()
    for seconds in durations:
        model.learn(DUMP_10, seconds)
    expected = model.expect(DUMP_10)
    assert expected is not None
    assert math.isfinite(expected.seconds)
    assert expected.seconds > 0
    assert math.isfinite(expected.spread)
    assert expected.spread >= 0.05
