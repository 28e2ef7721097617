"""Races in the timer-driven poll streams: deadlines in every state, the in-flight count, pauses."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aioresponses import CallbackResult
from kd_fakes import BASE, DETAIL, PACKAGE_URL, TOKEN, MockKooDrive, shape_a, shape_b, task_id_of

from koodrive_tasks import BearerToken, KooDriveClient, Limits, PollPolicy, WaitTimeoutError
from koodrive_tasks.testing import VirtualClock

STEADY = PollPolicy.backoff(initial_delay=10, factor=1, max_delay=10, jitter=0, timeout=1000)


def running() -> Any:
    def answer(url: object, **kw: Any) -> CallbackResult:
        tid = task_id_of(kw)
        return CallbackResult(payload=shape_a(1, 10, task_id=tid))

    return answer


async def test_a_wait_joining_a_stream_nobody_listens_to_gets_polls(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """A's deadline passed while its `async for` consumer was busy; B then joins and finishes."""
    n = 0

    def answer(url: object, **kw: Any) -> CallbackResult:
        nonlocal n
        n += 1
        if n >= 3:
            return CallbackResult(payload=shape_b(2, 100, result=1, url=PACKAGE_URL))
        return CallbackResult(payload=shape_a(1, 10 * n))

    mock.post(DETAIL, callback=answer, repeat=True)
    async with KooDriveClient(BASE, auth=BearerToken(TOKEN), clock=clock, policy=STEADY) as kd:
        a = kd.wait_for_task("s", "t1", timeout=1)
        it = a.__aiter__()
        await it.__anext__()  # the first observation; A's consumer is now busy elsewhere
        await clock.sleep(2)
        assert n == 1  # nobody listened: no poll for nobody
        info = await kd.wait_for_task("s", "t1").final_info()
        assert info.download_url == PACKAGE_URL
        assert n == 3


