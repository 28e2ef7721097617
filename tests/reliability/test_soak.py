"""Fault-injection soak: many tasks through the emulator while ~20 % of polls go wrong.

Default size (CI): 1,000 tasks, well under 40 s. A larger run is one command::

    KOODRIVE_SOAK_TASKS=5000 .venv/bin/python -m pytest -m soak -s

``-s`` shows the one-line summary (tasks, fault rate achieved, outcomes correct, leaks,
runtime). Task durations of minutes pass instantly: client and emulator share a
VirtualClock; only the injected slow answers take real time (0.2 s against a
request_timeout of 0.08 s).
"""

from __future__ import annotations

import asyncio
import enum
import os
import random
import time
from collections import Counter
from typing import Any

import attrs
import pytest
from rel_support import (
    SHARE,
    LoopErrors,
    client_for,
    collect_resource_warnings,
    emulator,
    other_tasks,
    settle,
)

from koodrive_tasks import (
    KooDriveError,
    Limits,
    PollPolicy,
    TaskCanceledError,
    TaskFailedError,
    TaskResultCode,
    WaitTimeoutError,
)
from koodrive_tasks.emulator import Fault, FaultPlan, Outcome, TaskScript
from koodrive_tasks.testing import VirtualClock

pytestmark = pytest.mark.soak

TASKS = int(os.environ.get("KOODRIVE_SOAK_TASKS", "1000"))
FAULT_RATE = 0.2
SEED = int(os.environ.get("KOODRIVE_SOAK_SEED", "20261129"))
DEADLINE = 2400.0
"""Virtual seconds per wait: far beyond the longest task (5 s pending + 900 s) plus retries."""
OUTLASTING_FAULTS = 150
"""Scripted 503s in a row: at a mean retry delay of ~30 s they need ~4,500 s > DEADLINE."""

MIX = (
    Fault.throttle(2),
    Fault.gateway(502),
    Fault.gateway(503, html=False),
    Fault.server_error(),
    Fault.drop(),
    Fault.slow(0.2),
    Fault.malformed_json(),
    Fault.truncated_json(),
)
POLICY = PollPolicy.backoff(
    initial_delay=2.0,
    factor=1.5,
    max_delay=30.0,
    jitter=0.1,
    timeout=DEADLINE,
    retry_initial_delay=1.0,
    retry_max_delay=60.0,
    retry_after_min=0.5,
    retry_after_max=30.0,
)


class Expect(enum.Enum):
    """What a task's wait must end with."""

    URL = "url"
    PARTIAL_URL = "partial url"
    FAILED = "TaskFailedError"
    CANCELED = "TaskCanceledError"
    TIMEOUT = "WaitTimeoutError"


@attrs.frozen
class Planned:
    task_id: str
    expect: Expect


def plan_tasks(emu: Any, rng: random.Random, count: int) -> list[Planned]:
    """Add ``count`` scripted tasks with a seeded mix of outcomes."""
    kinds = [Expect.URL, Expect.PARTIAL_URL, Expect.FAILED, Expect.CANCELED, Expect.TIMEOUT]
    weights = [0.55, 0.15, 0.12, 0.15, 0.03]
    planned = []
    for _ in range(count):
        expect = rng.choices(kinds, weights)[0]
        pending = round(rng.uniform(0, 5), 2)
        duration = round(rng.uniform(30, 900), 2)
        script: dict[str, Any] = {"pending_s": pending, "duration_s": duration, "noise": 0.2}
        if expect is Expect.PARTIAL_URL:
            script["outcome"] = Outcome.PARTIALLY_FAILED
        elif expect is Expect.FAILED:
            script["outcome"] = Outcome.ALL_FAILED
        elif expect is Expect.CANCELED:
            script["cancel_after_s"] = pending + duration * rng.uniform(0.1, 0.9)
        elif expect is Expect.TIMEOUT:
            script["duration_s"] = 60.0  # it would end quickly if a poll ever got through
            script["faults"] = (Fault.gateway(503, html=False),) * OUTLASTING_FAULTS
        task_id = emu.add_task(TaskScript(**script), file_ids=("f1", "f2", "f3", "f4"))
        planned.append(Planned(task_id, expect))
    return planned


