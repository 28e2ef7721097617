"""Cancellation wins: a task being cancelled never receives an outcome it would then lose.

Once the task awaiting a waiter (or iterating a batch) is asked to cancel, it gets
``CancelledError`` and the outcome stays undelivered: ``delivered`` is false and
``checkpoint()`` still holds the wait. Otherwise the outcome was handed over, in the
same step as the caller recorded it, and no checkpoint holds it. Checked with the
cancel arriving at every depth of the callback cascade after a poll's answer (the
same tick as the result included), from a signal handler running inside the task at
the moment the result is judged, and from a signal handler the loop runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from rel_support import QUICK, SHARE, client_for, emulator

from koodrive_tasks import KooDriveClient, RequestEvent, TaskOutcome, TaskWaiter
from koodrive_tasks.emulator import Emulator, Outcome, TaskScript
from koodrive_tasks.testing import VirtualClock

SHORT = TaskScript(pending_s=0, duration_s=6)
TRIALS = 60


def checkpointed_ids(kd: KooDriveClient, items: list[Any]) -> set[str]:
    """The task ids a checkpoint of ``items`` holds (read back through resume())."""
    return {w.task_id for w in kd.resume(kd.checkpoint(items))}


def cancel_later(task: asyncio.Task[Any], depth: int) -> None:
    """Cancel ``task`` after ``depth`` rounds of callbacks (0: right now)."""
    loop = asyncio.get_running_loop()

    def step(left: int) -> None:
        if left == 0:
            task.cancel()
        else:
            loop.call_soon(step, left - 1)

    step(depth)


class CancelOnRequest:
    """An ``on_request`` hook that cancels a consumer after the n-th answer, ``depth`` rounds later."""

    def __init__(self, nth: int, depth: int) -> None:
        self.nth = nth
        self.depth = depth
        self.seen = 0
        self.consumer: asyncio.Task[Any] | None = None

    def __call__(self, event: RequestEvent) -> None:
        self.seen += 1
        if self.seen == self.nth and self.consumer is not None:
            cancel_later(self.consumer, self.depth)


def trials(seed: int, answers: int) -> Iterator[tuple[int, int]]:
    """(n-th answer, depth) pairs: every answer of a run, every depth of its cascade."""
    rng = random.Random(seed)
    for _ in range(TRIALS):
        yield rng.randint(1, answers), rng.randint(0, 8)


@pytest.mark.parametrize("api", ["await", "final_info", "outcome", "iterate"])
async def test_a_waiter_never_hands_an_outcome_to_a_task_being_cancelled(api: str) -> None:
    """Cancel at any depth after any answer: recorded and delivered, or CancelledError and checkpointed."""
    outcomes = {"delivered": 0, "cancelled": 0}
    for nth, depth in trials(len(api), answers=7):
        clock = VirtualClock()
        hook = CancelOnRequest(nth, depth)
        async with emulator(clock) as emu:
            task_id = emu.add_task(SHORT)
            async with client_for(emu, clock, policy=QUICK, on_request=hook) as kd:
                waiter = kd.wait_for_task(SHARE, task_id)
                recorded: list[object] = []

                async def consume(
                    waiter: TaskWaiter = waiter, recorded: list[object] = recorded
                ) -> None:
                    if api == "await":
                        recorded.append(await waiter)
                    elif api == "final_info":
                        recorded.append(await waiter.final_info())
                    elif api == "outcome":
                        recorded.append(await waiter.outcome())
                    else:
                        async for update in waiter:
                            if update.status.is_terminal:
                                recorded.append(update)  # noqa: PERF401 - as it comes
                    await asyncio.sleep(0)  # a late cancel still lands, after the record

                consumer = hook.consumer = asyncio.ensure_future(consume())
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(consumer), 5)
                assert consumer.done()
                if waiter.delivered:
                    assert len(recorded) == 1, (nth, depth)
                    assert task_id not in checkpointed_ids(kd, [waiter])
                    outcomes["delivered"] += 1
                else:
                    assert consumer.cancelled(), (nth, depth)
                    assert recorded == [], (nth, depth, recorded)
                    assert checkpointed_ids(kd, [waiter]) == {task_id}
                    outcomes["cancelled"] += 1
                    # Awaited again, by a task nobody cancels, it delivers the outcome.
                    again = await asyncio.wait_for(waiter.outcome(), 5)
                    assert again.ok
                    assert waiter.delivered
                    assert checkpointed_ids(kd, [waiter]) == set()
    # The trials reach both sides of the race.
    assert outcomes["delivered"] > 5, outcomes
    assert outcomes["cancelled"] > 5, outcomes


async def test_an_as_completed_batch_never_yields_to_a_consumer_being_cancelled() -> None:
    """Cancel the consumer at any depth after any answer: each outcome recorded once or still checkpointed."""
    seen_cancelled = seen_partial = 0
    for nth, depth in trials(7, answers=16):
        clock = VirtualClock()
        hook = CancelOnRequest(nth, depth)
        async with emulator(clock) as emu:
            ids = [emu.add_task(TaskScript(pending_s=0, duration_s=2 + 2 * i)) for i in range(3)]
            async with client_for(emu, clock, policy=QUICK, on_request=hook) as kd:
                batch = kd.as_completed([(SHARE, t) for t in ids])
                recorded: dict[str, TaskOutcome] = {}

                async def consume(
                    batch: Any = batch, recorded: dict[str, TaskOutcome] = recorded
                ) -> None:
                    async for result in batch:
                        assert result.ref.task_id not in recorded
                        recorded[result.ref.task_id] = result
                        await asyncio.sleep(0)

                consumer = hook.consumer = asyncio.ensure_future(consume())
                try:
                    await asyncio.wait_for(asyncio.shield(consumer), 5)
                except asyncio.CancelledError:
                    seen_cancelled += 1
                await batch.aclose()
                assert checkpointed_ids(kd, [batch]) == set(ids) - set(recorded), (nth, depth)
                assert set(batch.pending) == {r for r in batch.refs if r.task_id not in recorded}
                seen_partial += 0 < len(recorded) < len(ids)
    assert seen_cancelled > 5, seen_cancelled
    assert seen_partial > 5, seen_partial


@pytest.fixture
def sigusr1() -> Iterator[list[asyncio.Task[Any]]]:
    """A Python-level SIGUSR1 handler that cancels the task running when it fires."""
    victims: list[asyncio.Task[Any]] = []

    def handler(signum: int, frame: object) -> None:
        task = asyncio.current_task()
        assert task is not None
        victims.append(task)
        task.cancel()

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        yield victims
    finally:
        signal.signal(signal.SIGUSR1, previous)


class SignalOnPartial(logging.Handler):
    """Raises SIGUSR1 when the client logs a partially failed task: inside the awaiting task,
    after the final answer is in and before the outcome is handed over."""

    def emit(self, record: logging.LogRecord) -> None:
        if "some files failed" in record.getMessage():
            signal.raise_signal(signal.SIGUSR1)


async def judged_then_cancelled(
    kd: KooDriveClient, emu: Emulator, victims: list[asyncio.Task[Any]], count: int
) -> list[TaskWaiter]:
    """Waiters whose task ended and whose awaiting task was cancelled as the result was judged.

    Each task ends partially failed, so the client logs a warning inside the awaiting
    task, after the final answer is in and before the outcome is handed over: a
    logging handler raises SIGUSR1 there, and the Python-level handler cancels that
    task. The waiters are left done and undelivered.
    """
    handler = SignalOnPartial(logging.WARNING)
    log = logging.getLogger("koodrive_tasks")
    log.addHandler(handler)
    try:
        script = TaskScript(pending_s=0, duration_s=4, outcome=Outcome.PARTIALLY_FAILED)
        waiters = [
            kd.wait_for_task(SHARE, emu.add_task(script, file_ids=("f1", "f2", "f3")))
            for _ in range(count)
        ]
        consumers = [asyncio.ensure_future(w.final_info()) for w in waiters]
        results = await asyncio.wait_for(asyncio.gather(*consumers, return_exceptions=True), 5)
    finally:
        log.removeHandler(handler)
    assert all(isinstance(r, asyncio.CancelledError) for r in results), results
    assert sorted(map(id, victims)) == sorted(map(id, consumers))
    for waiter in waiters:
        assert waiter.done
        assert not waiter.delivered
    return waiters


async def test_a_signal_handler_cancelling_the_awaiting_task_wins_over_its_result(
    sigusr1: list[asyncio.Task[Any]],
) -> None:
    """A cancel from a signal handler inside the awaiting task (as the result is judged, or
    before an await of a done wait, or its own cancel()): CancelledError, still checkpointed."""
    clock = VirtualClock()
    async with emulator(clock) as emu, client_for(emu, clock, policy=QUICK) as kd:
        (waiter,) = await judged_then_cancelled(kd, emu, sigusr1, 1)
        assert checkpointed_ids(kd, [waiter]) == {waiter.task_id}

        async def by_signal() -> object:
            signal.raise_signal(signal.SIGUSR1)  # the handler runs here, inside this task
            return await waiter

        async def by_itself() -> object:
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            return await waiter.outcome()

        for make in (by_signal, by_itself):
            task = asyncio.ensure_future(make())
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not waiter.delivered
            assert checkpointed_ids(kd, [waiter]) == {waiter.task_id}
        info = await waiter.final_info()  # a task nobody cancels gets it
        assert info.task_id == waiter.task_id
        assert waiter.delivered
        assert checkpointed_ids(kd, [waiter]) == set()


async def test_a_signal_handler_cancelling_a_batch_consumer_wins_over_queued_outcomes(
    sigusr1: list[asyncio.Task[Any]],
) -> None:
    """An as_completed consumer cancelled in-task after its first outcome: the queued ones stay
    undelivered and checkpointed; resumed, they arrive, each task recorded exactly once."""
    clock = VirtualClock()
    async with emulator(clock) as emu, client_for(emu, clock, policy=QUICK) as kd:
        waiters = await judged_then_cancelled(kd, emu, sigusr1, 3)
        sigusr1.clear()
        recorded: dict[str, TaskOutcome] = {}
        batch = kd.as_completed(waiters)  # every outcome is queued as soon as it starts

        async def consume(batch: Any) -> None:
            async for result in batch:
                assert result.ref.task_id not in recorded
                recorded[result.ref.task_id] = result
                signal.raise_signal(signal.SIGUSR1)  # cancels this task, here

        consumer = asyncio.ensure_future(consume(batch))
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert len(recorded) == 1
        left = {w.task_id for w in waiters} - set(recorded)
        assert checkpointed_ids(kd, [batch]) == left
        await batch.aclose()
        resumed = kd.as_completed(kd.resume(kd.checkpoint([batch])))
        async with resumed:
            async for result in resumed:
                assert result.ref.task_id not in recorded
                recorded[result.ref.task_id] = result
        assert set(recorded) == {w.task_id for w in waiters}
        assert all(r.ok for r in recorded.values())


async def test_a_loop_signal_handler_cancelling_a_waiting_worker_loses_nothing() -> None:
    """A worker cancelled from loop.add_signal_handler mid-run: every outcome recorded or checkpointed."""
    clock = VirtualClock()
    loop = asyncio.get_running_loop()
    async with emulator(clock) as emu:
        ids = [emu.add_task(TaskScript(pending_s=0, duration_s=1 + i)) for i in range(20)]
        async with client_for(emu, clock, policy=QUICK) as kd:
            waiters = [kd.wait_for_task(SHARE, t) for t in ids]
            recorded: dict[str, object] = {}

            async def worker(waiter: TaskWaiter) -> None:
                recorded[waiter.task_id] = await waiter

            workers = [asyncio.ensure_future(worker(w)) for w in waiters]
            loop.add_signal_handler(signal.SIGUSR2, lambda: [w.cancel() for w in workers])
            try:
                await clock.sleep(9.5)
                signal.raise_signal(signal.SIGUSR2)
                await asyncio.gather(*workers, return_exceptions=True)
            finally:
                loop.remove_signal_handler(signal.SIGUSR2)
            assert 0 < len(recorded) < len(ids)
            assert checkpointed_ids(kd, waiters) == set(ids) - set(recorded)
            for waiter in waiters:
                assert waiter.delivered == (waiter.task_id in recorded)
