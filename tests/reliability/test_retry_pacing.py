"""No failure is retried faster than the retry backoff, and a foreign cancellation is a typed error.

For every error class a wait can meet (a provider raising ``CancelledError`` or any
error or hanging, a 401 whose refresh fails, 5xx, 429 with and without
``Retry-After``, a malformed body, a reset or refused connection), a wait runs for
``WINDOW`` virtual seconds against a loopback server that always fails that way. Each
attempt's time is recorded (by the server, the provider, or ``on_request``) and each
retry's announced delay (``on_retry``): the next attempt never comes before it, the
attempts stay within the backoff's budget, and the wait times out carrying that class
in ``last_error``. Non-retryable classes end the wait after one attempt.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import attrs
import pytest
from aiohttp import web
from rel_support import SHARE, TOKEN, RawServer, WebServer

from koodrive_tasks import (
    AuthenticationError,
    BearerToken,
    ConnectError,
    CredentialProviderError,
    KooDriveClient,
    KooDriveError,
    MalformedResponseError,
    NotFoundError,
    PollPolicy,
    ProtocolError,
    RateLimitedError,
    RequestEvent,
    RequestTimeoutError,
    RetryEvent,
    ServerError,
    TransportError,
    WaitTimeoutError,
)
from koodrive_tasks.testing import VirtualClock

WINDOW = 120.0
POLICY = PollPolicy(timeout=WINDOW, retry_initial_delay=0.5, retry_max_delay=10.0, jitter=0.1)
ANSWER = {"code": "0", "taskInfo": {"taskId": "t1", "taskStatus": 1, "progress": 5}}


def backoff_budget(window: float, policy: PollPolicy) -> int:
    """Attempts a full-jitter backoff may make in ``window``: generous, yet far below a storm.

    The n-th retry waits uniform(0, ceiling_n), ceiling doubling from retry_initial_delay
    to retry_max_delay: at most 3x the attempts the mean delays allow, plus the first steps.
    """
    elapsed, attempts, ceiling = 0.0, 1, policy.retry_initial_delay
    while elapsed < window:
        elapsed += ceiling / 2
        attempts += 1
        ceiling = min(policy.retry_max_delay, ceiling * 2)
    return 3 * attempts + 10


@pytest.fixture(autouse=True)
def seeded_random() -> Iterator[None]:
    """Jitter draws from the random module: seed it, and leave it as it was."""
    state = random.getstate()
    random.seed(20261129)
    yield
    random.setstate(state)


# --- providers -----------------------------------------------------------------------------


class Provider:
    """A token provider failing in a chosen way, recording when it was called (virtual time)."""

    def __init__(self, clock: VirtualClock, failure: str, *, good_first: bool = False) -> None:
        self.clock = clock
        self.failure = failure
        self.good_first = good_first
        self.calls: list[float] = []
        self.shared_refresh: asyncio.Future[str] | None = None

    async def __call__(self) -> str:
        self.calls.append(self.clock.monotonic())
        if self.good_first and len(self.calls) == 1:
            return "expired"
        if self.failure == "cancelled":
            # Awaits a refresh shared with other code, which someone else cancelled.
            refresh = asyncio.get_running_loop().create_future()
            refresh.cancel()
            return await refresh
        if self.failure == "raises":
            raise RuntimeError("token endpoint said no: client_secret=hunter2")
        if self.failure == "hangs":
            await asyncio.Event().wait()
        raise AssertionError(self.failure)


# --- servers -------------------------------------------------------------------------------


@attrs.define
class Recorder:
    """What one run saw: attempt times and announced retry delays, on the virtual clock."""

    clock: VirtualClock
    arrivals: list[float] = attrs.Factory(list)
    requests: list[tuple[float, RequestEvent]] = attrs.Factory(list)
    retries: list[tuple[float, RetryEvent]] = attrs.Factory(list)

    def on_request(self, event: RequestEvent) -> None:
        self.requests.append((self.clock.monotonic() - event.seconds, event))

    def on_retry(self, event: RetryEvent) -> None:
        self.retries.append((self.clock.monotonic(), event))


def answering(recorder: Recorder, respond: Callable[[], web.Response]) -> Any:
    async def handler(request: web.Request) -> web.Response:
        recorder.arrivals.append(recorder.clock.monotonic())
        if request.headers.get("Authorization") == "Bearer expired":
            return web.json_response(
                {"error_code": "APIGW.0301", "error_msg": "expired"}, status=401
            )
        return respond()

    return handler


def json_error(status: int, code: str = "APIGW.0000", **headers: str) -> Callable[[], web.Response]:
    return lambda: web.json_response(
        {"error_code": code, "error_msg": "no", "request_id": "r"}, status=status, headers=headers
    )


HTTP_FAULTS: dict[str, tuple[Callable[[], web.Response], type[KooDriveError]]] = {
    "500": (json_error(500), ServerError),
    "502-html": (
        lambda: web.Response(status=502, text="<html>bad gateway</html>", content_type="text/html"),
        ServerError,
    ),
    "429": (json_error(429, "APIGW.0308"), RateLimitedError),
    "429-retry-after-0": (json_error(429, "APIGW.0308", **{"Retry-After": "0"}), RateLimitedError),
    "malformed-json": (
        lambda: web.Response(body=b'{"code": "0", "taskInfo": {', content_type="application/json"),
        MalformedResponseError,
    ),
}


class Resetting(RawServer):
    """Reads each request and closes the connection without an answer."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.recorder.arrivals.append(self.recorder.clock.monotonic())


