"""Polls per task and detection lag of polling policies, simulated in virtual time.

Each policy is replayed against the same tasks: at every poll it sees exactly what the
emulator would answer at that moment (``koodrive_tasks.emulator.replay``) and its
``PollPlan`` decides when to look next, as a wait does. No network: the figures are
about *when* to poll, so they are exact and repeatable for a seed.

Workloads (3,000 tasks each, 500 with ``--quick``):

- A, the emulator's ``RandomScripts``: processing log-normal (median 90 s, sigma 1.3)
  clipped to 5 s - 30 min, pending up to 5 s, the four progress curves with noise up
  to 0.3, and one stall (5-30 % of the time) in 20 % of the tasks.
- B, shaped differently: processing log-uniform over 5 s - 30 min, pending up to 20 %
  of the processing time, the same curves and noise, no stalls.

Policies:

- naive: the loop a user would write with ``backoff``: ``backoff.expo`` (1 s x2, capped
  at 30 s), progress ignored. The baseline of every ratio, measured in the same run.
- fixed 1 s: a poll every second (polls and lag follow from the end: no replay).
- ``PollPolicy.backoff()`` (plain backoff: the default before), ``PollPolicy()`` (the
  default: progress-aware), ``PollPolicy.efficient()`` (fewer polls),
  ``PollPolicy.interactive()`` (for a progress bar). A wait starts at the task's
  creation; "unknown age" polls at once (the wait does not know the task is new),
  "fresh" knows when it was created (``PollPlan(policy, created_at=...)``: a client
  that created the task itself) and first polls ``PollPlan.first_delay`` later.
- learned durations (fresh: a client that learns durations creates its tasks): tasks
  arrive over time (one every 20 s on average); each has a task type and a file count,
  and a ``DurationModel`` learns from the waits that ended before the task was
  created, from what they observed (``PollPlan.observed_duration``). The file count is
  the processing time divided by a per-file rate of its type (2 s, 0.5 s) times
  log-normal noise of sigma 0.2 (0.1 and 0.25 on the first seed), rounded: the size
  predicts the duration up to that noise. "unpredictable" shuffles the file counts
  across tasks: the size says nothing.
- oracles: one poll at the exact end (1 poll, no lag: the floor of both figures); and
  a wait that knows the end but keeps the default policy's limits: an immediate
  first poll, then gaps aimed at the end, at most ``progress_max_delay`` long, spread
  by its ±10 % jitter (a gap that lands early is followed by another).

"Information-free" polls are those that saw the task pending or processing at 0 %.
The progress-aware constants were chosen on workload A, seed 20261129; the other seeds
and workload B are held out. CPU per ``PollPlan.observe`` and memory per plan are
measured on the default policy's answers of workload A.

Run: ``python benchmarks/bench_polling.py [--quick] [--seeds N] [--json PATH] [--plot PATH]``
(the plot needs ``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import backoff
from _common import RESULTS_DIR, goal, print_table, write_json

from koodrive_tasks import (
    DurationModel,
    PollPlan,
    PollPolicy,
    TaskKind,
    TaskStatus,
    TaskType,
)
from koodrive_tasks.emulator import Curve, RandomScripts, TaskScript
from koodrive_tasks.emulator import Task as EmulatedTask
from koodrive_tasks.emulator import replay as emulate

SEEDS = (20261129, 1, 2, 3, 4)
WORKLOAD_A = RandomScripts(
    min_duration_s=5,
    max_duration_s=1800,
    median_duration_s=90,
    sigma=1.3,
    max_pending_s=5,
    stall_rate=0.2,
    max_noise=0.3,
)
PER_FILE_S = {TaskType.PACKAGE_DOWNLOAD: 2.0, TaskType.DUMP: 0.5}
SIZE_NOISE = 0.2
MEAN_ARRIVAL_GAP_S = 20.0
DEFAULT = "PollPolicy() (default), unknown age"
FRESH = "PollPolicy() (default), fresh"
LEARNED = f"efficient() + learned (size noise {SIZE_NOISE}), fresh"
GOALS = {  # ratios against the naive loop; information-free as a share of all polls
    DEFAULT: {"polls": 0.70, "lag": 0.22, "p95": 0.40, "free": 0.15},
    FRESH: {"polls": 0.70, "lag": 0.22, "p95": 0.40, "free": 0.15},
    LEARNED: {"polls": 0.50, "lag": 0.25, "free": 0.15},
}

Decide = Callable[[float, TaskStatus, int], float]


@dataclass
class Task:
    emulated: EmulatedTask
    script: TaskScript
    kind: TaskKind

    @property
    def end(self) -> float:
        return self.script.pending_s + self.script.duration_s


@dataclass
class Workload:
    name: str
    tasks: list[Task]
    arrivals: list[float] = field(default_factory=list)


@dataclass
class Replay:
    polls: int
    lag: float
    free: int
    updates: int
    answers: list[tuple[float, bool, int]]


def draw_b(rng: random.Random) -> TaskScript:
    """Workload B: log-uniform processing, a queue of up to 20 % of it, no stalls."""
    duration = math.exp(rng.uniform(math.log(5), math.log(1800)))
    return TaskScript(
        pending_s=round(rng.uniform(0, 0.2) * duration, 3),
        duration_s=round(duration, 3),
        curve=rng.choice(list(Curve)),
        noise=round(rng.uniform(0, 0.3), 3),
        noise_seed=rng.getrandbits(32),
    )


def make_workload(
    name: str, count: int, seed: int, draw: Callable[[random.Random], TaskScript]
) -> Workload:
    """Tasks of one workload, each with a kind whose file count predicts its duration."""
    rng = random.Random(seed)
    sizes = random.Random(seed + 1)
    tasks = []
    for _ in range(count):
        script = draw(rng)
        task_type = sizes.choice(list(PER_FILE_S))
        rate = PER_FILE_S[task_type] * math.exp(sizes.gauss(0, SIZE_NOISE))
        files = max(1, round(script.duration_s / rate))
        kind = TaskKind("share", int(task_type), files)
        tasks.append(Task(emulate(script), script, kind))
    arrivals = list(_arrivals(random.Random(seed + 2), count))
    return Workload(name, tasks, arrivals)


def _arrivals(rng: random.Random, count: int) -> Iterator[float]:
    at = 0.0
    for _ in range(count):
        at += rng.expovariate(1 / MEAN_ARRIVAL_GAP_S)
        yield at


def with_sizes(workload: Workload, seed: int, noise: float, predictable: bool) -> list[TaskKind]:
    """The tasks' kinds for a learning run: file counts with ``noise``, or shuffled."""
    sizes = random.Random(seed + 3)
    kinds = []
    for task in workload.tasks:
        rate = PER_FILE_S[TaskType(task.kind.task_type)] * math.exp(sizes.gauss(0, noise))
        files = max(1, round(task.script.duration_s / rate))
        kinds.append(TaskKind("share", task.kind.task_type, files))
    if not predictable:
        counts = [kind.files for kind in kinds]
        sizes.shuffle(counts)
        kinds = [TaskKind("share", k.task_type, n) for k, n in zip(kinds, counts, strict=True)]
    return kinds


