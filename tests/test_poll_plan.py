"""PollPlan, the schedule of one wait, kept bounded however long the wait."""

from __future__ import annotations

from koodrive_tasks import PollPlan, PollPolicy


def test_progress_samples_stay_bounded_when_progress_goes_back() -> None:
    """A task whose progress flips 49 <-> 50 for 10,000 polls keeps at most 101 samples."""
    plan = PollPlan(PollPolicy(progress_aware=True, jitter=0))
    for poll in range(10_000):
        plan.observe(float(poll), True, 49 + poll % 2, rand=lambda: 0.5)
    assert len(plan.samples) <= 101
    assert [s.progress for s in plan.samples] == sorted({s.progress for s in plan.samples})
