"""A client used from a second event loop raises EventLoopMismatchError, with advice.

The ways a second loop meets a client: a module-level client and repeated
``asyncio.run`` (what a CLI or a script's helper does), a waiter or a batch made in one
run and awaited in the next, a wait left running when its loop ended, and closing the
client from the next loop. Each call raises (or, in a batch, delivers)
``EventLoopMismatchError``, a ``KooDriveError`` and a ``RuntimeError`` that says what
to do, and never aiohttp's bare ``RuntimeError: Event loop is closed``; nothing hangs.
Each test drives its loops with ``asyncio.run`` itself, as a user's program would.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from rel_support import QUICK, SHARE, TOKEN, client_for, emulator

from koodrive_tasks import (
    BearerToken,
    ClientClosedError,
    EventLoopMismatchError,
    KooDriveClient,
    KooDriveError,
    TaskOutcome,
)
from koodrive_tasks.emulator import Emulator, TaskScript
from koodrive_tasks.testing import VirtualClock

LONG = TaskScript(pending_s=1, duration_s=3600)


def advice_in(error: BaseException) -> bool:
    text = str(error)
    return "create the client inside the loop that uses it" in text and "asyncio.run" in text


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    """``asyncio.run`` with a 10 s guard, so that a hang fails the test."""

    async def guarded() -> Any:
        return await asyncio.wait_for(main(), 10)

    return asyncio.run(guarded())


async def outcome_of(awaitable: Awaitable[Any]) -> Any:
    try:
        return await awaitable
    except BaseException as error:  # anything: the assertions say what is allowed
        return error


def check_mismatch(result: object) -> None:
    assert isinstance(result, EventLoopMismatchError), repr(result)
    assert isinstance(result, KooDriveError)
    assert isinstance(result, RuntimeError)
    assert advice_in(result), str(result)


class ModuleLevel:
    """A client made outside any loop, as a module-level global, and an emulator per run."""

    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.kd = KooDriveClient(
            "http://127.0.0.1:9", auth=BearerToken(TOKEN), allow_insecure_urls=True
        )
        self.task_id = ""

    async def first_run(self, emu: Emulator) -> None:
        """Bind the client to this run's loop, against the emulator (a real answer)."""
        kd = client_for(emu, self.clock, policy=QUICK)
        self.kd = kd
        self.task_id = emu.add_task(LONG)
        info = await kd.get_share_task(SHARE, self.task_id)
        assert info.task_id == self.task_id


def first_loop(
    state: ModuleLevel, extra: Callable[[KooDriveClient, str], Any] | None = None
) -> Any:
    async def main() -> Any:
        async with emulator(state.clock) as emu:
            await state.first_run(emu)
            return extra(state.kd, state.task_id) if extra is not None else None

    return run(main)


@pytest.mark.parametrize(
    "call",
    [
        "get_share_task",
        "create_share_task",
        "wait_for_task",
        "iterate",
        "wait_many",
        "as_completed",
        "watch_many",
        "async_with",
    ],
)
def test_every_call_from_a_second_asyncio_run_is_an_event_loop_mismatch(call: str) -> None:
    """A module-level client, second asyncio.run: each call raises or delivers EventLoopMismatchError."""
    state = ModuleLevel()
    first_loop(state)
    kd, task_id = state.kd, state.task_id

    async def second() -> list[object]:
        refs = [(SHARE, task_id)]
        if call == "get_share_task":
            return [await outcome_of(kd.get_share_task(SHARE, task_id))]
        if call == "create_share_task":
            return [
                await outcome_of(
                    kd.create_share_task(SHARE, ["f1"], container_id="c", zip_name="a.zip")
                )
            ]
        if call == "wait_for_task":
            return [await outcome_of(kd.wait_for_task(SHARE, task_id).download_url())]
        if call == "iterate":

            async def iterate() -> None:
                async for _ in kd.wait_for_task(SHARE, task_id):
                    pass

            return [await outcome_of(iterate())]
        if call == "async_with":

            async def enter() -> None:
                async with kd:
                    pass

            return [await outcome_of(enter())]
        if call == "wait_many":
            outcomes = await kd.wait_many(refs)
            return [o.error for o in outcomes.values()]
        batch = kd.as_completed(refs) if call == "as_completed" else kd.watch_many(refs)
        async with batch:
            async for _ in batch.events():
                pass
        return [o.error for o in batch.outcomes.values()]

    results = run(second)
    run(kd.close)  # from yet another loop: see test_closing_from_a_second_loop_is_quiet_or_typed
    assert results
    for result in results:
        check_mismatch(result)


