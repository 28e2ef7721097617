"""Races in the timer-driven poll streams: deadlines in every state, the in-flight count, pauses.

Found by an independent review of the design; each test failed before its fix.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aioresponses import CallbackResult
from kd_fakes import BASE, DETAIL, PACKAGE_URL, TOKEN, MockKooDrive, shape_a, shape_b, task_id_of

from koodrive_tasks import BearerToken, KooDriveClient, Limits, PollPolicy, WaitTimeoutError
from koodrive_tasks._scheduler import RequestScheduler
from koodrive_tasks._streams import State
from koodrive_tasks.testing import VirtualClock

STEADY = PollPolicy(initial_delay=10, factor=1, max_delay=10, jitter=0, timeout=1000)


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


def test_refunding_a_slot_a_pause_voided_gives_nothing_back() -> None:
    """A slot booked before a pause is void: giving it back must not hand a later slot out twice."""

    async def run() -> list[float]:
        clock = VirtualClock()
        s = RequestScheduler(Limits(rate=1.0, burst=1), clock, rand=lambda: 0.0)
        s.reserve(None)  # t=0: sent now
        epoch = s.epoch
        s.reserve(None)  # a stream booked for t=1
        s.pause(10)  # a 429: slots from t=10 on, one per second
        after = [s.reserve(None) for _ in range(3)]  # 10, 11, 12
        s.refund(epoch)  # the stream's wait leaves during the pause
        after.append(s.reserve(None))  # must be 13
        return after

    slots = asyncio.run(run())
    assert len(set(slots)) == len(slots), f"slots {slots}: one given twice"


def test_refunding_a_slot_gives_it_to_the_next() -> None:
    """Without a pause in between, a slot given back goes to the next request."""

    async def run() -> list[float]:
        s = RequestScheduler(Limits(rate=1.0, burst=1), VirtualClock(), rand=lambda: 0.0)
        first = s.reserve(None)
        epoch = s.epoch
        s.reserve(None)  # 1
        s.refund(epoch)
        return [first, s.reserve(None)]

    assert asyncio.run(run()) == [0.0, 1.0]


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
        stream = kd._streams._streams[("s", "t1", None)]
        assert stream.request is not None
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
        assert kd._streams._streams[("s", "t2", None)].state is State.BOOKED
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
    """A batch closed in the same loop step the request task was created: _in_flight stays 1;
    with max_in_flight=1 every later wait wedges, even one with a timeout."""
    mock.post(DETAIL, callback=running(), repeat=True)
    limits = Limits(max_in_flight=1, rate=None)
    async with KooDriveClient(
        BASE, auth=BearerToken(TOKEN), clock=clock, policy=STEADY, limits=limits
    ) as kd:
        batch = kd.as_completed([("s", "t1")])
        consumer = asyncio.ensure_future(batch.__anext__())
        for _ in range(20):
            await asyncio.sleep(0)
            s = kd._streams._streams.get(("s", "t1", None))
            if s is not None and s.request is not None:
                break
        assert s is not None
        assert s.request is not None
        await batch.aclose()  # cancels a request task that never ran
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        print("in_flight after close:", kd._streams._in_flight)
        leaked = kd._streams._in_flight
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
    """Sole wait, timeout 15; its poll at t=10 returns (unchanged) at t=17. It should raise at
    t=17 at the latest; the stream re-arms only for the next poll (t=27) since _arm drops
    deadlines <= now. In production the same happens when the request timeout, clipped to the
    deadline, fires at D+eps: _failed re-arms for the retry only."""
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


async def test_queued_stream_closed_keeps_its_rate_slot(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """A stream queued for a free place gives its rate slot back when its wait leaves."""
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
        tat_before = kd._scheduler._tat
        b = asyncio.ensure_future(kd.wait_for_task("s", "t2").final_info())
        for _ in range(10):
            await asyncio.sleep(0)
        assert len(kd._streams._queued) == 1
        b.cancel()
        await asyncio.gather(b, return_exceptions=True)
        tat_after = kd._scheduler._tat
        gate.set()
        a.cancel()
        await asyncio.gather(a, return_exceptions=True)
        assert tat_after == tat_before  # the slot was given back
        assert len(kd._streams._queued) == 0  # dropped once a place came free
        assert kd._streams._in_flight == 0


async def test_queued_stream_launched_during_a_throttling_pause(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """max_in_flight=1: t1's request gets 429 Retry-After 30 while t2 waits in _queued.
    request_done() launches t2 at once (admitted=True: no scheduler check) inside the pause."""
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
        assert len(kd._streams._queued) == 1
        gate.set()
        await clock.sleep(5)
        paused_until = kd._scheduler.paused_until
        for t in (a, b):
            t.cancel()
        await asyncio.gather(a, b, return_exceptions=True)
        during = [(tid, at) for tid, at in sent[1:] if at < paused_until]
        assert not during, f"sent during the pause (until {paused_until}): {during}"


async def test_one_impatient_wait_delays_the_shared_stream(
    mock: MockKooDrive, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """rate 0.1/s: t1 takes the slot at 0; t2's stream has A (timeout 5) and B (no timeout).
    The slot for t2 (t=10) lies past A's deadline, so _book fails as if a poll failed, over
    and over until A leaves: fake retries/warnings, and B inherits the grown backoff."""
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
