"""TaskWaiter: outcomes, iteration, deadlines, transient failures, cancellation, coalescing."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult
from kd_fakes import (
    BASE,
    DETAIL,
    FAST,
    PACKAGE_URL,
    TOKEN,
    URL_QUERY,
    MockKooDrive,
    shape_a,
    shape_b,
    task_id_of,
)

from koodrive_tasks import (
    BearerToken,
    FileStatus,
    InsecureURLError,
    KooDriveClient,
    NotFoundError,
    PollPolicy,
    ProtocolError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    TaskCanceledError,
    TaskFailedError,
    TaskStatus,
    WaitTimeoutError,
)
from koodrive_tasks.testing import VirtualClock


def polls(mock: MockKooDrive) -> int:
    return len(mock.requests_to(DETAIL))


# --- outcomes --------------------------------------------------------------------------


async def test_completed_all_succeeded_returns_url(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """A completed package task with all files succeeded resolves to its downloadUrl."""
    mock.detail(payload=shape_b(2, 100, result=1, url=PACKAGE_URL))
    assert await client.wait_for_task("s1", "t1") == PACKAGE_URL


async def test_partial_failure_returns_url_and_names_failed_files(
    mock: MockKooDrive, client: KooDriveClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Partially failed: the URL is returned, final_info lists the failed files, a warning is logged."""
    files = [{"fileId": "f1", "status": "1"}, {"fileId": "f2", "status": "2"}]
    mock.detail(payload=shape_b(2, 100, result=2, url=PACKAGE_URL, files=files), repeat=True)
    waiter = client.wait_for_task("s1", "t1")
    with caplog.at_level(logging.WARNING, logger="koodrive_tasks"):
        assert await waiter == PACKAGE_URL
    info = await waiter.final_info()
    assert [f.file_id for f in info.failed_files] == ["f2"]
    assert info.files[0].status is FileStatus.SUCCEEDED
    assert "f2" in caplog.text
    assert URL_QUERY not in caplog.text


async def test_all_failed_raises_task_failed(mock: MockKooDrive, client: KooDriveClient) -> None:
    """Completed with every file failed raises TaskFailedError carrying the final info."""
    mock.detail(payload=shape_a(2, 100, result=3))
    with pytest.raises(TaskFailedError) as caught:
        await client.wait_for_task("s1", "t1")
    assert caught.value.task_id == "t1"
    assert caught.value.info.status is TaskStatus.COMPLETED


async def test_canceled_raises_task_canceled(mock: MockKooDrive, client: KooDriveClient) -> None:
    """A canceled task raises TaskCanceledError, also from final_info."""
    mock.detail(payload=shape_a(1, 40))
    mock.detail(payload=shape_a(3, 40))
    waiter = client.wait_for_task("s1", "t1")
    with pytest.raises(TaskCanceledError, match="canceled at 40 %"):
        await waiter.final_info()
    with pytest.raises(TaskCanceledError):
        await waiter