async def test_breaking_out_of_async_for_stops_the_polls(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """A consumer that leaves `async for` early leaves no polls going on for nobody."""
    mock.post(DETAIL, callback=running(), repeat=True)
    async with KooDriveClient(BASE, auth=BearerToken(TOKEN), clock=clock, policy=STEADY) as kd:
        async for _ in kd.wait_for_task("s", "t1", timeout=None):
            break
        await clock.sleep(100)
        assert len(mock.requests_to(DETAIL)) == 1


async def test_a_poll_that_leaves_the_queue_takes_no_turn(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """rate 1/s: a wait that leaves while its poll queues does not delay the next wait's poll."""
    mock.post(DETAIL, callback=running(), repeat=True)
    sent: list[tuple[str, float]] = []
    async with KooDriveClient(
        BASE,
        auth=BearerToken(TOKEN),
        clock=clock,
        policy=STEADY,
        limits=Limits(rate=1.0, burst=1),
        on_request=lambda e: sent.append((e.operation, clock.monotonic())),
    ) as kd:
        first = asyncio.ensure_future(kd.wait_for_task("s", "t1").final_info())
        await asyncio.sleep(0)
        leaving = asyncio.ensure_future(kd.wait_for_task("s", "t2").final_info())
        for _ in range(5):
            await asyncio.sleep(0)
        assert kd.stats.queued == 1
        leaving.cancel()
        await asyncio.gather(leaving, return_exceptions=True)
        assert kd.stats.queued == 0
        third = asyncio.ensure_future(kd.wait_for_task("s", "t3").final_info())
        await clock.sleep(1.5)
        for task in (first, third):
            task.cancel()
        await asyncio.gather(first, third, return_exceptions=True)
    assert ("query task t3", 1.0) in sent  # the turn t2 left behind
    assert not any(op == "query task t2" for op, _ in sent)


async def test_a_throttling_pause_holds_back_queued_polls(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """rate 1/s: a 429 with Retry-After 10 at t=0 sends nothing until t=10, then one per second."""
    answers = iter([429])

    def answer(url: object, **kw: Any) -> CallbackResult:
        if next(answers, 200) == 429:
            return CallbackResult(status=429, headers={"Retry-After": "10"}, payload={})
        return CallbackResult(payload=shape_a(1, 10, task_id=task_id_of(kw)))

    mock.post(DETAIL, callback=answer, repeat=True)
    sent: list[float] = []
    async with KooDriveClient(
        BASE,
        auth=BearerToken(TOKEN),
        clock=clock,
        policy=STEADY,
        limits=Limits(rate=1.0, burst=1),
        on_request=lambda e: sent.append(clock.monotonic()),
    ) as kd:
        waits = [
            asyncio.ensure_future(kd.wait_for_task("s", f"t{i}").final_info()) for i in range(4)
        ]
        await clock.sleep(14.5)
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        assert kd.stats.pauses == 1
    assert sent[0] == 0
    later = sent[1:]
    assert all(t >= 10 for t in later), sent
    assert later[:4] == [10, 11, 12, 13], sent  # at the rate after the pause, not in a burst


async def test_join_during_request_earlier_deadline_not_exact(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """B joins while A's request is in flight, with timeout 2: must time out at t=2."""
    gate = asyncio.Event()

    async def held(url: object, **kw: Any) -> CallbackResult:
        await gate.wait()
        return CallbackResult(payload=shape_a(1, 10))

    mock.post(DETAIL, callback=held, repeat=True)
    async with KooDriveClient(BASE, auth=BearerToken(TOKEN), clock=clock, policy=STEADY) as kd:
        a = asyncio.ensure_future(kd.wait_for_task("s", "t1").final_info())
        for _ in range(10):
            await asyncio.sleep(0)
        assert kd.stats.in_flight == 1
        b = asyncio.ensure_future(kd.wait_for_task("s", "t1", timeout=2).final_info())
        await clock.sleep(5)
        done_at_5 = b.done()
        gate.set()
        ended_at = None
        try:
            await b
        except WaitTimeoutError:
            ended_at = clock.monotonic()
        a.cancel()
        await asyncio.gather(a, return_exceptions=True)
        print("B timed out at", ended_at)
        assert done_at_5, f"B (deadline 2) still waiting at t=5; it ended at t={ended_at}"


async def test_join_booked_stream_earlier_deadline_not_exact(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """rate 0.1/s: t2's stream books its slot at t=10. B joins t2 at t=1 with timeout 2."""
    mock.post(DETAIL, callback=running(), repeat=True)
    limits = Limits(rate=0.1, burst=1)
    async with KooDriveClient(
        BASE, auth=BearerToken(TOKEN), clock=clock, policy=STEADY, limits=limits
    ) as kd:
        a1 = asyncio.ensure_future(kd.wait_for_task("s", "t1").final_info())
        a2 = asyncio.ensure_future(kd.wait_for_task("s", "t2").final_info())
        await clock.sleep(1)
        assert kd.stats.queued == 1  # t2's poll waits for its turn under the rate
        start = clock.monotonic()
        with pytest.raises(WaitTimeoutError):
            await kd.wait_for_task("s", "t2", timeout=2).final_info()
        ended = clock.monotonic()
        for t in (a1, a2):
            t.cancel()
        await asyncio.gather(a1, a2, return_exceptions=True)
        assert ended == start + 2, f"deadline {start + 2}, timed out at {ended}"


async def test_cancel_before_request_task_starts_leaks_in_flight(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """A batch closed in the same loop step its request task was created leaves no place taken:
    with max_in_flight=1 every later wait would wedge, even one with a timeout."""
    mock.post(DETAIL, callback=running(), repeat=True)
    limits = Limits(max_in_flight=1, rate=None)
    async with KooDriveClient(
        BASE, auth=BearerToken(TOKEN), clock=clock, policy=STEADY, limits=limits
    ) as kd:
        batch = kd.as_completed([("s", "t1")])
        consumer = asyncio.ensure_future(batch.__anext__())
        for _ in range(20):
            await asyncio.sleep(0)
            if kd.stats.in_flight:
                break
        assert kd.stats.in_flight == 1
        await batch.aclose()  # cancels a request task that never ran
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        leaked = kd.stats.in_flight
        w = asyncio.ensure_future(kd.wait_for_task("s", "t2", timeout=5).final_info())
        await clock.sleep(50)
        hung = not w.done()
        w.cancel()
        await asyncio.gather(w, return_exceptions=True)
        assert leaked == 0
        assert not hung


async def test_deadline_passing_during_request_is_noticed_only_at_next_poll(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """Sole wait, timeout 15; its poll at t=10 answers (unchanged) at t=17: the wait ends then,
    not at the next poll (t=27)."""
    gate = asyncio.Event()
    calls = 0

    async def answer(url: object, **kw: Any) -> CallbackResult:
        nonlocal calls
        calls += 1
        if calls == 2:
            await gate.wait()
        return CallbackResult(payload=shape_a(1, 10))

    mock.post(DETAIL, callback=answer, repeat=True)
    async with KooDriveClient(BASE, auth=BearerToken(TOKEN), clock=clock, policy=STEADY) as kd:
        w = asyncio.ensure_future(kd.wait_for_task("s", "t1", timeout=15).final_info())
        await clock.sleep(17)
        assert calls == 2
        assert not w.done()
        gate.set()
        with pytest.raises(WaitTimeoutError):
            await w
        assert clock.monotonic() <= 17, f"timed out at {clock.monotonic()} (deadline 15)"


async def test_queued_stream_ignores_its_waits_deadline(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """max_in_flight=1: t1's request is held; t2's stream is queued; t2's wait (timeout 2)
    must time out at t=2, not when t1's request ends."""
    gate = asyncio.Event()

    async def answer(url: object, **kw: Any) -> CallbackResult:
        tid = task_id_of(kw)
        if tid == "t1":
            await gate.wait()
        return CallbackResult(payload=shape_a(1, 10, task_id=tid))

    mock.post(DETAIL, callback=answer, repeat=True)
    limits = Limits(max_in_flight=1, rate=None)
    async with KooDriveClient(
        BASE, auth=BearerToken(TOKEN), clock=clock, policy=STEADY, limits=limits
    ) as kd:
        a = asyncio.ensure_future(kd.wait_for_task("s", "t1").final_info())
        for _ in range(10):
            await asyncio.sleep(0)
        b = asyncio.ensure_future(kd.wait_for_task("s", "t2", timeout=2).final_info())
        await clock.sleep(50)
        done = b.done()
        gate.set()
        await asyncio.gather(b, return_exceptions=True)
        ended = clock.monotonic()
        a.cancel()
        await asyncio.gather(a, return_exceptions=True)
        assert done, f"t2's wait (deadline 2) still waiting at t=50; ended at {ended}"


async def test_a_queued_poll_that_leaves_frees_the_queue(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """max_in_flight=1: t2's poll queues behind t1's held request; t2's wait leaving empties the
    queue, and once t1's request ends nothing is in flight."""
    gate = asyncio.Event()

    async def answer(url: object, **kw: Any) -> CallbackResult:
        tid = task_id_of(kw)
        await gate.wait()
        return CallbackResult(payload=shape_a(1, 10, task_id=tid))

    mock.post(DETAIL, callback=answer, repeat=True)
    limits = Limits(max_in_flight=1, rate=1.0, burst=10)
    async with KooDriveClient(
        BASE, auth=BearerToken(TOKEN), clock=clock, policy=STEADY, limits=limits
    ) as kd:
        a = asyncio.ensure_future(kd.wait_for_task("s", "t1").final_info())
        for _ in range(10):
            await asyncio.sleep(0)
        b = asyncio.ensure_future(kd.wait_for_task("s", "t2").final_info())
        for _ in range(10):
            await asyncio.sleep(0)
        assert kd.stats.queued == 1
        b.cancel()
        await asyncio.gather(b, return_exceptions=True)
        assert kd.stats.queued == 0
        gate.set()
        a.cancel()
        await asyncio.gather(a, return_exceptions=True)
        assert kd.stats.in_flight == 0
        assert len(mock.requests_to(DETAIL)) == 1  # t2 never got a turn


async def test_queued_stream_launched_during_a_throttling_pause(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """max_in_flight=1: t1's request gets 429 Retry-After 30 while t2's poll queues for a
    place: t2 must not be sent inside the pause when the place comes free."""
    gate = asyncio.Event()
    sent: list[tuple[str, float]] = []

    async def answer(url: object, **kw: Any) -> CallbackResult:
        tid = task_id_of(kw)
        sent.append((tid, clock.monotonic()))
        if tid == "t1" and len(sent) == 1:
            await gate.wait()
            return CallbackResult(
                status=429,
                headers={"Retry-After": "30"},
                payload={"code": "429", "msg": "slow down"},
            )
        return CallbackResult(payload=shape_a(1, 10, task_id=tid))

    mock.post(DETAIL, callback=answer, repeat=True)
    limits = Limits(max_in_flight=1, rate=None)
    async with KooDriveClient(
        BASE, auth=BearerToken(TOKEN), clock=clock, policy=STEADY, limits=limits
    ) as kd:
        a = asyncio.ensure_future(kd.wait_for_task("s", "t1").final_info())
        for _ in range(10):
            await asyncio.sleep(0)
        b = asyncio.ensure_future(kd.wait_for_task("s", "t2").final_info())
        for _ in range(10):
            await asyncio.sleep(0)
        assert kd.stats.queued == 1
        gate.set()
        await clock.sleep(5)
        assert kd.stats.pauses == 1
        paused_until = 30.0  # the 429 came at t=0
        for t in (a, b):
            t.cancel()
        await asyncio.gather(a, b, return_exceptions=True)
        during = [(tid, at) for tid, at in sent[1:] if at < paused_until]
        assert not during, f"sent during the pause (until {paused_until}): {during}"


async def test_one_impatient_wait_delays_the_shared_stream(
    mock: MockKooDrive, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """rate 0.1/s: t1 takes the turn at 0; t2's stream has A (timeout 5) and B (no timeout).
    t2's turn (t=10) lies past A's deadline: A times out, and nothing counts as a failed poll."""
    mock.post(DETAIL, callback=running(), repeat=True)
    limits = Limits(rate=0.1, burst=1)
    polled_at: list[float] = []
    async with KooDriveClient(
        BASE,
        auth=BearerToken(TOKEN),
        clock=clock,
        policy=STEADY,
        limits=limits,
        on_request=lambda e: polled_at.append(clock.monotonic()),
    ) as kd:
        a1 = asyncio.ensure_future(kd.wait_for_task("s", "t1").final_info())
        await asyncio.sleep(0)
        wa = asyncio.ensure_future(kd.wait_for_task("s", "t2", timeout=5).final_info())
        wb = asyncio.ensure_future(kd.wait_for_task("s", "t2").final_info())
        with caplog.at_level(logging.INFO, logger="koodrive_tasks"):
            await clock.sleep(60)
        retries = kd.stats.retries
        for t in (a1, wa, wb):
            t.cancel()
        await asyncio.gather(a1, wa, wb, return_exceptions=True)
    msgs = [r.getMessage() for r in caplog.records if "failed in a row" in r.getMessage()]
    print("retries:", retries, "polls at:", polled_at)
    print("\n".join(msgs[:5]))
    assert retries == 0, f"{retries} retries counted although no request failed"


def running_late(clock: VirtualClock, **delays: float) -> Any:
    """Every task runs at 10 %; the tasks named in `delays` answer that many seconds late."""

    async def answer(url: object, **kw: Any) -> CallbackResult:
        task_id = task_id_of(kw)
        if task_id in delays:
            await clock.sleep(delays[task_id])
        return CallbackResult(payload=shape_a(1, 10, task_id=task_id))

    return answer


async def test_a_wait_ends_on_time_while_every_in_flight_place_is_taken(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """A slow request holding the only place does not carry a wait past its own deadline."""
    mock.post(DETAIL, callback=running_late(clock, slow=25), repeat=True)
    async with KooDriveClient(
        BASE, auth=BearerToken(TOKEN), clock=clock, limits=Limits(max_in_flight=1)
    ) as kd:
        slow = asyncio.ensure_future(kd.get_share_task("s", "slow"))
        await asyncio.sleep(0)
        with pytest.raises(WaitTimeoutError) as caught:
            await kd.wait_for_task("s", "t1", timeout=1).final_info()
        assert clock.monotonic() == 1
        assert "max_in_flight" in str(caught.value)
        await slow
