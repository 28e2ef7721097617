"""Bearer tokens (static and refreshed) and app signatures, through the real client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import backoff
import pytest
from aioresponses import CallbackResult
from kd_fakes import BASE, DETAIL, FAST, TOKEN, CompatClientResponse, MockKooDrive, shape_a
from test_signing import APP_ID, APP_SECRET, USER_ID, verify_signed_headers
from yarl import URL

from koodrive_tasks import (
    AppSignature,
    AuthenticationError,
    BearerToken,
    ClockSkewError,
    InvalidArgumentError,
    KooDriveClient,
    PollPolicy,
    ServerError,
)
from koodrive_tasks.testing import VirtualClock

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
UNAUTHORIZED = {"code": "401", "msg": "token expired"}


class Provider:
    """An async token provider that counts its calls and hands out tok-1, tok-2, ..."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        await asyncio.sleep(0)  # a real provider awaits the network
        return f"tok-{self.calls}-PROVIDED-SECRET"


def auth_headers(mock: MockKooDrive) -> list[str]:
    return [call.kwargs["headers"]["Authorization"] for call in mock.requests_to(DETAIL)]


@pytest.fixture
def provider() -> Provider:
    return Provider()


@pytest.fixture
async def kd_provider(clock: VirtualClock, provider: Provider) -> AsyncIterator[KooDriveClient]:
    async with KooDriveClient(
        BASE, auth=BearerToken(provider), clock=clock, policy=FAST, attempts=1
    ) as kd:
        yield kd


# --- BearerToken with a string ----------------------------------------------------------


async def test_static_token_header() -> None:
    """A string token gives `Authorization: Bearer {token}`."""
    auth = BearerToken(TOKEN)
    assert await auth.headers("POST", URL(DETAIL), b"", lambda: NOW) == {
        "Authorization": f"Bearer {TOKEN}"
    }
    assert auth.clock_sensitive is False
    assert auth.secrets() == (TOKEN,)


async def test_static_token_sent_by_client(mock: MockKooDrive, client: KooDriveClient) -> None:
    """The client sends the bearer header with each request."""
    mock.detail(payload=shape_a(1))
    await client.get_share_task("s1", "t1")
    assert auth_headers(mock) == [f"Bearer {TOKEN}"]


def test_repr_hides_token() -> None:
    """repr(BearerToken) never shows the token; the client's repr neither."""
    auth = BearerToken(TOKEN)
    assert TOKEN not in repr(auth)
    assert TOKEN not in repr(KooDriveClient(BASE, auth=auth))


def test_repr_names_provider(provider: Provider) -> None:
    """repr of a provider-backed BearerToken names the provider, not a token."""
    assert "Provider" in repr(BearerToken(provider))


