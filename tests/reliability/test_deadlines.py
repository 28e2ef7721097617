"""Deadlines hold against servers that hang, trickle, or ask for a day's pause.

(a) a server that accepts and never answers and (b) one that trickles a byte every
50 ms are checked together in ONE real-time run (timeout 1 s, request_timeout 60 s,
both must end within 1.5 s). (c) HTTP 429 with ``Retry-After: 86400`` runs in virtual time.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp import web
from rel_support import SHARE, TOKEN, RawServer

from koodrive_tasks import BearerToken, KooDriveClient, PollPolicy, WaitTimeoutError
from koodrive_tasks.testing import VirtualClock


class HangingServer(RawServer):
    """Raw loopback server: ``mode="silent"`` never answers, ``"trickle"`` sends a byte per 50 ms."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.connections = 0
        self.bytes_sent = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        if self.mode == "silent":
            await asyncio.Event().wait()
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        )
        for byte in head + b" " * 100_000:
            writer.write(bytes([byte]))
            self.bytes_sent += 1
            await asyncio.sleep(0.05)


async def timed_wait(url: str) -> tuple[float, BaseException | None]:
    async with KooDriveClient(
        url, auth=BearerToken(TOKEN), allow_insecure_urls=True, request_timeout=60.0
    ) as kd:
        started = time.monotonic()
        try:
            await kd.wait_for_task(SHARE, "t1", timeout=1.0)
        except Exception as error:
            return time.monotonic() - started, error
        return time.monotonic() - started, None


async def test_silent_and_trickling_servers_cannot_hold_a_wait_past_its_deadline() -> None:
    """(a) silence and (b) a byte per 50 ms both end in WaitTimeoutError within 1.0 s + 0.5 s."""
    async with HangingServer("silent") as silent, HangingServer("trickle") as trickle:
        started = time.monotonic()
        (silent_s, silent_error), (trickle_s, trickle_error) = await asyncio.gather(
            timed_wait(silent.url), timed_wait(trickle.url)
        )
        total = time.monotonic() - started
    assert isinstance(silent_error, WaitTimeoutError), repr(silent_error)
    assert isinstance(trickle_error, WaitTimeoutError), repr(trickle_error)
    assert silent.connections >= 1
    assert trickle.bytes_sent >= 5, "the trickle server never got to trickle"
    assert 0.9 <= silent_s < 1.5
    assert 0.9 <= trickle_s < 1.5
    assert total < 1.6


@pytest.fixture
async def throttling_server() -> AsyncIterator[tuple[str, list[float], dict[str, str]]]:
    """An aiohttp server answering every request 429 with a Retry-After of one day."""
    hits: list[float] = []
    retry_after = {"value": "86400"}

    async def detail(request: web.Request) -> web.Response:
        hits.append(time.monotonic())
        return web.json_response(
            {"error_code": "APIGW.0308", "error_msg": "throttled", "request_id": "r1"},
            status=429,
            headers={"Retry-After": retry_after["value"]},
        )

    app = web.Application()
    app.router.add_post("/koodrive/ose/v1/share/taskDetail", detail)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", hits, retry_after
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_a_day_does_not_outlive_the_deadline(
    throttling_server: tuple[str, list[float], dict[str, str]], form: str
) -> None:
    """(c) 429 + Retry-After of 86400 s: WaitTimeoutError at the deadline (virtual time)."""
    url, hits, retry_after = throttling_server
    clock = VirtualClock()
    timeout = 600.0
    policy = PollPolicy.backoff(timeout=timeout, retry_after_max=120.0)
    async with KooDriveClient(
        url, auth=BearerToken(TOKEN), allow_insecure_urls=True, clock=clock, policy=policy
    ) as kd:
        if form == "http-date":
            # The same hint as an HTTP date a day ahead of the client's (virtual) clock.
            retry_after["value"] = email.utils.format_datetime(
                clock.now() + timedelta(days=1), usegmt=True
            )
        started_real = time.monotonic()
        with pytest.raises(WaitTimeoutError) as caught:
            await kd.wait_for_task(SHARE, "t1")
        elapsed_virtual = clock.monotonic()
    assert timeout <= elapsed_virtual <= timeout + 1.0
    assert time.monotonic() - started_real < 5.0
    # retry_after_max (120 s, +20 % spread) keeps polling alive instead of wedging for a day.
    assert len(hits) >= 4
    assert caught.value.last_error is not None
    assert type(caught.value.last_error).__name__ == "RateLimitedError"
