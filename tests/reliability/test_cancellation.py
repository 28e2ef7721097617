"""Cancelling waits at random points: CancelledError propagates, nothing is left running,
and every other wait (on the same task or another) still ends correctly.

Cancel points: mid-request (a slow server), mid-sleep between polls, mid-iteration, inside
a coalesced group of waits on one task (any of them), and inside wait_many,
as_completed and watch_many. Hypothesis picks the virtual moment and the victims.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rel_support import (
    QUICK,
    SHARE,
    client_for,
    collect_resource_warnings,
    emulator,
    other_tasks,
    settle,
)

from koodrive_tasks import TaskStatus
from koodrive_tasks.emulator import Fault, TaskScript
from koodrive_tasks.testing import VirtualClock

CANCEL = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
DURATION = 600.0


def is_url_of(value: object, emu_url: str, task_id: str) -> bool:
    return isinstance(value, str) and value.startswith(f"{emu_url}/download/{task_id}.zip?")


async def expect_cancelled(task: asyncio.Task[Any]) -> None:
    """The cancelled wait raises CancelledError (not swallowed, not turned into another error)."""
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def emu_handlers_done(before: set[asyncio.Task[Any]]) -> None:
    """Wait (at most 1 s) for server-side request handlers of the emulator to finish."""
    for _ in range(100):
        busy = [
            t
            for t in other_tasks() - before
            if "RequestHandler" in repr(t.get_coro())
            and "_handle_request" in "".join(str(f) for f in t.get_stack())
        ]
        if not busy:
            return
        await asyncio.sleep(0.01)


async def check_no_leaks(before: set[asyncio.Task[Any]]) -> None:
    await settle()
    leaked = other_tasks() - before
    assert not leaked, leaked
    assert not collect_resource_warnings()


async def within(awaitable: Any, seconds: float = 5.0) -> Any:
    """Await with a real-time guard, so that a hang fails the test instead of stalling it.

    Virtual time makes a healthy wait finish in milliseconds; the guard only matters
    when a wait hangs (nobody left to poll).
    """
    try:
        return await asyncio.wait_for(asyncio.shield(awaitable), seconds)
    except asyncio.TimeoutError:
        raise AssertionError(f"hung: still waiting after {seconds} s of real time") from None


@CANCEL
@given(
    cancel_at=st.floats(min_value=0.0, max_value=DURATION * 1.1),
    size=st.integers(min_value=2, max_value=6),
    victims=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=5, unique=True),
    together=st.booleans(),
)
async def test_cancel_inside_a_coalesced_group(
    cancel_at: float, size: int, victims: list[int], together: bool
) -> None:
    """Cancelling waits of a group on one task (the first included, at once or in turn) spares the rest."""
    victims = [v for v in victims if v < size] or [0]
    clock = VirtualClock()
    before = other_tasks()
    async with emulator(clock) as emu:
        task_id = emu.add_task(TaskScript(pending_s=2, duration_s=DURATION))
        control_id = emu.add_task(TaskScript(pending_s=1, duration_s=DURATION / 2))
        async with client_for(emu, clock, policy=QUICK) as kd:
            waits = [asyncio.ensure_future(kd.wait_for_task(SHARE, task_id)) for _ in range(size)]
            control = asyncio.ensure_future(kd.wait_for_task(SHARE, control_id))
            await clock.sleep(cancel_at)
            cancelled = set()
            for index in victims:
                if waits[index].cancel():  # False: that wait had already ended
                    cancelled.add(index)
                if not together:
                    await settle(10)  # the hand-off of the lead completes before the next cancel
            for index, wait in enumerate(waits):
                if index in cancelled:
                    await expect_cancelled(wait)
                else:
                    assert is_url_of(await within(wait), emu.url, task_id)
            assert is_url_of(await within(control), emu.url, control_id)
            assert kd.stats.streams == 0  # every stream was wound up
        await check_no_leaks(before)


@pytest.mark.parametrize("when", ["same-tick", "woken-follower-cancelled"])
async def test_cancel_leader_and_follower_together_spares_the_third(when: str) -> None:
    """Cancelling the leader and a follower together still lets the third wait finish.

    Regression (from when the first wait led the polling): the hand-off of the lead once
    woke only the first idle follower, which could be the one being cancelled; the third
    wait then hung past its own timeout.
    """
    clock = VirtualClock()
    before = other_tasks()
    async with emulator(clock) as emu:
        task_id = emu.add_task(TaskScript(pending_s=2, duration_s=DURATION))
        async with client_for(emu, clock, policy=QUICK) as kd:
            waits = [
                asyncio.ensure_future(kd.wait_for_task(SHARE, task_id, timeout=900))
                for _ in range(3)
            ]
            await clock.sleep(10)  # all three share one stream
            waits[0].cancel()
            if when == "woken-follower-cancelled":
                await asyncio.sleep(0)  # the first cancellation is under way ...
            waits[1].cancel()  # ... when the second comes
            try:
                assert is_url_of(await within(waits[2]), emu.url, task_id)
            finally:
                for wait in waits:
                    wait.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
        await check_no_leaks(before)


@CANCEL
@given(cancel_at=st.floats(min_value=0.5, max_value=DURATION * 0.9))
async def test_cancel_mid_sleep_then_wait_again(cancel_at: float) -> None:
    """A wait cancelled between polls raises CancelledError; a new wait on the task completes."""
    clock = VirtualClock()
    before = other_tasks()
    async with emulator(clock) as emu:
        task_id = emu.add_task(TaskScript(pending_s=2, duration_s=DURATION))
        async with client_for(emu, clock, policy=QUICK) as kd:
            first = asyncio.ensure_future(kd.wait_for_task(SHARE, task_id))
            await clock.sleep(cancel_at)
            assert kd.stats.in_flight == 0  # between polls: the wait is asleep
            first.cancel()
            await expect_cancelled(first)
            assert is_url_of(await kd.wait_for_task(SHARE, task_id), emu.url, task_id)
        await check_no_leaks(before)


async def test_cancel_mid_request_with_a_slow_server() -> None:
    """A wait cancelled while its request is in flight raises CancelledError at once."""
    clock = VirtualClock()
    before = other_tasks()
    async with emulator(clock) as emu:
        task_id = emu.add_task(TaskScript(pending_s=0, duration_s=5, faults=(Fault.slow(0.5),)))
        other_id = emu.add_task(TaskScript(pending_s=0, duration_s=50))
        async with client_for(emu, clock, policy=QUICK, request_timeout=10.0) as kd:
            slow = asyncio.ensure_future(kd.wait_for_task(SHARE, task_id))
            other = asyncio.ensure_future(kd.wait_for_task(SHARE, other_id))
            for _ in range(200):  # until the slow request is on the wire
                await asyncio.sleep(0.005)
                if emu.stats.polls[task_id] >= 1:
                    break
            assert kd.stats.in_flight >= 1
            loop = asyncio.get_running_loop()
            started = loop.time()
            slow.cancel()
            await expect_cancelled(slow)
            assert loop.time() - started < 0.2  # did not sit out the 0.5 s answer
            assert is_url_of(await other, emu.url, other_id)
            # The same task, waited for again, still completes.
            assert is_url_of(await kd.wait_for_task(SHARE, task_id), emu.url, task_id)
            # The emulator's handler of the slow answer sleeps out its 0.5 s on the server side.
            await emu_handlers_done(before)
        await check_no_leaks(before)


@CANCEL
@given(after=st.integers(min_value=1, max_value=8))
async def test_cancel_mid_iteration(after: int) -> None:
    """Cancelling a task iterating a waiter's updates leaves an awaiting twin unaffected."""
    clock = VirtualClock()
    before = other_tasks()
    async with emulator(clock) as emu:
        task_id = emu.add_task(TaskScript(pending_s=2, duration_s=DURATION))
        async with client_for(emu, clock, policy=QUICK) as kd:
            seen: list[Any] = []
            first_seen = asyncio.Event()

            async def iterate() -> None:
                async for update in kd.wait_for_task(SHARE, task_id):
                    seen.append(update)
                    if len(seen) >= after:
                        first_seen.set()

            iterating = asyncio.ensure_future(iterate())
            twin = asyncio.ensure_future(kd.wait_for_task(SHARE, task_id))
            await first_seen.wait()
            iterating.cancel()
            await expect_cancelled(iterating)
            assert seen[-1].status is not TaskStatus.COMPLETED
            assert is_url_of(await twin, emu.url, task_id)
        await check_no_leaks(before)