def refused_url() -> str:
    """A loopback port nobody listens on (a connection is refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def ok_server() -> AsyncIterator[tuple[WebServer, Recorder, VirtualClock]]:
    clock = VirtualClock()
    recorder = Recorder(clock)
    async with WebServer(answering(recorder, lambda: web.json_response(ANSWER))) as server:
        yield server, recorder, clock


def check_paced(
    attempts: list[float],
    recorder: Recorder,
    expected: type[KooDriveError],
    *,
    retry_after: bool = False,
) -> None:
    """Attempt k+1 never comes before retry k's announced delay; the count stays in budget.

    A server's ``Retry-After`` replaces the backoff (clamped to ``retry_after_min``), so
    with one the budget is one attempt per ``retry_after_min``.
    """
    attempts = sorted(attempts)
    retries = sorted(recorder.retries, key=lambda r: r[0])
    assert len(attempts) >= 3, "the wait stopped retrying"
    budget = (
        int(WINDOW / POLICY.retry_after_min) + 1 if retry_after else backoff_budget(WINDOW, POLICY)
    )
    assert len(attempts) <= budget, (len(attempts), budget)
    assert len(retries) in (len(attempts) - 1, len(attempts)), (len(attempts), len(retries))
    for (failed_at, event), next_attempt in zip(retries, attempts[1:], strict=False):
        assert event.error == expected.__name__
        assert next_attempt >= failed_at + event.delay - 1e-6, (failed_at, event, next_attempt)


async def run_wait(
    url: str, clock: VirtualClock, recorder: Recorder, auth: Any, *, request_timeout: float = 5.0
) -> WaitTimeoutError:
    async with KooDriveClient(
        url,
        auth=auth,
        allow_insecure_urls=True,
        clock=clock,
        policy=POLICY,
        # Real seconds. A hanging provider waits for it, so those tests make it short;
        # the others keep it long, or a loaded machine would turn a slow answer into a
        # RequestTimeoutError where the test expects the server's failure.
        request_timeout=request_timeout,
        on_request=recorder.on_request,
        on_retry=recorder.on_retry,
    ) as kd:
        with pytest.raises(WaitTimeoutError) as caught:
            await asyncio.wait_for(kd.wait_for_task(SHARE, "t1"), 30)
    assert WINDOW <= clock.monotonic() <= WINDOW + 1.0
    return caught.value


@pytest.mark.parametrize("fault", list(HTTP_FAULTS))
async def test_server_failures_are_retried_no_faster_than_the_backoff(fault: str) -> None:
    """5xx, 429 (with and without Retry-After) and malformed bodies: paced, last_error kept."""
    respond, expected = HTTP_FAULTS[fault]
    clock = VirtualClock()
    recorder = Recorder(clock)
    async with WebServer(answering(recorder, respond)) as server:
        error = await run_wait(server.url, clock, recorder, BearerToken(TOKEN))
    assert isinstance(error.last_error, expected), repr(error.last_error)
    check_paced(recorder.arrivals, recorder, expected, retry_after="retry-after" in fault)


async def test_reset_connections_are_retried_no_faster_than_the_backoff() -> None:
    """A server that closes every connection unanswered: TransportError, paced, kept as last_error."""
    clock = VirtualClock()
    recorder = Recorder(clock)
    async with Resetting(recorder) as server:
        error = await run_wait(server.url, clock, recorder, BearerToken(TOKEN))
    assert type(error.last_error) is TransportError, repr(error.last_error)
    check_paced(recorder.arrivals, recorder, TransportError)


async def test_refused_connections_are_retried_no_faster_than_the_backoff() -> None:
    """Nobody listening: ConnectError, paced, kept as last_error."""
    clock = VirtualClock()
    recorder = Recorder(clock)
    error = await run_wait(refused_url(), clock, recorder, BearerToken(TOKEN))
    assert isinstance(error.last_error, ConnectError), repr(error.last_error)
    check_paced([at for at, _ in recorder.requests], recorder, ConnectError)


@pytest.mark.parametrize("failure", ["cancelled", "raises", "hangs"])
@pytest.mark.parametrize("when", ["first-use", "refresh"])
async def test_provider_failures_are_retried_no_faster_than_the_backoff(
    ok_server: tuple[WebServer, Recorder, VirtualClock], failure: str, when: str
) -> None:
    """A provider raising CancelledError or an error, or hanging, at first use or refresh: paced."""
    server, recorder, clock = ok_server
    provider = Provider(clock, failure, good_first=when == "refresh")
    error = await run_wait(
        server.url,
        clock,
        recorder,
        BearerToken(provider),
        request_timeout=0.05 if failure == "hangs" else 5.0,
    )
    expected = RequestTimeoutError if failure == "hangs" else CredentialProviderError
    assert isinstance(error.last_error, expected), repr(error.last_error)
    calls = provider.calls[1:] if when == "refresh" else provider.calls
    check_paced(calls, recorder, expected)
    if isinstance(error.last_error, CredentialProviderError):
        assert error.last_error.provider == "Provider"
        assert "Provider" in str(error.last_error)
        assert "hunter2" not in str(error.last_error)  # the provider's message is never quoted


@pytest.mark.parametrize("fault", ["500", "429", "malformed-json", "provider-cancelled"])
async def test_one_shot_retries_wait_the_backoff_too(fault: str) -> None:
    """get_share_task's own retries (attempts=6): each waits its announced delay, then the error."""
    clock = VirtualClock()
    recorder = Recorder(clock)
    provider = Provider(clock, "cancelled")
    auth = BearerToken(provider) if fault == "provider-cancelled" else BearerToken(TOKEN)
    respond, expected = HTTP_FAULTS.get(fault, (lambda: web.json_response(ANSWER), None))
    async with WebServer(answering(recorder, respond)) as server:
        async with KooDriveClient(
            server.url,
            auth=auth,
            allow_insecure_urls=True,
            clock=clock,
            policy=POLICY,
            attempts=6,
            on_retry=recorder.on_retry,
        ) as kd:
            with pytest.raises(expected or CredentialProviderError):
                await kd.get_share_task(SHARE, "t1")
    attempts = provider.calls if fault == "provider-cancelled" else recorder.arrivals
    assert len(attempts) == 6
    assert len(recorder.retries) == 5
    for (failed_at, event), next_attempt in zip(recorder.retries, attempts[1:], strict=True):
        assert next_attempt >= failed_at + event.delay - 1e-6, (failed_at, event, next_attempt)