def replay(task: Task, decide: Decide, first: float = 0.0) -> Replay:
    """Poll one task until it has ended; the first poll ``first`` s after its creation."""
    now, polls, free, updates = first, 0, 0, 0
    seen: tuple[TaskStatus, int] | None = None
    answers: list[tuple[float, bool, int]] = []
    while True:
        polls += 1
        snapshot = task.emulated.snapshot(now)
        status, progress = snapshot.status, snapshot.progress
        if (status, progress) != seen:
            updates += 1
            seen = (status, progress)
        if status.is_terminal:
            return Replay(polls, now - task.end, free, updates, answers)
        free += status is TaskStatus.PENDING or progress == 0
        answers.append((now, status is TaskStatus.PROCESSING, progress))
        now += decide(now, status, progress)


def naive() -> Decide:
    delays: Iterator[float] = backoff.expo(base=2, factor=1, max_value=30)
    next(delays)  # backoff's generators are primed with one next()
    return lambda now, status, progress: next(delays)


def planned(plan: PollPlan, rng: random.Random) -> Decide:
    return lambda now, status, progress: plan.observe(
        now, status is TaskStatus.PROCESSING, progress, rng.random
    )


def wait(task: Task, plan: PollPlan, rng: random.Random) -> Replay:
    """A wait with ``plan`` from the task's creation (time 0)."""
    return replay(task, planned(plan, rng), plan.first_delay(0.0))


