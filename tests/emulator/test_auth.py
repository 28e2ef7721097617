"""Credentials: bearer tokens and app signatures (signed by the public ``AppSignature``)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
from emulator_helpers import CREATE, DETAIL, Api, create_body, signed_headers

from koodrive_tasks.emulator import AppCredential, Emulator
from koodrive_tasks.testing import VirtualClock


async def post_signed(
    http: aiohttp.ClientSession, emu: Emulator, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str]]:
    async with http.post(emu.url + path, data=body, headers=headers) as resp:
        return resp.status, json.loads(await resp.read())


async def test_bearer_token_is_accepted(api: Api) -> None:
    """The emulator's generated token creates tasks for its user."""
    async with Emulator() as emu:
        assert len(emu.token) >= 32
        task_id = await api.create(emu)
        assert (await api.info(emu, task_id))["userId"] == emu.user_id


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer wrong"}, id="unknown-token"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="other-scheme"),
    ],
)
async def test_bad_bearer_is_rejected(api: Api, headers: dict[str, str]) -> None:
    """A missing, unknown or unsupported credential gets 401 APIGW.0301 and counts."""
    async with Emulator() as emu:
        status, body = await api.post(emu, CREATE, create_body(), headers=headers)
        assert status == 401
        assert body["error_code"] == "APIGW.0301"
        assert "X-Date" not in body["error_msg"]
        assert emu.stats.auth_failures == 1
        assert emu.task_count == 0


async def test_configured_tokens_map_to_their_users(api: Api) -> None:
    """Extra tokens are accepted and act for the user they are mapped to."""
    async with Emulator(token="main-token", tokens={"second": "user-2"}) as emu:
        assert emu.token == "main-token"
        headers = {"Authorization": "Bearer second"}
        status, body = await api.post(emu, CREATE, create_body(), headers=headers)
        assert status == 200
        assert emu.snapshot(body["taskId"]) is not None
        assert emu.service.lookup(body["taskId"]).user_id == "user-2"  # type: ignore[union-attr]


async def test_idle_token_expires(api: Api) -> None:
    """With token_ttl_s, each use extends the token; an idle one gets 401."""
    clock = VirtualClock(autojump=False)
    async with Emulator(clock=clock, token_ttl_s=1200) as emu:
        task_id = await api.create(emu)
        clock.advance(1100)
        assert (await api.detail(emu, task_id))[0] == 200
        clock.advance(1100)  # 2200 s since first use, but only 1100 s idle
        assert (await api.detail(emu, task_id))[0] == 200
        clock.advance(1201)
        status, body = await api.detail(emu, task_id)
        assert (status, body["error_code"]) == (401, "APIGW.0301")


async def test_app_signature_is_accepted(session: aiohttp.ClientSession) -> None:
    """A request signed with the app secret over host, X-Date and X-User-Id is accepted."""
    async with Emulator() as emu:
        body = json.dumps(create_body()).encode()
        status, answer = await post_signed(
            session, emu, CREATE, signed_headers(emu, CREATE, body), body
        )
        assert status == 200
        detail = json.dumps({"taskId": answer["taskId"], "shareId": "share-1"}).encode()
        status, answer = await post_signed(
            session, emu, DETAIL, signed_headers(emu, DETAIL, detail), detail
        )
        assert status == 200
        assert answer["jobInfo"]["userId"] == emu.user_id


async def test_signature_covers_the_raw_query(session: aiohttp.ClientSession) -> None:
    """The raw query string is signed: the signed query passes, a changed one fails."""
    async with Emulator() as emu:
        task_id = emu.add_task()
        body = json.dumps({"taskId": task_id, "shareId": "share-1"}).encode()
        headers = signed_headers(emu, DETAIL, body, query="b=2&a=x%20y")
        status, _ = await post_signed(session, emu, DETAIL + "?b=2&a=x%20y", headers, body)
        assert status == 200
        status, answer = await post_signed(session, emu, DETAIL + "?b=3&a=x%20y", headers, body)
        assert (status, answer["error_code"]) == (401, "APIGW.0303")


