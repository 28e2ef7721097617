"""``close()`` ends every wait and every batch, whatever state it is in.

Against the emulator on a virtual clock, with tasks that run for hours: waiters being
awaited or iterated, waiters made before the close and awaited after it, new waits
after it, ``wait_many`` / ``as_completed`` / ``watch_many`` running, batches created
and not started, a batch whose consumer closes the client itself, a request in flight.
Every awaiting caller gets ``ClientClosedError``; every batch delivers it as the
outcome of each unfinished task and ends; tasks that had ended keep their outcome.
The scale test runs ``close_at_scale.py`` under ``python -X dev -W error``: 10,000
waits and 10 batches end in under a second with nothing on stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from rel_support import QUICK, SHARE, client_for, emulator, other_tasks, settle

from koodrive_tasks import (
    ClientClosedError,
    KooDriveClient,
    KooDriveError,
    TaskOutcome,
)
from koodrive_tasks.emulator import Emulator, Fault, TaskScript
from koodrive_tasks.testing import VirtualClock

LONG = TaskScript(pending_s=1, duration_s=10 * 3600)
SHORT = TaskScript(pending_s=0, duration_s=5)


async def within(awaitable: Any, seconds: float = 5.0) -> Any:
    """Await with a real-time guard: a hang fails the test instead of stalling it."""
    try:
        return await asyncio.wait_for(asyncio.shield(awaitable), seconds)
    except asyncio.TimeoutError:
        raise AssertionError(f"hung: still waiting after {seconds} s of real time") from None


async def outcome_of(awaitable: Any) -> Any:
    try:
        return await within(awaitable)
    except KooDriveError as error:
        return error


@pytest.fixture
async def env() -> AsyncIterator[tuple[Emulator, KooDriveClient, VirtualClock]]:
    clock = VirtualClock()
    async with emulator(clock) as emu:
        kd = client_for(emu, clock, policy=QUICK)
        try:
            yield emu, kd, clock
        finally:
            await kd.close()


async def test_waiters_in_every_state_raise_client_closed(
    env: tuple[Emulator, KooDriveClient, VirtualClock],
) -> None:
    """Awaited, iterated, made-before-and-awaited-after, and new waits: all ClientClosedError."""
    emu, kd, clock = env
    ids = [emu.add_task(LONG) for _ in range(4)]
    awaited = asyncio.ensure_future(kd.wait_for_task(SHARE, ids[0]).download_url())
    seen: list[Any] = []

    async def iterate() -> None:
        async for update in kd.wait_for_task(SHARE, ids[1]):
            seen.append(update)  # noqa: PERF401 - seen while it iterates

    iterating = asyncio.ensure_future(iterate())
    made_before = kd.wait_for_task(SHARE, ids[2])
    never_timed = kd.wait_for_task(SHARE, ids[3], timeout=None)
    await clock.sleep(30)
    assert seen, "the iterating waiter saw no update before the close"
    await kd.close()
    for result in (
        await outcome_of(awaited),
        await outcome_of(iterating),
        await outcome_of(made_before.download_url()),
        await outcome_of(never_timed.final_info()),
        await outcome_of(kd.wait_for_task(SHARE, ids[0]).download_url()),
        await outcome_of(kd.get_share_task(SHARE, ids[0])),
    ):
        assert isinstance(result, ClientClosedError), repr(result)
    assert made_before.delivered  # it was raised to its caller: no checkpoint holds it


async def test_a_waiter_made_before_close_never_waits_for_its_deadline(
    env: tuple[Emulator, KooDriveClient, VirtualClock],
) -> None:
    """A waiter created, not yet awaited, then the close: ClientClosedError at once, no virtual hour."""
    emu, kd, clock = env
    waiter = kd.wait_for_task(SHARE, emu.add_task(LONG), timeout=3600)
    await kd.close()
    before = clock.monotonic()
    assert isinstance(await outcome_of(waiter.download_url()), ClientClosedError)
    assert clock.monotonic() - before < 1.0


@pytest.mark.parametrize("kind", ["wait_many", "as_completed", "watch_many"])
async def test_running_batches_deliver_client_closed_and_end(
    env: tuple[Emulator, KooDriveClient, VirtualClock], kind: str
) -> None:
    """A running batch ends: ClientClosedError for each unfinished task, finished ones kept."""
    emu, kd, clock = env
    finished = [emu.add_task(SHORT) for _ in range(2)]
    running = [emu.add_task(LONG) for _ in range(3)]
    refs = [(SHARE, t) for t in finished + running]
    delivered: list[TaskOutcome] = []

    async def consume() -> dict[Any, TaskOutcome]:
        if kind == "wait_many":
            return await kd.wait_many(refs)
        batch = kd.as_completed(refs) if kind == "as_completed" else kd.watch_many(refs)
        async with batch:
            async for event in batch.events():
                if isinstance(event, TaskOutcome):
                    delivered.append(event)  # noqa: PERF401 - as it comes
        return batch.outcomes

    consumer = asyncio.ensure_future(consume())
    await clock.sleep(60)
    await kd.close()
    outcomes = await within(consumer)
    assert len(outcomes) == len(refs)
    for ref, result in outcomes.items():
        if ref.task_id in finished:
            assert result.error is None
            assert result.download_url is not None
        else:
            assert isinstance(result.error, ClientClosedError), repr(result.error)
    if kind != "wait_many":
        assert {o.ref.task_id for o in delivered} == set(finished + running)


async def test_closing_thousands_of_waits_lets_the_loop_run_meanwhile(
    env: tuple[Emulator, KooDriveClient, VirtualClock],
) -> None:
    """close() ends many waits in steps: other tasks run between them, and every wait ends."""
    emu, kd, _clock = env
    refs = [(SHARE, emu.add_task(LONG)) for _ in range(2_000)]
    batch = asyncio.ensure_future(kd.wait_many(refs))
    while kd.stats.streams < len(refs):
        await asyncio.sleep(0)
    seen: list[int] = []  # live streams, each time this task got the loop during close()
    closing = asyncio.ensure_future(kd.close())
    while not closing.done():
        seen.append(kd.stats.streams)
        await asyncio.sleep(0)
    await closing
    outcomes = await within(batch)
    between = {count for count in seen if 0 < count < len(refs)}
    assert len(between) >= 4, seen  # ended a few hundred at a time, not all in one step
    assert all(isinstance(o.error, ClientClosedError) for o in outcomes.values())
    assert kd.stats.streams == 0


async def test_a_close_cancelled_midway_still_ends_everything(
    env: tuple[Emulator, KooDriveClient, VirtualClock],
) -> None:
    """Cancelling close() between its steps ends the rest at once; a second close() is harmless."""
    emu, kd, _clock = env
    refs = [(SHARE, emu.add_task(LONG)) for _ in range(1_000)]
    batch = asyncio.ensure_future(kd.wait_many(refs))
    while kd.stats.streams < len(refs):
        await asyncio.sleep(0)
    closing = asyncio.ensure_future(kd.close())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert kd.stats.streams == 0
    await kd.close()
    outcomes = await within(batch)
    assert all(isinstance(o.error, ClientClosedError) for o in outcomes.values())


@pytest.mark.parametrize("kind", ["wait_many", "as_completed", "watch_many"])
async def test_batches_created_but_not_started_end_when_started(
    env: tuple[Emulator, KooDriveClient, VirtualClock], kind: str
) -> None:
    """A batch made before the close and started after it delivers ClientClosedError and ends."""
    emu, kd, _ = env
    refs = [(SHARE, emu.add_task(LONG)) for _ in range(3)]
    batch = kd.as_completed(refs) if kind == "as_completed" else kd.watch_many(refs)
    waiters = [kd.wait_for_task(*ref) for ref in refs]  # for wait_many: waiters made before
    await kd.close()
    if kind == "wait_many":
        outcomes = await within(kd.wait_many(waiters))
    else:
        async with batch:
            await within(_drain(batch))
        outcomes = batch.outcomes
    assert len(outcomes) == 3
    assert all(isinstance(o.error, ClientClosedError) for o in outcomes.values())


async def _drain(batch: Any) -> None:
    async for _ in batch.events():
        pass


async def test_a_consumer_closing_the_client_inside_its_loop_ends_the_batch(
    env: tuple[Emulator, KooDriveClient, VirtualClock],
) -> None:
    """The as_completed consumer calls close() on its first outcome: the rest arrive closed, it ends."""
    emu, kd, _ = env
    refs = [(SHARE, emu.add_task(SHORT))] + [(SHARE, emu.add_task(LONG)) for _ in range(3)]
    kinds: list[str] = []

    async def consume() -> None:
        async with kd.as_completed(refs) as done:
            async for result in done:
                kinds.append(type(result.error).__name__ if result.error else "ok")
                if len(kinds) == 1:
                    await kd.close()

    await within(consume())
    assert kinds == ["ok", "ClientClosedError", "ClientClosedError", "ClientClosedError"]


async def test_close_during_a_slow_request_ends_the_wait_at_once() -> None:
    """A request in flight (a 2 s answer) is cancelled by close(): the wait ends within 0.2 s."""
    clock = VirtualClock()
    before = other_tasks()
    async with emulator(clock) as emu:
        task_id = emu.add_task(TaskScript(pending_s=0, duration_s=50, faults=(Fault.slow(2.0),)))
        kd = client_for(emu, clock, policy=QUICK)
        waiter = asyncio.ensure_future(kd.wait_for_task(SHARE, task_id).download_url())
        for _ in range(200):
            await asyncio.sleep(0.005)
            if kd.stats.in_flight:
                break
        assert kd.stats.in_flight == 1
        started = time.monotonic()
        await kd.close()
        assert isinstance(await outcome_of(waiter), ClientClosedError)
        assert time.monotonic() - started < 0.2
        await asyncio.sleep(2.1)  # the emulator's handler sleeps out its 2 s
    await settle()
    assert not (other_tasks() - before)


async def test_an_injected_session_stays_open_and_its_closing_is_a_typed_error(
    env: tuple[Emulator, KooDriveClient, VirtualClock],
) -> None:
    """close() leaves a caller's session open; a session its owner closed fails waits with ClientClosedError."""
    emu, _, clock = env
    task_id = emu.add_task(LONG)
    async with aiohttp.ClientSession() as session:
        kd = client_for(emu, clock, policy=QUICK, session=session)
        waiter = asyncio.ensure_future(kd.wait_for_task(SHARE, task_id).download_url())
        await clock.sleep(10)
        await kd.close()
        assert isinstance(await outcome_of(waiter), ClientClosedError)
        assert not session.closed
        other = client_for(emu, clock, policy=QUICK, session=session)
    # The owner closed the session under a client still in use.
    waited = await outcome_of(other.wait_for_task(SHARE, task_id).download_url())
    called = await outcome_of(other.get_share_task(SHARE, task_id))
    await other.close()
    assert isinstance(waited, ClientClosedError), repr(waited)
    assert isinstance(called, ClientClosedError), repr(called)


