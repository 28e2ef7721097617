"""Every await of a request is bounded: by the wait's deadline, or by ``request_timeout``.

Each test hangs ONE await point against a real loopback server and checks both bounds
at once, in real time: a wait (``timeout`` 0.6 s, ``request_timeout`` 60 s) must end
in ``WaitTimeoutError`` and a one-shot ``get_share_task`` (``request_timeout`` 0.6 s,
one attempt) in ``RequestTimeoutError``, each within 0.6 s + ``SLACK``.

The await points: the credential provider (first use, and the refresh after a 401),
connecting (TCP connect, TLS handshake), the response headers (silence, a trickle)
and the body (silence, a trickle, plain and gzip-coded). A provider that swallows its
cancellation cannot hold a request either.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from rel_support import SHARE, TOKEN, RawServer, WebServer

from koodrive_tasks import (
    BearerToken,
    KooDriveClient,
    Limits,
    RequestTimeoutError,
    WaitTimeoutError,
)

BOUND = 0.6
SLACK = 0.5  # a loaded 2-core CI machine; a missed bound misses by the server's whole hang

ANSWER = b'{"code":"0","taskInfo":{"taskId":"t1","taskStatus":1,"progress":5}}'


async def measured(awaitable: Awaitable[Any]) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        await asyncio.wait_for(awaitable, 10)  # a guard: a hang fails instead of stalling
    except BaseException as error:
        return time.monotonic() - started, error
    return time.monotonic() - started, None


async def both_bounds(
    url: str, auth_factory: Callable[[], Any] = lambda: BearerToken(TOKEN)
) -> None:
    """A wait and a one-shot call against ``url``, at once; both must end by their bound."""
    insecure = url.startswith("http:")
    waiting = KooDriveClient(
        url, auth=auth_factory(), allow_insecure_urls=insecure, request_timeout=60.0
    )
    one_shot = KooDriveClient(
        url, auth=auth_factory(), allow_insecure_urls=insecure, request_timeout=BOUND, attempts=1
    )
    async with waiting, one_shot:
        (wait_s, wait_error), (call_s, call_error) = await asyncio.gather(
            measured(waiting.wait_for_task(SHARE, "t1", timeout=BOUND)),
            measured(one_shot.get_share_task(SHARE, "t1")),
        )
    assert isinstance(wait_error, WaitTimeoutError), repr(wait_error)
    assert isinstance(call_error, RequestTimeoutError), repr(call_error)
    assert BOUND - 0.05 <= wait_s < BOUND + SLACK, wait_s
    assert BOUND - 0.05 <= call_s < BOUND + SLACK, call_s
    # The attempt cut off at the deadline is the wait's last failure.
    assert isinstance(wait_error.last_error, RequestTimeoutError), repr(wait_error.last_error)


# --- credential providers ------------------------------------------------------------------


class HangingProvider:
    """A token provider that never returns (an OAuth call without a timeout)."""

    def __init__(self, *, first: str | None = None, stubborn: bool = False) -> None:
        self.first = first  # returned by the first call; later calls hang
        self.stubborn = stubborn  # swallows its cancellation and keeps hanging until released
        self.calls = 0
        self.cancelled = 0
        self.released = asyncio.Event()

    async def __call__(self) -> str:
        self.calls += 1
        if self.first is not None and self.calls == 1:
            return self.first
        while True:
            try:
                await self.released.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                if not self.stubborn:
                    raise
            else:
                return "late"


async def ok_or_401(request: web.Request) -> web.Response:
    """Accepts only the token ``good``; anything else is a 401 (an expired token)."""
    if request.headers.get("Authorization") != "Bearer good":
        return web.json_response({"error_code": "APIGW.0301", "error_msg": "expired"}, status=401)
    return web.Response(body=ANSWER, content_type="application/json")


@pytest.mark.parametrize("stubborn", [False, True], ids=["provider", "stubborn-provider"])
async def test_a_provider_that_never_returns_on_first_use_is_cut_off(stubborn: bool) -> None:
    """A provider hanging on first use: the wait ends at its deadline, the call at request_timeout."""
    providers: list[HangingProvider] = []

    def auth() -> BearerToken:
        providers.append(HangingProvider(stubborn=stubborn))
        return BearerToken(providers[-1])

    async with WebServer(ok_or_401) as server:
        try:
            await both_bounds(server.url, auth)
        finally:
            for provider in providers:
                provider.released.set()  # a stubborn one ends now, not at the loop's shutdown
    assert all(p.calls >= 1 for p in providers)
    # The provider's call is cancelled with the attempt, not left running.
    assert all(p.cancelled >= 1 for p in providers)


@pytest.mark.parametrize("stubborn", [False, True], ids=["provider", "stubborn-provider"])
async def test_a_provider_that_never_returns_on_refresh_is_cut_off(stubborn: bool) -> None:
    """After a 401, a refresh that hangs: the wait ends at its deadline, the call at request_timeout."""
    providers: list[HangingProvider] = []

    def auth() -> BearerToken:
        providers.append(HangingProvider(first="expired", stubborn=stubborn))
        return BearerToken(providers[-1])

    async with WebServer(ok_or_401) as server:
        try:
            await both_bounds(server.url, auth)
        finally:
            for provider in providers:
                provider.released.set()
    assert all(p.calls >= 2 for p in providers), [p.calls for p in providers]
    assert all(p.cancelled >= 1 for p in providers)


# --- connecting ----------------------------------------------------------------------------


@contextlib.contextmanager
def full_accept_queue() -> Any:
    """A loopback port whose accept queue is full: a TCP connect to it hangs (SYNs dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_a_tcp_connect_that_hangs_is_cut_off() -> None:
    """A connect that never completes (full accept queue): both bounds hold."""
    with full_accept_queue() as url:
        await both_bounds(url)


class SilentServer(RawServer):
    """Accepts connections and never sends a byte (a TLS handshake never completes)."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass


async def test_a_tls_handshake_that_hangs_is_cut_off() -> None:
    """An https endpoint that accepts TCP and never answers the ClientHello: both bounds hold."""
    async with SilentServer() as server:
        await both_bounds(server.url.replace("http://", "https://"))


# --- headers and body ----------------------------------------------------------------------


class StallingServer(RawServer):
    """Reads the request, then stalls at one point of its answer.

    ``mode``: ``headers-silent`` sends nothing; ``headers-trickle`` a header byte per
    50 ms, never ending the head; ``body-silent`` the head (Content-Length) and no body;
    ``body-trickle`` the head, then a body byte per 50 ms; ``gzip-trickle`` the same,
    gzip-coded and chunked.
    """

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.sent = 0

    async def trickle(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        for byte in data:
            writer.write(bytes([byte]))
            self.sent += 1
            await asyncio.sleep(0.05)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        mode = self.mode
        if mode == "headers-silent":
            await asyncio.Event().wait()
        if mode == "headers-trickle":
            await self.trickle(writer, b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 10_000)
        if mode.startswith("body"):
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (len(ANSWER) + 100_000)
            )
            if mode == "body-silent":
                await asyncio.Event().wait()
            await self.trickle(writer, b" " * 100_000)
        if mode == "gzip-trickle":
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            for _ in range(10_000):
                writer.write(b"1\r\n\x1f\r\n")
                self.sent += 1
                await asyncio.sleep(0.05)


@pytest.fixture
async def stalling(request: pytest.FixtureRequest) -> AsyncIterator[StallingServer]:
    async with StallingServer(request.param) as server:
        yield server


@pytest.mark.parametrize(
    "stalling",
    ["headers-silent", "headers-trickle", "body-silent", "body-trickle", "gzip-trickle"],
    indirect=True,
)
async def test_a_server_that_stalls_its_answer_is_cut_off(stalling: StallingServer) -> None:
    """Silence or a trickle in the headers or the body (plain or gzip): both bounds hold."""
    await both_bounds(stalling.url)
    if "trickle" in stalling.mode:
        assert stalling.sent >= 5, "the server never got to trickle"


# --- the gate ------------------------------------------------------------------------------


async def test_a_one_shot_call_queued_at_the_gate_is_bounded_by_request_timeout() -> None:
    """Three one-shot calls behind max_in_flight=1 and a silent server each end by request_timeout."""
    async with StallingServer("headers-silent") as server:
        async with KooDriveClient(
            server.url,
            auth=BearerToken(TOKEN),
            allow_insecure_urls=True,
            request_timeout=BOUND,
            attempts=1,
            limits=Limits(max_in_flight=1),
        ) as kd:
            results = await asyncio.gather(
                *(measured(kd.get_share_task(SHARE, f"t{i}")) for i in range(3))
            )
    for _, error in results:
        assert isinstance(error, RequestTimeoutError), repr(error)
    # Without a bound on the wait for a turn they would end at 0.6 s, 1.2 s and 1.8 s.
    assert max(seconds for seconds, _ in results) < BOUND + SLACK, results
