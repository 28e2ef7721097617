"""The work pool: tasks handed over time, a cap on running waits, backpressure, checkpoints."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator

import pytest

from koodrive_tasks import (
    BearerToken,
    ClientClosedError,
    InvalidArgumentError,
    KooDriveClient,
    PollPolicy,
    TaskRef,
    TaskWaiter,
    WorkPool,
)
from koodrive_tasks.emulator import Emulator, TaskScript
from koodrive_tasks.testing import VirtualClock

SHARE = "share-1"
POLICY = PollPolicy(initial_delay=1, factor=1.5, max_delay=5, timeout=3600)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def emu(clock: VirtualClock) -> AsyncIterator[Emulator]:
    async with Emulator(clock=clock, seed=1) as emulator:
        yield emulator


@pytest.fixture
async def kd(emu: Emulator, clock: VirtualClock) -> AsyncIterator[KooDriveClient]:
    async with KooDriveClient(
        emu.url, auth=BearerToken(emu.token), allow_insecure_urls=True, clock=clock, policy=POLICY
    ) as client:
        yield client


def add_tasks(emu: Emulator, durations: list[float]) -> list[TaskRef]:
    return [
        TaskRef(SHARE, emu.add_task(TaskScript(pending_s=0, duration_s=d), share_id=SHARE))
        for d in durations
    ]


async def test_runs_at_most_max_waits_at_once_and_yields_every_outcome(
    emu: Emulator, kd: KooDriveClient, clock: VirtualClock
) -> None:
    """Twelve tasks through a pool of 3: never more than 3 polled at once, 12 outcomes."""
    refs = add_tasks(emu, [10 + i for i in range(12)])
    most = 0

    async def watch_streams() -> None:
        nonlocal most
        while True:
            most = max(most, kd.stats.streams)
            await clock.sleep(0.5)

    watcher = asyncio.ensure_future(watch_streams())
    async with kd.pool(3) as pool:

        async def produce() -> None:
            for ref in refs:
                await pool.submit(ref)
            pool.finish()

        producer = asyncio.ensure_future(produce())
        outcomes = [outcome async for outcome in pool]
        await producer
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert sorted(o.ref.task_id for o in outcomes) == sorted(r.task_id for r in refs)
    assert all(o.ok and o.download_url for o in outcomes)
    assert 1 <= most <= 3


async def test_submit_waits_while_the_pool_is_full(
    emu: Emulator, kd: KooDriveClient, clock: VirtualClock
) -> None:
    """max_waits=2, max_queued=1: a fourth task waits until an outcome has been read."""
    refs = add_tasks(emu, [5, 5, 5, 5])
    async with kd.pool(2, max_queued=1) as pool:
        for ref in refs[:3]:
            await pool.submit(ref)
        fourth = asyncio.ensure_future(pool.submit(refs[3]))
        await clock.sleep(60)  # every running task has ended; nobody read an outcome
        assert not fourth.done()
        first = await pool.__anext__()
        await asyncio.sleep(0)
        assert fourth.done()
        await fourth
        pool.finish()
        rest = [outcome async for outcome in pool]
    assert {first.ref, *(o.ref for o in rest)} == set(refs)


async def test_finish_ends_iteration_after_the_last_outcome(
    emu: Emulator, kd: KooDriveClient
) -> None:
    """Without finish() the pool waits for more; after it, iteration ends when all is read."""
    (ref,) = add_tasks(emu, [3])
    async with kd.pool(4) as pool:
        await pool.submit(ref)
        outcome = await pool.__anext__()
        assert outcome.ref == ref
        pending = asyncio.ensure_future(pool.__anext__())
        await asyncio.sleep(0.01)
        assert not pending.done()  # more tasks may still come
        pool.finish()
        with pytest.raises(StopAsyncIteration):
            await pending
        with pytest.raises(InvalidArgumentError, match="finished"):
            await pool.submit(add_tasks(emu, [1])[0])


async def test_bad_input_is_refused_before_it_takes_room(kd: KooDriveClient) -> None:
    """An invalid task or bound is an InvalidArgumentError; the pool holds nothing after."""
    with pytest.raises(InvalidArgumentError):
        kd.pool(0)
    with pytest.raises(InvalidArgumentError):
        kd.pool(2, max_queued=-1)
    async with kd.pool(2) as pool:
        with pytest.raises(InvalidArgumentError):
            await pool.submit(("s", ""))
        with pytest.raises(InvalidArgumentError):
            await pool.submit("not a ref")  # type: ignore[arg-type]
        assert len(pool) == 0


async def test_the_same_task_twice_is_waited_for_once(emu: Emulator, kd: KooDriveClient) -> None:
    """Submitting a task the pool already has adds nothing."""
    (ref,) = add_tasks(emu, [2])
    async with kd.pool(2) as pool:
        await pool.submit(ref)
        await pool.submit((ref.share_id, ref.task_id))
        pool.finish()
        outcomes = [o async for o in pool]
    assert [o.ref for o in outcomes] == [ref]


async def test_closing_the_client_ends_running_and_queued_tasks(
    emu: Emulator, kd: KooDriveClient, clock: VirtualClock
) -> None:
    """close(): every task not ended yet is delivered with ClientClosedError; submit refuses."""
    refs = add_tasks(emu, [1000, 1000, 1000, 1000])
    pool = kd.pool(2)
    for ref in refs:
        await pool.submit(ref)
    await clock.sleep(5)
    await kd.close()
    outcomes = [o async for o in pool]
    assert {o.ref for o in outcomes} == set(refs)
    assert all(isinstance(o.error, ClientClosedError) for o in outcomes)
    with pytest.raises(ClientClosedError):
        await pool.submit(refs[0])


async def test_a_checkpoint_holds_running_and_queued_tasks(
    emu: Emulator, kd: KooDriveClient, clock: VirtualClock
) -> None:
    """Of 6 tasks in a pool of 2, none read yet: the checkpoint holds all 6; resumed, all end."""
    refs = add_tasks(emu, [100, 200, 300, 400, 500, 600])
    async with kd.pool(2, max_queued=10) as pool:
        for ref in refs:
            await pool.submit(ref)
        await clock.sleep(10)
        token = kd.checkpoint([pool])
    waiters = kd.resume(token)
    assert {w.ref for w in waiters} == set(refs)
    async with kd.pool(2, max_queued=4) as again:
        for waiter in waiters:
            await again.submit(waiter)
        again.finish()
        outcomes = [o async for o in again]
    assert {o.ref for o in outcomes} == set(refs)
    assert all(o.ok for o in outcomes)


async def test_a_checkpoint_skips_outcomes_already_read(emu: Emulator, kd: KooDriveClient) -> None:
    """Outcomes the consumer has read are not in the checkpoint; the others are."""
    refs = add_tasks(emu, [5, 500])
    async with kd.pool(2) as pool:
        for ref in refs:
            await pool.submit(ref)
        first = await pool.__anext__()
        token = kd.checkpoint([pool])
    assert first.ref == refs[0]
    assert [w.ref for w in kd.resume(token)] == [refs[1]]


async def test_random_checkpoints_with_an_idempotent_consumer_give_each_outcome_once(
    clock: VirtualClock,
) -> None:
    """The README's recipe: record outcomes keyed by task id, checkpoint at any moment,
    restart from the checkpoint: every task's outcome is recorded exactly once."""
    rng = random.Random(7)
    recorded: dict[str, int] = {}
    submitted: list[TaskRef] = []

    async def produce(pool: WorkPool, todo: list[TaskRef | TaskWaiter]) -> None:
        for task in todo:
            await pool.submit(task)
            submitted.append(task.ref if isinstance(task, TaskWaiter) else task)
        pool.finish()

    async def consume(pool: WorkPool) -> None:
        async for outcome in pool:
            recorded[outcome.ref.task_id] = recorded.get(outcome.ref.task_id, 0) + 1

    async with Emulator(clock=clock, seed=2) as emu:
        refs = [
            TaskRef(SHARE, emu.add_task(TaskScript(pending_s=0, duration_s=rng.uniform(1, 60))))
            for _ in range(40)
        ]
        token = ""
        unsubmitted = list(refs)
        for _ in range(30):  # runs of the worker, each stopped at a random moment
            async with KooDriveClient(
                emu.url,
                auth=BearerToken(emu.token),
                allow_insecure_urls=True,
                clock=clock,
                policy=POLICY,
            ) as kd:
                todo = [*(kd.resume(token) if token else []), *unsubmitted]
                submitted.clear()
                async with kd.pool(5) as pool:
                    workers = [
                        asyncio.ensure_future(produce(pool, todo)),
                        asyncio.ensure_future(consume(pool)),
                    ]
                    await clock.sleep(rng.uniform(0, 15))  # SIGTERM comes at a random moment
                    for worker in workers:
                        worker.cancel()
                    await asyncio.gather(*workers, return_exceptions=True)
                    token = kd.checkpoint([pool])  # what the pool held and did not deliver
            # ... and what never reached the pool stays with the producer.
            unsubmitted = [
                task.ref if isinstance(task, TaskWaiter) else task
                for task in todo[len(submitted) :]
            ]
            if not unsubmitted and not json.loads(token)["waits"]:
                break
    assert set(recorded) == {r.task_id for r in refs}
    assert all(count == 1 for count in recorded.values()), recorded


async def test_a_waiter_of_another_client_is_refused(emu: Emulator, kd: KooDriveClient) -> None:
    """A resumed waiter belongs to the client that resumed it; another client refuses it."""
    (ref,) = add_tasks(emu, [5])
    token = kd.checkpoint([kd.wait_for_task(ref.share_id, ref.task_id)])
    async with KooDriveClient(
        emu.url, auth=BearerToken(emu.token), allow_insecure_urls=True
    ) as other:
        (waiter,) = other.resume(token)
    with pytest.raises(InvalidArgumentError, match="another KooDriveClient"):
        await kd.wait_many([waiter])
    async with kd.pool(1) as pool:
        with pytest.raises(InvalidArgumentError, match="another KooDriveClient"):
            await pool.submit(waiter)


async def test_a_wait_started_after_close_ends_at_once(emu: Emulator, kd: KooDriveClient) -> None:
    """A waiter made before close() and awaited after it raises ClientClosedError, not hangs."""
    (ref,) = add_tasks(emu, [5])
    waiter = kd.wait_for_task(ref.share_id, ref.task_id)
    await kd.close()
    with pytest.raises(ClientClosedError):
        await asyncio.wait_for(waiter.final_info(), 5)
