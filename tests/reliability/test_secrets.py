"""No secret reaches a log record, an exception, a repr, or the CLI's stderr.

Every error path is driven with known values (bearer token, app secret, kdstoken, a
download URL with a signed query); the autouse ``secret_guard`` (conftest.py) then checks
every DEBUG log record and every KooDriveError created.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest
from kd_fakes import BASE, FAST, MockKooDrive, shape_a, shape_b
from rel_support import (
    APP_ID,
    APP_SECRET,
    KDSTOKEN,
    PACKAGE_URL,
    SECRETS,
    SHARE,
    SIGNED_QUERY,
    TOKEN,
    USER_ID,
    RawServer,
    emulator,
    leaks_in,
)

from koodrive_tasks import (
    AppSignature,
    AuthenticationError,
    BearerToken,
    ConnectError,
    InsecureURLError,
    KooDriveClient,
    KooDriveError,
    ProtocolError,
    TaskFailedError,
    TaskRef,
    TransportError,
    WaitTimeoutError,
)
from koodrive_tasks.emulator import Fault, Outcome, TaskScript
from koodrive_tasks.testing import VirtualClock


async def ask(
    status: int, body: Any, *, app: bool = False, repeat: bool = False, wait: bool = False
) -> object:
    """Query (or wait for) task t1 with the known secrets against one mocked answer."""
    auth = AppSignature(APP_ID, APP_SECRET, USER_ID) if app else BearerToken(TOKEN)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with MockKooDrive() as mock:
        mock.detail(status=status, body=raw, repeat=repeat, content_type="application/json")
        async with KooDriveClient(
            BASE, auth=auth, attempts=1, clock=VirtualClock(), policy=FAST
        ) as kd:
            try:
                if wait:
                    return await kd.wait_for_task(SHARE, "t1", kdstoken=KDSTOKEN, timeout=60)
                return await kd.get_share_task(SHARE, "t1", kdstoken=KDSTOKEN)
            except KooDriveError as error:
                return error


def no_leak(*objects: object) -> None:
    for obj in objects:
        for text in (str(obj), repr(obj)):
            assert not leaks_in(text), f"{type(obj).__name__} shows {leaks_in(text)}"


def test_the_guard_recognises_every_secret() -> None:
    """The leak detector finds each known secret and an emulator-signed URL."""
    for value in SECRETS:
        assert leaks_in(f"x {value} y")
    assert leaks_in("http://127.0.0.1:1/download/t.zip?expires=1&sig=" + "ab" * 32)
    assert not leaks_in("http://127.0.0.1:1/download/t.zip?<redacted>")


ECHOES = {
    "401-bearer": (401, {"error_code": "APIGW.0301", "error_msg": f"bad token Bearer {TOKEN}"}),
    "401-kdstoken": (401, {"code": "401", "msg": f"kdstoken {KDSTOKEN} expired"}),
    "400-kdstoken": (400, {"code": "13000102", "msg": f"invalid kdstoken {KDSTOKEN}"}),
    "200-nonzero": (200, {"code": "13000410", "msg": f"no permission for {TOKEN}"}),
    "nested-error": (403, {"error": {"code": "13000410", "message": f"denied {KDSTOKEN}"}}),
    "500-echo": (500, {"code": "1", "msg": f"crash while reading {KDSTOKEN} and {TOKEN}"}),
    "429-echo": (429, {"error_code": "APIGW.0308", "error_msg": f"slow down {TOKEN}"}),
    "protocol-field": (200, {"code": 0, "jobInfo": {"taskId": "t1", "taskStatus": KDSTOKEN}}),
    "protocol-url-field": (200, shape_a(9, 100, url=PACKAGE_URL)),
    "malformed": (200, f"{{'token': '{TOKEN}'".encode()),
    "not-an-object": (200, [TOKEN, KDSTOKEN]),
}


@pytest.mark.parametrize("case", sorted(ECHOES))
async def test_server_echoing_secrets_is_redacted(case: str) -> None:
    """A server echoing the token or kdstoken in its message yields an error without them."""
    status, body = ECHOES[case]
    result = await ask(status, body)
    assert isinstance(result, KooDriveError), repr(result)
    no_leak(result, *vars(result).values())


async def test_app_secret_echo_is_redacted() -> None:
    """An echoed app secret is redacted from the AuthenticationError."""
    result = await ask(
        401, {"error_code": "APIGW.0303", "error_msg": f"secret {APP_SECRET}"}, app=True
    )
    assert isinstance(result, AuthenticationError)
    no_leak(result, *vars(result).values())


async def test_wait_timeout_error_carries_no_secret() -> None:
    """WaitTimeoutError (last error echoing the kdstoken) shows no secret."""
    result = await ask(503, {"code": "1", "msg": f"busy {KDSTOKEN}"}, repeat=True, wait=True)
    assert isinstance(result, WaitTimeoutError), repr(result)
    assert result.last_error is not None
    no_leak(result, result.last_error, result.last_info)


async def test_task_failed_error_with_info_carries_no_secret() -> None:
    """TaskFailedError whose info holds a signed URL shows neither it nor a token."""
    result = await ask(200, shape_a(2, 100, result=3, url=PACKAGE_URL), wait=True)
    assert isinstance(result, TaskFailedError), repr(result)
    assert result.info.download_url == PACKAGE_URL  # kept for the caller, never shown
    no_leak(result, result.info)


async def test_insecure_url_error_hides_the_signed_query() -> None:
    """InsecureURLError names the URL without its signed query."""
    url = f"http://obs.example.com/pkg/a.zip?{SIGNED_QUERY}"
    result = await ask(200, shape_a(2, 100, result=1, url=url), wait=True)
    assert isinstance(result, InsecureURLError)
    assert "obs.example.com" in str(result)
    no_leak(result)


async def test_reprs_hide_secrets() -> None:
    """Reprs of client, auth, TaskRef, TaskInfo, TaskOutcome, updates, events and stats hide secrets."""
    events: list[object] = []
    with MockKooDrive() as mock:
        mock.detail(status=503, body=b"<html>busy</html>", content_type="text/html")
        mock.detail(body=json.dumps(shape_b(1, 50)))
        mock.detail(body=json.dumps(shape_b(2, 100, result=1, url=PACKAGE_URL)))
        auth = BearerToken(TOKEN)
        async with KooDriveClient(
            BASE,
            auth=auth,
            clock=VirtualClock(),
            policy=FAST,
            on_request=events.append,
            on_retry=events.append,
        ) as kd:
            ref = TaskRef(SHARE, "t1", KDSTOKEN)
            async with kd.watch_many([ref]) as stream:
                updates = [update async for _, update in stream]
            outcome = stream.outcomes[ref]
            waiter = kd.wait_for_task(SHARE, "t1", kdstoken=KDSTOKEN)
            no_leak(kd, auth, AppSignature(APP_ID, APP_SECRET, USER_ID), ref, outcome)
            no_leak(outcome.info, *updates, *events, kd.stats, waiter, stream)
    assert outcome.download_url == PACKAGE_URL
    assert len(events) >= 3


async def test_token_provider_refresh_logs_no_token(caplog: pytest.LogCaptureFixture) -> None:
    """A 401 with a token provider refreshes; neither token shows in logs or errors."""
    tokens = iter([TOKEN, KDSTOKEN])  # the second "token" is just another known secret

    async def provider() -> str:
        return next(tokens)

    with MockKooDrive() as mock:
        mock.detail(status=401, body=json.dumps({"error_code": "APIGW.0301", "error_msg": TOKEN}))
        mock.detail(
            status=401, body=json.dumps({"error_code": "APIGW.0301", "error_msg": KDSTOKEN})
        )
        async with KooDriveClient(BASE, auth=BearerToken(provider), attempts=1) as kd:
            with pytest.raises(AuthenticationError) as caught:
                await kd.get_share_task(SHARE, "t1")
    no_leak(caught.value, kd)
    assert any(r.name == "koodrive_tasks" for r in caplog.records)  # the guard saw the logs


@pytest.mark.parametrize("field", ["code", "request_id"])
async def test_secret_echoed_in_code_or_request_id_is_redacted(field: str) -> None:
    """A token echoed in the error's code or request_id is redacted too."""
    body = {"code": "13000102", "msg": "bad", "request_id": "r1", field: TOKEN}
    result = await ask(400, body)
    assert isinstance(result, KooDriveError)
    texts = [str(result), repr(result), *(repr(v) for v in vars(result).values())]
    assert not any(TOKEN in text for text in texts)