@CANCEL
@given(
    cancel_at=st.floats(min_value=0.0, max_value=DURATION),
    kind=st.sampled_from(["wait_many", "as_completed", "watch_many"]),
)
async def test_cancel_inside_many(cancel_at: float, kind: str) -> None:
    """Cancelling wait_many/as_completed/watch_many cancels its workers; a parallel wait completes."""
    clock = VirtualClock()
    before = other_tasks()
    async with emulator(clock) as emu:
        ids = [
            emu.add_task(TaskScript(pending_s=1, duration_s=DURATION * (0.5 + i / 4)))
            for i in range(4)
        ]
        async with client_for(emu, clock, policy=QUICK) as kd:
            refs = [(SHARE, task_id) for task_id in ids]

            async def consume() -> None:
                if kind == "wait_many":
                    await kd.wait_many(refs)
                elif kind == "as_completed":
                    async with kd.as_completed(refs) as done:
                        async for _ in done:
                            pass
                else:
                    async with kd.watch_many(refs) as stream:
                        async for _ in stream:
                            pass

            batch = asyncio.ensure_future(consume())
            bystander = asyncio.ensure_future(kd.wait_for_task(SHARE, ids[-1]))
            await clock.sleep(cancel_at)
            batch.cancel()
            await expect_cancelled(batch)
            # The batch's waits stopped with it: only the bystander's task is still polled.
            assert kd.stats.streams <= 1  # at most the last task's stream is left
            requests = [t for t in other_tasks() if t.get_name().startswith("koodrive-poll-")]
            assert all(t.get_name().endswith(ids[-1]) for t in requests), requests
            assert is_url_of(await bystander, emu.url, ids[-1])
        await check_no_leaks(before)
