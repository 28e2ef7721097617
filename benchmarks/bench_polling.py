"""Polls per task and detection lag, simulated in virtual time.

A few thousand tasks with log-normally spread durations (5 s to 30 min), the
emulator's progress curves (linear, ease-in, ease-out, ease-in-out) with noise
and stalls. Each polling strategy is replayed against each task: at every poll it
sees exactly what the emulator would answer at that moment (the emulator's own
``Task.snapshot``), and decides when to look next. No network: the figures are
about *when* to poll, so they are exact and repeatable.

Strategies:
- fixed: poll every second.
- naive: the loop a user would write with ``backoff``: ``backoff.expo`` (1 s x 2,
  capped at 30 s), progress ignored. The baseline of the ratios.
- ours: ``PollPolicy()`` as a wait uses it (``PollPlan``), default settings.
- ours, progress-aware: ``PollPolicy(progress_aware=True)``; it would become the
  default only by meeting the goal (<= 0.5x naive polls, <= 0.25x naive lag).
- oracle: one poll, exactly when the task ends.

Run: ``python benchmarks/bench_polling.py [--quick] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import backoff

from koodrive_tasks import PollPolicy, TaskStatus, TaskType
from koodrive_tasks._policy import PollPlan
from koodrive_tasks.emulator import RandomScripts
from koodrive_tasks.emulator._tasks import Task

WORKLOAD = RandomScripts(
    min_duration_s=5,
    max_duration_s=1800,
    median_duration_s=90,
    sigma=1.3,
    max_pending_s=5,
    stall_rate=0.2,
    max_noise=0.3,
)
GOAL_POLLS = 0.5
GOAL_LAG = 0.25

Strategy = Callable[[], Callable[[float, TaskStatus, int], float]]


def fixed(seconds: float) -> Strategy:
    def start() -> Callable[[float, TaskStatus, int], float]:
        return lambda now, status, progress: seconds

    return start


def naive_backoff() -> Callable[[float, TaskStatus, int], float]:
    delays: Iterator[float] = backoff.expo(base=2, factor=1, max_value=30)
    next(delays)  # backoff's generators are primed with one next()
    return lambda now, status, progress: next(delays)


def ours(policy: PollPolicy, seed: int) -> Strategy:
    rng = random.Random(seed)

    def start() -> Callable[[float, TaskStatus, int], float]:
        plan = PollPlan(policy)
        return lambda now, status, progress: plan.observe(
            now, status is TaskStatus.PROCESSING, progress, rng.random
        )

    return start


def make_tasks(count: int, seed: int) -> list[Task]:
    rng = random.Random(seed)
    wall = datetime(2026, 11, 29, tzinfo=timezone.utc)
    return [
        Task(
            task_id=f"t{i}",
            task_type=TaskType.PACKAGE_DOWNLOAD,
            share_id="s",
            container_id="c",
            user_id="u",
            file_ids=("f",),
            script=WORKLOAD.draw(rng),
            created_at=0.0,
            created_wall=wall,
        )
        for i in range(count)
    ]


def simulate(task: Task, strategy: Strategy) -> tuple[int, float]:
    """Replay one strategy on one task: (polls, detection lag in seconds)."""
    decide = strategy()
    now, polls = 0.0, 0
    while True:
        polls += 1
        snapshot = task.snapshot(now)
        if snapshot.status.is_terminal:
            return polls, now - task.ends_after_s
        now += decide(now, snapshot.status, snapshot.progress)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def run(quick: bool = False, seed: int = 20261129) -> dict[str, object]:
    """Simulate every strategy on the same tasks; return the figures."""
    tasks = make_tasks(500 if quick else 3000, seed)
    strategies: dict[str, Strategy] = {
        "fixed 1 s": fixed(1.0),
        "naive backoff (1 s x2, cap 30 s)": naive_backoff,
        "ours (default PollPolicy)": ours(PollPolicy(), seed),
        "ours, progress_aware=True": ours(PollPolicy(progress_aware=True), seed),
    }
    rows: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    for name, strategy in strategies.items():
        results = [simulate(task, strategy) for task in tasks]
        polls = [p for p, _ in results]
        lags = [lag for _, lag in results]
        rows[name] = {
            "polls_per_task": statistics.fmean(polls),
            "mean_lag_s": statistics.fmean(lags),
            "p95_lag_s": p95(lags),
        }
    rows["oracle (one poll at the end)"] = {
        "polls_per_task": 1.0,
        "mean_lag_s": 0.0,
        "p95_lag_s": 0.0,
    }
    base = rows["naive backoff (1 s x2, cap 30 s)"]
    for row in rows.values():
        row["polls_vs_naive"] = row["polls_per_task"] / base["polls_per_task"]
        row["lag_vs_naive"] = row["mean_lag_s"] / base["mean_lag_s"]
    durations = [task.script.duration_s for task in tasks]
    ours_row = rows["ours, progress_aware=True"]
    return {
        "benchmark": "polling",
        "tasks": len(tasks),
        "seed": seed,
        "durations_s": {
            "min": min(durations),
            "median": statistics.median(durations),
            "max": max(durations),
        },
        "strategies": rows,
        "goal": f"progress-aware <= {GOAL_POLLS}x naive polls and <= {GOAL_LAG}x naive mean lag",
        "goal_met": ours_row["polls_vs_naive"] <= GOAL_POLLS
        and ours_row["lag_vs_naive"] <= GOAL_LAG,
        "seconds": time.perf_counter() - started,
    }


def report(result: dict[str, object]) -> str:
    rows = result["strategies"]
    assert isinstance(rows, dict)
    lines = [
        f"Polling strategies on {result['tasks']} simulated tasks "
        f"(durations {result['durations_s']}, seed {result['seed']})",
        f"{'strategy':<34} {'polls/task':>10} {'mean lag':>9} {'p95 lag':>8} {'polls/naive':>11} {'lag/naive':>9}",
    ]
    for name, row in rows.items():
        lines.append(
            f"{name:<34} {row['polls_per_task']:>10.1f} {row['mean_lag_s']:>8.2f}s {row['p95_lag_s']:>7.2f}s "
            f"{row['polls_vs_naive']:>10.2f}x {row['lag_vs_naive']:>8.2f}x"
        )
    lines.append(f"goal: {result['goal']}: {'met' if result['goal_met'] else 'NOT met'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    result = run(args.quick)
    print(report(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
