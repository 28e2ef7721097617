"""The client against the real emulator on loopback, both sharing one virtual clock."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest

from koodrive_tasks import (
    AppSignature,
    AuthenticationError,
    BearerToken,
    ClockSkewError,
    InvalidParameterError,
    KooDriveClient,
    PollPolicy,
    RequestTimeoutError,
    TargetFolder,
    TaskCanceledError,
    TaskFailedError,
    TaskStatus,
    TaskType,
)
from koodrive_tasks.emulator import Emulator, Fault, Outcome, TaskScript
from koodrive_tasks.testing import VirtualClock

POLICY = PollPolicy.backoff(initial_delay=1, factor=1.5, max_delay=20, timeout=3600)


@pytest.fixture
async def emu(clock: VirtualClock) -> AsyncIterator[Emulator]:
    async with Emulator(clock=clock, seed=3) as emulator:
        yield emulator


def connect(emu: Emulator, clock: VirtualClock, **kwargs: object) -> KooDriveClient:
    options: dict[str, object] = {
        "auth": BearerToken(emu.token),
        "clock": clock,
        "policy": POLICY,
        "allow_insecure_urls": True,
    }
    options.update(kwargs)
    return KooDriveClient(emu.url, **options)  # type: ignore[arg-type]


async def test_package_task_end_to_end(emu: Emulator, clock: VirtualClock) -> None:
    """Create a package task, follow its progress, download and open the zip it names."""
    emu.queue_script(TaskScript(pending_s=5, duration_s=1800))
    async with connect(emu, clock) as kd:
        task_id = await kd.create_share_task(
            "share-1", ["a", "b"], container_id="c1", zip_name="pkg.zip"
        )
        waiter = kd.wait_for_task("share-1", task_id)
        updates = [u async for u in waiter]
        url = await waiter
    assert updates[0].status is TaskStatus.PENDING
    assert updates[-1].status is TaskStatus.COMPLETED
    progress = [u.progress for u in updates]
    assert progress == sorted(progress)
    assert len(updates) > 5
    assert clock.monotonic() >= 1805
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        data = await response.read()
    assert sorted(zipfile.ZipFile(io.BytesIO(data)).namelist()) == ["a", "b"]


@pytest.mark.parametrize("shape", ["A", "B"])
async def test_both_shapes_end_to_end(shape: str, clock: VirtualClock) -> None:
    """Either documented response shape yields the same outcome."""
    async with Emulator(
        clock=clock,
        shape=shape,  # type: ignore[arg-type]
    ) as emu:
        task_id = emu.add_task(
            TaskScript(duration_s=60, outcome=Outcome.PARTIALLY_FAILED), file_ids=["x", "y"]
        )
        async with connect(emu, clock) as kd:
            info = await kd.wait_for_task("share-1", task_id).final_info()
    assert info.status is TaskStatus.COMPLETED
    assert info.download_url
    if shape == "B":
        assert info.failed_files


async def test_dump_task_end_to_end(emu: Emulator, clock: VirtualClock) -> None:
    """A dump task completes and final_info reports it without a download URL."""
    async with connect(emu, clock) as kd:
        task_id = await kd.create_share_task(
            "share-1", ["a"], container_id="c1", task_type=TaskType.DUMP, target=TargetFolder("c2")
        )
        info = await kd.wait_for_task("share-1", task_id).final_info()
    assert info.status is TaskStatus.COMPLETED
    assert not info.download_url


async def test_failed_and_canceled_outcomes(emu: Emulator, clock: VirtualClock) -> None:
    """All-failed and canceled tasks raise their typed errors through the real server."""
    failed = emu.add_task(TaskScript(duration_s=30, outcome=Outcome.ALL_FAILED))
    canceled = emu.add_task(TaskScript(duration_s=300, cancel_after_s=100))
    async with connect(emu, clock) as kd:
        with pytest.raises(TaskFailedError):
            await kd.wait_for_task("share-1", failed)
        with pytest.raises(TaskCanceledError):
            await kd.wait_for_task("share-1", canceled)


async def test_wait_survives_every_transient_fault(emu: Emulator, clock: VirtualClock) -> None:
    """Throttling, 5xx (HTML and JSON), drops, garbled and truncated bodies are retried."""
    faults = (
        Fault.throttle(retry_after_s=3),
        Fault.server_error(),
        Fault.gateway(502, html=True),
        Fault.gateway(504, html=False),
        Fault.drop(),
        Fault.malformed_json(),
        Fault.truncated_json(),
    )
    task_id = emu.add_task(TaskScript(duration_s=20, faults=faults))
    async with connect(emu, clock) as kd:
        url = await kd.wait_for_task("share-1", task_id)
    assert url.startswith(emu.url)
    assert sum(emu.stats.faults.values()) == len(faults)


async def test_slow_response_times_out_and_is_retried(emu: Emulator, clock: VirtualClock) -> None:
    """A response slower than request_timeout is abandoned and the poll retried."""
    task_id = emu.add_task(TaskScript(duration_s=5, faults=(Fault.slow(0.5),)))
    async with connect(emu, clock, request_timeout=0.1) as kd:
        waiter = kd.wait_for_task("share-1", task_id)
        with pytest.raises(RequestTimeoutError):
            await kd.get_share_task(
                "share-1", emu.add_task(TaskScript(faults=(Fault.slow(0.5),) * 4))
            )
        assert await waiter


async def test_nonzero_code_in_200_is_an_api_error(emu: Emulator, clock: VirtualClock) -> None:
    """HTTP 200 whose code is 13000102 raises InvalidParameterError, not a task state."""
    task_id = emu.add_task(TaskScript(faults=(Fault.error_code("13000102"),)))
    async with connect(emu, clock) as kd:
        with pytest.raises(InvalidParameterError) as caught:
            await kd.wait_for_task("share-1", task_id)
    assert caught.value.http_status == 200
    assert caught.value.code == "13000102"


async def test_app_signature_verified_by_server(emu: Emulator, clock: VirtualClock) -> None:
    """Requests signed with AppSignature pass the emulator's server-side verification."""
    auth = AppSignature(emu.app_id, emu.app_secret, emu.user_id)
    task_id = emu.add_task(TaskScript(duration_s=10))
    async with connect(emu, clock, auth=auth) as kd:
        assert await kd.wait_for_task("share-1", task_id)
    assert emu.stats.auth_failures == 0


