"""Fault injection: every kind, scripted per task and drawn at random with a seed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import aiohttp
import pytest
from emulator_helpers import CREATE, DETAIL, Api, create_body

from koodrive_tasks.emulator import Emulator, Fault, FaultPlan, TaskScript


async def raw_detail(
    http: aiohttp.ClientSession, emu: Emulator, task_id: str
) -> tuple[int, dict[str, str], bytes]:
    async with http.post(
        emu.url + DETAIL,
        json={"taskId": task_id, "shareId": "share-1"},
        headers={"Authorization": f"Bearer {emu.token}"},
    ) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_throttle_sends_429_with_retry_after(session: aiohttp.ClientSession) -> None:
    """A throttle fault answers 429 in the gateway shape with Retry-After."""
    async with Emulator() as emu:
        task_id = emu.add_task(TaskScript(faults=[Fault.throttle(retry_after_s=3)]))
        status, headers, body = await raw_detail(session, emu, task_id)
        assert status == 429
        assert headers["Retry-After"] == "3"
        answer = json.loads(body)
        assert answer["error_code"] == "APIGW.0308"
        assert answer["request_id"]
        assert emu.stats.faults["throttle"] == 1


async def test_throttle_with_fractional_or_no_retry_after(session: aiohttp.ClientSession) -> None:
    """Retry-After may be fractional (fast tests) or absent."""
    async with Emulator() as emu:
        script = TaskScript(faults=[Fault.throttle(0.25), Fault.throttle(None)])
        task_id = emu.add_task(script)
        _, first, _ = await raw_detail(session, emu, task_id)
        _, second, _ = await raw_detail(session, emu, task_id)
        assert first["Retry-After"] == "0.25"
        assert "Retry-After" not in second


async def test_server_error_is_json_500(session: aiohttp.ClientSession) -> None:
    """A server-error fault answers 500 with a JSON service error."""
    async with Emulator() as emu:
        task_id = emu.add_task(TaskScript(faults=[Fault.server_error()]))
        status, headers, body = await raw_detail(session, emu, task_id)
        assert status == 500
        assert headers["Content-Type"].startswith("application/json")
        assert json.loads(body)["code"] == "13000001"


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_gateway_errors_with_html_bodies(session: aiohttp.ClientSession, status: int) -> None:
    """Gateway faults answer 502/503/504 with an HTML page."""
    async with Emulator() as emu:
        task_id = emu.add_task(TaskScript(faults=[Fault.gateway(status)]))
        got, headers, body = await raw_detail(session, emu, task_id)
        assert got == status
        assert headers["Content-Type"].startswith("text/html")
        assert body.startswith(b"<html>")
        assert str(status).encode() in body
        assert emu.stats.faults["gateway_html"] == 1


async def test_gateway_error_json_variant(session: aiohttp.ClientSession) -> None:
    """The JSON variant of a gateway fault uses the gateway's error shape."""
    async with Emulator() as emu:
        task_id = emu.add_task(TaskScript(faults=[Fault.gateway(504, html=False)]))
        status, _, body = await raw_detail(session, emu, task_id)
        assert status == 504
        assert json.loads(body)["error_code"] == "APIGW.0203"


def test_gateway_fault_rejects_other_statuses() -> None:
    """Only 502, 503 and 504 are gateway faults."""
    with pytest.raises(ValueError, match="502, 503 or 504"):
        Fault.gateway(500)


async def test_drop_closes_the_connection(session: aiohttp.ClientSession) -> None:
    """A drop fault closes the connection: the client sees a disconnection, no response."""
    async with Emulator() as emu:
        task_id = emu.add_task(TaskScript(faults=[Fault.drop()]))
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            await raw_detail(session, emu, task_id)
        assert emu.stats.faults["drop"] == 1
        status, _, _ = await raw_detail(session, emu, task_id)  # the next poll is fine
        assert status == 200


async def test_slow_answers_normally_after_a_delay(session: aiohttp.ClientSession) -> None:
    """A slow fault waits the configured real seconds, then answers normally."""
    async with Emulator() as emu:
        task_id = emu.add_task(TaskScript(faults=[Fault.slow(0.2)]))
        started = time.perf_counter()
        status, _, body = await raw_detail(session, emu, task_id)
        assert time.perf_counter() - started >= 0.19
        assert status == 200
        assert json.loads(body)["jobInfo"]["taskId"] == task_id


async def test_slow_response_trips_a_client_timeout(session: aiohttp.ClientSession) -> None:
    """A client with a shorter timeout than the delay times out."""
    async with Emulator() as emu:
        task_id = emu.add_task(TaskScript(faults=[Fault.slow(0.3)]))
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(
                emu.url + DETAIL,
                json={"taskId": task_id, "shareId": "share-1"},
                headers={"Authorization": f"Bearer {emu.token}"},
                timeout=aiohttp.ClientTimeout(total=0.05),
            ) as resp:
                await resp.read()


async def test_malformed_json(session: aiohttp.ClientSession) -> None:
    """A malformed-JSON fault answers 200 application/json that does not parse."""
    async with Emulator() as emu:
        task_id = emu.add_task(TaskScript(faults=[Fault.malformed_json()]))
        status, headers, body = await raw_detail(session, emu, task_id)
        assert status == 200
        assert headers["Content-Type"].startswith("application/json")
        with pytest.raises(ValueError, match="property name"):
            json.loads(body)


