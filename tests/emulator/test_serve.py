"""serve(): task distribution, transient-only random faults, the JSON stats route, stats reset."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from emulator_helpers import Api

from koodrive_tasks import TaskStatus
from koodrive_tasks.emulator import (
    DEFAULT_FAULT_MIX,
    PERMANENT_FAULTS,
    TRANSIENT_FAULTS,
    Emulator,
    FaultKind,
    FaultPlan,
    Outcome,
    RandomScripts,
    TaskScript,
    serve,
)
from koodrive_tasks.testing import VirtualClock


@contextlib.asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[Emulator]:
    """Run serve() on a free loopback port for the block; yield its emulator."""
    ready: asyncio.Queue[Emulator] = asyncio.Queue()
    server = asyncio.create_task(serve("127.0.0.1", 0, on_ready=ready.put_nowait, **options))
    try:
        yield await asyncio.wait_for(ready.get(), timeout=5)
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


async def poll_quietly(api: Api, emu: Emulator, task_id: str) -> None:
    """One detail request; a dropped connection is an expected fault here."""
    with contextlib.suppress(aiohttp.ClientError):
        await api.detail(emu, task_id)


def test_random_faults_are_transient_by_default() -> None:
    """A FaultPlan's default mix holds only transient faults; permanent ones are service codes."""
    assert FaultPlan().mix == TRANSIENT_FAULTS == DEFAULT_FAULT_MIX
    assert FaultKind.ERROR_CODE not in {fault.kind for fault in TRANSIENT_FAULTS}
    assert {fault.kind for fault in TRANSIENT_FAULTS} == set(FaultKind) - {FaultKind.ERROR_CODE}
    assert PERMANENT_FAULTS
    assert all(f.kind is FaultKind.ERROR_CODE and f.code not in ("", "0") for f in PERMANENT_FAULTS)


async def test_serve_injects_permanent_faults_only_when_asked(api: Api) -> None:
    """serve(fault_rate=1) never answers with a service error code unless permanent_faults=True."""
    async with serving(fault_rate=1.0, seed=5) as emu:
        task_id = emu.add_task()
        for _ in range(30):
            await poll_quietly(api, emu, task_id)
        assert emu.stats.faults_injected == 30
        assert emu.stats.faults["error_code"] == 0
        assert len(emu.stats.faults) >= 5  # a mix, not one kind
    async with serving(fault_rate=1.0, permanent_faults=True, seed=5) as emu:
        task_id = emu.add_task()
        for _ in range(200):
            await poll_quietly(api, emu, task_id)
            if emu.stats.faults["error_code"]:
                break
        assert emu.stats.faults["error_code"] == 1


async def test_serve_draws_scripts_from_the_given_distribution(api: Api) -> None:
    """Created tasks follow serve(random_scripts=...): here a fixed 5 s, no pending, all failing."""
    clock = VirtualClock(autojump=False)
    scripts = RandomScripts.from_outcome_mix(
        failed=1, min_duration_s=5, median_duration_s=5, max_duration_s=5, max_pending_s=0
    )
    async with serving(random_scripts=scripts, clock=clock, seed=1) as emu:
        task_id = await api.create(emu)
        clock.advance(4.9)
        assert emu.snapshot(task_id).status is TaskStatus.PROCESSING
        clock.advance(0.1)
        info = await api.info(emu, task_id)
        assert (info["taskStatus"], info["taskResultCode"]) == (2, 3)


def test_outcome_mix_weights_the_four_endings() -> None:
    """from_outcome_mix turns weights of completed/partial/failed/canceled into drawn scripts."""
    rng = random.Random(7)
    mix = RandomScripts.from_outcome_mix(completed=2, partially_failed=1, canceled=1)
    drawn = [mix.draw(rng) for _ in range(800)]
    canceled = [s for s in drawn if s.cancel_after_s is not None]
    ended = [s.outcome for s in drawn if s.cancel_after_s is None]
    assert 150 <= len(canceled) <= 250  # 1 in 4
    assert 380 <= ended.count(Outcome.ALL_SUCCEEDED) <= 520  # 2 in 4
    assert Outcome.ALL_FAILED not in ended
    only_canceled = RandomScripts.from_outcome_mix(canceled=3)
    assert all(only_canceled.draw(rng).cancel_after_s is not None for _ in range(50))
    never = RandomScripts.from_outcome_mix(completed=1)
    assert all(never.draw(rng).cancel_after_s is None for _ in range(50))


@pytest.mark.parametrize(
    "weights",
    [
        pytest.param({}, id="none"),
        pytest.param({"completed": 0, "failed": 0}, id="all-zero"),
        pytest.param({"completed": 1, "failed": -1}, id="negative"),
    ],
)
def test_outcome_mix_refuses_weights_that_describe_nothing(weights: dict[str, float]) -> None:
    """Negative weights, or no positive one, are a ValueError."""
    with pytest.raises(ValueError, match="weights"):
        RandomScripts.from_outcome_mix(**weights)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"min_duration_s": 10, "max_duration_s": 5}, id="min-over-max"),
        pytest.param({"max_pending_s": -1}, id="negative-pending"),
        pytest.param({"cancel_rate": 1.5}, id="cancel-rate"),
        pytest.param({"median_duration_s": 0}, id="zero-median"),
    ],
)
def test_random_scripts_refuse_impossible_settings(fields: dict[str, float]) -> None:
    """Durations, pending time and probabilities are checked when the distribution is built."""
    with pytest.raises(ValueError):  # noqa: PT011 - each field words its own message
        RandomScripts(**fields)  # type: ignore[arg-type]


async def test_stats_route_serves_the_counters_as_json(
    api: Api, session: aiohttp.ClientSession
) -> None:
    """GET /_emulator/stats needs no credentials, reports the counters and is not counted."""
    async with Emulator() as emu:
        task_id = await api.create(emu)
        await api.detail(emu, task_id)
        await api.detail(emu, "no-such-task")
        for _ in range(2):
            async with session.get(emu.url + "/_emulator/stats") as resp:
                assert resp.status == 200
                assert resp.content_type == "application/json"
                stats = await resp.json()
        assert stats["requests"] == {"create": 1, "detail": 2}
        assert stats["detail_polls"] == 2
        assert stats["tasks_created"] == stats["tasks_held"] == 1
        assert stats["polled_tasks"] == 1
        assert (stats["faults"], stats["faults_injected"], stats["auth_failures"]) == ({}, 0, 0)
        assert emu.stats.requests == {"create": 1, "detail": 2}


async def test_stats_reset_zeroes_counters_and_keeps_tasks(
    api: Api, session: aiohttp.ClientSession
) -> None:
    """emu.stats.reset() starts the counters afresh; the tasks and their state stay."""
    async with Emulator(script=TaskScript(pending_s=0, duration_s=100)) as emu:
        task_id = await api.create(emu)
        await api.detail(emu, task_id)
        emu.stats.reset()
        assert emu.stats.to_dict() == {
            "requests": {},
            "faults": {},
            "detail_polls": 0,
            "faults_injected": 0,
            "polled_tasks": 0,
            "auth_failures": 0,
            "tasks_created": 0,
            "tasks_purged": 0,
        }
        assert emu.task_count == 1
        assert (await api.info(emu, task_id))["taskStatus"] == 1
        assert emu.stats.detail_polls == 1


def test_default_clock_works_outside_an_event_loop() -> None:
    """With real time by default, tasks can be added and read before any loop runs."""
    emu = Emulator(script=TaskScript(pending_s=60, duration_s=60))
    task_id = emu.add_task()
    assert emu.snapshot(task_id).status is TaskStatus.PENDING