@pytest.mark.parametrize(
    ("secret", "app_id", "tamper_body"),
    [
        pytest.param("wrong-secret", None, False, id="wrong-secret"),
        pytest.param(None, None, True, id="body-changed"),
        pytest.param(None, "unknown-app", False, id="unknown-app"),
    ],
)
async def test_bad_signature_is_rejected(
    session: aiohttp.ClientSession, secret: str | None, app_id: str | None, tamper_body: bool
) -> None:
    """A wrong secret, a changed body or an unknown app gets 401 APIGW.0303, not about X-Date."""
    async with Emulator() as emu:
        body = json.dumps(create_body()).encode()
        headers = signed_headers(emu, CREATE, body, secret=secret, app_id=app_id)
        sent = body.replace(b"a.zip", b"b.zip") if tamper_body else body
        status, answer = await post_signed(session, emu, CREATE, headers, sent)
        assert status == 401
        assert answer["error_code"] == "APIGW.0303"
        assert "X-Date" not in answer["error_msg"]
        assert emu.task_count == 0


async def test_user_id_header_is_signed(session: aiohttp.ClientSession) -> None:
    """Changing X-User-Id after signing breaks the signature."""
    async with Emulator() as emu:
        body = json.dumps(create_body()).encode()
        headers = signed_headers(emu, CREATE, body)
        headers["X-User-Id"] = "somebody-else"
        status, _ = await post_signed(session, emu, CREATE, headers, body)
        assert status == 401


@pytest.mark.parametrize("skew", [timedelta(minutes=-16), timedelta(minutes=16)])
async def test_x_date_skew_is_rejected(session: aiohttp.ClientSession, skew: timedelta) -> None:
    """An X-Date over 15 minutes old or ahead gets 401 APIGW.0303 naming X-Date."""
    async with Emulator() as emu:
        body = json.dumps(create_body()).encode()
        sent_at = datetime.now(timezone.utc) + skew
        headers = signed_headers(emu, CREATE, body, x_date=sent_at)
        status, answer = await post_signed(session, emu, CREATE, headers, body)
        assert status == 401
        assert answer["error_code"] == "APIGW.0303"
        assert "X-Date is expired or in the future" in answer["error_msg"]
        assert answer["request_id"]


@pytest.mark.parametrize("skew", [timedelta(minutes=-14), timedelta(minutes=14)])
async def test_x_date_within_fifteen_minutes_is_accepted(
    session: aiohttp.ClientSession, skew: timedelta
) -> None:
    """An X-Date up to 15 minutes off either way is accepted."""
    async with Emulator() as emu:
        body = json.dumps(create_body()).encode()
        headers = signed_headers(emu, CREATE, body, x_date=datetime.now(timezone.utc) + skew)
        status, _ = await post_signed(session, emu, CREATE, headers, body)
        assert status == 200


async def test_x_date_follows_the_injected_wall_clock(session: aiohttp.ClientSession) -> None:
    """With the emulator on a virtual clock, moving it makes a fresh X-Date stale."""
    clock = VirtualClock(autojump=False)
    async with Emulator(clock=clock) as emu:
        body = json.dumps(create_body()).encode()
        headers = signed_headers(emu, CREATE, body, x_date=clock.now())
        assert (await post_signed(session, emu, CREATE, headers, body))[0] == 200
        clock.advance(20 * 60)
        status, answer = await post_signed(session, emu, CREATE, headers, body)
        assert status == 401
        assert "X-Date" in answer["error_msg"]


async def test_configured_apps(session: aiohttp.ClientSession) -> None:
    """Given app credentials are accepted alongside the generated ones."""
    apps = {"my-app": AppCredential(app_secret="s3cret", user_id="u-9")}
    async with Emulator(app_id="main", app_secret="main-secret", apps=apps) as emu:
        assert (emu.app_id, emu.app_secret) == ("main", "main-secret")
        body = json.dumps(create_body()).encode()
        headers = signed_headers(emu, CREATE, body, secret="s3cret", app_id="my-app")
        assert (await post_signed(session, emu, CREATE, headers, body))[0] == 200


async def test_credentials_are_never_logged(
    api: Api, caplog: pytest.LogCaptureFixture, session: aiohttp.ClientSession
) -> None:
    """Neither the token nor a signature appears in any log record or in the repr."""
    caplog.set_level(logging.DEBUG)
    async with Emulator() as emu:
        task_id = await api.create(emu)
        await api.detail(emu, task_id)
        body = json.dumps(create_body()).encode()
        headers = signed_headers(emu, CREATE, body)
        await post_signed(session, emu, CREATE, headers, body)
        logged = "\n".join(r.getMessage() for r in caplog.records) + repr(emu)
        assert emu.token not in logged
        assert headers["Authorization"] not in logged
        assert emu.app_secret not in logged