async def test_protocol_error_chain_holds_no_unredacted_original() -> None:
    """A server describing a task whose id is the kdstoken: no error in the chain shows it."""
    result = await ask(200, shape_b(1, 5, task_id=KDSTOKEN))
    assert isinstance(result, ProtocolError)
    assert KDSTOKEN not in str(result)  # the raised message itself is redacted
    chain = [result.__context__, result.__cause__]
    assert not any(KDSTOKEN in repr(link) for link in chain if link is not None)


async def test_secret_at_the_message_cut_is_not_partly_shown() -> None:
    """A kdstoken straddling the 500-character cut of a server message leaves no prefix."""
    result = await ask(400, {"code": "13000102", "msg": "x" * 490 + KDSTOKEN})
    assert isinstance(result, KooDriveError)
    assert KDSTOKEN[:10] not in str(result)


# --- the CLI ------------------------------------------------------------------------------


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "koodrive_tasks.cli",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.communicate()
        raise AssertionError(f"koodrive-tasks {args} hung") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_keeps_secrets_off_stderr_and_the_url_in_the_result_line() -> None:
    """`koodrive-tasks wait`: stderr never shows a secret; stdout shows the URL only in its last line."""
    clock = VirtualClock()
    async with emulator(clock) as emu:
        faults = (Fault.gateway(502), Fault.malformed_json(), Fault.drop())
        ok = emu.add_task(TaskScript(pending_s=0, duration_s=5, faults=faults), file_ids=("a", "b"))
        failed = emu.add_task(TaskScript(pending_s=0, duration_s=5, outcome=Outcome.ALL_FAILED))
        clock.advance(60)  # every task has ended before the CLI looks
        emu_url = emu.url
        env = {k: v for k, v in os.environ.items() if not k.startswith("KOODRIVE_")}
        env.update(KOODRIVE_BASE_URL=emu.url, KOODRIVE_TOKEN=TOKEN, KOODRIVE_KDSTOKEN=KDSTOKEN)
        wrong = {**env, "KOODRIVE_TOKEN": "wrong-" + TOKEN}
        runs = await asyncio.gather(
            run_cli("wait", SHARE, ok, env=env),
            run_cli("--debug", "wait", SHARE, ok, env=env),
            run_cli("wait", SHARE, failed, env=env),
            run_cli("wait", SHARE, "no-such-task", env=env),
            run_cli("wait", SHARE, ok, env=wrong),
        )
    codes = [code for code, _, _ in runs]
    assert codes == [0, 0, 4, 1, 7], runs
    for _, out, err in runs:
        assert not leaks_in(err), err
        lines = out.splitlines()
        for line in lines[:-1]:
            assert not leaks_in(line), line
            assert "/download/" not in line
        for value in (TOKEN, KDSTOKEN, APP_SECRET):
            assert value not in out
    for _, out, _ in runs[:2]:
        result = json.loads(out.splitlines()[-1])
        assert result["event"] == "result"
        assert result["download_url"].startswith(f"{emu_url}/download/{ok}.zip?")
        assert "sig=" in result["download_url"]  # the product the user asked for
    assert "DEBUG" in runs[1][2]  # --debug really logged, and logged no secret


class GarbageServer(RawServer):
    """Answers every request with bytes that are not HTTP."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()


def chain(error: BaseException) -> list[BaseException]:
    """The error and everything reachable as its cause or context."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


async def test_transport_errors_keep_no_aiohttp_error_holding_the_request_headers() -> None:
    """A malformed answer or a refused connection: the typed error has no __context__, whose
    aiohttp error would carry request_info with the Authorization header."""
    async with GarbageServer() as server:
        port = server.server.sockets[0].getsockname()[1]
        async with KooDriveClient(
            f"http://127.0.0.1:{port}",
            auth=BearerToken(TOKEN),
            allow_insecure_urls=True,
            attempts=1,
        ) as kd:
            with pytest.raises(TransportError) as garbage:
                await kd.get_share_task(SHARE, "t1")
    assert chain(garbage.value) == [garbage.value]
    assert TOKEN not in repr(vars(garbage.value))
    async with KooDriveClient(
        f"http://127.0.0.1:{port}", auth=BearerToken(TOKEN), allow_insecure_urls=True, attempts=1
    ) as kd:
        with pytest.raises(ConnectError) as refused:  # the server is gone
            await kd.get_share_task(SHARE, "t1")
    assert chain(refused.value) == [refused.value]