@pytest.mark.parametrize("token", ["", "   ", 123, None, b"bytes-token", ["tok"]])
def test_invalid_token_rejected(token: Any) -> None:
    """An empty token, or one neither a string nor a callable, is an InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError):
        BearerToken(token)


async def test_static_token_401_is_authentication_error(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """A static token rejected with 401 gives AuthenticationError after one request only."""
    mock.detail(status=401, payload=UNAUTHORIZED, repeat=True)
    with pytest.raises(AuthenticationError) as info:
        await client.get_share_task("s1", "t1")
    assert type(info.value) is AuthenticationError
    assert len(mock.requests_to(DETAIL)) == 1
    assert await BearerToken(TOKEN).refresh({"Authorization": f"Bearer {TOKEN}"}) is False


# --- BearerToken with a provider -------------------------------------------------------------


async def test_provider_called_lazily_once(
    mock: MockKooDrive, kd_provider: KooDriveClient, provider: Provider
) -> None:
    """The provider is not called before the first request, then once for many requests."""
    assert provider.calls == 0
    mock.detail(payload=shape_a(1), repeat=True)
    for _ in range(3):
        await kd_provider.get_share_task("s1", "t1")
    assert provider.calls == 1
    assert auth_headers(mock) == ["Bearer tok-1-PROVIDED-SECRET"] * 3


async def test_401_refreshes_once_and_retries(
    mock: MockKooDrive, kd_provider: KooDriveClient, provider: Provider
) -> None:
    """After a 401 the provider is called again and the request retried once, with the new token."""
    mock.detail(status=401, payload=UNAUTHORIZED)
    mock.detail(payload=shape_a(1, 30))
    info = await kd_provider.get_share_task("s1", "t1")
    assert info.progress == 30
    assert provider.calls == 2
    assert auth_headers(mock) == ["Bearer tok-1-PROVIDED-SECRET", "Bearer tok-2-PROVIDED-SECRET"]
    traces = [c.kwargs["headers"]["X-Traceid"] for c in mock.requests_to(DETAIL)]
    assert len(set(traces)) == 2


async def test_second_401_gives_up(
    mock: MockKooDrive, kd_provider: KooDriveClient, provider: Provider
) -> None:
    """A 401 after the refresh is an AuthenticationError, with no third request."""
    mock.detail(status=401, payload=UNAUTHORIZED, repeat=True)
    with pytest.raises(AuthenticationError):
        await kd_provider.get_share_task("s1", "t1")
    assert len(mock.requests_to(DETAIL)) == 2
    assert provider.calls == 2


async def test_second_401_not_retried_by_get_share_task(
    mock: MockKooDrive, clock: VirtualClock, provider: Provider
) -> None:
    """Even with several attempts configured, an AuthenticationError is not retried."""
    async with KooDriveClient(BASE, auth=BearerToken(provider), clock=clock, attempts=4) as kd:
        mock.detail(status=401, payload=UNAUTHORIZED, repeat=True)
        with pytest.raises(AuthenticationError):
            await kd.get_share_task("s1", "t1")
    assert len(mock.requests_to(DETAIL)) == 2


async def test_refreshed_token_redacted_in_error(
    mock: MockKooDrive, kd_provider: KooDriveClient
) -> None:
    """A server echoing either the first or the refreshed token has both redacted."""
    mock.detail(status=401, payload={"code": "401", "msg": "bad Bearer tok-1-PROVIDED-SECRET"})
    mock.detail(status=401, payload={"code": "401", "msg": "bad Bearer tok-2-PROVIDED-SECRET"})
    with pytest.raises(AuthenticationError) as info:
        await kd_provider.get_share_task("s1", "t1")
    assert "PROVIDED-SECRET" not in str(info.value)
    assert "PROVIDED-SECRET" not in repr(info.value)


async def test_concurrent_401s_share_one_refresh(
    mock: MockKooDrive, kd_provider: KooDriveClient, provider: Provider
) -> None:
    """50 concurrent requests rejected with 401 share ONE provider refresh; each retries once."""
    n = 50
    first_round: list[str] = []
    all_in = asyncio.Event()

    async def responder(url: Any, **kwargs: Any) -> CallbackResult:
        auth = kwargs["headers"]["Authorization"]
        if auth == "Bearer tok-1-PROVIDED-SECRET":
            first_round.append(auth)
            if len(first_round) == n:
                all_in.set()
            await all_in.wait()  # every request holds the old token before anyone refreshes
            return CallbackResult(
                status=401, payload=UNAUTHORIZED, response_class=CompatClientResponse
            )
        return CallbackResult(
            status=200, payload=shape_a(1, 5), response_class=CompatClientResponse
        )

    mock.post(DETAIL, callback=responder, repeat=True)
    results = await asyncio.gather(*(kd_provider.get_share_task("s1", "t1") for _ in range(n)))
    assert [r.progress for r in results] == [5] * n
    assert len(first_round) == n
    assert provider.calls == 2  # the first fetch, then one shared refresh
    assert len(mock.requests_to(DETAIL)) == 2 * n


async def test_provider_returning_empty_token(mock: MockKooDrive, clock: VirtualClock) -> None:
    """A provider returning an empty token is an InvalidArgumentError before any request."""

    async def empty() -> str:
        return ""

    async with KooDriveClient(BASE, auth=BearerToken(empty), clock=clock) as kd:
        with pytest.raises(InvalidArgumentError):
            await kd.get_share_task("s1", "t1")
    assert mock.requests_to(DETAIL) == []


# --- AppSignature --------------------------------------------------------------------------


def test_app_signature_repr_hides_secret() -> None:
    """repr(AppSignature) and the client's repr never show the app secret."""
    auth = AppSignature(APP_ID, APP_SECRET, USER_ID)
    assert APP_SECRET not in repr(auth)
    assert APP_SECRET not in repr(KooDriveClient(BASE, auth=auth))


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full jitter returns its ceiling, so retry sleeps are predictable."""
    monkeypatch.setattr(backoff, "full_jitter", lambda value: value)


@pytest.mark.usefixtures("no_jitter")
async def test_every_attempt_signed_with_fresh_x_date(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """Every attempt, also after a 5xx, is signed anew with X-Date from the client's clock."""
    policy = PollPolicy.backoff(retry_initial_delay=30.0, retry_max_delay=60.0)
    auth = AppSignature(APP_ID, APP_SECRET, USER_ID)
    mock.detail(status=503, body="<html>busy</html>", content_type="text/html")
    mock.detail(status=500, body="")
    mock.detail(payload=shape_a(1, 50))
    async with KooDriveClient(BASE, auth=auth, clock=clock, policy=policy, attempts=4) as kd:
        info = await kd.get_share_task("s1", "t1", kdstoken="kds-1")
    assert info.progress == 50
    calls = mock.requests_to(DETAIL)
    assert len(calls) == 3
    start = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
    moments = [start, start + timedelta(seconds=30), start + timedelta(seconds=90)]
    assert [c.kwargs["headers"]["X-Date"] for c in calls] == [
        "20261129T120000Z",
        "20261129T120030Z",
        "20261129T120130Z",
    ]
    for call, moment in zip(calls, moments, strict=True):
        headers = call.kwargs["headers"]
        verify_signed_headers(headers, "POST", DETAIL, call.kwargs["data"], moment)
        assert headers["Host"] == "kd.example.com"
    assert clock.monotonic() == 90.0