@pytest.mark.parametrize(
    ("respond", "expected"),
    [
        (json_error(401, "APIGW.0301"), AuthenticationError),
        (json_error(404), NotFoundError),
        (
            lambda: web.Response(status=302, headers={"Location": "https://elsewhere.example/"}),
            ProtocolError,
        ),
        (
            lambda: web.json_response({"code": "0", "taskInfo": {"taskId": "t2", "taskStatus": 1}}),
            ProtocolError,
        ),
    ],
    ids=["401", "404", "redirect", "another-task"],
)
async def test_permanent_failures_end_the_wait_after_one_attempt(
    respond: Callable[[], web.Response], expected: type[KooDriveError]
) -> None:
    """401 with a fixed token, 404, a redirect, a wrong task: one request, then the typed error."""
    clock = VirtualClock()
    recorder = Recorder(clock)
    async with WebServer(answering(recorder, respond)) as server:
        async with KooDriveClient(
            server.url,
            auth=BearerToken(TOKEN),
            allow_insecure_urls=True,
            clock=clock,
            policy=POLICY,
            on_retry=recorder.on_retry,
        ) as kd:
            with pytest.raises(expected):
                await kd.wait_for_task(SHARE, "t1")
    assert len(recorder.arrivals) == 1
    assert recorder.retries == []


