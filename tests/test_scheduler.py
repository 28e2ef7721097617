"""The client-wide scheduler, in virtual time: rate, in-flight cap, throttling pause, counters, hooks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aioresponses import CallbackResult
from kd_fakes import (
    BASE,
    DETAIL,
    PACKAGE_URL,
    TOKEN,
    MockKooDrive,
    finish_after,
    shape_a,
    shape_b,
    task_id_of,
)

from koodrive_tasks import (
    BearerToken,
    InvalidArgumentError,
    KooDriveClient,
    Limits,
    PollPolicy,
    RequestEvent,
    RetryEvent,
)
from koodrive_tasks.testing import VirtualClock

POLICY = PollPolicy(
    initial_delay=5, factor=1, max_delay=5, jitter=0, timeout=1000, progress_aware=False
)


def client_with(clock: VirtualClock, **kwargs: Any) -> KooDriveClient:
    return KooDriveClient(BASE, auth=BearerToken(TOKEN), clock=clock, policy=POLICY, **kwargs)


async def test_rate_limit_bounds_requests_in_every_window(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """With rate R and burst B, no window of T seconds holds more than B + R*T requests."""
    mock.post(DETAIL, callback=finish_after(3), repeat=True)
    sent: list[float] = []
    async with client_with(
        clock, limits=Limits(rate=10, burst=5), on_request=lambda e: sent.append(clock.monotonic())
    ) as kd:
        outcomes = await kd.wait_many([("s", f"t{i}") for i in range(60)])
    assert all(o.ok for o in outcomes.values())
    assert len(sent) == 60 * 4
    for i, start in enumerate(sent):
        in_window = sum(1 for t in sent[i:] if t - start <= 1.0)
        assert in_window <= 5 + 10 * 1.0 + 1e-9
    assert sent[-1] >= (len(sent) - 5) / 10  # the limit really slowed things down


async def test_in_flight_cap_holds(mock: MockKooDrive, clock: VirtualClock) -> None:
    """No more than max_in_flight requests are outstanding at once."""
    gate = asyncio.Event()
    peak = 0
    kd = client_with(clock, limits=Limits(max_in_flight=3, rate=None))

    async def answer(url: object, **kwargs: Any) -> CallbackResult:
        nonlocal peak
        peak = max(peak, kd.stats.in_flight)
        await gate.wait()
        task_id = task_id_of(kwargs)
        return CallbackResult(payload=shape_b(2, 100, result=1, url=PACKAGE_URL, task_id=task_id))

    mock.post(DETAIL, callback=answer, repeat=True)
    async with kd:
        batch = asyncio.create_task(kd.wait_many([("s", f"t{i}") for i in range(10)]))
        for _ in range(50):
            await asyncio.sleep(0)
        assert kd.stats.in_flight == 3
        gate.set()
        outcomes = await batch
    assert peak == 3
    assert len(outcomes) == 10


async def test_throttling_pauses_every_wait_then_spreads_them(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """After a 429 with Retry-After, no wait sends during the pause, and they resume spread out."""
    throttled_once = False

    def answer(url: object, **kwargs: Any) -> CallbackResult:
        nonlocal throttled_once
        task_id = task_id_of(kwargs)
        if clock.monotonic() >= 5 and not throttled_once:
            throttled_once = True
            return CallbackResult(
                status=429, headers={"Retry-After": "40"}, payload={"error_code": "APIGW.0308"}
            )
        if clock.monotonic() >= 45:
            return CallbackResult(
                payload=shape_b(2, 100, result=1, url=PACKAGE_URL, task_id=task_id)
            )
        return CallbackResult(payload=shape_a(1, 10, task_id=task_id))

    mock.post(DETAIL, callback=answer, repeat=True)
    sent: list[float] = []
    async with client_with(
        clock,
        limits=Limits(rate=None, pause_spread=0.25),
        on_request=lambda e: sent.append(clock.monotonic()),
    ) as kd:
        await kd.wait_many([("s", f"t{i}") for i in range(200)])
        assert kd.stats.rate_limited == 1
        assert kd.stats.pauses == 1
    during = [t for t in sent if 5 < t < 45]
    assert during == []
    resumed = sorted(t for t in sent if t >= 45)
    # 199 waits come back over a 10 s window (25 % of the 40 s pause), not at one instant
    assert resumed[-1] - resumed[0] > 8
    assert max(sum(1 for t in resumed if int(t) == second) for second in range(45, 60)) < 60


async def test_pause_past_deadline_ends_wait_on_time(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """A wait whose deadline falls inside a throttling pause times out at its deadline."""
    mock.post(DETAIL, status=429, headers={"Retry-After": "100"}, payload={}, repeat=True)
    async with client_with(clock) as kd:
        outcomes = await kd.wait_many([("s", "a"), ("s", "b")], timeout=30)
    assert clock.monotonic() == 30
    assert all(type(o.error).__name__ == "WaitTimeoutError" for o in outcomes.values())


async def test_stats_and_hooks_report_what_happened(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """Counters and hooks see every request and retry, with trace ids and no secrets."""
    mock.post(DETAIL, status=503, body="<html>down</html>")
    mock.post(DETAIL, payload=shape_a(1, 50))
    mock.post(DETAIL, payload=shape_b(2, 100, result=1, url=PACKAGE_URL))
    requests: list[RequestEvent] = []
    retries: list[RetryEvent] = []
    async with client_with(clock, on_request=requests.append, on_retry=retries.append) as kd:
        await kd.wait_for_task("s", "t1", kdstoken="KDS-SECRET")
        stats = kd.stats
    assert (stats.requests, stats.polls, stats.retries, stats.tasks_ended) == (3, 3, 1, 1)
    assert stats.errors == {"ServerError": 1}
    assert stats.mean_detection_lag_bound == 5
    assert [e.http_status for e in requests] == [503, 200, 200]
    assert [e.error for e in requests] == ["ServerError", None, None]
    assert all(len(e.trace_id) == 58 for e in requests)
    assert retries[0].task_id == "t1"
    assert retries[0].error == "ServerError"
    text = repr(requests) + repr(retries) + repr(stats)
    for secret in (TOKEN, "KDS-SECRET", "SIGNED-QUERY"):
        assert secret not in text


async def test_failing_hook_does_not_break_the_wait(
    mock: MockKooDrive, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in an observer is logged and ignored."""
    mock.post(DETAIL, payload=shape_b(2, 100, result=1, url=PACKAGE_URL))

    def broken(event: object) -> None:
        raise RuntimeError("observer bug")

    async with client_with(clock, on_request=broken) as kd:
        assert await kd.wait_for_task("s", "t1") == PACKAGE_URL
    assert "hook raised" in caplog.text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_in_flight": 0},
        {"rate": 0},
        {"rate": -1.0},
        {"burst": 0},
        {"pause_spread": 2},
        {"max_in_flight": True},
    ],
)
def test_invalid_limits_are_refused(kwargs: dict[str, Any]) -> None:
    """Limits validates every field at construction."""
    with pytest.raises(InvalidArgumentError):
        Limits(**kwargs)