async def test_truncated_json(session: aiohttp.ClientSession) -> None:
    """A truncated-JSON fault sends the first half of the real body."""
    async with Emulator() as emu:
        task_id = emu.add_task(TaskScript(faults=[Fault.truncated_json()]))
        status, _, body = await raw_detail(session, emu, task_id)
        assert status == 200
        assert body.startswith(b'{"code":0,')
        with pytest.raises(ValueError, match=r"Unterminated|Expecting"):
            json.loads(body)


async def test_error_code_under_http_200(session: aiohttp.ClientSession) -> None:
    """An error-code fault answers HTTP 200 with a non-zero service code."""
    async with Emulator() as emu:
        task_id = emu.add_task(TaskScript(faults=[Fault.error_code("13000301")]))
        status, _, body = await raw_detail(session, emu, task_id)
        assert status == 200
        assert json.loads(body)["code"] == "13000301"


async def test_scripted_faults_apply_to_successive_polls(api: Api) -> None:
    """Scripted faults hit polls in order; None entries and later polls answer normally."""
    async with Emulator() as emu:
        script = TaskScript(faults=[Fault.server_error(), None, Fault.throttle(0)])
        task_id = emu.add_task(script)
        statuses = [(await api.detail(emu, task_id))[0] for _ in range(5)]
        assert statuses == [500, 200, 429, 200, 200]
        assert emu.stats.polls[task_id] == 5
        assert emu.stats.detail_polls == 5
        assert emu.stats.faults == {"server_error": 1, "throttle": 1}
        assert emu.stats.faults_injected == 2


async def run_random_faults(api: Api, seed: int, n: int = 60) -> list[int]:
    plan = FaultPlan(rate=0.5, mix=[Fault.server_error(), Fault.throttle(0)])
    async with Emulator(seed=seed, faults=plan) as emu:
        task_id = emu.add_task()
        return [(await api.detail(emu, task_id))[0] for _ in range(n)]


async def test_random_faults_are_reproducible_with_a_seed(api: Api) -> None:
    """With a seed, the same polls get the same random faults, at about the set rate."""
    first = await run_random_faults(api, seed=3)
    second = await run_random_faults(api, seed=3)
    other = await run_random_faults(api, seed=4)
    assert first == second
    assert first != other
    assert set(first) == {200, 429, 500}
    assert 15 <= sum(s != 200 for s in first) <= 45


def service_code(body: bytes) -> object:
    try:
        return json.loads(body).get("code")
    except ValueError:
        return "unparsable"


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        pytest.param(Fault.throttle(0), 429, id="throttle"),
        pytest.param(Fault.server_error(), 500, id="server_error"),
        pytest.param(Fault.gateway(502), 502, id="gateway_html"),
        pytest.param(Fault.gateway(503, html=False), 503, id="gateway_json"),
        pytest.param(Fault.malformed_json(), 200, id="malformed_json"),
        pytest.param(Fault.truncated_json(), 200, id="truncated_json"),
        pytest.param(Fault.error_code(), 200, id="error_code"),
    ],
)
async def test_every_rendered_kind_by_probability(
    session: aiohttp.ClientSession, fault: Fault, status: int
) -> None:
    """A plan with rate 1 and one fault injects that fault into every detail request."""
    async with Emulator(faults=FaultPlan(rate=1.0, mix=[fault]), seed=1) as emu:
        task_id = emu.add_task()
        answers = [await raw_detail(session, emu, task_id) for _ in range(3)]
        assert [a[0] for a in answers] == [status] * 3
        # None of them is a usable success body.
        assert all(service_code(a[2]) not in (0, "0") for a in answers)
        assert emu.stats.faults[fault.kind.value] == 3


async def test_drop_and_slow_by_probability(session: aiohttp.ClientSession) -> None:
    """Drop and slow faults also come from a random plan."""
    plan = FaultPlan(rate=1.0, mix=[Fault.drop(), Fault.slow(0.01)])
    async with Emulator(faults=plan, seed=2) as emu:
        task_id = emu.add_task()
        for _ in range(8):
            with contextlib.suppress(aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                await raw_detail(session, emu, task_id)
        assert emu.stats.faults["drop"] + emu.stats.faults["slow"] == 8
        assert emu.stats.faults["drop"] > 0
        assert emu.stats.faults["slow"] > 0


async def test_create_faults_are_queued_and_create_nothing(api: Api) -> None:
    """fail_next_create injects faults into creates; a faulted create makes no task."""
    async with Emulator() as emu:
        emu.fail_next_create(Fault.throttle(0), None, Fault.gateway(503))
        first, _ = await api.post(emu, CREATE, create_body())
        second, _ = await api.post(emu, CREATE, create_body())
        third, _ = await api.post(emu, CREATE, create_body())
        assert (first, second, third) == (429, 200, 503)
        assert emu.task_count == 1
        assert emu.stats.requests["create"] == 3


async def test_random_faults_hit_creates_only_when_asked(api: Api) -> None:
    """A plan applies to creates only with on_create=True."""
    mix = [Fault.server_error()]
    async with Emulator(faults=FaultPlan(rate=1.0, mix=mix)) as emu:
        status, _ = await api.post(emu, CREATE, create_body())
        assert status == 200
    async with Emulator(faults=FaultPlan(rate=1.0, mix=mix, on_create=True)) as emu:
        status, _ = await api.post(emu, CREATE, create_body())
        assert status == 500
        assert emu.task_count == 0


def test_fault_rate_must_be_a_probability() -> None:
    """A fault rate outside 0..1 is refused."""
    with pytest.raises(ValueError, match="rate"):
        FaultPlan(rate=1.5)
