"""KooDriveClient in fleet mode: clients sharing one coordinator namespace share polls, rate, pause."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from koodrive_tasks import KooDriveClient, Limits, TaskRef
from koodrive_tasks.emulator import Emulator, Fault, TaskScript
from koodrive_tasks.fleet import RedisCoordinator

SHARE = "share-1"


async def test_two_clients_waiting_on_one_task_share_its_polls(
    emu: Emulator, make_client: Callable[..., KooDriveClient]
) -> None:
    """Both waits get the URL; the task is polled about as often as by one client alone."""
    task_id = emu.add_task(TaskScript(pending_s=0, duration_s=2.0), share_id=SHARE)
    async with make_client() as a, make_client() as b:
        urls = await asyncio.gather(
            a.wait_for_task(SHARE, task_id), b.wait_for_task(SHARE, task_id)
        )
    assert urls[0] == urls[1]
    polls = emu.stats.polls[task_id]
    alone = emu.add_task(TaskScript(pending_s=0, duration_s=2.0), share_id=SHARE)
    before = emu.stats.detail_polls
    async with make_client() as c:
        await c.wait_for_task(SHARE, alone)
    single = emu.stats.detail_polls - before
    assert polls <= single * 1.3 + 2, (polls, single)


async def test_a_late_joiner_sees_the_latest_observation_at_once(
    emu: Emulator, make_client: Callable[..., KooDriveClient]
) -> None:
    """A second client joining a task the first one polls gets its progress without polling.

    At once what the holder stored at its last claim (one poll old while nobody else
    listened), then, a round trip later, what it saw last (the join tells it).
    """
    task_id = emu.add_task(TaskScript(pending_s=0, duration_s=20.0), share_id=SHARE)
    async with make_client() as a, make_client() as b:
        first = a.wait_for_task(SHARE, task_id)
        async for update in first:
            if update.progress >= 5:
                break
        seen = update.progress
        polls_before = emu.stats.polls[task_id]
        late = b.wait_for_task(SHARE, task_id)
        update = await asyncio.wait_for(late.__anext__(), 0.5)
        assert update.progress > 0
        while update.progress < seen:
            update = await asyncio.wait_for(late.__anext__(), 0.5)
        assert emu.stats.polls[task_id] - polls_before <= 2  # b did not start polling it


async def test_a_task_nobody_else_waits_on_costs_one_round_trip_per_poll(
    emu: Emulator,
    make_coordinator: Callable[..., RedisCoordinator],
    make_client: Callable[..., KooDriveClient],
) -> None:
    """Alone on a task, the holder stores each change with its next claim: no publish of its own."""
    task_id = emu.add_task(TaskScript(pending_s=0, duration_s=2.0), share_id=SHARE)
    coordinator = make_coordinator(lease_ttl=0.5)
    async with make_client(coordinator=coordinator) as kd:
        await kd.wait_for_task(SHARE, task_id)
        polls = kd.stats.polls
    stats = coordinator.stats
    assert polls >= 4
    # One claim per poll; joining, counting the fleet and the final observation cost one
    # each, and a script's first use on the server one more (it is sent in full).
    overhead = stats.heartbeats + stats.scripts_sent + 3
    assert stats.round_trips - overhead <= polls, (stats, polls)
    assert stats.round_trips - overhead >= polls - 1  # not a claim per poll: broken counting


async def test_the_rate_limit_holds_for_the_fleet(
    emu: Emulator, make_client: Callable[..., KooDriveClient]
) -> None:
    """Two clients, Limits(rate=5) each: the server sees about 5 requests/s in all, not 10."""
    ids = [
        emu.add_task(TaskScript(pending_s=0, duration_s=60.0), share_id=SHARE) for _ in range(20)
    ]
    limits = Limits(rate=5, burst=1)
    async with make_client(limits=limits) as a, make_client(limits=limits) as b:
        waits = [
            asyncio.ensure_future(kd.wait_for_task(SHARE, task_id).final_info())
            for kd, task_id in zip([a, b] * 10, ids, strict=True)
        ]
        await asyncio.sleep(0.5)
        before, started = emu.stats.detail_polls, time.monotonic()
        await asyncio.sleep(3.0)
        rate = (emu.stats.detail_polls - before) / (time.monotonic() - started)
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    assert 3.5 <= rate <= 6.5, rate


async def test_a_429_pauses_every_client_of_the_fleet(
    emu: Emulator, make_client: Callable[..., KooDriveClient]
) -> None:
    """One client meets a 429 with Retry-After 2: the other sends nothing during the pause."""
    throttled = emu.add_task(
        TaskScript(pending_s=0, duration_s=30.0, faults=(Fault.throttle(retry_after_s=2),)),
        share_id=SHARE,
    )
    other = emu.add_task(TaskScript(pending_s=0, duration_s=30.0), share_id=SHARE)
    sent: list[tuple[str, float]] = []
    async with (
        make_client(on_request=lambda e: sent.append(("a", time.monotonic()))) as a,
        make_client(on_request=lambda e: sent.append(("b", time.monotonic()))) as b,
    ):
        first = asyncio.ensure_future(a.wait_for_task(SHARE, throttled).final_info())
        await asyncio.sleep(0.3)
        paused_at = time.monotonic()
        second = asyncio.ensure_future(b.wait_for_task(SHARE, other).final_info())
        await asyncio.sleep(1.5)
        for wait in (first, second):
            wait.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
        assert a.stats.rate_limited == 1
    during = [who for who, at in sent if paused_at <= at < paused_at + 1.4]
    assert "b" not in during, sent


async def test_a_client_closing_hands_its_tasks_over(
    emu: Emulator, make_client: Callable[..., KooDriveClient]
) -> None:
    """The holder closes mid-task: the other client goes on polling and gets the URL."""
    task_id = emu.add_task(TaskScript(pending_s=0, duration_s=3.0), share_id=SHARE)
    a, b = make_client(), make_client()
    async with b:
        async with a:
            holder = asyncio.ensure_future(a.wait_for_task(SHARE, task_id))
            await asyncio.sleep(0.5)
            listener = asyncio.ensure_future(b.wait_for_task(SHARE, task_id))
            await asyncio.sleep(0.5)
        await asyncio.gather(holder, return_exceptions=True)
        url = await asyncio.wait_for(listener, 10)
    assert TaskRef(SHARE, task_id).task_id in url
