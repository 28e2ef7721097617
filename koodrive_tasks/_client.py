"""``KooDriveClient``: one aiohttp session, both auth schemes, typed errors."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from types import EllipsisType, TracebackType
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from . import _resume, _wire
from ._auth import Auth
from ._clock import AsyncioClock, Clock
from ._many import CompletionStream, TaskBatch, TaskLike, UpdateStream
from ._models import TargetFolder, TaskInfo, TaskRef, TaskType
from ._outcome import TaskOutcome
from ._policy import PollPolicy
from ._redact import REDACTED
from ._scheduler import ClientStats, Limits, RequestEvent, RequestScheduler, RetryEvent, call_hook
from ._streams import PollStreams
from ._validate import is_text
from ._waiter import TaskWaiter
from ._wire import SHARE_TASKS_PATH, TASK_DETAIL_PATH, DetailQuery
from .exceptions import (
    ClockSkewError,
    ConnectError,
    InvalidArgumentError,
    KooDriveError,
    MalformedResponseError,
    ProtocolError,
    RateLimitedError,
    RequestTimeoutError,
    TransportError,
)

logger = logging.getLogger("koodrive_tasks")
_T = TypeVar("_T")

DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_MAX_RESPONSE_BYTES = 1 << 20
"""A task detail is a few KB; a 1000-file ``taskInfos`` list stays far below 1 MiB."""
MAX_FILE_IDS = 1000
TRACE_ID_LENGTH = 58
_X_DATE_WINDOW = 15 * 60
_DEFAULT_ATTEMPTS = 4
_KEPT_QUERIES = 256  # get_share_task requests kept per client, see _detail_query


def new_trace_id() -> str:
    """A random 58-character ``X-Traceid``."""
    # What secrets.token_hex does, minus its two Python-level calls.
    return os.urandom(TRACE_ID_LENGTH // 2).hex()


class KooDriveClient:
    """An async client for KooDrive's asynchronous share tasks.

    Use it as an async context manager (or call :meth:`close`)::

        async with KooDriveClient(base_url, auth=BearerToken(token)) as kd:
            url = await kd.wait_for_task(share_id, task_id)

    Args:
        base_url: ``https://intl.myhuaweicloud-koodrive.com``, the China host, or an
            emulator's URL.
        auth: :class:`BearerToken` or :class:`AppSignature`.
        session: An ``aiohttp.ClientSession`` to use. The client never closes a session
            it did not create.
        request_timeout: Seconds one HTTP request may take, body included.
        language: Sent as the ``language`` header (``en-US``, ``zh-CN``).
        agent_name: Sent as ``X-Hw-Agentname`` (carrier edition only).
        policy: Default :class:`PollPolicy` of waits.
        attempts: How many times a one-shot call (``get_share_task``) tries before
            raising a transient error.
        max_response_bytes: Larger answers are refused without being read whole.
        allow_insecure_urls: Accept ``http`` base and download URLs (an emulator on
            loopback); otherwise both must be ``https``.
        clock: Time source; tests inject a virtual clock.
        limits: Client-wide :class:`Limits`: requests in flight, request rate, and the
            shared pause after HTTP 429.
        on_request: Called with a :class:`RequestEvent` after every HTTP request.
        on_retry: Called with a :class:`RetryEvent` before every retry of a transient
            failure. Hooks must be quick; an exception in one is logged and ignored.

    Raises:
        InvalidArgumentError: If an argument is invalid.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: Auth,
        session: aiohttp.ClientSession | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        language: str | None = None,
        agent_name: str | None = None,
        policy: PollPolicy | None = None,
        attempts: int = _DEFAULT_ATTEMPTS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        allow_insecure_urls: bool = False,
        clock: Clock | None = None,
        limits: Limits | None = None,
        on_request: Callable[[RequestEvent], None] | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
    ) -> None:
        try:
            url = URL(base_url)
        except (TypeError, ValueError) as error:
            raise InvalidArgumentError(f"base_url is not a URL: {error}") from None
        if url.scheme not in ("https", "http") or not url.host:
            raise InvalidArgumentError("base_url must be an absolute http(s) URL")
        if url.scheme == "http" and not allow_insecure_urls:
            raise InvalidArgumentError(
                "base_url must use https; pass allow_insecure_urls=True for a local emulator"
            )
        if url.user or url.password or url.query_string or url.fragment:
            raise InvalidArgumentError("base_url must not carry credentials, a query or a fragment")
        if not request_timeout > 0:
            raise InvalidArgumentError("request_timeout must be > 0")
        if attempts < 1:
            raise InvalidArgumentError("attempts must be >= 1")
        if max_response_bytes < 1024:
            raise InvalidArgumentError("max_response_bytes must be >= 1024")
        self._base_path = url.path.rstrip("/")
        self._base = url.with_path("/")
        self._urls: dict[str, URL] = {}
        self._queries: dict[tuple[str, str, str | None], DetailQuery] = {}
        self._auth = auth
        self._session = session
        self._owns_session = session is None
        self._request_timeout = float(request_timeout)
        self._default_timeout = aiohttp.ClientTimeout(total=self._request_timeout)
        self._static_headers = {"Content-Type": "application/json"}
        if language:
            self._static_headers["language"] = language
        if agent_name:
            self._static_headers["X-Hw-Agentname"] = agent_name
        self.policy = policy or PollPolicy()
        self._attempts = attempts
        self._max_response_bytes = max_response_bytes
        self.allow_insecure_urls = allow_insecure_urls
        self.clock: Clock = clock or AsyncioClock()
        self.stats = ClientStats()
        self._scheduler = RequestScheduler(limits or Limits(), self.clock)
        self._streams = PollStreams(self._scheduler.limits.max_in_flight)
        self._on_request = on_request
        self._on_retry = on_retry
        self._batches: weakref.WeakSet[TaskBatch] = weakref.WeakSet()
        self._closed = False

    def __repr__(self) -> str:
        return f"KooDriveClient({str(self._base.with_path(self._base_path or '/'))!r}, auth={self._auth!r})"

    async def __aenter__(self) -> KooDriveClient:
        self._get_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop running batches; close the session if the client created it.

        A session passed in by the caller stays open.
        """
        self._closed = True
        self._queries.clear()  # they may hold kdstokens
        for batch in list(self._batches):
            await batch.aclose()
        cancelled = self._streams.close(KooDriveError("this KooDriveClient is closed"))
        if cancelled:
            await asyncio.gather(*cancelled, return_exceptions=True)
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _detail_query(self, share_id: str, task_id: str, kdstoken: str | None) -> DetailQuery:
        """The request for one task, its ids and kdstoken checked, built once and kept.

        A caller polling with get_share_task sends the same request again and again;
        building (and checking) it each time cost about 1 % of a poll's CPU.

        Raises:
            InvalidArgumentError: If an id or the kdstoken cannot be sent.
        """
        # Only plain strings are kept: a str subclass may equal another value (and a
        # kdstoken of another type must meet detail_query's check every time).
        kept = (
            type(share_id) is str
            and type(task_id) is str
            and (kdstoken is None or type(kdstoken) is str)
        )
        key = (share_id, task_id, kdstoken)
        if kept:
            query = self._queries.get(key)
            if query is not None:
                return query  # its ids passed the checks below when it was built
        # The plain check first: _require_ids(**ids) builds a dict on every call.
        if not (
            type(share_id) is str and share_id.strip() and type(task_id) is str and task_id.strip()
        ):
            _require_ids(share_id=share_id, task_id=task_id)
        query = _wire.detail_query(share_id, task_id, kdstoken)
        if kept and not self._closed:  # close() dropped them: keep none after it
            if len(self._queries) >= _KEPT_QUERIES:
                self._queries.clear()  # bounded, and simple: a miss costs one build
            self._queries[key] = query
        return query

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise KooDriveError("this KooDriveClient is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    # --- public calls -------------------------------------------------------------------

    async def get_share_task(
        self, share_id: str, task_id: str, *, kdstoken: str | None = None
    ) -> TaskInfo:
        """Query one share task once (transient failures are retried a few times).

        Args:
            share_id: The share the task belongs to.
            task_id: The task's id.
            kdstoken: The share link's temporary token, if the share needs one.

        Returns:
            The task's current state.

        Raises:
            KooDriveError: A subclass saying what went wrong.
        """
        kdstoken = kdstoken or None
        query = self._detail_query(share_id, task_id, kdstoken)
        secret = (kdstoken,) if kdstoken else ()
        try:
            # The first attempt goes straight: most calls need no retry, and
            # _with_retries' closures and frame cost about 1 % of a poll's CPU.
            return await self._post(
                TASK_DETAIL_PATH, query.body, secret, query.operation, query.parse
            )
        except KooDriveError as error:
            if not error.retryable or self._attempts == 1:
                raise
            failure = error
        return await self._with_retries(
            lambda: self._post(TASK_DETAIL_PATH, query.body, secret, query.operation, query.parse),
            task_id=task_id,
            may_retry=lambda error: error.retryable,
            failed=failure,
        )

    async def create_share_task(
        self,
        share_id: str,
        file_ids: Iterable[str],
        *,
        container_id: str,
        task_type: TaskType = TaskType.PACKAGE_DOWNLOAD,
        zip_name: str | None = None,
        target: TargetFolder | None = None,
        kdstoken: str | None = None,
    ) -> str:
        """Create an asynchronous share task and return its id.

        Args:
            share_id: The share holding the files.
            file_ids: 1 to 1000 file ids.
            container_id: The space the files are in.
            task_type: ``PACKAGE_DOWNLOAD`` (needs ``zip_name``) or ``DUMP`` (needs ``target``).
            zip_name: Name of the zip a package-download task produces.
            target: Where a dump task saves the files.
            kdstoken: The share link's temporary token, if the share needs one.

        Returns:
            The new task's id.

        Raises:
            InvalidArgumentError: Before any request, if the arguments do not fit the type.
            KooDriveError: A subclass saying what the server answered. Only throttling
                and refused connections are retried: a task must not be created twice.
        """
        ids = tuple(file_ids) if not isinstance(file_ids, str) else (file_ids,)
        _require_ids(share_id=share_id, container_id=container_id)
        if not 1 <= len(ids) <= MAX_FILE_IDS:
            raise InvalidArgumentError(
                f"file_ids must hold 1 to {MAX_FILE_IDS} ids, got {len(ids)}"
            )
        if not all(isinstance(i, str) and i.strip() for i in ids):
            raise InvalidArgumentError("every file id must be a non-empty string")
        if zip_name is not None and not (isinstance(zip_name, str) and zip_name.strip()):
            raise InvalidArgumentError("zip_name must be a non-empty string")
        kdstoken = kdstoken or None
        try:
            task_type = TaskType(task_type)
        except ValueError:
            raise InvalidArgumentError(
                f"task_type must be TaskType.PACKAGE_DOWNLOAD (1) or TaskType.DUMP (2), got {task_type!r}"
            ) from None
        if task_type is TaskType.PACKAGE_DOWNLOAD:
            if not zip_name:
                raise InvalidArgumentError("a package-download task needs zip_name")
            if target is not None:
                raise InvalidArgumentError("target is for dump tasks, not package downloads")
        elif target is None:
            raise InvalidArgumentError(
                "a dump task needs target=TargetFolder(container_id, file_id)"
            )
        elif zip_name is not None:
            raise InvalidArgumentError("zip_name is for package-download tasks, not dumps")
        body = _wire.share_task_body(
            task_type=task_type,
            share_id=share_id,
            container_id=container_id,
            file_ids=ids,
            zip_name=zip_name,
            target=None if target is None else (target.container_id, target.file_id),
            kdstoken=kdstoken,
        )
        secret = (kdstoken,) if kdstoken else ()
        return await self._with_retries(
            lambda: self._post(
                SHARE_TASKS_PATH, body, secret, "create share task", _wire.parse_created_task_id
            ),
            task_id=None,
            # Only failures where the server surely did nothing are safe to repeat.
            may_retry=lambda error: isinstance(error, (ConnectError, RateLimitedError)),
        )

    async def _with_retries(
        self,
        call: Callable[[], Awaitable[_T]],
        *,
        task_id: str | None,
        may_retry: Callable[[KooDriveError], bool],
        failed: KooDriveError | None = None,
    ) -> _T:
        """``call()``, repeated up to ``attempts`` times while ``may_retry`` says so.

        ``failed`` is the retryable error of a first attempt the caller made itself.
        """
        first = 1
        if failed is not None:
            await self._pause_before_retry(task_id, failed, 1)
            first = 2
        for attempt in range(first, self._attempts + 1):
            try:
                return await call()
            except KooDriveError as error:
                if not may_retry(error) or attempt == self._attempts:
                    raise
                await self._pause_before_retry(task_id, error, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _pause_before_retry(
        self, task_id: str | None, error: KooDriveError, attempt: int
    ) -> None:
        delay = self.policy.retry_delay(attempt, getattr(error, "retry_after", None))
        self._retried(task_id, error, attempt, delay)
        logger.info("retrying in %.2f s after %s", delay, type(error).__name__)
        await self.clock.sleep(delay)

    def wait_for_task(
        self,
        share_id: str,
        task_id: str,
        *,
        kdstoken: str | None = None,
        timeout: float | EllipsisType | None = ...,
        policy: PollPolicy | None = None,
    ) -> TaskWaiter:
        """Wait for a task to end; await the result, or iterate for progress updates.

        ``await waiter`` returns the ``downloadUrl`` of a completed package-download task;
        ``await waiter.final_info()`` returns the final :class:`TaskInfo` (dump tasks);
        ``async for update in waiter`` yields a :class:`ProgressUpdate` per observed change.
        Waits on the same task share one stream of polls.

        Args:
            share_id: The share the task belongs to.
            task_id: The task's id.
            kdstoken: The share link's temporary token, if any.
            timeout: Seconds until ``WaitTimeoutError``; ``None`` for no limit; by default
                the policy's ``timeout``. Counted from the first await or iteration.
            policy: Polling policy; by default the client's.

        Raises:
            InvalidArgumentError: If an id, the kdstoken or the timeout is invalid.
        """
        _require_ids(share_id=share_id, task_id=task_id)
        _wire.task_detail_json(share_id, task_id, kdstoken or None)  # a kdstoken it can send
        return TaskWaiter(
            self,
            self._streams,
            share_id,
            task_id,
            kdstoken=kdstoken,
            policy=policy or self.policy,
            timeout=self._timeout(timeout, policy),
        )

    def watch_many(
        self,
        tasks: Iterable[TaskLike | TaskWaiter],
        *,
        timeout: float | EllipsisType | None = ...,
        policy: PollPolicy | None = None,
    ) -> UpdateStream:
        """Merge the progress of several tasks into one stream.

        ``async with kd.watch_many(tasks) as stream: async for ref, update in stream: ...``
        yields every change of every task; afterwards ``stream.outcomes`` holds each
        task's :class:`TaskOutcome`. One task failing does not stop the others.

        Args:
            tasks: :class:`TaskRef` objects or ``(share_id, task_id)`` tuples.
            timeout: Per-task deadline, as in :meth:`wait_for_task`.
            policy: Polling policy; by default the client's.
        """
        return UpdateStream(
            self, tasks, updates=True, timeout=self._timeout(timeout, policy), policy=policy
        )

    def as_completed(
        self,
        tasks: Iterable[TaskLike | TaskWaiter],
        *,
        timeout: float | EllipsisType | None = ...,
        policy: PollPolicy | None = None,
    ) -> CompletionStream:
        """Yield each task's :class:`TaskOutcome` as soon as it ends (URL or typed error).

        Use as ``async with kd.as_completed(tasks) as done: async for outcome in done:``.
        """
        return CompletionStream(
            self, tasks, updates=False, timeout=self._timeout(timeout, policy), policy=policy
        )

    async def wait_many(
        self,
        tasks: Iterable[TaskLike | TaskWaiter],
        *,
        timeout: float | EllipsisType | None = ...,
        policy: PollPolicy | None = None,
    ) -> dict[TaskRef, TaskOutcome]:
        """Wait for every task; return each one's :class:`TaskOutcome`, in the order given.

        A failed, canceled or timed-out task is an outcome with ``error`` set; it never
        aborts the others.
        """
        batch = TaskBatch(
            self, tasks, updates=False, timeout=self._timeout(timeout, policy), policy=policy
        )
        return await batch.results()

    def checkpoint(self, waiters: Iterable[TaskWaiter]) -> str:
        """A continuation token for these waits: versioned JSON, no secrets.

        Store it; after a restart, :meth:`resume` continues the waits where they were.
        """
        return _resume.dump((w.state() for w in waiters), self.clock.now())

    def resume(
        self,
        token: str | bytes,
        *,
        kdstokens: Mapping[str, str] | None = None,
        policy: PollPolicy | None = None,
    ) -> list[TaskWaiter]:
        """Recreate the waits saved by :meth:`checkpoint`.

        Each wait keeps what was left of its deadline (minus the time since the token
        was saved), continues its backoff, and spreads its first poll with jitter.

        Args:
            token: The continuation token.
            kdstokens: ``kdstoken`` per task id, for shares that need one (tokens are
                never stored in the continuation token).
            policy: Polling policy; by default the client's.

        Raises:
            InvalidArgumentError: If the token is not a continuation token.
        """
        states, saved_at = _resume.load(token)
        elapsed = max(0.0, (self.clock.now() - saved_at).total_seconds())
        waiters = []
        for state in states:
            timeout = state.timeout_left
            if timeout is not None:
                timeout = max(1e-3, timeout - elapsed)  # an expired wait times out on first use
            waiters.append(
                TaskWaiter(
                    self,
                    self._streams,
                    state.share_id,
                    state.task_id,
                    kdstoken=(kdstokens or {}).get(state.task_id),
                    policy=policy or self.policy,
                    timeout=timeout,
                    resume=state,
                )
            )
        return waiters

    def _track(self, batch: TaskBatch) -> None:
        """Remember a running batch so that :meth:`close` can stop it."""
        self._batches.add(batch)

    def _timeout(
        self, timeout: float | EllipsisType | None, policy: PollPolicy | None
    ) -> float | None:
        effective = (
            (policy or self.policy).timeout if isinstance(timeout, EllipsisType) else timeout
        )
        if effective is not None and not effective > 0:
            raise InvalidArgumentError(f"timeout must be > 0 or None, got {effective!r}")
        return effective

    # --- the request path ----------------------------------------------------------------

    async def _post(
        self,
        path: str,
        body: Mapping[str, object] | bytes,
        secret: tuple[str, ...],
        operation: str,
        parse: Callable[[object], _T],
        *,
        deadline: float | None = None,
        admitted: bool = False,
    ) -> _T:
        """POST ``body`` as JSON and return the success payload as ``parse`` reads it.

        ``body`` may come already encoded (polls send the same bytes again and again).
        ``admitted``: the caller already has its slot from the scheduler (a poll stream
        booked it); a re-sent request books its own.
        A 401 lets the auth scheme refresh once, then the request is re-sent, re-signed.
        A ``ProtocolError`` from ``parse`` gets the request's trace id and HTTP status.

        Raises:
            KooDriveError: A subclass for every failure.
        """
        session = self._get_session()
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self._base.with_path(self._base_path + path)
        data = body if isinstance(body, bytes) else _wire.encode_body(body)
        for refreshed in (False, True):
            trace_id = new_trace_id()
            status: int | None = None
            started = self.clock.monotonic()
            if refreshed or not admitted:
                epoch = self._scheduler.epoch
                send_at = self._scheduler.reserve(deadline, started)
                if send_at > started:  # a free slot costs no coroutine
                    await self._scheduler.wait_for_slot(send_at, epoch, deadline)
                    started = self.clock.monotonic()
            try:
                if not self._scheduler.enter_now():
                    await self._scheduler.enter(deadline)
                    started = self.clock.monotonic()
                # After any wait for a slot or a place: the request ends by the deadline.
                timeout = self._request_timeout
                if deadline is not None and deadline - started < timeout:
                    timeout = max(0.001, deadline - started)
                try:
                    auth_headers = await self._auth.headers("POST", url, data, self.clock.now)
                    headers = {**self._static_headers, "X-Traceid": trace_id, **auth_headers}
                    status, raw, response_headers = await self._send(
                        session, url, data, headers, timeout, trace_id, operation, path
                    )
                finally:
                    self._scheduler.leave()
                if status == 401 and not refreshed and await self._auth.refresh(auth_headers):
                    logger.info(
                        "%s: credentials rejected, retrying once with refreshed ones", operation
                    )
                    continue
                payload = self._decode(status, raw, response_headers, trace_id, operation, secret)
                failure: ProtocolError | None = None
                try:
                    result = parse(payload)
                except ProtocolError as error:
                    # Built here, raised below: raising inside the except block would keep
                    # the unredacted original reachable as the new error's __context__.
                    failure = type(error)(
                        f"{operation}: {self._redact(str(error), secret)} (trace id {trace_id})",
                        trace_id=trace_id,
                        http_status=status,
                    )
                if failure is not None:
                    raise failure
            except KooDriveError as error:
                # None of our errors needs a context, and one would reach aiohttp's error
                # (its request_info holds the Authorization header): on Python 3.10 a
                # coroutine's raise can pick up an exception its caller was handling.
                error.__context__ = None
                self._account(error)
                self._observe(operation, status, started, trace_id, error)
                raise
            if self._on_request is not None:  # the event is only built for a hook
                self._observe(operation, status, started, trace_id, None)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _account(self, error: KooDriveError) -> None:
        self.stats.errors[type(error).__name__] += 1
        if isinstance(error, RateLimitedError):
            self.stats.rate_limited += 1
            seconds = self._scheduler.limits.default_pause
            if error.retry_after is not None:
                seconds = min(
                    self.policy.retry_after_max, max(self.policy.retry_after_min, error.retry_after)
                )
            if self._scheduler.pause(seconds):
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

    def _retried(
        self, task_id: str | None, error: KooDriveError, attempt: int, delay: float
    ) -> None:
        """Count a transient failure about to be retried and tell ``on_retry``."""
        self.stats.retries += 1
        if self._on_retry is not None:
            call_hook(self._on_retry, RetryEvent(task_id, type(error).__name__, attempt, delay))

    async def _send(
        self,
        session: aiohttp.ClientSession,
        url: URL,
        data: bytes,
        headers: dict[str, str],
        timeout: float,
        trace_id: str,
        operation: str,
        path: str,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        stats = self.stats
        stats.requests += 1
        stats.polls += path == TASK_DETAIL_PATH
        stats.in_flight += 1
        failure: KooDriveError
        try:
            async with session.post(
                url,
                data=data,
                headers=headers,
                allow_redirects=False,  # never carry credentials to wherever a redirect points
                timeout=(
                    self._default_timeout
                    if timeout == self._request_timeout
                    else aiohttp.ClientTimeout(total=timeout)
                ),
            ) as response:
                length = response.content_length
                if length is not None and length <= self._max_response_bytes:
                    # Declared and small enough (the usual answer): aiohttp stops at the
                    # declared length, so this is _read_capped's first case, one call less.
                    raw = await response.read()
                else:
                    raw = await self._read_capped(response, trace_id, operation)
                return response.status, raw, response.headers
        # Each error is built here and raised below, outside the except block: raised inside
        # it, even `from None`, it would keep aiohttp's error as its __context__, and that
        # error's request_info carries the request's headers, Authorization included.
        except (TimeoutError, asyncio.TimeoutError):  # distinct classes on Python 3.10
            failure = RequestTimeoutError(
                f"{operation} timed out after {timeout:g} s (trace id {trace_id}); "
                "the server or network is slow: it will be retried while the wait's deadline allows",
                trace_id=trace_id,
            )
        except aiohttp.ClientConnectorError as error:
            failure = ConnectError(
                f"{operation}: cannot connect to {url.host} ({type(error).__name__}, trace id {trace_id}); "
                "check the base URL and the network",
                trace_id=trace_id,
            )
        except aiohttp.ClientError as error:
            failure = TransportError(
                f"{operation}: the connection failed ({type(error).__name__}, trace id {trace_id})",
                trace_id=trace_id,
            )
        finally:
            stats.in_flight -= 1
        raise failure

    async def _read_capped(
        self, response: aiohttp.ClientResponse, trace_id: str, operation: str
    ) -> bytes:
        cap = self._max_response_bytes
        length = response.content_length
        if length is not None:
            if length > cap:
                raise self._too_large(response, trace_id, operation)
            # Declared and small enough: aiohttp stops at the declared length.
            return await response.read()
        chunks: list[bytes] = []
        size = 0
        while chunk := await response.content.read(65536):
            size += len(chunk)
            if size > cap:
                raise self._too_large(response, trace_id, operation)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(
        self, response: aiohttp.ClientResponse, trace_id: str, operation: str
    ) -> MalformedResponseError:
        return MalformedResponseError(
            f"{operation}: the answer exceeds {self._max_response_bytes} bytes and was not read "
            f"(trace id {trace_id})",
            trace_id=trace_id,
            http_status=response.status,
        )

    def _decode(
        self,
        status: int,
        raw: bytes,
        headers: Mapping[str, str],
        trace_id: str,
        operation: str,
        secret: tuple[str, ...],
    ) -> object:
        payload: Any
        try:
            # json.loads(bytes) first sniffs the encoding; a UTF-8 object (every real
            # answer) skips that. The same decoding json.loads would pick, errors included.
            if raw[:1] == b"{" and raw[1:2] != b"\x00":
                payload = json.loads(raw.decode("utf-8", "surrogatepass"))
            else:
                payload = json.loads(raw) if raw else None
            decoded = raw != b""
        except (ValueError, RecursionError):
            payload, decoded = None, False
        if 200 <= status < 300:
            # A decoded answer is a dict; only something else pays for the ABC check.
            if type(payload) is dict and _wire.is_success_code(payload.get("code")):
                return payload
            if not decoded:
                raise MalformedResponseError(
                    f"{operation}: HTTP {status} with a body that is not JSON "
                    f"({headers.get('Content-Type', 'no content type')}, {len(raw)} bytes, trace id {trace_id})",
                    trace_id=trace_id,
                    http_status=status,
                )
            if isinstance(payload, Mapping) and _wire.is_success_code(payload.get("code")):
                return payload
            if not isinstance(payload, Mapping):
                raise ProtocolError(
                    f"{operation}: expected a JSON object, got {type(payload).__name__} (trace id {trace_id})",
                    trace_id=trace_id,
                    http_status=status,
                )
        if 300 <= status < 400:
            target = URL(headers.get("Location", "")).host or "another location"
            raise ProtocolError(
                f"{operation}: HTTP {status} redirect to {target}; redirects are not followed so "
                f"credentials stay with {self._base.host}: check the base URL (trace id {trace_id})",
                trace_id=trace_id,
                http_status=status,
            )
        retry_after = _wire.parse_retry_after(headers.get("Retry-After"), now=self.clock.now())
        error = _wire.api_error(
            status,
            payload,
            trace_id=trace_id,
            retry_after=retry_after,
            operation=operation,
            redact=lambda text: self._redact(text, secret),
        )
        if status == 401 and self._auth.clock_sensitive and not isinstance(error, ClockSkewError):
            # Now rather than when signed: the round trip is nothing against 15 minutes.
            skew = _clock_skew(headers.get("Date"), self.clock.now())
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

    def _redact(self, text: str, extra: tuple[str, ...] = ()) -> str:
        """``text`` with every known secret replaced by ``<redacted>``."""
        for value in (*self._auth.secrets(), *extra):
            if value and value in text:
                text = text.replace(value, REDACTED)
        return text


def _clock_skew(server_date: str | None, sent_at: datetime) -> float | None:
    """Seconds our clock is ahead of the server's, from its ``Date`` header."""
    server = _wire.parse_http_date(server_date)
    return None if server is None else (sent_at - server).total_seconds()


def _require_ids(**ids: object) -> None:
    for name, value in ids.items():
        if not isinstance(value, str) or not value.strip():
            raise InvalidArgumentError(f"{name} must be a non-empty string, got {value!r}")
        if not is_text(value):
            raise InvalidArgumentError(f"{name} is not valid text (a lone surrogate)")
