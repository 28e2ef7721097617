"""PollPlan, the schedule of one wait, kept bounded however long the wait."""

from __future__ import annotations

import tracemalloc

from koodrive_tasks import PollPlan, PollPolicy


def test_a_plan_keeps_a_few_numbers_however_long_the_wait() -> None:
    """10,000 answers, progress rising and falling back, leave a plan of under 1 KiB that
    keeps at most two samples (the first value seen and the newest)."""

    def drive(plan: PollPlan) -> None:
        for poll in range(10_000):
            plan.observe(float(poll), True, (poll * 7) % 100, rand=lambda: 0.5)
            assert len(plan.samples) <= 2

    # Whatever the interpreter allocates once (Python 3.10 keeps a spare frame per function,
    # made anew after the first plan's) is allocated before the count starts.
    for _ in range(2):
        drive(PollPlan(PollPolicy(jitter=0)))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        plan = PollPlan(PollPolicy(jitter=0))
        drive(plan)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert plan.polls == 10_000
    assert kept < 1024


def test_a_plain_plan_keeps_only_the_first_sighting() -> None:
    """Without progress_aware a plan keeps the first value seen processing and nothing else."""
    plan = PollPlan(PollPolicy.backoff(jitter=0))
    for poll in range(1_000):
        plan.observe(float(poll), True, poll % 100, rand=lambda: 0.5)
    assert len(plan.samples) == 1