SCRIPT = Path(__file__).with_name("close_at_scale.py")


def run_close_at_scale(*args: str) -> dict[str, Any]:
    """Run close_at_scale.py under ``-X dev -W error``; its stderr must stay empty."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPT.parent), *sys.path])}
    result = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, "-X", "dev", "-W", "error", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == "", result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    print(report)
    return report


def test_closing_ten_thousand_waits_and_ten_batches_takes_under_a_second() -> None:
    """-X dev -W error: 10,000 waits and 10 batches (plus one not started) end in < 1 s, stderr empty."""
    report = run_close_at_scale("10000", "10", "100", "off")
    assert report["polls_before_close"] > 0
    assert report["waits_closed"] == 10_000
    assert report["batches_ended"] == 10
    assert report["batch_outcomes_closed"] == report["batch_tasks"] == 1000
    assert report["unstarted_batch_closed"]
    # CPU time, so that a parallel test run sharing the machine does not fail it; the
    # wall clock gets headroom for that sharing.
    assert report["close_cpu_s"] < 1.0
    assert report["all_ended_cpu_s"] < 1.0
    assert report["all_ended_s"] < 3.0
    assert report["leftover_tasks"] == 0


def test_closing_under_asyncio_debug_mode_leaves_nothing_behind() -> None:
    """-X dev -W error with asyncio's debug mode: no slow step, nothing unclosed or unretrieved."""
    report = run_close_at_scale("200", "10", "20", "on")
    assert report["waits_closed"] == 200
    assert report["batch_outcomes_closed"] == report["batch_tasks"] == 200
    assert report["unstarted_batch_closed"]
    assert report["all_ended_cpu_s"] < 1.0
    assert report["leftover_tasks"] == 0
