"""The resume recipe: a checkpoint at any moment plus a resume yields each outcome exactly once.

The recipe (README, "Resuming"): the consumer records each outcome keyed by task id as
soon as it receives it (before its next await); the worker saves ``checkpoint()``
whenever it likes; after a crash it resumes from the last saved checkpoint. Delivery
is at least once: a task whose outcome was delivered after the last save comes again,
and the keyed record absorbs it.

Each run (a seed) waits for tasks of every ending (completed, partially failed, failed,
canceled) on the emulator in virtual time, for single waiters (``await waiter`` and
``waiter.outcome()``) or one ``as_completed`` batch. At random moments (at every depth
of the callback cascade after an answer, and at random virtual times between polls)
it takes a checkpoint, checks that it holds exactly the waits not delivered yet, and
may save it; at other random moments the "process" dies (nothing it does afterwards
counts), and a new client resumes from the last saved checkpoint. In the end every
task is recorded once, with its true ending, and a task was delivered more than once
only when it had been delivered after the checkpoint a crash resumed from.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import attrs
import pytest
from rel_support import QUICK, SHARE, client_for, emulator

from koodrive_tasks import (
    KooDriveClient,
    KooDriveError,
    RequestEvent,
    TaskCanceledError,
    TaskFailedError,
    TaskStatus,
    TaskWaiter,
)
from koodrive_tasks.emulator import Emulator, Outcome, TaskScript
from koodrive_tasks.testing import VirtualClock

SEEDS = range(8)
TASKS = 10
MAX_ROUNDS = 60


def scripts(rng: random.Random) -> list[TaskScript]:
    out = []
    for i in range(TASKS):
        ending = i % 4
        out.append(
            TaskScript(
                pending_s=rng.uniform(0, 5),
                duration_s=rng.uniform(5, 300),
                outcome=Outcome.ALL_FAILED
                if ending == 2
                else (Outcome.PARTIALLY_FAILED if ending == 1 else Outcome.ALL_SUCCEEDED),
                cancel_after_s=rng.uniform(3, 150) if ending == 3 else None,
            )
        )
    return out


def kind_of_error(error: KooDriveError) -> str:
    if isinstance(error, TaskFailedError):
        return "failed"
    if isinstance(error, TaskCanceledError):
        return "canceled"
    return f"unexpected {type(error).__name__}"


@attrs.define
class Run:
    """One seed's bookkeeping across crashes."""

    rng: random.Random
    record: dict[str, str] = attrs.Factory(dict)  # the idempotent consumer's store
    deliveries: Counter[str] = attrs.Factory(Counter)
    redelivery_allowed: set[str] = attrs.Factory(set)
    checkpoints: int = 0
    crashes: int = 0
    # What went wrong inside callbacks and hooks, where an exception would only be logged.
    failures: list[BaseException] = attrs.Factory(list)
    # Per round:
    crashed: bool = False
    delivered_now: set[str] = attrs.Factory(set)
    delivered_since_save: set[str] = attrs.Factory(set)
    saved: str = ""

    def deliver(self, task_id: str, kind: str) -> None:
        """The consumer received an outcome: record it (keyed), unless the process is dead."""
        if self.crashed:
            return
        self.deliveries[task_id] += 1
        if task_id in self.record:
            assert task_id in self.redelivery_allowed, f"{task_id} delivered twice without a crash"
            assert self.record[task_id] == kind, (task_id, self.record[task_id], kind)
        self.record[task_id] = kind
        self.delivered_now.add(task_id)
        self.delivered_since_save.add(task_id)


class Chaos:
    """Takes checkpoints and crashes the process at random moments of one round."""

    def __init__(self, run: Run, kd: KooDriveClient, items: list[Any], ids: set[str]) -> None:
        self.run = run
        self.kd = kd
        self.items = items
        self.ids = ids  # the tasks this round waits for
        self.crash_event = asyncio.Event()

    def moment(self) -> None:
        """Any moment: maybe checkpoint (checked for exactness), maybe save it, maybe crash."""
        try:
            self._moment()
        except BaseException as error:  # a hook or callback would only log it
            self.run.failures.append(error)
            raise

    def _moment(self) -> None:
        run = self.run
        if run.crashed:
            return
        rng = run.rng
        if rng.random() < 0.5:
            token = self.kd.checkpoint(self.items)
            held = {w.task_id for w in self.kd.resume(token)}
            assert held == self.ids - run.delivered_now, "a checkpoint that is not exact"
            run.checkpoints += 1
            if rng.random() < 0.5:
                run.saved = token
                run.delivered_since_save = set()
        if rng.random() < 0.06:
            run.crashed = True
            run.crashes += 1
            # Resuming from the saved checkpoint delivers these again: that is allowed.
            run.redelivery_allowed |= run.delivered_since_save
            self.crash_event.set()

    def on_request(self, event: RequestEvent) -> None:
        """After an answer: a moment at a random depth of the callback cascade that follows."""
        loop = asyncio.get_running_loop()
        depth = self.run.rng.randint(0, 6)

        def step(left: int) -> None:
            if left:
                loop.call_soon(step, left - 1)
            else:
                self.moment()

        step(depth)

    async def between_polls(self, clock: VirtualClock) -> None:
        """Moments at random virtual times."""
        while not self.run.crashed:
            await clock.sleep(self.run.rng.uniform(0, 20))
            self.moment()


