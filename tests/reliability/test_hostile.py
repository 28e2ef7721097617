"""A hostile or confused server: insecure or malformed download URLs, redirects that would
carry credentials to another host, and an app signature rejected for clock skew."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from aiohttp import web
from kd_fakes import BASE, FAST, MockKooDrive, shape_a
from rel_support import (
    APP_ID,
    APP_SECRET,
    SHARE,
    SIGNED_QUERY,
    TOKEN,
    USER_ID,
    client_for,
    emulator,
)

from koodrive_tasks import (
    AppSignature,
    BearerToken,
    ClockSkewError,
    InsecureURLError,
    KooDriveClient,
    KooDriveError,
    ProtocolError,
)
from koodrive_tasks.emulator import TaskScript
from koodrive_tasks.testing import VirtualClock


async def wait_with_url(url: str, *, allow_insecure: bool) -> object:
    """Wait for a task the mocked server reports completed with ``downloadUrl`` = ``url``."""
    with MockKooDrive() as mock:
        mock.detail(body=json.dumps(shape_a(2, 100, result=1, url=url)))
        async with KooDriveClient(
            BASE,
            auth=BearerToken(TOKEN),
            clock=VirtualClock(),
            policy=FAST,
            allow_insecure_urls=allow_insecure,
        ) as kd:
            try:
                return await kd.wait_for_task(SHARE, "t1")
            except Exception as error:  # typed or not: the assertions below tell
                return error


@pytest.mark.parametrize(
    "url",
    [
        f"http://obs.example.com/pkg/a.zip?{SIGNED_QUERY}",
        f"ftp://obs.example.com/pkg/a.zip?{SIGNED_QUERY}",
        "file:///etc/passwd",
        f"obs.example.com/pkg/a.zip?{SIGNED_QUERY}",
        f"javascript:alert(1)//?{SIGNED_QUERY}",
    ],
    ids=["http", "ftp", "file", "no-scheme", "javascript"],
)
async def test_non_https_download_url_is_refused(url: str) -> None:
    """A downloadUrl that is not https raises InsecureURLError, its signed query hidden."""
    result = await wait_with_url(url, allow_insecure=False)
    assert isinstance(result, InsecureURLError), repr(result)
    assert SIGNED_QUERY not in str(result)


async def test_http_download_url_accepted_when_opted_in() -> None:
    """allow_insecure_urls=True (an emulator) accepts an http downloadUrl as is."""
    url = f"http://obs.example.com/pkg/a.zip?{SIGNED_QUERY}"
    assert await wait_with_url(url, allow_insecure=True) == url


@pytest.mark.parametrize(
    "url",
    ["https://[::1/pkg/a.zip", f"https://obs.example.com:99999/a.zip?{SIGNED_QUERY}"],
    ids=["bad-ipv6", "port-out-of-range"],
)
async def test_malformed_download_url_is_a_typed_error(url: str) -> None:
    """A downloadUrl yarl cannot parse ends the wait with a ProtocolError, not a ValueError."""
    result = await wait_with_url(url, allow_insecure=False)
    assert isinstance(result, ProtocolError), repr(result)


# --- redirects ----------------------------------------------------------------------------


@pytest.fixture
async def redirect_pair() -> AsyncIterator[tuple[str, dict[str, list[str]]]]:
    """An API server that redirects taskDetail to a second server recording what it receives."""
    received: dict[str, list[str]] = {"requests": [], "authorization": []}
    status = {"code": 307}

    async def elsewhere(request: web.Request) -> web.Response:
        received["requests"].append(request.path)
        if "Authorization" in request.headers:
            received["authorization"].append(request.headers["Authorization"])
        return web.json_response(shape_a(2, 100, result=1, url="https://x.example/a.zip"))

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", elsewhere)
    other_runner = web.AppRunner(other, access_log=None)
    await other_runner.setup()
    await web.TCPSite(other_runner, "127.0.0.1", 0).start()
    other_host, other_port = other_runner.addresses[0][:2]

    async def api_redirect(request: web.Request) -> web.Response:
        target = f"http://{other_host}:{other_port}{request.path}"
        return web.Response(status=status["code"], headers={"Location": target})

    app = web.Application()
    app.router.add_post("/koodrive/ose/v1/share/taskDetail", api_redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    received["status"] = status  # type: ignore[assignment]
    try:
        yield f"http://{host}:{port}", received
    finally:
        await runner.cleanup()
        await other_runner.cleanup()


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("scheme", ["bearer", "app"])
async def test_redirect_to_another_host_is_not_followed(
    redirect_pair: tuple[str, dict[str, list[str]]], code: int, scheme: str
) -> None:
    """A 3xx from the API host ends in ProtocolError; the other host gets no request, no Authorization."""
    url, received = redirect_pair
    received["status"]["code"] = code  # type: ignore[call-overload]
    auth = AppSignature(APP_ID, APP_SECRET, USER_ID) if scheme == "app" else BearerToken(TOKEN)
    async with KooDriveClient(
        url, auth=auth, allow_insecure_urls=True, clock=VirtualClock(), policy=FAST
    ) as kd:
        with pytest.raises(ProtocolError, match="redirect") as caught:
            await kd.get_share_task(SHARE, "t1")
        with pytest.raises(ProtocolError, match="redirect"):
            await kd.wait_for_task(SHARE, "t1")
    assert caught.value.http_status == code
    assert received["requests"] == []
    assert received["authorization"] == []


# --- clock skew ---------------------------------------------------------------------------


class SkewedClock:
    """A server clock whose wall time is ``skew`` off ``clock``'s; monotonic time is shared."""

    def __init__(self, clock: VirtualClock, skew: timedelta) -> None:
        self._clock = clock
        self._skew = skew

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def now(self) -> datetime:
        return self._clock.now() + self._skew


@pytest.mark.parametrize("skew", [timedelta(hours=1), timedelta(hours=-2)])
async def test_clock_skew_is_reported_as_such(skew: timedelta) -> None:
    """An app signature rejected for X-Date raises ClockSkewError saying the clock is off."""
    clock = VirtualClock()
    async with emulator(SkewedClock(clock, skew), max_skew_s=900.0) as emu:
        task_id = emu.add_task(TaskScript(pending_s=0, duration_s=10))
        async with client_for(emu, clock, app=True, policy=FAST) as kd:
            with pytest.raises(ClockSkewError) as caught:
                await kd.wait_for_task(SHARE, task_id)
            with pytest.raises(ClockSkewError):
                await kd.get_share_task(SHARE, task_id)
    text = str(caught.value).lower()
    assert "clock" in text
    assert "x-date" in text
    assert "synchronise" in text or "behind" in text or "ahead" in text
    assert caught.value.http_status == 401
    assert isinstance(caught.value, KooDriveError)
