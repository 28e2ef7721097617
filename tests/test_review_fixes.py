"""Defects found by the final review: bounded samples, waits behind taken places, typed errors."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from aioresponses import CallbackResult
from kd_fakes import BASE, DETAIL, TOKEN, MockKooDrive, shape_a, task_id_of

from koodrive_tasks import (
    AppSignature,
    BearerToken,
    InvalidArgumentError,
    KooDriveClient,
    Limits,
    PollPolicy,
    WaitTimeoutError,
)
from koodrive_tasks._policy import PollPlan
from koodrive_tasks.testing import VirtualClock

STEADY = PollPolicy(initial_delay=10, factor=1, max_delay=10, jitter=0, timeout=1000)


def running(clock: VirtualClock, **delays: float) -> Any:
    """Every task runs at 10 %; the tasks named in `delays` answer that many seconds late."""

    async def answer(url: object, **kw: Any) -> CallbackResult:
        task_id = task_id_of(kw)
        if task_id in delays:
            await clock.sleep(delays[task_id])
        return CallbackResult(payload=shape_a(1, 10, task_id=task_id))

    return answer


def test_progress_samples_stay_bounded_when_progress_goes_back() -> None:
    """A task whose progress flips 49 <-> 50 for 10,000 polls keeps at most 101 samples."""
    plan = PollPlan(PollPolicy(progress_aware=True, jitter=0))
    for poll in range(10_000):
        plan.observe(float(poll), True, 49 + poll % 2, rand=lambda: 0.5)
    assert len(plan.samples) <= 101
    assert [s.progress for s in plan.samples] == sorted({s.progress for s in plan.samples})


async def test_a_wait_ends_on_time_while_every_in_flight_place_is_taken(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """A slow request holding the only place does not carry a wait past its own deadline."""
    mock.post(DETAIL, callback=running(clock, slow=25), repeat=True)
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


async def test_an_abandoned_iteration_does_not_keep_its_stream(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """`async for ... break`: the stream goes once the deadline passes, or the waiter is dropped."""
    mock.post(DETAIL, callback=running(clock), repeat=True)
    async with KooDriveClient(BASE, auth=BearerToken(TOKEN), clock=clock, policy=STEADY) as kd:
        kept = kd.wait_for_task("s", "kept", timeout=5)
        async for _ in kept:
            break
        for i in range(20):
            async for _ in kd.wait_for_task("s", f"dropped-{i}", timeout=None):
                break
        gc.collect()
        assert set(kd._streams._streams) == {("s", "kept", None)}
        await clock.sleep(10)  # past the kept waiter's deadline
        assert len(kd._streams) == 0
        with pytest.raises(WaitTimeoutError):
            await kept.final_info()


@pytest.mark.parametrize("kdstoken", [123, b"bytes", "kds-\udc00"])
async def test_a_kdstoken_that_cannot_be_sent_is_an_invalid_argument(
    mock: MockKooDrive, client: KooDriveClient, kdstoken: Any
) -> None:
    """Not a string, or not valid text: InvalidArgumentError at once, never TypeError."""
    with pytest.raises(InvalidArgumentError):
        client.wait_for_task("s", "t", kdstoken=kdstoken)
    with pytest.raises(InvalidArgumentError):
        await client.get_share_task("s", "t", kdstoken=kdstoken)
    assert not mock.requests


@pytest.mark.parametrize("token", ["SEKRET\n", "SEKRET\r\nX-Evil: 1", "SEK\x00RET"])
def test_a_token_no_header_can_carry_is_refused_without_quoting_it(token: str) -> None:
    with pytest.raises(InvalidArgumentError, match="control character") as caught:
        BearerToken(token)
    assert "SEK" not in str(caught.value)


async def test_a_provider_token_with_a_newline_is_a_typed_error(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    async def provider() -> str:
        return "fresh-token\n"

    async with KooDriveClient(BASE, auth=BearerToken(provider), clock=clock) as kd:
        with pytest.raises(InvalidArgumentError, match="control character"):
            await kd.get_share_task("s", "t")


@pytest.mark.parametrize("field", ["app_id", "app_secret", "user_id"])
def test_app_signature_credentials_must_be_valid_text(field: str) -> None:
    values = {"app_id": "app", "app_secret": "s" * 32, "user_id": "user"}
    values[field] = "SECRET\udc00xyz"
    with pytest.raises(InvalidArgumentError, match=field) as caught:
        AppSignature(**values)
    assert "SECRET" not in str(caught.value)


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
    assert len(client._streams) == 0