async def one_round(
    emu: Emulator, clock: VirtualClock, run: Run, mode: str, task_ids: list[str] | None
) -> bool:
    """Run until every wait of this round delivered (True) or the process crashed (False).

    The first round (``task_ids`` given) starts the waits; later ones resume the saved
    checkpoint with a new client.
    """
    run.crashed = False
    run.delivered_now = set()
    run.delivered_since_save = set()
    hook_box: list[Chaos] = []
    kd = client_for(
        emu,
        clock,
        policy=QUICK,
        on_request=lambda e: hook_box[0].on_request(e) if hook_box else None,
    )
    if task_ids is not None:  # the first round
        waiters = [kd.wait_for_task(SHARE, t) for t in task_ids]
        run.saved = kd.checkpoint(waiters)  # the worker saves its work list before it starts
    else:
        waiters = kd.resume(run.saved)
    ids = {w.task_id for w in waiters}
    consumers: list[asyncio.Task[Any]] = []
    if mode == "waiters":
        items: list[Any] = list(waiters)
        chaos = Chaos(run, kd, items, ids)

        async def consume(waiter: TaskWaiter, by_await: bool) -> None:
            if by_await:
                try:
                    await waiter
                except KooDriveError as error:
                    run.deliver(waiter.task_id, kind_of_error(error))
                else:
                    run.deliver(waiter.task_id, "url")
            else:
                result = await waiter.outcome()
                run.deliver(waiter.task_id, outcome_kind(result))

        consumers = [asyncio.ensure_future(consume(w, i % 2 == 0)) for i, w in enumerate(waiters)]
    else:
        batch = kd.as_completed(waiters)
        items = [batch]
        chaos = Chaos(run, kd, items, ids)

        async def consume_batch() -> None:
            async with batch:
                async for result in batch:
                    run.deliver(result.ref.task_id, outcome_kind(result))

        consumers = [asyncio.ensure_future(consume_batch())]
    hook_box.append(chaos)
    ticker = asyncio.ensure_future(chaos.between_polls(clock))
    crashed = asyncio.ensure_future(chaos.crash_event.wait())
    everything = asyncio.gather(*consumers)
    try:
        await asyncio.wait_for(
            asyncio.wait([everything, crashed], return_when=asyncio.FIRST_COMPLETED), 20
        )
    finally:
        ended = everything.done() and not run.crashed
        run.crashed = True  # the process is gone: nothing it does from here on counts
        for task in (*consumers, ticker, crashed):
            task.cancel()
        await asyncio.gather(everything, ticker, crashed, return_exceptions=True)
        await kd.close()
    if ended:
        assert ids <= set(run.record)
    return ended


def outcome_kind(result: Any) -> str:
    if result.error is not None:
        return kind_of_error(result.error)
    return "url"


async def truth(emu: Emulator, clock: VirtualClock, ids: list[str]) -> dict[str, str]:
    async with client_for(emu, clock, policy=QUICK) as kd:
        infos = [await kd.get_share_task(SHARE, t) for t in ids]
    out = {}
    for info in infos:
        assert info.status.is_terminal
        if info.status is TaskStatus.CANCELED:
            out[info.task_id] = "canceled"
        elif info.download_url:
            out[info.task_id] = "url"
        else:
            out[info.task_id] = "failed"
    return out


@pytest.mark.parametrize("mode", ["waiters", "as_completed"])
async def test_checkpoints_at_random_moments_and_resumes_deliver_each_outcome_exactly_once(
    mode: str,
) -> None:
    """Checkpoint at random moments, crash at random moments, resume: every task recorded once, truly."""
    totals = Counter[str]()
    for seed in SEEDS:
        run = Run(random.Random(seed * 2 + (mode == "as_completed")))
        clock = VirtualClock()
        async with emulator(clock) as emu:
            ids = [emu.add_task(s) for s in scripts(run.rng)]
            rounds = 0
            while not await one_round(emu, clock, run, mode, ids if rounds == 0 else None):
                rounds += 1
                assert rounds < MAX_ROUNDS, "the work never finished"
            expected = await truth(emu, clock, ids)
        assert not run.failures, run.failures[:3]
        assert run.record == expected, seed
        for task_id, count in run.deliveries.items():
            assert count == 1 or task_id in run.redelivery_allowed, (seed, task_id, count)
        totals.update(
            crashes=run.crashes,
            checkpoints=run.checkpoints,
            redelivered=sum(c - 1 for c in run.deliveries.values()),
        )
    print(dict(totals))
    # The runs did crash, checkpoint and redeliver: the property was exercised.
    assert totals["crashes"] >= len(SEEDS)
    assert totals["checkpoints"] >= 10 * len(SEEDS)
    assert totals["redelivered"] > 0
