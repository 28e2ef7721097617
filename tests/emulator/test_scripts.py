"""Progress curves, stalls, noise and seeded random scripts, tested without a network."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koodrive_tasks import TaskStatus
from koodrive_tasks.emulator import (
    Curve,
    Outcome,
    RandomScripts,
    Stall,
    Task,
    TaskScript,
    replay,
)


def make_task(script: TaskScript, task_id: str = "t-1") -> Task:
    return replay(script, task_id=task_id, file_ids=("f1",))


def processing_progress(script: TaskScript, elapsed_s: float) -> int:
    """The progress reported ``elapsed_s`` into processing (no noise, no cancel)."""
    return make_task(script).snapshot(script.pending_s + elapsed_s).progress


stalls = st.one_of(
    st.just(()),
    st.tuples(st.floats(0, 0.5), st.floats(0.01, 0.4)).map(lambda p: (Stall(p[0], p[1]),)),
)
scripts = st.builds(
    TaskScript,
    pending_s=st.floats(0, 100),
    duration_s=st.floats(0.01, 10_000),
    outcome=st.sampled_from(Outcome),
    curve=st.sampled_from(Curve),
    stalls=stalls,
    noise=st.floats(0, 1),
    noise_seed=st.integers(0, 2**32),
    cancel_after_s=st.one_of(st.none(), st.floats(0, 20_000)),
)


@settings(max_examples=300, deadline=None)
@given(script=scripts, times=st.lists(st.floats(0, 30_000), min_size=2, max_size=40))
def test_progress_never_decreases_and_100_means_completed(
    script: TaskScript, times: list[float]
) -> None:
    """For any script, progress is 0..100, never falls, and is 100 only once completed."""
    task = make_task(script)
    previous = -1
    status_order = []
    for now in sorted(times):
        snap = task.snapshot(now)
        assert 0 <= snap.progress <= 100
        assert snap.progress >= previous
        assert (snap.progress == 100) == (snap.status is TaskStatus.COMPLETED)
        previous = snap.progress
        status_order.append(snap.status)
    # Statuses only move forward: pending, processing, then one terminal status.
    ranks = [{0: 0, 1: 1, 2: 2, 3: 2}[s.value] for s in status_order]
    assert ranks == sorted(ranks)


@pytest.mark.parametrize(
    ("curve", "at_half"),
    [(Curve.LINEAR, 50), (Curve.EASE_IN, 25), (Curve.EASE_OUT, 75), (Curve.EASE_IN_OUT, 50)],
)
def test_curves_at_half_time(curve: Curve, at_half: int) -> None:
    """Halfway through, linear is at 50 %, ease-in behind, ease-out ahead."""
    script = TaskScript(pending_s=0, duration_s=100, curve=curve)
    assert processing_progress(script, 50) == at_half
    assert processing_progress(script, 0) == 0
    assert processing_progress(script, 99.99) == 99  # 100 is reserved for completed


def test_a_stall_is_flat_then_progress_resumes() -> None:
    """During a stall progress does not move; afterwards it rises again to the end."""
    script = TaskScript(pending_s=0, duration_s=100, stalls=[Stall(start=0.2, length=0.5)])
    during = [processing_progress(script, t) for t in (20, 40, 69.9)]
    assert during == [40, 40, 40]
    assert processing_progress(script, 85) == 70
    assert processing_progress(script, 99.5) == 99


def test_noise_is_seeded_and_bends_the_curve() -> None:
    """Noise makes progress differ from the plain curve, identically for the same seed."""
    plain = make_task(TaskScript(pending_s=0, duration_s=100))
    noisy = make_task(TaskScript(pending_s=0, duration_s=100, noise=1.0, noise_seed=7))
    again = make_task(TaskScript(pending_s=0, duration_s=100, noise=1.0, noise_seed=7))
    times = range(0, 100, 5)
    noisy_values = [noisy.snapshot(t).progress for t in times]
    assert noisy_values == [again.snapshot(t).progress for t in times]
    assert noisy_values != [plain.snapshot(t).progress for t in times]


def test_noise_seed_defaults_to_the_task_id() -> None:
    """Without a noise seed, two tasks with different ids get different noise."""
    script = TaskScript(pending_s=0, duration_s=100, noise=1.0)
    one = make_task(script, "task-a")
    two = make_task(script, "task-b")
    times = range(0, 100, 5)
    assert [one.snapshot(t).progress for t in times] != [two.snapshot(t).progress for t in times]


@pytest.mark.parametrize(
    "stall_list",
    [
        [Stall(0.5, 0.1), Stall(0.2, 0.1)],  # unsorted
        [Stall(0.2, 0.3), Stall(0.4, 0.1)],  # overlapping
        [Stall(0.8, 0.3)],  # past the end
    ],
)
def test_invalid_stalls_are_rejected(stall_list: list[Stall]) -> None:
    """Stalls must be sorted, disjoint and inside the processing time."""
    with pytest.raises(ValueError, match="stalls"):
        TaskScript(stalls=stall_list)


def test_random_scripts_are_reproducible_with_a_seed() -> None:
    """The same seed draws the same scripts; another seed draws others."""
    dist = RandomScripts(cancel_rate=0.2)

    def draw(seed: int) -> list[TaskScript]:
        rng = random.Random(seed)
        return [dist.draw(rng) for _ in range(20)]

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)


def test_random_durations_are_log_normal_within_bounds() -> None:
    """Drawn durations stay within [min, max] and centre near the median."""
    dist = RandomScripts(min_duration_s=2, max_duration_s=300, median_duration_s=30, sigma=0.8)
    rng = random.Random(5)
    durations = [dist.draw(rng).duration_s for _ in range(2000)]
    assert min(durations) >= 2
    assert max(durations) <= 300
    assert 25 < statistics.median(durations) < 36


def test_random_outcome_mix_follows_the_weights() -> None:
    """Outcomes are drawn in proportion to their weights; cancel_rate adds cancels."""
    dist = RandomScripts(
        outcome_weights=((Outcome.ALL_SUCCEEDED, 3), (Outcome.ALL_FAILED, 1)), cancel_rate=0.5
    )
    rng = random.Random(9)
    drawn = [dist.draw(rng) for _ in range(2000)]
    failed = sum(s.outcome is Outcome.ALL_FAILED for s in drawn) / len(drawn)
    canceled = sum(s.cancel_after_s is not None for s in drawn) / len(drawn)
    assert 0.2 < failed < 0.3
    assert 0.45 < canceled < 0.55
    assert not any(s.outcome is Outcome.PARTIALLY_FAILED for s in drawn)