@dataclass
class Row:
    polls: list[int] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    free: int = 0
    updates: list[int] = field(default_factory=list)

    def add(self, result: Replay) -> None:
        self.polls.append(result.polls)
        self.lags.append(result.lag)
        self.free += result.free
        self.updates.append(result.updates)

    def figures(self) -> dict[str, float]:
        return {
            "polls_per_task": statistics.fmean(self.polls),
            "mean_lag_s": statistics.fmean(self.lags),
            "p95_lag_s": p95(self.lags),
            "information_free": self.free / sum(self.polls),
            "updates_per_task": statistics.fmean(self.updates),
        }


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def run_policy(
    workload: Workload, policy: PollPolicy, seed: int, fresh: bool = False
) -> tuple[Row, list[Replay]]:
    rng = random.Random(seed)
    row, replays = Row(), []
    for task in workload.tasks:
        plan = PollPlan(policy, created_at=0.0 if fresh else None)
        result = wait(task, plan, rng)
        row.add(result)
        replays.append(result)
    return row, replays


def run_learned(
    workload: Workload, policy: PollPolicy, seed: int, kinds: list[TaskKind]
) -> tuple[Row, float]:
    """Fresh tasks arrive over time; the model learns only from waits that ended earlier."""
    rng = random.Random(seed)
    model = DurationModel()
    finished: list[tuple[float, int, float]] = []  # (seen ended at, task index, seconds)
    row, informed = Row(), 0
    for index, (task, kind, arrival) in enumerate(
        zip(workload.tasks, kinds, workload.arrivals, strict=True)
    ):
        while finished and finished[0][0] <= arrival:
            _, done, seconds = heapq.heappop(finished)
            model.learn(kinds[done], seconds)
        plan = PollPlan(policy, expected=model.expect(kind), created_at=0.0)
        informed += plan.expected is not None
        result = wait(task, plan, rng)
        row.add(result)
        ended_at = task.end + result.lag  # when the wait saw it ended, in task time
        seconds = plan.observed_duration(ended_at)
        if seconds is not None:
            heapq.heappush(finished, (arrival + ended_at, index, seconds))
    return row, informed / len(workload.tasks)


def fixed_every_second(workload: Workload) -> Row:
    """Polls at 0, 1, 2 ...: the first at or after the end detects it."""
    row = Row()
    for task in workload.tasks:
        detected = math.ceil(task.end)
        row.polls.append(detected + 1)
        row.lags.append(detected - task.end)
        row.free += math.ceil(task.script.pending_s)
        row.updates.append(0)
    return row


def oracle_with_limits(workload: Workload, policy: PollPolicy, seed: int) -> Row:
    """Knows the end; an immediate first poll, then capped, jittered gaps aimed at it."""
    rng = random.Random(seed)
    row = Row()
    for task in workload.tasks:
        now, polls = 0.0, 1
        while now < task.end:
            gap = min(policy.progress_max_delay, task.end - now)
            now += gap * (1 + policy.jitter * (2 * rng.random() - 1))
            polls += 1
        row.polls.append(polls)
        row.lags.append(now - task.end)
        row.free += 1  # the immediate first poll sees the task pending
        row.updates.append(0)
    return row


def cpu_per_observe(replays: list[Replay], policy: PollPolicy, repeats: int = 5) -> float:
    """Microseconds of CPU per ``PollPlan.observe`` replaying recorded answers (median)."""
    runs = []
    for _ in range(repeats):
        rand = random.Random(0).random
        count = 0
        started = time.process_time()
        for result in replays:
            observe = PollPlan(policy).observe
            for now, processing, progress in result.answers:
                observe(now, processing, progress, rand)
            count += len(result.answers)
        runs.append((time.process_time() - started) / max(count, 1) * 1e6)
    return statistics.median(runs)


def bytes_per_plan(replays: list[Replay], policy: PollPolicy) -> float:
    """Bytes a plan holds after its wait's answers (all but the last), all plans alive."""
    rand = random.Random(0).random
    plans = [PollPlan(policy)]  # whatever a first plan allocates once
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for result in replays:
            plan = PollPlan(policy)
            for now, processing, progress in result.answers[:-1]:
                plan.observe(now, processing, progress, rand)
            plans.append(plan)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return held / len(replays) - 8  # less the list's pointer to the plan