async def test_completed_package_without_url_is_a_protocol_error(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """A completed task without downloadUrl is a ProtocolError, never None."""
    mock.detail(payload=shape_b(2, 100, result=1, url=""))
    with pytest.raises(ProtocolError, match="without a downloadUrl"):
        await client.wait_for_task("s1", "t1")


async def test_dump_task_final_info_needs_no_url(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """final_info returns the completed dump task's state with its new file ids."""
    files = [{"fileId": "f1", "status": "1", "newFileId": "n1"}]
    mock.detail(payload=shape_b(2, 100, result=1, files=files, taskType=2))
    info = await client.wait_for_task("s1", "t1").final_info()
    assert info.files[0].new_file_id == "n1"


async def test_http_download_url_refused_unless_allowed(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """A non-https downloadUrl is refused with InsecureURLError whose text hides the query."""
    mock.detail(payload=shape_b(2, 100, result=1, url=f"http://obs.example.com/a.zip?{URL_QUERY}"))
    with pytest.raises(InsecureURLError) as caught:
        await client.wait_for_task("s1", "t1")
    assert URL_QUERY not in str(caught.value)
    assert "obs.example.com/a.zip" in str(caught.value)


# --- iteration -------------------------------------------------------------------------


async def test_iteration_then_await_does_not_poll_again(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """Awaiting after a full iteration reuses the final observation."""
    mock.detail(payload=shape_a(1, 50))
    mock.detail(payload=shape_a(2, 100, result=1, url=PACKAGE_URL))
    waiter = client.wait_for_task("s1", "t1")
    updates = [u async for u in waiter]
    assert [u.progress for u in updates] == [50, 100]
    assert await waiter == PACKAGE_URL
    assert polls(mock) == 2


async def test_break_then_await_continues_same_loop(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """Breaking out of iteration and then awaiting continues the same poll schedule."""
    for progress in (10, 20, 30):
        mock.detail(payload=shape_a(1, progress))
    mock.detail(payload=shape_a(2, 100, result=1, url=PACKAGE_URL))
    waiter = client.wait_for_task("s1", "t1")
    async for update in waiter:
        if update.progress == 20:
            break
    assert await waiter == PACKAGE_URL
    assert polls(mock) == 4
    assert clock.monotonic() == 1 + 2 + 4  # no restart of the backoff


async def test_unchanged_observations_are_not_yielded(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """Only the first observation and changes of status or progress are yielded."""
    for body in (shape_a(0), shape_a(0), shape_a(1, 0), shape_a(1, 0), shape_a(1, 5)):
        mock.detail(payload=body)
    mock.detail(payload=shape_a(3, 5))
    waiter = client.wait_for_task("s1", "t1")
    seen = [(u.status, u.progress) async for u in waiter]
    assert seen == [
        (TaskStatus.PENDING, 0),
        (TaskStatus.PROCESSING, 0),
        (TaskStatus.PROCESSING, 5),
        (TaskStatus.CANCELED, 5),
    ]
    assert polls(mock) == 6


async def test_iterating_after_await_yields_final_update(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """Iterating a waiter that was already awaited yields its terminal update, then ends."""
    mock.detail(payload=shape_a(2, 100, result=1, url=PACKAGE_URL))
    waiter = client.wait_for_task("s1", "t1")
    await waiter
    assert [u.status async for u in waiter] == [TaskStatus.COMPLETED]


async def test_concurrent_iteration_and_await_share_one_loop(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """An await running during iteration in another task does not start a second poll loop."""
    for progress in (10, 60):
        mock.detail(payload=shape_a(1, progress))
    mock.detail(payload=shape_a(2, 100, result=1, url=PACKAGE_URL))
    waiter = client.wait_for_task("s1", "t1")

    async def iterate() -> list[int]:
        return [u.progress async for u in waiter]

    progresses, url = await asyncio.gather(iterate(), waiter.download_url())
    assert url == PACKAGE_URL
    assert progresses == [10, 60, 100]
    assert polls(mock) == 3


# --- deadlines and transient failures ----------------------------------------------------


async def test_deadline_is_exact_and_carries_last_info(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """The wait raises WaitTimeoutError exactly at its deadline, never sleeping past it."""
    mock.detail(payload=shape_a(1, 30), repeat=True)
    waiter = client.wait_for_task("s1", "t1", timeout=10.0)
    with pytest.raises(WaitTimeoutError) as caught:
        await waiter
    assert clock.monotonic() == 10.0
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.last_info is not None
    assert caught.value.last_info.progress == 30
    assert caught.value.last_status is TaskStatus.PROCESSING
    # polls at 0, 1, 3, 7; the next (15) is past the deadline
    assert polls(mock) == 4


async def test_timeout_none_waits_as_long_as_needed(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """timeout=None disables the deadline."""
    policy = PollPolicy.backoff(initial_delay=60, factor=1, max_delay=60, jitter=0, timeout=None)
    for _ in range(200):
        mock.detail(payload=shape_a(1, 1))
    mock.detail(payload=shape_a(2, 100, result=1, url=PACKAGE_URL))
    async with KooDriveClient(
        "https://kd.example.com", auth=_token(), clock=clock, policy=policy
    ) as kd:
        assert await kd.wait_for_task("s1", "t1") == PACKAGE_URL
    assert clock.monotonic() == 200 * 60


async def test_transient_failures_are_survived(mock: MockKooDrive, client: KooDriveClient) -> None:
    """429, 5xx with HTML, connection drops, timeouts and garbled bodies inside a wait are retried."""
    mock.detail(
        status=429,
        headers={"Retry-After": "2"},
        payload={"error_code": "APIGW.0308", "error_msg": "throttled"},
    )
    mock.detail(status=502, body="<html>bad gateway</html>", content_type="text/html")
    mock.detail(exception=aiohttp.ServerDisconnectedError())
    mock.detail(exception=asyncio.TimeoutError())
    mock.detail(body='{"code": 0, "jobInfo": {"taskStatus": 1', content_type="application/json")
    mock.detail(payload=shape_b(2, 100, result=1, url=PACKAGE_URL))
    assert await client.wait_for_task("s1", "t1") == PACKAGE_URL
    assert polls(mock) == 6


async def test_retry_after_is_honoured(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """The next poll after a 429 waits for Retry-After (stretched by at most 20 %)."""
    mock.detail(status=429, headers={"Retry-After": "20"}, payload={})
    mock.detail(payload=shape_b(2, 100, result=1, url=PACKAGE_URL))
    await client.wait_for_task("s1", "t1")
    assert 20 <= clock.monotonic() <= 24


async def test_huge_retry_after_is_clamped_and_deadline_holds(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """Retry-After: 86400 cannot push the wait past its deadline; the last error is attached."""
    mock.detail(status=429, headers={"Retry-After": "86400"}, payload={}, repeat=True)
    with pytest.raises(WaitTimeoutError) as caught:
        await client.wait_for_task("s1", "t1", timeout=300)
    assert clock.monotonic() == 300
    assert isinstance(caught.value.last_error, RateLimitedError)
    assert caught.value.last_info is None
    assert polls(mock) == 3  # 0, ~120-144, ~240-288


async def test_failures_outlasting_deadline_raise_timeout_with_last_error(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """A wait whose every poll fails transiently ends with WaitTimeoutError, not the 5xx."""
    mock.detail(status=503, body="<html>down</html>", repeat=True)
    with pytest.raises(WaitTimeoutError) as caught:
        await client.wait_for_task("s1", "t1", timeout=60)
    assert isinstance(caught.value.last_error, ServerError)
    assert "last error" in str(caught.value)


async def test_a_retry_cut_short_by_the_deadline_keeps_the_failure_before_it(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """The retry after a 503 runs until the wait's deadline cuts it off: the WaitTimeoutError
    names the 503 (what the server did), not the cut-off request."""
    answers = iter([CallbackResult(status=503, body="<html>down</html>")])

    def answer(url: object, **kwargs: Any) -> CallbackResult:
        for first in answers:
            return first
        clock.advance(10 - clock.monotonic())  # no answer before the deadline cuts it off
        raise asyncio.TimeoutError

    mock.post(DETAIL, callback=answer, repeat=True)
    with pytest.raises(WaitTimeoutError) as caught:
        await client.wait_for_task("s1", "t1", timeout=10)
    assert clock.monotonic() == pytest.approx(10)
    assert polls(mock) == 2
    assert isinstance(caught.value.last_error, ServerError), caught.value.last_error


async def test_a_request_timeout_before_the_deadline_is_the_last_error(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """Request timeouts well before the deadline are news: the last one is the last error."""
    answers = iter([CallbackResult(status=503, body="<html>down</html>")])

    def answer(url: object, **kwargs: Any) -> CallbackResult:
        for first in answers:
            return first
        raise asyncio.TimeoutError

    mock.post(DETAIL, callback=answer, repeat=True)
    with pytest.raises(WaitTimeoutError) as caught:
        await client.wait_for_task("s1", "t1", timeout=10)
    assert polls(mock) > 2
    assert isinstance(caught.value.last_error, RequestTimeoutError), caught.value.last_error


async def test_non_retryable_error_ends_wait_at_once(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """A 4xx such as 13000309 ends the wait immediately with its typed error."""
    mock.detail(status=400, payload={"code": "13000309", "msg": "resource does not exist"})
    with pytest.raises(NotFoundError):
        await client.wait_for_task("s1", "t1")
    assert clock.monotonic() == 0
    assert polls(mock) == 1


# --- cancellation ------------------------------------------------------------------------


async def test_cancel_mid_sleep_stops_everything(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """Cancelling the awaiting task mid-sleep propagates CancelledError and leaves no stream behind."""
    mock.detail(payload=shape_a(1, 10), repeat=True)
    task = asyncio.create_task(client.wait_for_task("s1", "t1").download_url())
    await clock.sleep(1.5)  # polls at 0 and 1; the waiter now sleeps until 3
    assert polls(mock) == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.stats.streams == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}
    before = polls(mock)
    clock.advance(1000)
    await asyncio.sleep(0)
    assert polls(mock) == before


async def test_cancelled_waiter_can_be_awaited_again(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """After a cancelled await, awaiting the same waiter resumes polling and finishes."""
    mock.detail(payload=shape_a(1, 10))
    mock.detail(payload=shape_a(2, 100, result=1, url=PACKAGE_URL), repeat=True)
    waiter = client.wait_for_task("s1", "t1")
    with pytest.raises(asyncio.TimeoutError):  # not the builtin TimeoutError on 3.10
        await asyncio.wait_for(_first_update(waiter), timeout=0)
    assert await waiter == PACKAGE_URL


async def _first_update(waiter: object) -> None:
    await asyncio.sleep(0)
    async for _ in waiter:  # type: ignore[attr-defined]
        await asyncio.sleep(3600)


# --- coalescing --------------------------------------------------------------------------


async def test_waits_on_same_task_share_polls(mock: MockKooDrive, client: KooDriveClient) -> None:
    """Several waits on one task share one poll stream and each gets every update."""
    for progress in (10, 50):
        mock.detail(payload=shape_a(1, progress))
    mock.detail(payload=shape_a(2, 100, result=1, url=PACKAGE_URL))

    async def collect() -> list[int]:
        return [u.progress async for u in client.wait_for_task("s1", "t1")]

    results = await asyncio.gather(*(collect() for _ in range(5)))
    assert results == [[10, 50, 100]] * 5
    assert polls(mock) == 3


async def test_cancelling_one_coalesced_wait_leaves_others(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """Cancelling the first of two waits on one task spares the second; the polls go on for it."""
    for progress in (10, 20, 30, 40):
        mock.detail(payload=shape_a(1, progress))
    mock.detail(payload=shape_a(2, 100, result=1, url=PACKAGE_URL))
    first = asyncio.create_task(client.wait_for_task("s1", "t1").download_url())
    await asyncio.sleep(0)
    second = asyncio.create_task(client.wait_for_task("s1", "t1").download_url())
    await clock.sleep(1.5)
    assert polls(mock) == 2
    first.cancel()
    assert await second == PACKAGE_URL
    with pytest.raises(asyncio.CancelledError):
        await first
    assert polls(mock) == 5


async def test_coalesced_waits_keep_their_own_deadlines(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """A short wait times out at its own deadline while a longer one on the same task goes on."""
    mock.detail(payload=shape_a(1, 10), repeat=True)
    long = asyncio.create_task(client.wait_for_task("s1", "t1", timeout=100).download_url())
    await asyncio.sleep(0)
    with pytest.raises(WaitTimeoutError):
        await client.wait_for_task("s1", "t1", timeout=5.5)
    assert clock.monotonic() == 5.5
    with pytest.raises(WaitTimeoutError):
        await long
    assert clock.monotonic() == 100


def _token() -> object:
    from koodrive_tasks import BearerToken

    return BearerToken("tok")


__all__ = ["FAST"]


STEADY = PollPolicy.backoff(initial_delay=10, factor=1, max_delay=10, jitter=0, timeout=1000)


def running_at_10(clock: VirtualClock) -> Any:
    """Every task runs at 10 %."""

    def answer(url: object, **kw: Any) -> CallbackResult:
        return CallbackResult(payload=shape_a(1, 10, task_id=task_id_of(kw)))

    return answer


async def test_an_abandoned_iteration_does_not_keep_its_stream(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """`async for ... break`: the stream goes once the deadline passes, or the waiter is dropped."""
    mock.post(DETAIL, callback=running_at_10(clock), repeat=True)
    async with KooDriveClient(BASE, auth=BearerToken(TOKEN), clock=clock, policy=STEADY) as kd:
        kept = kd.wait_for_task("s", "kept", timeout=5)
        async for _ in kept:
            break
        for i in range(20):
            async for _ in kd.wait_for_task("s", f"dropped-{i}", timeout=None):
                break
        gc.collect()
        assert kd.stats.streams == 1  # only the kept waiter's
        await clock.sleep(10)  # past the kept waiter's deadline
        assert kd.stats.streams == 0
        with pytest.raises(WaitTimeoutError):
            await kept.final_info()