def judge(plan: Planned, result: object, emu_url: str) -> str | None:
    """Why ``result`` is wrong for ``plan``, or ``None`` when it is what was scripted."""
    if plan.expect in (Expect.URL, Expect.PARTIAL_URL):
        url, info = result if isinstance(result, tuple) else (result, None)
        prefix = f"{emu_url}/download/{plan.task_id}.zip?"
        if not (isinstance(url, str) and url.startswith(prefix)):
            return f"expected a download URL, got {type(url).__name__}"
        wanted = (
            TaskResultCode.ALL_SUCCEEDED
            if plan.expect is Expect.URL
            else TaskResultCode.PARTIALLY_FAILED
        )
        if info is None or info.result_code is not wanted:
            return f"expected {wanted.name}, got {getattr(info, 'result_code', None)}"
        return None
    wanted_error = {
        Expect.FAILED: TaskFailedError,
        Expect.CANCELED: TaskCanceledError,
        Expect.TIMEOUT: WaitTimeoutError,
    }[plan.expect]
    if type(result) is not wanted_error:
        return f"expected {wanted_error.__name__}, got {type(result).__name__}: {result}"
    if getattr(result, "task_id", plan.task_id) != plan.task_id:
        return "the error names another task"
    return None


async def wait_one(kd: Any, task_id: str) -> object:
    """Await one task's URL (and its final info), or return the exception it raised."""
    waiter = kd.wait_for_task(SHARE, task_id)
    try:
        url = await waiter
        return url, await waiter.final_info()
    except Exception as error:  # counted: typed (KooDriveError) or not
        return error


async def test_soak_every_wait_ends_as_scripted(capsys: pytest.CaptureFixture[str]) -> None:
    """N tasks under ~20 % injected faults: every wait ends as scripted, with no leaks."""
    started = time.perf_counter()
    rng = random.Random(SEED)
    clock = VirtualClock()
    results: dict[str, object] = {}
    with LoopErrors() as loop_errors:
        before = other_tasks()
        async with emulator(
            clock,
            seed=SEED,
            faults=FaultPlan(rate=FAULT_RATE, mix=MIX),
            retention_s=1e9,  # ended tasks stay queryable for the whole run
        ) as emu:
            planned = plan_tasks(emu, rng, TASKS)
            async with client_for(
                emu,
                clock,
                policy=POLICY,
                request_timeout=0.08,
                limits=Limits(max_in_flight=48, rate=None),
            ) as kd:
                # Half the tasks through single waits, half through as_completed, at once.
                half = len(planned) // 2
                singles = planned[:half]

                async def batch() -> None:
                    async with kd.as_completed(
                        [(SHARE, p.task_id) for p in planned[half:]]
                    ) as done:
                        async for outcome in done:
                            results[outcome.ref.task_id] = (
                                outcome.error
                                if outcome.error is not None
                                else (outcome.download_url, outcome.info)
                            )

                *answers, _ = await asyncio.gather(
                    *(wait_one(kd, p.task_id) for p in singles), batch()
                )
                results.update(zip((p.task_id for p in singles), answers, strict=True))
                client_stats = kd.stats
            emu_url = emu.url
            stats = emu.stats
            # The outlasting tasks' scripted 503s are not random faults: count them apart.
            scripted_faults = sum(
                min(stats.polls[p.task_id], OUTLASTING_FAULTS)
                for p in planned
                if p.expect is Expect.TIMEOUT
            )
        await settle()
        leaked_tasks = other_tasks() - before
    resource_warnings = collect_resource_warnings()
    runtime = time.perf_counter() - started

    wrong = {p.task_id: judge(p, results.get(p.task_id), emu_url) for p in planned}
    wrong = {k: v for k, v in wrong.items() if v is not None}
    untyped = [
        r
        for r in results.values()
        if isinstance(r, BaseException) and not isinstance(r, KooDriveError)
    ]
    random_polls = stats.detail_polls - scripted_faults
    random_faults = stats.faults_injected - scripted_faults
    fault_rate = random_faults / random_polls
    outcomes = Counter(p.expect.value for p in planned)
    with capsys.disabled():
        print(
            f"\nsoak: tasks={TASKS} detail_requests={stats.detail_polls} "
            f"faults={stats.faults_injected} scripted={scripted_faults} random_fault_rate={fault_rate:.1%} "
            f"(by kind {dict(stats.faults)}) client_retries={client_stats.retries} "
            f"outcomes_correct={TASKS - len(wrong)}/{TASKS} ({dict(outcomes)}) "
            f"untyped_exceptions={len(untyped)} leaked_tasks={len(leaked_tasks)} "
            f"unclosed_resources={len(resource_warnings)} loop_errors={len(loop_errors.contexts)} "
            f"virtual_s={clock.monotonic():.0f} runtime_s={runtime:.1f}"
        )
    assert len(results) == TASKS
    assert not untyped, untyped[:5]
    assert not wrong, list(wrong.items())[:10]
    assert not leaked_tasks, leaked_tasks
    assert not resource_warnings, resource_warnings[:5]
    assert not loop_errors.contexts, loop_errors.messages()[:5]
    assert 0.15 <= fault_rate <= 0.25
    assert all(stats.faults[kind] > 0 for kind in ("throttle", "drop", "slow", "malformed_json"))