async def test_requests_queued_for_the_rate_respect_a_later_pause(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """Requests already waiting for a rate slot when a 429 arrives wait out the pause too."""
    throttled = False

    def answer(url: object, **kwargs: Any) -> CallbackResult:
        nonlocal throttled
        task_id = task_id_of(kwargs)
        if clock.monotonic() >= 1 and not throttled:
            throttled = True
            return CallbackResult(status=429, headers={"Retry-After": "30"}, payload={})
        return CallbackResult(payload=shape_b(2, 100, result=1, url=PACKAGE_URL, task_id=task_id))

    mock.post(DETAIL, callback=answer, repeat=True)
    sent: list[float] = []
    async with client_with(
        clock, limits=Limits(rate=2, burst=1), on_request=lambda e: sent.append(clock.monotonic())
    ) as kd:
        # 100 requests at 2/s queue for 50 s, well past the 30 s pause
        await kd.wait_many([("s", f"t{i}") for i in range(100)])
    assert throttled
    assert kd.stats.rate_limited == 1
    # at most the one request already on its way when the 429 came back; none after it
    assert len([t for t in sent if 1.0 < t < 31]) <= 1
    assert [t for t in sent if 1.2 < t < 31] == []
    assert len(sent) == 101
    # and after the pause they come back at the configured rate, not in a burst
    after = [t for t in sent if t >= 31]
    for i, start in enumerate(after):
        assert sum(1 for t in after[i:] if t - start <= 1.0) <= 1 + 2


async def test_cancelled_queued_requests_give_their_rate_slots_back(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """After cancelling waits queued behind the rate limit, a new wait is not stuck behind them."""
    mock.post(DETAIL, callback=finish_after(0), repeat=True)
    async with client_with(clock, limits=Limits(rate=1, burst=1)) as kd:
        async with kd.as_completed([("s", f"q{i}") for i in range(100)]) as done:
            await done.__anext__()  # the first one got through; 99 are queued for 99 s
        start = clock.monotonic()
        await kd.wait_for_task("s", "fresh")
        assert clock.monotonic() - start <= 2


async def test_places_are_first_come_first_served_and_survive_cancellation(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """max_in_flight=1: queued one-shot calls get the place in order; one cancelled while
    queued leaves the queue, and the place still reaches the next."""
    gate = asyncio.Event()
    order: list[str] = []

    async def answer(url: object, **kw: Any) -> CallbackResult:
        tid = task_id_of(kw)
        order.append(tid)
        if tid == "holder":
            await gate.wait()
        return CallbackResult(payload=shape_a(1, 10, task_id=tid))

    mock.post(DETAIL, callback=answer, repeat=True)
    async with client_with(clock, limits=Limits(max_in_flight=1, rate=None)) as kd:
        holder = asyncio.ensure_future(kd.get_share_task("s", "holder"))
        await asyncio.sleep(0)
        calls = {n: asyncio.ensure_future(kd.get_share_task("s", n)) for n in ("a", "b", "c")}
        for _ in range(5):
            await asyncio.sleep(0)
        assert kd.stats.in_flight == 1
        assert kd.stats.queued == 3
        calls["a"].cancel()  # cancelled while queued
        await asyncio.gather(calls["a"], return_exceptions=True)
        assert kd.stats.queued == 2
        gate.set()
        await asyncio.gather(holder, calls["b"], calls["c"])
        assert order == ["holder", "b", "c"]
        assert kd.stats.in_flight == 0
        assert kd.stats.queued == 0