async def test_wrong_app_secret_is_rejected(emu: Emulator, clock: VirtualClock) -> None:
    """A wrong app secret is an AuthenticationError whose text does not contain the secret."""
    auth = AppSignature(emu.app_id, "wrong-SECRET-value", emu.user_id)
    task_id = emu.add_task()
    async with connect(emu, clock, auth=auth) as kd:
        with pytest.raises(AuthenticationError) as caught:
            await kd.get_share_task("share-1", task_id)
    assert not isinstance(caught.value, ClockSkewError)
    assert "wrong-SECRET-value" not in str(caught.value) + repr(caught.value)
    assert caught.value.trace_id is not None
    assert len(caught.value.trace_id) == 58


async def test_clock_skew_is_reported_as_such(emu: Emulator) -> None:
    """A client clock 20 minutes off gets ClockSkewError telling it to fix the clock."""
    server = VirtualClock()
    skewed = VirtualClock(wall_start=server.now() + timedelta(minutes=20))
    async with Emulator(clock=server) as emu2:
        auth = AppSignature(emu2.app_id, emu2.app_secret, emu2.user_id)
        task_id = emu2.add_task()
        async with connect(emu2, skewed, auth=auth) as kd:
            with pytest.raises(ClockSkewError, match="clock"):
                await kd.get_share_task("share-1", task_id)


async def test_bad_token_is_rejected_and_provider_refresh_recovers(
    emu: Emulator, clock: VirtualClock
) -> None:
    """An expired token is replaced once through the provider and the request succeeds."""
    tokens = iter(["stale-token", emu.token])
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        return next(tokens)

    task_id = emu.add_task()
    async with connect(emu, clock, auth=BearerToken(provider)) as kd:
        info = await kd.get_share_task("share-1", task_id)
    assert info.task_id == task_id
    assert calls == 2


async def test_injected_session_stays_open(emu: Emulator, clock: VirtualClock) -> None:
    """A caller's session is used and left open when the client closes."""
    async with aiohttp.ClientSession() as session:
        async with connect(emu, clock, session=session) as kd:
            await kd.get_share_task("share-1", emu.add_task())
        assert not session.closed