def ratios(figures: dict[str, float], base: dict[str, float]) -> dict[str, float]:
    return {
        **figures,
        "polls_vs_naive": figures["polls_per_task"] / base["polls_per_task"],
        "lag_vs_naive": figures["mean_lag_s"] / base["mean_lag_s"],
        "p95_vs_naive": figures["p95_lag_s"] / base["p95_lag_s"],
    }


def run_seed(name: str, count: int, seed: int, extra: bool) -> dict[str, dict[str, float]]:
    draw = WORKLOAD_A.draw if name == "A" else draw_b
    workload = make_workload(name, count, seed, draw)
    rows: dict[str, dict[str, float]] = {}
    base_row = Row()
    for task in workload.tasks:
        base_row.add(replay(task, naive()))
    base = base_row.figures()
    rows["naive backoff (1 s x2, cap 30 s)"] = ratios(base, base)
    rows["fixed 1 s"] = ratios(fixed_every_second(workload).figures(), base)
    plain = PollPolicy.backoff()
    rows["PollPolicy.backoff(), unknown age"] = ratios(
        run_policy(workload, plain, seed)[0].figures(), base
    )
    default = PollPolicy()
    row, replays = run_policy(workload, default, seed)
    rows[DEFAULT] = ratios(row.figures(), base)
    if name == "A" and seed == SEEDS[0]:
        rows[DEFAULT]["cpu_us_per_observe"] = cpu_per_observe(replays, default)
        rows[DEFAULT]["bytes_per_plan"] = bytes_per_plan(replays, default)
        rows["PollPolicy.backoff(), unknown age"]["cpu_us_per_observe"] = cpu_per_observe(
            replays, plain
        )
        rows["PollPolicy.backoff(), unknown age"]["bytes_per_plan"] = bytes_per_plan(replays, plain)
    rows[FRESH] = ratios(run_policy(workload, default, seed, fresh=True)[0].figures(), base)
    efficient = PollPolicy.efficient()
    rows["PollPolicy.efficient(), unknown age"] = ratios(
        run_policy(workload, efficient, seed)[0].figures(), base
    )
    rows["PollPolicy.efficient(), fresh"] = ratios(
        run_policy(workload, efficient, seed, fresh=True)[0].figures(), base
    )
    noises = (0.1, SIZE_NOISE, 0.25) if extra else (SIZE_NOISE,)
    for noise in noises:
        kinds = with_sizes(workload, seed, noise, predictable=True)
        row, informed = run_learned(workload, efficient, seed, kinds)
        label = f"efficient() + learned (size noise {noise}), fresh"
        rows[label] = {**ratios(row.figures(), base), "with_expectation": informed}
    kinds = with_sizes(workload, seed, SIZE_NOISE, predictable=True)
    row, informed = run_learned(workload, default, seed, kinds)
    rows[f"PollPolicy() + learned (size noise {SIZE_NOISE}), fresh"] = {
        **ratios(row.figures(), base),
        "with_expectation": informed,
    }
    kinds = with_sizes(workload, seed, SIZE_NOISE, predictable=False)
    row, informed = run_learned(workload, efficient, seed, kinds)
    rows["efficient() + learned, unpredictable, fresh"] = {
        **ratios(row.figures(), base),
        "with_expectation": informed,
    }
    rows["PollPolicy.interactive(), unknown age"] = ratios(
        run_policy(workload, PollPolicy.interactive(), seed)[0].figures(), base
    )
    rows["oracle: one poll at the exact end"] = ratios(
        {
            "polls_per_task": 1.0,
            "mean_lag_s": 0.0,
            "p95_lag_s": 0.0,
            "information_free": 0.0,
            "updates_per_task": 0.0,
        },
        base,
    )
    rows["oracle: exact end, default's limits"] = ratios(
        oracle_with_limits(workload, default, seed).figures(), base
    )
    return rows


