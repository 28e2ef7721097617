"""Poll streams driven by timers: what an idle wait holds, in-flight caps, crashes, odd clocks."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
from aioresponses import CallbackResult
from kd_fakes import (
    BASE,
    DETAIL,
    FAST,
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
    KooDriveError,
    Limits,
    PollPolicy,
    TaskRef,
    WaitTimeoutError,
    _wire,
)
from koodrive_tasks.testing import VirtualClock

STEADY = PollPolicy.backoff(initial_delay=10, factor=1, max_delay=10, jitter=0, timeout=1000)


def polls(mock: MockKooDrive) -> int:
    return len(mock.requests_to(DETAIL))


def others() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}


async def test_idle_waits_hold_no_task(mock: MockKooDrive, clock: VirtualClock) -> None:
    """Between polls, 50 waits inside wait_many are timers, not tasks or coroutines."""
    mock.post(DETAIL, callback=finish_after(3), repeat=True)
    async with KooDriveClient(BASE, auth=BearerToken(TOKEN), clock=clock, policy=STEADY) as kd:
        batch = asyncio.ensure_future(kd.wait_many([("s", f"t{i}") for i in range(50)]))
        await clock.sleep(5)  # every task polled once; the next polls are due at 10
        assert polls(mock) == 50
        assert others() == {batch}  # the consumer only: no task per wait, no request left
        assert kd.stats.streams == 50
        outcomes = await batch
    assert all(o.ok for o in outcomes.values())
    assert polls(mock) == 50 * 4
    assert clock.monotonic() == 30


async def test_in_flight_cap_queues_streams_in_order(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """With max_in_flight=3 and no rate limit, never more than 3 polls are in flight; all finish."""
    in_flight = peak = peak_tasks = 0
    order: list[str] = []

    async def slow(url: object, **kwargs: Any) -> CallbackResult:
        nonlocal in_flight, peak, peak_tasks
        in_flight += 1
        peak = max(peak, in_flight)
        # Streams queue for a free slot as plain objects, not as tasks waiting on it.
        requests = [t for t in asyncio.all_tasks() if t.get_name().startswith("koodrive-poll-")]
        peak_tasks = max(peak_tasks, len(requests))
        order.append(task_id_of(kwargs))
        for _ in range(5):
            await asyncio.sleep(0)  # stay in flight while others are started
        in_flight -= 1
        task_id = task_id_of(kwargs)
        return CallbackResult(payload=shape_b(2, 100, result=1, url=PACKAGE_URL, task_id=task_id))

    mock.post(DETAIL, callback=slow, repeat=True)
    limits = Limits(max_in_flight=3, rate=None)
    async with KooDriveClient(
        BASE, auth=BearerToken(TOKEN), clock=clock, policy=FAST, limits=limits
    ) as kd:
        outcomes = await kd.wait_many([("s", f"t{i}") for i in range(12)])
    assert all(o.ok for o in outcomes.values())
    assert peak == 3
    assert peak_tasks == 3
    assert order == [f"t{i}" for i in range(12)]  # first come, first served


async def test_a_poll_cancelled_from_outside_is_sent_again(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """A harness that cancels the library's request task does not leave the wait without polls."""
    gate = asyncio.Event()
    answers = iter([shape_a(1, 10), shape_b(2, 100, result=1, url=PACKAGE_URL)])

    async def held(url: object, **kwargs: Any) -> CallbackResult:
        await gate.wait()
        return CallbackResult(payload=next(answers))

    mock.post(DETAIL, callback=held, repeat=True)
    wait = asyncio.ensure_future(client.wait_for_task("s1", "t1").download_url())
    for _ in range(5):
        await asyncio.sleep(0)
    requests = [t for t in others() if t.get_name().startswith("koodrive-poll-")]
    assert len(requests) == 1
    requests[0].cancel()
    for _ in range(5):
        await asyncio.sleep(0)
    gate.set()
    assert await asyncio.wait_for(wait, 5) == PACKAGE_URL  # real seconds only if it hangs


