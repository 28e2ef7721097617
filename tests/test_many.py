"""wait_many, as_completed and watch_many: per-task outcomes, merged updates, clean stops."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kd_fakes import BASE, PACKAGE_URL, MockKooDrive, shape_a, shape_b, task_id_of

from koodrive_tasks import (
    InvalidArgumentError,
    KooDriveClient,
    NotFoundError,
    TaskCanceledError,
    TaskRef,
    TaskStatus,
    WaitTimeoutError,
)
from koodrive_tasks.testing import VirtualClock

DETAIL = f"{BASE}/koodrive/ose/v1/share/taskDetail"


def script_by_task(mock: MockKooDrive, scripts: dict[str, list[dict[str, object]]]) -> None:
    """Answer each task id from its own script (last entry repeats)."""
    from aioresponses import CallbackResult

    cursors = dict.fromkeys(scripts, 0)

    def answer(url: object, **kwargs: object) -> CallbackResult:
        task_id = task_id_of(kwargs)
        script = scripts[task_id]
        body = script[min(cursors[task_id], len(script) - 1)]
        cursors[task_id] += 1
        if "__status__" in body:
            return CallbackResult(status=body["__status__"], payload=body["payload"])  # type: ignore[arg-type]
        return CallbackResult(payload=body)

    mock.post(DETAIL, callback=answer, repeat=True)


async def test_wait_many_reports_each_outcome_without_aborting(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """One task failing or being canceled does not stop the others; outcomes keep input order."""
    script_by_task(
        mock,
        {
            "ok": [
                shape_a(1, 10, task_id="ok"),
                shape_b(2, 100, result=1, url=PACKAGE_URL, task_id="ok"),
            ],
            "gone": [{"__status__": 400, "payload": {"code": "13000309", "msg": "no such task"}}],
            "cancel": [shape_a(1, 5, task_id="cancel"), shape_a(3, 5, task_id="cancel")],
        },
    )
    outcomes = await client.wait_many([("s", "ok"), ("s", "gone"), TaskRef("s", "cancel")])
    assert [ref.task_id for ref in outcomes] == ["ok", "gone", "cancel"]
    ok, gone, cancel = outcomes.values()
    assert ok.ok
    assert ok.download_url == PACKAGE_URL
    assert isinstance(gone.error, NotFoundError)
    assert gone.info is None
    assert isinstance(cancel.error, TaskCanceledError)
    assert cancel.info is not None
    assert cancel.info.status is TaskStatus.CANCELED


async def test_as_completed_yields_in_completion_order(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """as_completed yields the task that ends first first."""
    slow = [shape_a(1, 10, task_id="slow")] * 4 + [
        shape_b(2, 100, result=1, url=PACKAGE_URL, task_id="slow")
    ]
    fast = [
        shape_a(1, 50, task_id="fast"),
        shape_b(2, 100, result=1, url=PACKAGE_URL, task_id="fast"),
    ]
    script_by_task(mock, {"slow": slow, "fast": fast})
    async with client.as_completed([("s", "slow"), ("s", "fast")]) as done:
        order = [outcome.ref.task_id async for outcome in done]
    assert order == ["fast", "slow"]


async def test_watch_many_merges_updates_and_records_outcomes(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """watch_many yields every change of every task, then outcomes hold each result."""
    script_by_task(
        mock,
        {
            "a": [
                shape_a(1, 10, task_id="a"),
                shape_b(2, 100, result=1, url=PACKAGE_URL, task_id="a"),
            ],
            "b": [
                shape_a(0, task_id="b"),
                shape_a(1, 60, task_id="b"),
                shape_a(3, 60, task_id="b"),
            ],
        },
    )
    async with client.watch_many([("s", "a"), ("s", "b")]) as stream:
        seen = [(ref.task_id, u.progress) async for ref, u in stream]
    assert sorted(p for t, p in seen if t == "a") == [10, 100]
    assert [p for t, p in seen if t == "b"] == [0, 60, 60]
    assert stream.outcomes[TaskRef("s", "a")].ok
    assert isinstance(stream.outcomes[TaskRef("s", "b")].error, TaskCanceledError)


async def test_leaving_a_batch_early_stops_its_waits(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """Leaving `async with` mid-stream cancels the remaining waits: no task keeps polling."""
    script_by_task(mock, {str(i): [shape_a(1, 1, task_id=str(i))] for i in range(20)})
    async with client.watch_many([("s", str(i)) for i in range(20)]) as stream:
        async for _ in stream:
            break
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert client.stats.streams == 0


async def test_per_task_timeouts_are_outcomes(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """A task that outlasts the batch timeout gets a WaitTimeoutError outcome at that deadline."""
    script_by_task(
        mock,
        {
            "never": [shape_a(1, 1, task_id="never")],
            "quick": [shape_b(2, 100, result=1, url=PACKAGE_URL, task_id="quick")],
        },
    )
    outcomes = await client.wait_many([("s", "never"), ("s", "quick")], timeout=30)
    assert isinstance(outcomes[TaskRef("s", "never")].error, WaitTimeoutError)
    assert outcomes[TaskRef("s", "quick")].ok
    assert clock.monotonic() == 30


async def test_client_close_stops_running_batches(mock: MockKooDrive, clock: VirtualClock) -> None:
    """Closing the client cancels a batch that is still waiting."""
    script_by_task(mock, {"x": [shape_a(1, 1, task_id="x")]})
    kd = KooDriveClient(BASE, auth=__import__("koodrive_tasks").BearerToken("t"), clock=clock)
    stream = kd.watch_many([("s", "x")])
    first = await stream.__anext__()
    assert first[1].progress == 1
    await kd.close()
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_taskref_repr_hides_kdstoken() -> None:
    """A TaskRef's repr never shows its kdstoken."""
    assert "KDS-SECRET" not in repr(TaskRef("s", "t", "KDS-SECRET"))


async def test_a_batch_with_one_bad_task_refuses_before_any_wait_starts(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """A kdstoken that cannot be sent fails the call itself: no wait of the batch began."""
    tasks: list[Any] = [("s", "t1"), ("s", "t2", 123)]
    with pytest.raises(InvalidArgumentError):
        client.as_completed(tasks)
    with pytest.raises(InvalidArgumentError):
        await client.wait_many(tasks)
    assert not mock.requests
    assert client.stats.streams == 0


async def test_wait_many_makes_a_large_batch_in_steps(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """wait_many over thousands of tasks lets the loop run while it makes and starts the waits."""
    from aioresponses import CallbackResult

    def running(url: object, **kwargs: Any) -> CallbackResult:
        return CallbackResult(payload=shape_a(1, 10, task_id=task_id_of(kwargs)))

    mock.post(DETAIL, callback=running, repeat=True)
    refs = [("s", f"t{i}") for i in range(5_000)]
    batch = asyncio.ensure_future(client.wait_many(refs, timeout=60))
    seen: list[int] = []  # live streams, each time this task got the loop
    for _ in range(1_000):  # a few dozen turns are enough; bounded all the same
        seen.append(client.stats.streams)
        if seen[-1] == len(refs):
            break
        await asyncio.sleep(0)
    assert seen[-1] == len(refs)
    assert seen.count(0) >= 4, seen[:10]  # made about a thousand at a time, none started yet
    assert len({n for n in seen if 0 < n < len(refs)}) >= 4  # started a few hundred at a time
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