def test_a_waiter_and_a_batch_made_in_one_run_and_awaited_in_the_next() -> None:
    """Made in the first loop, awaited in the second: EventLoopMismatchError, not a hang."""
    state = ModuleLevel()

    def make(kd: KooDriveClient, task_id: str) -> tuple[Any, Any]:
        return kd.wait_for_task(SHARE, task_id), kd.as_completed([(SHARE, task_id)])

    waiter, batch = first_loop(state, make)

    async def second() -> tuple[object, list[TaskOutcome]]:
        awaited = await outcome_of(waiter.download_url())
        delivered = []
        async with batch:
            async for result in batch:
                delivered.append(result)  # noqa: PERF401 - as it comes
        return awaited, delivered

    awaited, delivered = run(second)
    run(state.kd.close)
    check_mismatch(awaited)
    assert len(delivered) == 1
    check_mismatch(delivered[0].error)


def test_a_wait_left_running_when_its_loop_ended_does_not_trap_the_next_loop() -> None:
    """A wait still polling when asyncio.run ended: the next loop's wait on that task fails typed."""
    state = ModuleLevel()

    left: list[asyncio.Future[str]] = []

    def leave_running(kd: KooDriveClient, task_id: str) -> None:
        # asyncio.run cancels this task when the main coroutine returns.
        left.append(
            asyncio.ensure_future(kd.wait_for_task(SHARE, task_id, timeout=None).download_url())
        )

    first_loop(state, leave_running)
    kd, task_id = state.kd, state.task_id

    async def second() -> object:
        return await outcome_of(kd.wait_for_task(SHARE, task_id, timeout=None).download_url())

    result = run(second)
    run(kd.close)
    check_mismatch(result)


def test_closing_from_a_second_loop_is_quiet_or_typed() -> None:
    """close() from the next loop: no bare RuntimeError, no unclosed-session warning afterwards."""
    state = ModuleLevel()
    first_loop(state)
    kd = state.kd

    async def second() -> object:
        return await outcome_of(kd.close())

    result = run(second)
    assert result is None or isinstance(result, KooDriveError), repr(result)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert not [w for w in caught if "nclosed" in str(w.message)], [str(w.message) for w in caught]


def test_a_client_closed_by_its_first_run_says_so_in_the_next() -> None:
    """``async with`` closed the client in run one: run two gets ClientClosedError with advice."""
    state = ModuleLevel()

    async def first() -> None:
        async with emulator(state.clock) as emu:
            await state.first_run(emu)
            await state.kd.close()

    run(first)

    async def second() -> object:
        return await outcome_of(state.kd.get_share_task(SHARE, state.task_id))

    result = run(second)
    assert isinstance(result, ClientClosedError), repr(result)
    assert "create a new one" in str(result)


def test_one_client_per_run_works_every_time() -> None:
    """The advice followed: a client made inside each asyncio.run works in every run."""
    clock = VirtualClock()

    async def once() -> str:
        async with emulator(clock) as emu:
            task_id = emu.add_task(TaskScript(pending_s=0, duration_s=5))
            async with client_for(emu, clock, policy=QUICK) as kd:
                return await kd.wait_for_task(SHARE, task_id)

    for _ in range(3):
        assert run(once).startswith("http://127.0.0.1:")


def test_a_session_made_in_another_loop_is_an_event_loop_mismatch() -> None:
    """An aiohttp session made in an earlier asyncio.run, passed to a client: EventLoopMismatchError."""
    sessions: list[aiohttp.ClientSession] = []

    async def make() -> None:
        sessions.append(aiohttp.ClientSession())

    run(make)
    clock = VirtualClock()

    async def use() -> object:
        async with emulator(clock) as emu:
            kd = client_for(emu, clock, policy=QUICK, session=sessions[0], attempts=1)
            return await outcome_of(kd.get_share_task(SHARE, emu.add_task(LONG)))

    try:
        result = run(use)
    finally:
        sessions[0]._connector = None  # type: ignore[assignment]  # let it go without a warning
    check_mismatch(result)


def test_one_bearer_token_shared_by_clients_of_successive_runs() -> None:
    """A BearerToken(provider) reused by one client per asyncio.run: concurrent refreshes still work."""
    clock = VirtualClock()
    tokens = iter(["token-1", "token-2"])

    async def provider() -> str:
        await asyncio.sleep(0.01)
        return next(tokens)

    auth = BearerToken(provider)

    def once(accepted: str) -> list[object]:
        async def main() -> list[object]:
            async with emulator(clock, token=accepted) as emu:
                task_id = emu.add_task(LONG)
                async with KooDriveClient(
                    emu.url, auth=auth, allow_insecure_urls=True, clock=clock, attempts=1
                ) as kd:
                    return list(
                        await asyncio.gather(
                            *(outcome_of(kd.get_share_task(SHARE, task_id)) for _ in range(3))
                        )
                    )

        return run(main)

    # Run one: three first uses contend for the token; run two: the service moved on to
    # token-2, so three 401s contend for the refresh.
    assert all(not isinstance(r, BaseException) for r in once("token-1"))
    results = once("token-2")
    assert all(not isinstance(r, BaseException) for r in results), results