async def test_a_bug_while_polling_reaches_the_wait_and_the_batch(
    mock: MockKooDrive, client: KooDriveClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An internal error is raised to every wait on the stream instead of hanging them."""
    mock.detail(payload=shape_a(1, 10), repeat=True)

    def broken(payload: object, *, task_id: str) -> object:
        raise RuntimeError("bug")

    monkeypatch.setattr(_wire, "parse_task_detail", broken)
    with pytest.raises(RuntimeError, match="bug"):
        await client.wait_for_task("s1", "t1")
    with pytest.raises(RuntimeError, match="bug"):
        await client.wait_many([("s1", "t2")])
    assert client.stats.streams == 0


class SleepOnlyClock:
    """A user's clock with no call_later: timers fall back to sleeping tasks."""

    def __init__(self, inner: VirtualClock) -> None:
        self._inner = inner

    def monotonic(self) -> float:
        return self._inner.monotonic()

    def now(self) -> datetime:
        return self._inner.now()

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def test_a_clock_without_timers_still_drives_waits(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """A custom Clock offering only sleep() works: polls on schedule, deadlines exact."""
    mock.post(DETAIL, callback=finish_after(2), repeat=True)
    user_clock = SleepOnlyClock(clock)
    async with KooDriveClient(BASE, auth=BearerToken(TOKEN), clock=user_clock, policy=STEADY) as kd:
        assert await kd.wait_for_task("s", "a") == PACKAGE_URL
        assert clock.monotonic() == 20
        with pytest.raises(WaitTimeoutError):
            await kd.wait_for_task("s", "never-ends", timeout=15, policy=STEADY)
        assert clock.monotonic() == 20 + 15


async def test_a_later_wait_with_an_earlier_deadline_is_timed_out_on_time(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """Joining a stream that sleeps until its next poll re-arms its timer for the new deadline."""
    mock.detail(payload=shape_a(1, 10), repeat=True)
    patient = asyncio.ensure_future(client.wait_for_task("s1", "t1", policy=STEADY, timeout=500))
    await clock.sleep(1)  # polled at 0; the next poll is due at 10
    with pytest.raises(WaitTimeoutError):
        await client.wait_for_task("s1", "t1", policy=STEADY, timeout=2)
    assert clock.monotonic() == 3
    assert not patient.done()
    patient.cancel()
    await asyncio.gather(patient, return_exceptions=True)


async def test_closing_the_client_ends_waits_in_progress(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """close() ends every wait on the client with a clear error and leaves no request behind."""
    mock.detail(payload=shape_a(1, 10), repeat=True)
    kd = KooDriveClient(BASE, auth=BearerToken(TOKEN), clock=clock, policy=STEADY)
    wait = asyncio.ensure_future(kd.wait_for_task("s1", "t1"))
    await clock.sleep(1)
    await kd.close()
    with pytest.raises(KooDriveError, match="closed"):
        await wait
    assert others() == set()


async def test_a_waiter_followed_by_a_batch_is_read_from_the_batch(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """Awaiting a waiter that a running batch follows is refused; after the batch, it has the result."""
    mock.post(DETAIL, callback=finish_after(1), repeat=True)
    waiter = client.wait_for_task("s", "a", policy=STEADY)
    async with client.as_completed([waiter]) as done:
        first = None
        async for outcome in done:
            first = outcome
        assert first is not None
    assert first.ref == TaskRef("s", "a")
    assert await waiter == PACKAGE_URL

    other = client.wait_for_task("s", "b", policy=STEADY)
    batch = client.as_completed([other])
    async with batch:
        batch_iter = batch.__aiter__()
        pending = asyncio.ensure_future(batch_iter.__anext__())
        await asyncio.sleep(0)
        with pytest.raises(InvalidArgumentError, match="batch"):
            await other
        assert (await pending).ok


async def test_a_waiter_in_use_cannot_join_a_batch(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """A waiter being awaited elsewhere is refused by a batch rather than silently starved."""
    mock.post(DETAIL, callback=finish_after(1), repeat=True)
    waiter = client.wait_for_task("s", "a", policy=STEADY)
    awaited = asyncio.ensure_future(waiter.download_url())
    await asyncio.sleep(0)
    with pytest.raises(InvalidArgumentError, match="in use"):
        await client.wait_many([waiter])
    assert await awaited == PACKAGE_URL
