"""The one request path: every HTTP request of a client goes through :class:`Transport`.

One attempt is: a turn at the gate (:mod:`._limiter`), the auth headers (a token
provider's call included), the exchange, the body read under the size cap, decoding
and error mapping, redaction, stats and hooks. The whole attempt, auth included, ends
by its cutoff: the caller's deadline or ``request_timeout``, whichever is first.
Every failure leaves as a :class:`~koodrive_tasks.KooDriveError`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Generic, NoReturn, TypeVar

import aiohttp
import attrs
from multidict import CIMultiDictProxy
from yarl import URL

from . import _wire
from ._auth import Auth
from ._clock import Clock
from ._limiter import Limiter, Slot
from ._policy import PollPolicy
from ._redact import REDACTED
from ._stats import ClientStats, RequestEvent, RetryEvent, call_hook
from .exceptions import (
    ClientClosedError,
    ClockSkewError,
    ConnectError,
    EventLoopMismatchError,
    KooDriveError,
    MalformedResponseError,
    ProtocolError,
    RateLimitedError,
    RequestTimeoutError,
    TransportError,
)

logger = logging.getLogger("koodrive_tasks")
_T = TypeVar("_T")

TRACE_ID_LENGTH = 58
MIN_ATTEMPT = 0.001
"""Seconds an attempt is given at least, however close its caller's deadline."""
_X_DATE_WINDOW = 15 * 60
_READ_CHUNK = 1 << 16
# Only codings decoded chunk by chunk under the size cap are asked for; a server that
# answers in another one anyway gets a MalformedResponseError.
_ACCEPT_ENCODING = "gzip, deflate"
_DECODED = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
_NO_TIMEOUT = aiohttp.ClientTimeout()
_KEPT_URLS = 1024