async def test_app_signature_4xx_exhausts(mock: MockKooDrive, clock: VirtualClock) -> None:
    """All attempts failing with 5xx give ServerError, each attempt signed anew."""
    auth = AppSignature(APP_ID, APP_SECRET, USER_ID)
    mock.detail(status=502, body="", repeat=True)
    async with KooDriveClient(BASE, auth=auth, clock=clock, attempts=3) as kd:
        with pytest.raises(ServerError):
            await kd.get_share_task("s1", "t1")
    calls = mock.requests_to(DETAIL)
    assert len(calls) == 3
    for call in calls:
        when = datetime.strptime(call.kwargs["headers"]["X-Date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=timezone.utc
        )
        verify_signed_headers(call.kwargs["headers"], "POST", DETAIL, call.kwargs["data"], when)


async def test_app_signature_401_not_retried(mock: MockKooDrive, clock: VirtualClock) -> None:
    """A rejected signature is an AuthenticationError after one request (no re-signing)."""
    auth = AppSignature(APP_ID, APP_SECRET, USER_ID)
    mock.detail(
        status=401,
        payload={
            "error_code": "APIGW.0303",
            "error_msg": "verify signature failed",
            "request_id": "r",
        },
        repeat=True,
    )
    async with KooDriveClient(BASE, auth=auth, clock=clock) as kd:
        with pytest.raises(AuthenticationError) as info:
            await kd.get_share_task("s1", "t1")
    assert type(info.value) is AuthenticationError
    assert len(mock.requests_to(DETAIL)) == 1
    assert APP_SECRET not in str(info.value)


@pytest.mark.parametrize("offset", [timedelta(hours=1), -timedelta(minutes=20)])
async def test_app_signature_401_with_skewed_date_header(
    mock: MockKooDrive, clock: VirtualClock, offset: timedelta
) -> None:
    """A 401 whose Date header is more than 15 minutes from our clock is a ClockSkewError."""
    auth = AppSignature(APP_ID, APP_SECRET, USER_ID)
    server_date = format_datetime(clock.now() + offset, usegmt=True)
    mock.detail(
        status=401,
        headers={"Date": server_date},
        payload={
            "error_code": "APIGW.0303",
            "error_msg": "Incorrect app authentication information",
            "request_id": "r",
        },
    )
    async with KooDriveClient(BASE, auth=auth, clock=clock) as kd:
        with pytest.raises(ClockSkewError) as info:
            await kd.get_share_task("s1", "t1")
    assert "ahead of" in str(info.value) if offset < timedelta(0) else "behind" in str(info.value)
    assert info.value.http_status == 401
    assert info.value.request_id == "r"


async def test_app_signature_401_with_close_date_header(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """A 401 whose Date header is within the window stays a plain AuthenticationError."""
    auth = AppSignature(APP_ID, APP_SECRET, USER_ID)
    server_date = format_datetime(clock.now() + timedelta(minutes=5), usegmt=True)
    mock.detail(
        status=401,
        headers={"Date": server_date},
        payload={
            "error_code": "APIGW.0303",
            "error_msg": "Incorrect app authentication information",
            "request_id": "r",
        },
    )
    async with KooDriveClient(BASE, auth=auth, clock=clock) as kd:
        with pytest.raises(AuthenticationError) as info:
            await kd.get_share_task("s1", "t1")
    assert type(info.value) is AuthenticationError


async def test_bearer_401_with_skewed_date_is_not_clock_skew(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """A bearer-token 401 is never blamed on the clock (the token scheme does not check time)."""
    mock.detail(
        status=401,
        headers={"Date": format_datetime(clock.now() + timedelta(hours=3), usegmt=True)},
        payload=UNAUTHORIZED,
    )
    with pytest.raises(AuthenticationError) as info:
        await client.get_share_task("s1", "t1")
    assert type(info.value) is AuthenticationError
