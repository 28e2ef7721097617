"""Bounded state, scale, reproducibility, the server's life and the pytest plugin."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any

import aiohttp
import pytest
from emulator_helpers import Api

from koodrive_tasks.emulator import Emulator, RandomScripts, TaskScript, serve
from koodrive_tasks.testing import VirtualClock


async def test_ended_tasks_are_purged_after_retention(api: Api) -> None:
    """An ended task answers until retention_s has passed, then reads as not found."""
    clock = VirtualClock(autojump=False)
    script = TaskScript(pending_s=0, duration_s=10)
    async with Emulator(clock=clock, script=script, retention_s=100) as emu:
        task_id = await api.create(emu)
        clock.advance(10 + 99)
        assert (await api.detail(emu, task_id))[0] == 200
        clock.advance(1)
        status, body = await api.detail(emu, task_id)
        assert (status, body["code"]) == (400, "13000309")
        assert emu.task_count == 0


async def test_live_tasks_are_never_purged(api: Api) -> None:
    """Retention counts from a task's end, so a long task outlives retention_s."""
    clock = VirtualClock(autojump=False)
    async with Emulator(clock=clock, retention_s=10) as emu:
        task_id = emu.add_task(TaskScript(pending_s=0, duration_s=1000))
        clock.advance(500)
        emu.purge()
        assert (await api.info(emu, task_id))["taskStatus"] == 1


async def test_creates_sweep_expired_tasks(api: Api) -> None:
    """A create purges every expired task, freeing room under max_tasks."""
    clock = VirtualClock(autojump=False)
    script = TaskScript(pending_s=0, duration_s=1)
    async with Emulator(clock=clock, script=script, retention_s=5, max_tasks=3) as emu:
        early = [emu.add_task() for _ in range(3)]
        with pytest.raises(OverflowError):
            emu.add_task()
        clock.advance(6)
        await api.create(emu)
        assert emu.task_count == 1
        assert emu.stats.tasks_purged == 3
        assert all(task_id not in emu.stats.polls for task_id in early)


async def test_cancel_shortens_retention(api: Api) -> None:
    """A canceled task is purged retention_s after the cancel, not after its planned end."""
    clock = VirtualClock(autojump=False)
    async with Emulator(clock=clock, retention_s=10) as emu:
        task_id = emu.add_task(TaskScript(pending_s=0, duration_s=1000))
        emu.cancel(task_id)
        clock.advance(11)
        emu.purge()
        assert emu.task_count == 0
        assert emu.stats.tasks_purged == 1


async def test_ten_thousand_tasks_are_cheap(api: Api) -> None:
    """10,000 tasks are created and queried quickly, with no timer per task."""
    clock = VirtualClock(autojump=False)
    async with Emulator(clock=clock, random_scripts=RandomScripts(), seed=1) as emu:
        started = time.perf_counter()
        ids = [emu.add_task(file_ids=["a", "b"]) for _ in range(10_000)]
        clock.advance(30)
        statuses = {(await api.info(emu, task_id))["taskStatus"] for task_id in ids[::500]}
        assert emu.task_count == 10_000
        assert statuses <= {0, 1, 2, 3}
        assert len(statuses) >= 2
        assert time.perf_counter() - started < 5
        # Nothing scheduled per task: the loop holds only what this test started.
        assert len(asyncio.all_tasks()) < 10


async def test_seeded_emulators_are_reproducible(api: Api) -> None:
    """Two emulators with the same seed hand out the same task ids and scripts."""

    async def run(seed: int) -> list[tuple[str, Any]]:
        async with Emulator(seed=seed, random_scripts=RandomScripts()) as emu:
            ids = [await api.create(emu) for _ in range(5)]
            return [(i, emu.service.lookup(i).script) for i in ids]  # type: ignore[union-attr]

    assert await run(11) == await run(11)
    assert await run(11) != await run(12)


async def test_url_and_clean_shutdown(session: aiohttp.ClientSession) -> None:
    """url has no trailing slash, works while serving and raises once stopped."""
    emu = Emulator()
    with pytest.raises(RuntimeError):
        _ = emu.url
    async with emu:
        url = emu.url
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith("/")
        async with session.get(url + "/nothing-here") as resp:
            assert resp.status == 404
    with pytest.raises(RuntimeError):
        _ = emu.url
    with pytest.raises(aiohttp.ClientConnectorError):
        async with session.get(url + "/nothing-here"):
            pass


def test_invalid_shape_is_refused() -> None:
    """Only shapes A and B exist."""
    with pytest.raises(ValueError, match="shape"):
        Emulator(shape="C")  # type: ignore[arg-type]


async def test_serve_runs_until_cancelled(api: Api) -> None:
    """serve() starts an emulator, reports it through on_ready and stops when cancelled."""
    ready: asyncio.Queue[Emulator] = asyncio.Queue()
    server = asyncio.create_task(
        serve("127.0.0.1", 0, shape="A", seed=1, on_ready=ready.put_nowait)
    )
    emu = await asyncio.wait_for(ready.get(), timeout=5)
    task_id = await api.create(emu)
    assert (await api.detail(emu, task_id))[1]["code"] == "0"
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server
    with pytest.raises(RuntimeError):
        _ = emu.url


@pytest.fixture
def koodrive_emulator_options() -> dict[str, Any]:
    return {"shape": "A", "token": "plugin-token"}


async def test_plugin_emulator_fixture_uses_the_options(
    api: Api, koodrive_emulator: Emulator
) -> None:
    """The koodrive_emulator fixture is running and honours koodrive_emulator_options."""
    assert koodrive_emulator.token == "plugin-token"
    task_id = await api.create(koodrive_emulator)
    assert (await api.detail(koodrive_emulator, task_id))[1]["code"] == "0"


async def test_plugin_client_fixture(koodrive_emulator: Emulator, koodrive_client: Any) -> None:
    """The koodrive_client fixture yields a KooDriveClient aimed at the emulator."""
    from koodrive_tasks import KooDriveClient

    assert isinstance(koodrive_client, KooDriveClient)
    assert koodrive_emulator.stats.requests.total() == 0  # connecting sends nothing


async def test_date_header_follows_the_wall_clock(session: aiohttp.ClientSession) -> None:
    """Every response's Date header shows the injected wall clock (clients detect skew by it)."""
    clock = VirtualClock(
        wall_start=datetime(2030, 5, 6, 7, 8, 9, tzinfo=timezone.utc), autojump=False
    )
    async with Emulator(clock=clock) as emu:
        async with session.get(emu.url + "/nothing-here") as resp:
            assert resp.headers["Date"] == "Mon, 06 May 2030 07:08:09 GMT"
        clock.advance(3600)
        async with session.post(emu.url + "/koodrive/ose/v1/share/taskDetail") as resp:
            assert resp.status == 401
            assert resp.headers["Date"] == "Mon, 06 May 2030 08:08:09 GMT"