# --- a foreign CancelledError --------------------------------------------------------------


async def cancelled_elsewhere() -> str:
    """A provider awaiting a shared refresh task that another coroutine cancelled."""
    shared = asyncio.ensure_future(asyncio.sleep(3600, "token"))
    await asyncio.sleep(0)
    shared.cancel()
    return await shared


async def test_a_provider_raising_cancelled_error_is_a_typed_error_naming_it(
    ok_server: tuple[WebServer, Recorder, VirtualClock],
) -> None:
    """A CancelledError that is not ours: CredentialProviderError naming the provider, no retry storm."""
    server, recorder, clock = ok_server
    async with KooDriveClient(
        server.url,
        auth=BearerToken(cancelled_elsewhere),
        allow_insecure_urls=True,
        clock=clock,
        attempts=1,
    ) as kd:
        with pytest.raises(CredentialProviderError) as caught:
            await kd.get_share_task(SHARE, "t1")
        await asyncio.sleep(0)  # no cancellation of this task was left pending
    assert caught.value.provider == "cancelled_elsewhere"
    assert "cancelled_elsewhere" in str(caught.value)
    assert isinstance(caught.value, AuthenticationError)
    assert recorder.arrivals == []  # no request went out without credentials


@pytest.mark.parametrize("call", ["wait", "one-shot"])
async def test_our_own_cancellation_during_a_provider_call_still_cancels(
    ok_server: tuple[WebServer, Recorder, VirtualClock], call: str
) -> None:
    """Cancelling the caller while its provider runs raises CancelledError and cancels the provider."""
    server, _, clock = ok_server
    started, provider_cancelled = asyncio.Event(), asyncio.Event()

    async def slow_provider() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            provider_cancelled.set()
            raise
        return "never"

    async with KooDriveClient(
        server.url, auth=BearerToken(slow_provider), allow_insecure_urls=True, clock=clock
    ) as kd:
        if call == "wait":
            caller = asyncio.ensure_future(kd.wait_for_task(SHARE, "t1").download_url())
        else:
            caller = asyncio.ensure_future(kd.get_share_task(SHARE, "t1"))
        await asyncio.wait_for(started.wait(), 5)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await asyncio.wait_for(provider_cancelled.wait(), 5)
    assert caller.cancelled()


async def test_a_sync_provider_is_a_typed_error() -> None:
    """A provider that is not async (returns a str, or raises) is a CredentialProviderError, unquoted."""

    def plain() -> str:
        return TOKEN

    def raising() -> str:
        raise RuntimeError("client_secret=hunter2")

    clock = VirtualClock()
    recorder = Recorder(clock)
    async with WebServer(answering(recorder, lambda: web.json_response(ANSWER))) as server:
        for provider in (plain, raising):
            async with KooDriveClient(
                server.url,
                auth=BearerToken(provider),  # type: ignore[arg-type]
                allow_insecure_urls=True,
                clock=clock,
                attempts=1,
            ) as kd:
                with pytest.raises(CredentialProviderError) as caught:
                    await kd.get_share_task(SHARE, "t1")
            assert caught.value.provider == provider.__qualname__
            assert "hunter2" not in str(caught.value)
            assert caught.value.__cause__ is None
            assert caught.value.__context__ is None