def interactive_rows(count: int, seed: int) -> dict[str, dict[str, float]]:
    """Polls, lag and progress updates seen on 10 s and 10 min tasks."""
    rows: dict[str, dict[str, float]] = {}
    for duration in (10.0, 600.0):

        def draw(rng: random.Random, duration: float = duration) -> TaskScript:
            return TaskScript(
                pending_s=round(rng.uniform(0, 2), 3),
                duration_s=duration,
                curve=rng.choice(list(Curve)),
                noise=round(rng.uniform(0, 0.3), 3),
                noise_seed=rng.getrandbits(32),
            )

        workload = make_workload("ui", count, seed, draw)
        for label, policy in (
            ("PollPolicy.backoff()", PollPolicy.backoff()),
            ("PollPolicy()", PollPolicy()),
            ("PollPolicy.interactive()", PollPolicy.interactive()),
        ):
            figures = run_policy(workload, policy, seed)[0].figures()
            rows[f"{duration:g} s tasks: {label}"] = figures
    return rows


def run(quick: bool = False, seeds: int = len(SEEDS)) -> dict[str, object]:
    """Simulate every policy on both workloads for each seed; return the figures."""
    count = 500 if quick else 3000
    chosen = SEEDS[: (1 if quick else seeds)]
    started = time.perf_counter()
    workloads: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for name in ("A", "B"):
        workloads[name] = {
            str(seed): run_seed(name, count, seed, extra=(seed == SEEDS[0])) for seed in chosen
        }
    ui = interactive_rows(50 if quick else 200, SEEDS[0])
    goals = []
    for name, per_seed in workloads.items():
        for row_name, limits in GOALS.items():
            rows = [rows[row_name] for rows in per_seed.values()]
            worst = {
                "polls": max(r["polls_vs_naive"] for r in rows),
                "lag": max(r["lag_vs_naive"] for r in rows),
                "p95": max(r["p95_vs_naive"] for r in rows),
                "free": max(r["information_free"] for r in rows),
            }
            for figure, limit in limits.items():
                goals.append(
                    goal(
                        f"{name}: {row_name}, {figure} (worst of {len(rows)} seeds)",
                        worst[figure],
                        limit,
                    )
                )
    return {
        "benchmark": "polling",
        "tasks": count,
        "seeds": list(chosen),
        "workloads": workloads,
        "ui_tasks": ui,
        "goals": goals,
        "seconds": time.perf_counter() - started,
    }


def report(result: dict[str, object]) -> str:
    workloads = result["workloads"]
    assert isinstance(workloads, dict)
    for name, per_seed in workloads.items():
        names = list(next(iter(per_seed.values())))
        table = []
        for row_name in names:
            rows = [rows[row_name] for rows in per_seed.values() if row_name in rows]
            table.append(
                [
                    row_name,
                    statistics.fmean(r["polls_per_task"] for r in rows),
                    _span(r["polls_vs_naive"] for r in rows),
                    _span(r["lag_vs_naive"] for r in rows),
                    _span(r["p95_vs_naive"] for r in rows),
                    _span(r["information_free"] for r in rows),
                ]
            )
        print_table(
            f"Workload {name}, {result['tasks']} tasks, seeds {result['seeds']} "
            "(ratios against the naive loop of the same run; min-max over seeds)",
            ["policy", "polls/task", "polls", "mean lag", "p95 lag", "info-free"],
            table,
        )
    first = next(iter(workloads["A"].values()))
    for row_name in (DEFAULT, "PollPolicy.backoff(), unknown age"):
        row = first[row_name]
        print(
            f"{row_name}: {row['cpu_us_per_observe']:.1f} us of CPU per PollPlan.observe, "
            f"{row['bytes_per_plan']:.0f} bytes per plan (workload A, first seed)"
        )
    ui = result["ui_tasks"]
    assert isinstance(ui, dict)
    print_table(
        "Progress bars: fixed-length tasks",
        ["tasks: policy", "polls/task", "mean lag s", "p95 lag s", "updates seen"],
        [
            [label, r["polls_per_task"], r["mean_lag_s"], r["p95_lag_s"], r["updates_per_task"]]
            for label, r in ui.items()
        ],
    )
    return f"\n{result['seconds']:.0f} s"