def new_trace_id() -> str:
    """A random 58-character ``X-Traceid``."""
    return os.urandom(TRACE_ID_LENGTH // 2).hex()


@attrs.frozen
class Request(Generic[_T]):
    """One request as the path sends it, built once and sent as often as needed.

    A poll stream keeps its task's request for as long as it polls, so the request
    holds no more than it must: what it is about (``subject``) is one field, shared
    with the task's reference, and its name in errors and logs is built only when
    one is written.

    Attributes:
        method: ``"GET"`` or ``"POST"``.
        path: The API path (the base URL's path is prefixed).
        action: What it does, as errors and logs name it (``"query task"``).
        parse: Reads a successful answer's payload, given the request's ``subject``.
        subject: What it is about, if anything: the task or job id, named after the
            action and passed to ``parse``.
        body: The encoded JSON body, if any. It may hold a kdstoken: never shown.
        query: Query parameters, if any.
        secrets: Values to redact from anything the server echoes (a kdstoken).
        poll: Whether it reads a task's state (counted in ``ClientStats.polls``).
    """

    method: str
    path: str
    action: str
    parse: Callable[[object, str], _T] = attrs.field(repr=False)
    subject: str = ""
    body: bytes | None = attrs.field(default=None, repr=False)
    query: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = attrs.field(default=(), repr=False)
    poll: bool = False

    @property
    def operation(self) -> str:
        """How errors and logs name it: ``"query task t1"``."""
        return f"{self.action} {self.subject}" if self.subject else self.action


class _Cutoff:
    """One attempt's cutoff: the moment its task is cancelled if it is still running."""

    __slots__ = ("at", "fired", "task")

    def __init__(self, at: float, task: asyncio.Task[Any] | None) -> None:
        self.at = at
        self.task = task
        self.fired = False

    def expired(self) -> bool:
        """After a ``CancelledError``: whether it was this cutoff's, and only its own."""
        if not self.fired:
            return False
        if sys.version_info >= (3, 11) and self.task is not None:
            # Another cancel (the caller's) that came too is not swallowed.
            return self.task.uncancel() == 0
        return True


class _Watchdog:
    """Ends attempts that outlive their cutoff, with one event-loop timer for all of them.

    Request timeouts are real I/O time, as aiohttp's own are: the loop's clock, not an
    injected one (a virtual clock jumps ahead while I/O is pending). The timer is set
    for the earliest cutoff of the attempts under way (at most ``max_in_flight``), and
    an attempt that ends only leaves the set: it costs no timer of its own.
    """

    __slots__ = ("_active", "_armed_at", "_handle")

    def __init__(self) -> None:
        self._active: set[_Cutoff] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf

    def watch(self, seconds: float) -> _Cutoff:
        """Cancel the current task ``seconds`` from now unless :meth:`done` comes first."""
        loop = asyncio.get_running_loop()
        cutoff = _Cutoff(loop.time() + seconds, asyncio.current_task())
        self._active.add(cutoff)
        if cutoff.at < self._armed_at:
            if self._handle is not None:
                self._handle.cancel()
            self._armed_at = cutoff.at
            self._handle = loop.call_at(cutoff.at, self._ring, loop)
        return cutoff

    def done(self, cutoff: _Cutoff) -> None:
        """The attempt ended: its cutoff no longer applies."""
        self._active.discard(cutoff)

    def _ring(self, loop: asyncio.AbstractEventLoop) -> None:
        self._handle = None
        self._armed_at = math.inf
        now, earliest = loop.time(), math.inf
        for cutoff in tuple(self._active):
            if cutoff.at <= now:
                self._active.discard(cutoff)
                cutoff.fired = True
                if cutoff.task is not None:
                    cutoff.task.cancel()
            elif cutoff.at < earliest:
                earliest = cutoff.at
        if earliest < math.inf:
            self._armed_at = earliest
            self._handle = loop.call_at(earliest, self._ring, loop)


class Transport:
    """Sends :class:`Request` objects to one KooDrive endpoint.

    Args:
        base_url: The endpoint, already checked by the client.
        auth: The authentication scheme.
        session: A caller's ``aiohttp.ClientSession`` (never closed here), or ``None``
            to make and own one.
        request_timeout: Seconds one attempt may take, auth and body included.
        static_headers: Sent with every request (``language``, ``X-Hw-Agentname``).
        max_response_bytes: The cap on a body's decoded size.
        clock: The client's clock (X-Date, backoff sleeps, event times).
        limiter: The admission gate.
        stats: The client's counters.
        policy: The client's policy: retry delays and ``Retry-After`` clamps.
        attempts: Tries of a one-shot call.
        on_request: Called with a :class:`RequestEvent` after every request.
        on_retry: Called with a :class:`RetryEvent` before every retry.
    """

    def __init__(
        self,
        base_url: URL,
        *,
        auth: Auth,
        session: aiohttp.ClientSession | None,
        request_timeout: float,
        static_headers: Mapping[str, str],
        max_response_bytes: int,
        clock: Clock,
        limiter: Limiter,
        stats: ClientStats,
        policy: PollPolicy,
        attempts: int,
        on_request: Callable[[RequestEvent], None] | None,
        on_retry: Callable[[RetryEvent], None] | None,
    ) -> None:
        self._base_path = base_url.path.rstrip("/")
        self._base = base_url.with_path("/")
        self._urls: dict[str, URL] = {}
        self.auth = auth
        self._session = session
        self._owns_session = session is None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.request_timeout = request_timeout
        self._headers = {
            "Content-Type": "application/json",
            "Accept-Encoding": _ACCEPT_ENCODING,
            **static_headers,
        }
        self._max_response_bytes = max_response_bytes
        self.clock = clock
        self.limiter = limiter
        self.stats = stats
        self.policy = policy
        self._attempts = attempts
        self._on_request = on_request
        self._on_retry = on_retry
        self._closed = False
        self._watchdog = _Watchdog()

    def __repr__(self) -> str:
        return f"<Transport {self.base_url!r} {self.limiter!r}>"

    @property
    def base_url(self) -> str:
        """The endpoint as given (no credentials: the client refuses them)."""
        return str(self._base.with_path(self._base_path or "/"))

    @property
    def host(self) -> str:
        """The endpoint's host."""
        return self._base.host or ""

    # --- life cycle ----------------------------------------------------------------------

    def check_loop(self) -> None:
        """Bind to the running event loop on first use; refuse any other loop afterwards.

        Raises:
            ClientClosedError: After :meth:`close`.
            EventLoopMismatchError: From a loop other than the first one.
        """
        if self._closed:
            raise ClientClosedError("this KooDriveClient is closed; create a new one")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise EventLoopMismatchError(
                "this KooDriveClient was first used in another event loop (one asyncio.run "
                "per client): create the client inside the loop that uses it, e.g. "
                "`async with KooDriveClient(...) as kd:` within the coroutine, or one per "
                "asyncio.run / per test"
            )

    def session(self) -> aiohttp.ClientSession:
        """The session, made on first use in the running loop.

        Raises:
            ClientClosedError, EventLoopMismatchError: See :meth:`check_loop`.
        """
        session = self._session
        if session is None or self._closed or self._loop is not asyncio.get_running_loop():
            self.check_loop()
            if self._session is None:
                self._session = aiohttp.ClientSession()
            session = self._session
        return session

    async def close(self) -> None:
        """No more requests; close the session if it is ours."""
        self._closed = True
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    # --- sending -------------------------------------------------------------------------

    async def send(
        self, request: Request[_T], *, deadline: float | None = None, slot: Slot | None = None
    ) -> _T:
        """One attempt (and, after a 401, one more with refreshed credentials).

        Args:
            request: What to send.
            deadline: The caller's deadline on the client's clock; the attempt ends by
                it or by ``request_timeout``, whichever is first.
            slot: A turn the caller already has from the gate (released here);
                without one, the request queues for its own.

        Raises:
            KooDriveError: A subclass for every failure.
        """
        session = self.session()
        url = self._url(request)
        for refreshed in (False, True):
            if slot is None:
                slot = await self.limiter.acquire(deadline)
            started = self.clock.monotonic()
            trace_id = new_trace_id()
            status: int | None = None
            error: KooDriveError | None = None
            seconds = self.request_timeout
            if deadline is not None and deadline - started < seconds:
                seconds = max(MIN_ATTEMPT, deadline - started)
            try:
                auth_headers, status, raw, headers = await self._exchange(
                    session, request, url, trace_id, seconds
                )
            except KooDriveError as failure:
                error = failure
            if error is None and status == 401 and not refreshed:
                slot.release()  # the refresh may take a while; the retry queues anew
                slot = None
                if await self._refresh(auth_headers, request, deadline):
                    logger.info(
                        "%s: credentials rejected, retrying once with refreshed ones",
                        request.operation,
                    )
                    continue
            if error is None:
                try:
                    result = self._result(request, status, raw, headers, trace_id)  # type: ignore[arg-type]
                except KooDriveError as failure:
                    error = failure
            if error is not None:
                self._account(error)  # a 429 pauses the gate before this turn is given back
            if slot is not None:
                slot.release()
            if error is not None:
                self._observe(request.operation, status, started, trace_id, error)
                _raise_alone(error)
            if self._on_request is not None:  # the event is only built for a hook
                self._observe(request.operation, status, started, trace_id, None)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _url(self, request: Request[Any]) -> URL:
        url = self._urls.get(request.path)
        if url is None:
            if len(self._urls) >= _KEPT_URLS:
                self._urls.clear()  # a job's detail path holds its id: one path per job
            url = self._urls[request.path] = self._base.with_path(self._base_path + request.path)
        return url.with_query(request.query) if request.query else url

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        request: Request[Any],
        url: URL,
        trace_id: str,
        seconds: float,
    ) -> tuple[dict[str, str], int, bytes, CIMultiDictProxy[str]]:
        """Auth headers, then the HTTP exchange, all ended by one cutoff ``seconds`` away."""
        stats = self.stats
        stats.requests += 1
        stats.polls += request.poll
        body = request.body if request.body is not None else b""
        cutoff = self._watchdog.watch(seconds)
        failure: KooDriveError
        try:
            auth_headers = await self.auth.headers(request.method, url, body, self.clock.now)
            headers = {**self._headers, "X-Traceid": trace_id, **auth_headers}
            async with session.request(
                request.method,
                url,
                data=request.body,
                headers=headers,
                allow_redirects=False,  # never carry credentials to wherever a redirect points
                auto_decompress=False,  # decoded here, under the size cap
                timeout=_NO_TIMEOUT,  # the cutoff above ends the whole attempt
            ) as response:
                raw = await self._read(response, request.operation, trace_id)
                return auth_headers, response.status, raw, response.headers
        # Each error is built here and raised below, outside the except block: raised inside
        # it, even `from None`, it would keep aiohttp's error as its __context__, and that
        # error's request_info carries the request's headers, Authorization included.
        except asyncio.CancelledError:
            if not cutoff.expired():
                raise
            failure = RequestTimeoutError(
                f"{request.operation} timed out after {seconds:g} s (trace id {trace_id}); "
                "the server or network is slow: it will be retried while the wait's deadline allows",
                trace_id=trace_id,
            )
        except (
            TimeoutError,
            asyncio.TimeoutError,
        ):  # a session's own timeouts; one class from 3.11
            failure = RequestTimeoutError(
                f"{request.operation} timed out (trace id {trace_id}); the server or network "
                "is slow: it will be retried while the wait's deadline allows",
                trace_id=trace_id,
            )
        except aiohttp.ClientConnectorError as error:
            failure = ConnectError(
                f"{request.operation}: cannot connect to {url.host} ({type(error).__name__}, "
                f"trace id {trace_id}); check the base URL and the network",
                trace_id=trace_id,
            )
        except aiohttp.ClientError as error:
            failure = TransportError(
                f"{request.operation}: the connection failed ({type(error).__name__}, trace id {trace_id})",
                trace_id=trace_id,
            )
        except RuntimeError as error:
            if _other_loop(error):
                # This loop runs, so a closed loop (or a future of another one) is the
                # session's: it was made in an earlier asyncio.run. aiohttp offers no
                # public way to ask a session for its loop beforehand.
                failure = EventLoopMismatchError(
                    f"{request.operation}: the aiohttp.ClientSession passed to this "
                    "KooDriveClient belongs to another event loop (an earlier asyncio.run?): "
                    "create the client inside the loop that uses it, and its session with it"
                )
            elif not session.closed:
                raise
            else:
                # aiohttp's bare "Session is closed": a session passed in was closed by its
                # owner while this client still used it. Not retryable: it stays closed.
                failure = ClientClosedError(
                    f"{request.operation}: the aiohttp.ClientSession passed to this "
                    "KooDriveClient was closed; close the client before its session, or pass "
                    "an open one"
                )
        finally:
            self._watchdog.done(cutoff)
        raise failure

    async def _read(self, response: aiohttp.ClientResponse, operation: str, trace_id: str) -> bytes:
        """The body, decoded, refused as soon as it grows past ``max_response_bytes``."""
        cap = self._max_response_bytes
        coding = response.headers.get("Content-Encoding", "").strip().lower()
        try:
            length = response.content_length
        except ValueError:
            # aiohttp's own parser refuses a Content-Length that is not a number before
            # this point; a mocked or custom connector hands it over as it came: read
            # such a body as one of unknown length, under the cap.
            length = None
        if not coding or coding == "identity":
            if length is not None:
                if length > cap:
                    raise self._too_large(response, operation, trace_id)
                return await response.read()  # aiohttp stops at the declared length
            return await self._read_capped(response.content, cap, operation, trace_id, response)
        if coding not in _DECODED:
            raise MalformedResponseError(
                f"{operation}: the answer uses content coding {coding[:40]!r}, which was not "
                f"asked for (trace id {trace_id})",
                trace_id=trace_id,
                http_status=response.status,
            )
        return _wire.decompress_capped(
            await self._read_capped(response.content, cap, operation, trace_id, response),
            coding,
            cap,
            lambda: self._too_large(response, operation, trace_id),
            lambda: MalformedResponseError(
                f"{operation}: the {coding} body is damaged (trace id {trace_id})",
                trace_id=trace_id,
                http_status=response.status,
            ),
        )

    async def _read_capped(
        self,
        content: aiohttp.StreamReader,
        cap: int,
        operation: str,
        trace_id: str,
        response: aiohttp.ClientResponse,
    ) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while chunk := await content.read(_READ_CHUNK):
            size += len(chunk)
            if size > cap:
                raise self._too_large(response, operation, trace_id)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(
        self, response: aiohttp.ClientResponse, operation: str, trace_id: str
    ) -> MalformedResponseError:
        return MalformedResponseError(
            f"{operation}: the answer exceeds {self._max_response_bytes} bytes and was not read "
            f"(trace id {trace_id})",
            trace_id=trace_id,
            http_status=response.status,
        )

    async def _refresh(
        self, rejected: dict[str, str], request: Request[Any], deadline: float | None
    ) -> bool:
        """After a 401: let the auth scheme refresh, within the attempt's time."""
        seconds = self.request_timeout
        if deadline is not None:
            seconds = max(MIN_ATTEMPT, min(seconds, deadline - self.clock.monotonic()))
        cutoff = self._watchdog.watch(seconds)
        try:
            return await self.auth.refresh(rejected)
        except asyncio.CancelledError:
            if not cutoff.expired():
                raise
            failure = RequestTimeoutError(
                f"{request.operation}: refreshing the credentials took longer than {seconds:g} s"
            )
        finally:
            self._watchdog.done(cutoff)
        raise failure

    # --- answers -------------------------------------------------------------------------

    def _result(
        self,
        request: Request[_T],
        status: int,
        raw: bytes,
        headers: Mapping[str, str],
        trace_id: str,
    ) -> _T:
        operation = request.operation
        payload = self._decode(status, raw, headers, trace_id, request)
        failure: ProtocolError | None = None
        try:
            return request.parse(payload, request.subject)
        except ProtocolError as error:
            # Built here, raised below: raising inside the except block would keep the
            # unredacted original reachable as the new error's __context__.
            failure = type(error)(
                f"{operation}: {self.redact(str(error), request.secrets)} (trace id {trace_id})",
                trace_id=trace_id,
                http_status=status,
            )
        raise failure

    def _decode(
        self,
        status: int,
        raw: bytes,
        headers: Mapping[str, str],
        trace_id: str,
        request: Request[Any],
    ) -> object:
        operation = request.operation
        payload, decoded = _wire.decode_json(raw)
        if 200 <= status < 300:
            if type(payload) is dict and _wire.is_success_code(payload.get("code")):
                return payload
            if not decoded:
                raise MalformedResponseError(
                    f"{operation}: HTTP {status} with a body that is not JSON "
                    f"({_wire.content_type(headers)}, {len(raw)} bytes, trace id {trace_id})",
                    trace_id=trace_id,
                    http_status=status,
                )
            if not isinstance(payload, Mapping):
                raise ProtocolError(
                    f"{operation}: expected a JSON object, got {type(payload).__name__} (trace id {trace_id})",
                    trace_id=trace_id,
                    http_status=status,
                )
            if _wire.is_success_code(payload.get("code")):
                return payload
        if 300 <= status < 400:
            target = _wire.redirect_host(headers.get("Location")) or "another location"
            raise ProtocolError(
                f"{operation}: HTTP {status} redirect to {target}; redirects are not followed so "
                f"credentials stay with {self.host}: check the base URL (trace id {trace_id})",
                trace_id=trace_id,
                http_status=status,
            )
        now = self.clock.now()
        error = _wire.api_error(
            status,
            payload,
            trace_id=trace_id,
            retry_after=_wire.parse_retry_after(headers.get("Retry-After"), now=now),
            operation=operation,
            redact=lambda text: self.redact(text, request.secrets),
        )
        if status == 401 and self.auth.clock_sensitive and not isinstance(error, ClockSkewError):
            # Now rather than when signed: the round trip is nothing against 15 minutes.
            skew = _clock_skew(headers.get("Date"), now)
            if skew is not None and abs(skew) > _X_DATE_WINDOW:
                error = ClockSkewError(
                    f"{error}; this machine's clock is {abs(skew):.0f} s "
                    f"{'ahead of' if skew > 0 else 'behind'} the server's, beyond the 15-minute "
                    "X-Date window: synchronise the clock (NTP)",
                    http_status=status,
                    code=error.code,
                    server_message=error.message,
                    trace_id=trace_id,
                    request_id=error.request_id,
                )
        logger.debug("%s: %s", operation, error)
        raise error

    def redact(self, text: str, extra: tuple[str, ...] = ()) -> str:
        """``text`` with every known secret replaced by ``<redacted>``."""
        for value in (*self.auth.secrets(), *extra):
            if value and value in text:
                text = text.replace(value, REDACTED)
        return text

    # --- accounting ----------------------------------------------------------------------

    def _account(self, error: KooDriveError) -> None:
        self.stats.errors[type(error).__name__] += 1
        if isinstance(error, RateLimitedError):
            self.stats.rate_limited += 1
            seconds = self.limiter.limits.default_pause
            if error.retry_after is not None:
                policy = self.policy
                seconds = min(
                    policy.retry_after_max, max(policy.retry_after_min, error.retry_after)
                )
            if self.limiter.throttle(seconds):
                self.stats.pauses += 1

    def _observe(
        self,
        operation: str,
        status: int | None,
        started: float,
        trace_id: str,
        error: KooDriveError | None,
    ) -> None:
        if self._on_request is not None:
            event = RequestEvent(
                operation=operation,
                http_status=status,
                seconds=self.clock.monotonic() - started,
                trace_id=trace_id,
                error=None if error is None else type(error).__name__,
            )
            call_hook(self._on_request, event)

    def retrying(
        self, task_id: str | None, error: KooDriveError, attempt: int, delay: float
    ) -> None:
        """Count a transient failure about to be retried and tell ``on_retry``."""
        self.stats.retries += 1
        if self._on_retry is not None:
            call_hook(self._on_retry, RetryEvent(task_id, type(error).__name__, attempt, delay))

    # --- one-shot calls ------------------------------------------------------------------

    async def call(
        self,
        request: Request[_T],
        *,
        task_id: str | None,
        may_retry: Callable[[KooDriveError], bool],
    ) -> _T:
        """``request``, tried up to ``attempts`` times while ``may_retry`` says so.

        Each attempt, its wait for a turn at the gate included, is bounded by
        ``request_timeout``: a caller behind ``max_in_flight``, the rate or a throttling
        pause hears back in time too. Between attempts the retry backoff sleeps on the
        client's clock.
        """
        attempt = 1
        while True:
            try:
                return await self.send(
                    request, deadline=self.clock.monotonic() + self.request_timeout
                )
            except KooDriveError as error:
                if attempt >= self._attempts or not may_retry(error):
                    raise
                delay = self.policy.retry_delay(attempt, getattr(error, "retry_after", None))
                self.retrying(task_id, error, attempt, delay)
                logger.info("retrying in %.2f s after %s", delay, type(error).__name__)
            await self.clock.sleep(delay)
            attempt += 1


def _raise_alone(error: KooDriveError) -> NoReturn:
    """Raise ``error`` with no ``__context__``.

    None of our errors needs one, and one would reach aiohttp's error, whose request_info
    holds the Authorization header. On Python 3.10 a raise in a step that asyncio's
    pure-Python Task resumed with ``throw()`` (pytest-asyncio's runner does) takes the
    exception that step handles as its context, this raise included: it is cleared once
    raised, while the error propagates.
    """
    try:
        raise error
    finally:
        error.__context__ = None


def _other_loop(error: RuntimeError) -> bool:
    """Whether asyncio raised ``error`` for an object of another (or a closed) event loop."""
    message = str(error)
    return (
        "Event loop is closed" in message
        or "different loop" in message
        or ("different event loop" in message)
    )


def _clock_skew(server_date: str | None, sent_at: datetime) -> float | None:
    """Seconds our clock is ahead of the server's, from its ``Date`` header."""
    server = _wire.parse_http_date(server_date)
    if server is None:
        return None
    try:
        return (sent_at - server).total_seconds()
    except OverflowError:  # a date at the ends of the calendar: no usable reading
        return None
