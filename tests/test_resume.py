"""Continuation tokens: checkpoint waits, resume them in a new client, reject bad tokens."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from koodrive_tasks import (
    BearerToken,
    InvalidArgumentError,
    KooDriveClient,
    Limits,
    PollPolicy,
    TaskStatus,
)
from koodrive_tasks.emulator import Emulator, TaskScript
from koodrive_tasks.testing import VirtualClock

POLICY = PollPolicy.backoff(initial_delay=2, factor=2, max_delay=30, jitter=0, timeout=3600)


@pytest.fixture
async def emu(clock: VirtualClock) -> AsyncIterator[Emulator]:
    async with Emulator(clock=clock) as emulator:
        yield emulator


def connect(emu: Emulator, clock: VirtualClock, **kwargs: object) -> KooDriveClient:
    return KooDriveClient(
        emu.url,
        auth=BearerToken(emu.token),
        clock=clock,
        policy=POLICY,
        allow_insecure_urls=True,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_checkpoint_then_resume_finishes_the_waits(
    emu: Emulator, clock: VirtualClock
) -> None:
    """Waits checkpointed mid-way resume in a new client, keep their backoff and finish."""
    ids = [emu.add_task(TaskScript(pending_s=0, duration_s=600)) for _ in range(3)]
    async with connect(emu, clock) as first:
        waiters = [first.wait_for_task("share-1", i, kdstoken="KDS-SECRET") for i in ids]
        for waiter in waiters:
            async for update in waiter:
                if update.progress > 0:
                    break
        token = first.checkpoint(waiters)
    document = json.loads(token)
    assert document["format"] == "koodrive-tasks/waits"
    assert document["version"] == 2
    assert {w["task_id"] for w in document["waits"]} == set(ids)
    assert all(w["family"] == "share_task" for w in document["waits"])
    assert all(w["status"] == TaskStatus.PROCESSING for w in document["waits"])
    assert all(w["polls"] >= 1 for w in document["waits"])
    assert "KDS-SECRET" not in token
    assert emu.token not in token

    async with connect(emu, clock) as second:
        resumed = second.resume(token, kdstokens=dict.fromkeys(ids, "KDS-SECRET"))
        assert [w.last_info.status for w in resumed if w.last_info] == [TaskStatus.PROCESSING] * 3
        outcomes = await second.wait_many(resumed)
    assert all(o.ok for o in outcomes.values())
    assert [ref.task_id for ref in outcomes] == ids
    assert all(ref.kdstoken == "KDS-SECRET" for ref in outcomes)


async def test_resumed_deadline_counts_time_spent_away(emu: Emulator, clock: VirtualClock) -> None:
    """A wait with 100 s left, resumed 40 s later, times out 60 s after resuming."""
    task_id = emu.add_task(TaskScript(pending_s=0, duration_s=10_000))
    async with connect(emu, clock) as first:
        waiter = first.wait_for_task("share-1", task_id, timeout=110)
        async for _ in waiter:
            break
        clock.advance(10)
        token = first.checkpoint([waiter])
    assert json.loads(token)["waits"][0]["timeout_left"] == pytest.approx(100)
    clock.advance(40)
    async with connect(emu, clock) as second:
        (resumed,) = second.resume(token)
        start = clock.monotonic()
        with pytest.raises(TimeoutError):
            await resumed.final_info()
    assert clock.monotonic() - start == pytest.approx(60)


async def test_resumed_waits_spread_their_first_polls(emu: Emulator, clock: VirtualClock) -> None:
    """200 resumed waits do not all poll at the same instant, nor later than initial_delay."""
    ids = [emu.add_task(TaskScript(pending_s=0, duration_s=5000)) for _ in range(200)]
    states = [
        {
            "share_id": "share-1",
            "task_id": i,
            "status": 1,
            "progress": 5,
            "polls": 4,
            "timeout_left": 20,
        }
        for i in ids
    ]
    token = json.dumps(
        {
            "format": "koodrive-tasks/waits",
            "version": 1,
            "saved_at": clock.now().isoformat(),
            "waits": states,
        }
    )
    sent: list[float] = []
    async with connect(
        emu,
        clock,
        on_request=lambda e: sent.append(clock.monotonic()),
        limits=Limits(rate=None),  # the spread alone, not the rate limit's
    ) as kd:
        resumed = kd.resume(token, policy=PollPolicy.backoff(jitter=0))
        await kd.wait_many(resumed)
    first_polls = sorted(sent)[:200]
    # Spread over the delay reached (poll_delay(4) = 2 * 2**3 = 16 s), capped at
    # initial_delay (2 s) so that resumed waits are polled promptly: not all at t=0.
    assert 1.2 < first_polls[-1] - first_polls[0] <= 2.0
    assert sum(1 for t in first_polls if t < 0.2) < 40


@pytest.mark.parametrize(
    "token",
    [
        "not json",
        "[]",
        json.dumps(
            {"format": "other", "version": 1, "saved_at": "2026-11-29T12:00:00+00:00", "waits": []}
        ),
        json.dumps(
            {
                "format": "koodrive-tasks/waits",
                "version": 99,
                "saved_at": "2026-11-29T12:00:00+00:00",
                "waits": [],
            }
        ),
        json.dumps(
            {"format": "koodrive-tasks/waits", "version": 1, "saved_at": "yesterday", "waits": []}
        ),
        json.dumps(
            {
                "format": "koodrive-tasks/waits",
                "version": 1,
                "saved_at": "2026-11-29T12:00:00",
                "waits": [],
            }
        ),
        json.dumps(
            {
                "format": "koodrive-tasks/waits",
                "version": 1,
                "saved_at": "2026-11-29T12:00:00+00:00",
                "waits": [{"task_id": "t"}],
            }
        ),
        json.dumps(
            {
                "format": "koodrive-tasks/waits",
                "version": 1,
                "saved_at": "2026-11-29T12:00:00+00:00",
                "waits": [
                    {
                        "share_id": "s",
                        "task_id": "t",
                        "status": 7,
                        "progress": 1,
                        "polls": 1,
                        "timeout_left": None,
                    }
                ],
            }
        ),
        json.dumps(
            {
                "format": "koodrive-tasks/waits",
                "version": 1,
                "saved_at": "2026-11-29T12:00:00+00:00",
                "waits": [
                    {
                        "share_id": "s",
                        "task_id": "t",
                        "status": 1,
                        "progress": 1,
                        "polls": True,
                        "timeout_left": None,
                    }
                ],
            }
        ),
        *(
            json.dumps(
                {
                    "format": "koodrive-tasks/waits",
                    "version": 2,
                    "saved_at": "2026-11-29T12:00:00+00:00",
                    "waits": [{**wait, "status": 1, "progress": 1, "polls": 1}],
                }
            )
            for wait in (
                {"share_id": "s", "task_id": "t"},  # version 2 names the family
                {"family": "batch", "job_id": "1"},
                {"family": "job"},
                {"family": "job", "job_id": "a/b"},
                {"family": "job", "job_id": 12},
                {"family": "share_task", "job_id": "1"},
            )
        ),
    ],
)
async def test_bad_tokens_are_refused(token: str, client: KooDriveClient) -> None:
    """Anything but a well-formed version-1 or version-2 token raises InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match="continuation token"):
        client.resume(token)


async def test_expired_wait_times_out_on_first_use(emu: Emulator, clock: VirtualClock) -> None:
    """A wait whose deadline passed while it was away ends with WaitTimeoutError at once."""
    task_id = emu.add_task(TaskScript(pending_s=0, duration_s=10_000))
    saved = clock.now() - timedelta(hours=2)
    token = json.dumps(
        {
            "format": "koodrive-tasks/waits",
            "version": 1,
            "saved_at": saved.isoformat(),
            "waits": [
                {
                    "share_id": "share-1",
                    "task_id": task_id,
                    "status": 1,
                    "progress": 3,
                    "polls": 2,
                    "timeout_left": 60,
                }
            ],
        }
    )
    async with connect(emu, clock) as kd:
        (waiter,) = kd.resume(token)
        with pytest.raises(TimeoutError):
            await waiter.final_info()
    assert clock.monotonic() < 1