def _span(values: Iterator[float]) -> str:
    listed = list(values)
    low, high = min(listed), max(listed)
    return f"{low:.2f}" if round(low, 2) == round(high, 2) else f"{low:.2f}-{high:.2f}"


def plot(result: dict[str, object], path: Path) -> None:
    """Polls per task against mean lag, every policy: one column per workload, the whole
    picture above and the policies near the goal below."""
    import matplotlib  # noqa: PLC0415 - a benchmark-only dependency (the bench extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    workloads = result["workloads"]
    assert isinstance(workloads, dict)
    figure, grid = plt.subplots(2, len(workloads), figsize=(13, 11))
    for column, (name, per_seed) in enumerate(workloads.items()):
        # The goal of the default policy, against the naive loop of the same run.
        naive = [rows["naive backoff (1 s x2, cap 30 s)"] for rows in per_seed.values()]
        goal_polls = GOALS[DEFAULT]["polls"] * statistics.fmean(r["polls_per_task"] for r in naive)
        goal_lag = GOALS[DEFAULT]["lag"] * statistics.fmean(r["mean_lag_s"] for r in naive)
        for zoomed, axis in enumerate(grid[:, column]):
            axis.fill_between(
                [0.5, goal_polls], 0, goal_lag, color="tab:green", alpha=0.1, label="goal (default)"
            )
            for row_name in next(iter(per_seed.values())):
                rows = [rows[row_name] for rows in per_seed.values() if row_name in rows]
                polls = [r["polls_per_task"] for r in rows]
                lags = [r["mean_lag_s"] for r in rows]
                x, y = statistics.fmean(polls), statistics.fmean(lags)
                marker, color = _style(row_name)
                axis.errorbar(
                    x,
                    y,
                    xerr=[[x - min(polls)], [max(polls) - x]],
                    yerr=[[y - min(lags)], [max(lags) - y]],
                    fmt="none",
                    ecolor=color,
                    capsize=3,
                )
                axis.plot(x, y, marker, color=color, markersize=9, label=row_name, linestyle="none")
            axis.grid(True, which="both", alpha=0.3)
            axis.set_ylabel("mean detection lag (s)")
            if zoomed:
                axis.set_xlim(3.5, 12)
                axis.set_ylim(0, 4)
                axis.set_xlabel("polls per task")
                axis.set_title(f"Workload {name}: near the goal")
            else:
                axis.set_xscale("log")
                axis.set_ylim(-0.5, 15)
                axis.set_xlabel("polls per task (log scale)")
                axis.set_title(f"Workload {name} ({result['tasks']} tasks, {len(per_seed)} seeds)")
    handles, labels = grid[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    figure.suptitle(
        "Polling policies: fewer polls (left) and earlier detection (down) are better;"
        " bars span the seeds; the shaded box is the default's goal"
    )
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    print(f"wrote {path}")


_STYLES = {
    "naive": ("s", "tab:red"),
    "fixed": ("^", "tab:red"),
    "backoff()": ("s", "tab:olive"),
    "PollPolicy() + learned": ("d", "tab:green"),
    "(default), unknown age": ("o", "tab:blue"),
    "(default), fresh": ("h", "navy"),
    "efficient(), unknown age": ("o", "tab:orange"),
    "efficient(), fresh": ("h", "tab:orange"),
    "size noise 0.1)": ("o", "tab:green"),
    "size noise 0.2)": ("P", "tab:green"),
    "size noise 0.25)": ("v", "tab:green"),
    "unpredictable": ("x", "tab:cyan"),
    "interactive": ("D", "tab:purple"),
    "one poll": ("*", "black"),
    "limits": ("X", "tab:gray"),
}


def _style(name: str) -> tuple[str, str]:
    for key, style in _STYLES.items():
        if key in name:
            return style
    return ("o", "tab:brown")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 tasks, one seed")
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help="how many seeds (1-5)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument(
        "--plot",
        metavar="PATH",
        nargs="?",
        const=str(RESULTS_DIR / "polling.png"),
        help="also draw polls against lag (default path: benchmarks/results/polling.png)",
    )
    args = parser.parse_args()
    result = run(args.quick, args.seeds)
    print(report(result))
    if args.json:
        write_json(args.json, result)
    if args.plot:
        plot(result, Path(args.plot))


if __name__ == "__main__":
    main()
