"""``KooDriveClient``: the public façade over the waits, the poll streams and the request path."""

from __future__ import annotations

import asyncio
import enum
import math
import sys
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Final, Union

import aiohttp
from yarl import URL

from . import _resume, _wire
from ._auth import Auth
from ._batches import CompletionStream, TaskBatch, UpdateStream
from ._clock import AsyncioClock, Clock
from ._families import detail_request
from ._limiter import LocalLimiter
from ._limits import Limits
from ._models import TargetFolder, TaskInfo, TaskRef, TaskType
from ._outcome import TaskOutcome
from ._policy import PollPolicy
from ._stats import ClientStats, RequestEvent, RetryEvent
from ._streams import PollStreams
from ._transport import Request, Transport
from ._validate import header_value, is_number
from ._wait import Wait
from ._waiter import TaskWaiter, wait_of
from .exceptions import (
    ClientClosedError,
    ConnectError,
    InvalidArgumentError,
    KooDriveError,
    RateLimitedError,
)

DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_MAX_RESPONSE_BYTES = 1 << 20
"""A task detail is a few KB; a 1000-file ``taskInfos`` list stays far below 1 MiB."""
MAX_FILE_IDS = 1000
_DEFAULT_ATTEMPTS = 4
_KEPT_REQUESTS = 256

TaskLike = Union[TaskRef, tuple[str, str], tuple[str, str, Union[str, None]]]  # noqa: UP007 - a runtime alias on 3.10


class UseClientDefault(enum.Enum):
    """The type of :data:`USE_CLIENT_DEFAULT`."""

    USE_CLIENT_DEFAULT = "use the client's default"


USE_CLIENT_DEFAULT: Final = UseClientDefault.USE_CLIENT_DEFAULT
"""Stands for "the client's (or the policy's) default" where ``None`` means something else."""


class KooDriveClient:
    """An async client for KooDrive's asynchronous share tasks.

    Use it as an async context manager (or call :meth:`close`)::

        async with KooDriveClient(base_url, auth=BearerToken(token)) as kd:
            url = await kd.wait_for_task(share_id, task_id)

    A client belongs to the event loop it is first used in.

    Args:
        base_url: ``https://intl.myhuaweicloud-koodrive.com``, the China host, or an
            emulator's URL.
        auth: :class:`BearerToken` or :class:`AppSignature`.
        session: An ``aiohttp.ClientSession`` to use. The client never closes a session
            it did not create.
        request_timeout: Seconds one HTTP request may take, credentials and body included.
        language: Sent as the ``language`` header (``en-US``, ``zh-CN``).
        agent_name: Sent as ``X-Hw-Agentname`` (carrier edition only).
        policy: Default :class:`PollPolicy` of waits.
        attempts: How many times a one-shot call (``get_share_task``) tries before
            raising a transient error.
        max_response_bytes: Larger answers (decoded) are refused without being read whole.
        allow_insecure_urls: Accept ``http`` base and download URLs (an emulator on
            loopback); otherwise both must be ``https``.
        clock: Time source; tests inject a virtual clock.
        limits: Client-wide :class:`Limits`: requests in flight, request rate, and the
            shared pause after HTTP 429.
        on_request: Called with a :class:`RequestEvent` after every HTTP request.
        on_retry: Called with a :class:`RetryEvent` before every retry of a transient
            failure. Hooks must be quick; an exception in one is logged and ignored.

    Raises:
        InvalidArgumentError: If an argument is invalid (before anything is sent).
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
        url = _base_url(base_url, allow_insecure_urls)
        _check_types(
            auth=auth,
            session=session,
            request_timeout=request_timeout,
            policy=policy,
            attempts=attempts,
            max_response_bytes=max_response_bytes,
            allow_insecure_urls=allow_insecure_urls,
            clock=clock,
            limits=limits,
            on_request=on_request,
            on_retry=on_retry,
        )
        headers = {}
        if (value := header_value("language", language)) is not None:
            headers["language"] = value
        if (value := header_value("agent_name", agent_name)) is not None:
            headers["X-Hw-Agentname"] = value
        self.policy = policy or PollPolicy()
        self.allow_insecure_urls = allow_insecure_urls
        self.clock: Clock = clock or AsyncioClock()
        self._limiter = LocalLimiter(limits or Limits(), self.clock)
        self.stats = ClientStats(gauges=self)
        self._transport = Transport(
            url,
            auth=auth,
            session=session,
            request_timeout=float(request_timeout),
            static_headers=headers,
            max_response_bytes=max_response_bytes,
            clock=self.clock,
            limiter=self._limiter,
            stats=self.stats,
            policy=self.policy,
            attempts=attempts,
            on_request=on_request,
            on_retry=on_retry,
        )
        self._streams = PollStreams(self._transport, detail_request)
        self._batches: weakref.WeakSet[TaskBatch] = weakref.WeakSet()
        self._requests: dict[TaskRef, Request[TaskInfo]] = {}

    def __repr__(self) -> str:
        return (
            f"<KooDriveClient {self._transport.base_url!r} auth={self._transport.auth!r} "
            f"streams={len(self._streams)} {self._limiter!r}"
            f"{' closed' if self._transport.closed else ''}>"
        )

    # --- the gauges ClientStats reads ------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests in flight now (also ``stats.in_flight``)."""
        return self._limiter.in_flight

    @property
    def queued(self) -> int:
        """Requests waiting for their turn now (also ``stats.queued``)."""
        return self._limiter.queued

    @property
    def streams(self) -> int:
        """Tasks being polled now (also ``stats.streams``)."""
        return len(self._streams)

    # --- life cycle ------------------------------------------------------------------------

    async def __aenter__(self) -> KooDriveClient:
        self._transport.session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """End every wait and batch with ``ClientClosedError``; close an owned session.

        Awaiting waiters raise ``ClientClosedError``; batches deliver it as the outcome
        of every task not ended yet, then end. A session passed in by the caller stays
        open. Closing twice is harmless.
        """
        if self._transport.closed:
            return
        self._requests.clear()  # they may hold kdstokens
        error = ClientClosedError("this KooDriveClient was closed while the wait was running")
        for batch in list(self._batches):
            batch.end(error)
        cancelled = self._streams.close(error)
        self._limiter.close(error)
        await self._transport.close()
        if cancelled:
            await asyncio.gather(*cancelled, return_exceptions=True)

    # --- one-shot calls ----------------------------------------------------------------------

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
        ref = TaskRef(share_id, task_id, kdstoken)
        request = self._requests.get(ref)
        if request is None:
            # A caller polling in its own loop sends the same request again and again: it
            # is built (and encoded) once. Bounded, dropped on close (it may hold a kdstoken).
            if len(self._requests) >= _KEPT_REQUESTS:
                self._requests.clear()
            request = self._requests[ref] = detail_request(ref)
        return await self._transport.call(request, task_id=task_id, may_retry=_retryable)

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
        ref = TaskRef(share_id, "-", kdstoken)  # checks the share id and the kdstoken
        ids = tuple(file_ids) if not isinstance(file_ids, str) else (file_ids,)
        _require_ids(container_id=container_id)
        if not 1 <= len(ids) <= MAX_FILE_IDS:
            raise InvalidArgumentError(
                f"file_ids must hold 1 to {MAX_FILE_IDS} ids, got {len(ids)}"
            )
        if not all(isinstance(i, str) and i.strip() for i in ids):
            raise InvalidArgumentError("every file id must be a non-empty string")
        if zip_name is not None and not (isinstance(zip_name, str) and zip_name.strip()):
            raise InvalidArgumentError("zip_name must be a non-empty string")
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
        elif not isinstance(target, TargetFolder):
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
            kdstoken=ref.kdstoken,
        )
        request = Request(
            "POST",
            _wire.SHARE_TASKS_PATH,
            "create share task",
            _wire.parse_created_task_id,
            body=_wire.encode_body(body),
            secrets=(ref.kdstoken,) if ref.kdstoken else (),
        )
        # Only failures where the server surely did nothing are safe to repeat.
        return await self._transport.call(request, task_id=None, may_retry=_nothing_was_done)

    # --- waits ---------------------------------------------------------------------------------

    def _wait(
        self,
        ref: TaskRef,
        timeout: float | UseClientDefault | None,
        policy: PollPolicy | None,
        resume: _resume.WaitState | None = None,
    ) -> Wait:
        if policy is not None and not isinstance(policy, PollPolicy):
            raise InvalidArgumentError(f"policy must be a PollPolicy, got {type(policy).__name__}")
        effective = (policy or self.policy).timeout if timeout is USE_CLIENT_DEFAULT else timeout
        if effective is not None and not (
            is_number(effective) and effective > 0 and not math.isnan(effective)
        ):
            raise InvalidArgumentError(f"timeout must be > 0 or None, got {effective!r}")
        return Wait(
            self._streams,
            self.clock,
            ref,
            policy=policy or self.policy,
            timeout=effective,
            allow_insecure_urls=self.allow_insecure_urls,
            resume=resume,
        )

    def wait_for_task(
        self,
        share_id: str,
        task_id: str,
        *,
        kdstoken: str | None = None,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
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
            InvalidArgumentError: If an id, the kdstoken, the policy or the timeout is invalid.
        """
        return TaskWaiter(self._wait(TaskRef(share_id, task_id, kdstoken), timeout, policy))

    def _batch(
        self,
        kind: type[TaskBatch],
        tasks: Iterable[TaskLike | TaskWaiter],
        timeout: float | UseClientDefault | None,
        policy: PollPolicy | None,
        *,
        updates: bool,
    ) -> TaskBatch:
        # The waits are made here, not when iteration starts: a bad id or kdstoken is an
        # InvalidArgumentError from this call, before any wait of the batch has begun.
        if isinstance(tasks, (str, bytes)):
            raise InvalidArgumentError(
                "tasks must be an iterable of TaskRef or (share_id, task_id)"
            )
        waits = [
            wait_of(task)
            if isinstance(task, TaskWaiter)
            else self._wait(TaskRef.of(task), timeout, policy)
            for task in tasks
        ]
        batch = kind(waits, updates=updates)
        self._batches.add(batch)
        if self._transport.closed:
            batch.end(ClientClosedError("this KooDriveClient is closed"))
        return batch

    def watch_many(
        self,
        tasks: Iterable[TaskLike | TaskWaiter],
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        policy: PollPolicy | None = None,
    ) -> UpdateStream:
        """Merge the progress of several tasks into one stream.

        ``async with kd.watch_many(tasks) as stream: async for ref, update in stream: ...``
        yields every change of every task; afterwards ``stream.outcomes`` holds each
        task's :class:`TaskOutcome`. One task failing does not stop the others.

        Args:
            tasks: :class:`TaskRef` objects, ``(share_id, task_id)`` tuples or waiters
                (e.g. resumed ones).
            timeout: Per-task deadline, as in :meth:`wait_for_task`.
            policy: Polling policy; by default the client's.
        """
        batch = self._batch(UpdateStream, tasks, timeout, policy, updates=True)
        assert isinstance(batch, UpdateStream)  # noqa: S101 - made from that class
        return batch

    def as_completed(
        self,
        tasks: Iterable[TaskLike | TaskWaiter],
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        policy: PollPolicy | None = None,
    ) -> CompletionStream:
        """Yield each task's :class:`TaskOutcome` as soon as it ends (URL or typed error).

        Use as ``async with kd.as_completed(tasks) as done: async for outcome in done:``.
        """
        batch = self._batch(CompletionStream, tasks, timeout, policy, updates=False)
        assert isinstance(batch, CompletionStream)  # noqa: S101 - made from that class
        return batch

    async def wait_many(
        self,
        tasks: Iterable[TaskLike | TaskWaiter],
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        policy: PollPolicy | None = None,
    ) -> dict[TaskRef, TaskOutcome]:
        """Wait for every task; return each one's :class:`TaskOutcome`, in the order given.

        A failed, canceled or timed-out task is an outcome with ``error`` set; it never
        aborts the others. Closing the client ends the call with ``ClientClosedError``
        outcomes for the tasks still running.
        """
        return await self._batch(TaskBatch, tasks, timeout, policy, updates=False).results()

    # --- checkpoints -----------------------------------------------------------------------------

    def checkpoint(self, waits: Iterable[TaskWaiter | TaskBatch]) -> str:
        """A continuation token for the waits whose outcome was not delivered yet.

        Versioned JSON, no secrets. A waiter's outcome is delivered once it was returned
        or raised to the code awaiting it (or its last update yielded); a batch's, once
        the batch yielded it. So a checkpoint taken at any moment, resumed after a
        restart, delivers every outcome at least once: see the README's "Resuming".

        Args:
            waits: Waiters and batches (a batch stands for its waits).
        """
        states: list[_resume.WaitState] = []
        for item in waits:
            members = item.waits() if isinstance(item, TaskBatch) else [wait_of(item)]
            states.extend(wait.state() for wait in members if not wait.delivered)
        return _resume.dump(states, self.clock.now())

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
            InvalidArgumentError: If the token is not a continuation token, or
                ``kdstokens`` is not a mapping.
        """
        if kdstokens is not None and not isinstance(kdstokens, Mapping):
            raise InvalidArgumentError(
                f"kdstokens must be a mapping of task id to kdstoken, got {type(kdstokens).__name__}"
            )
        states, saved_at = _resume.load(token)
        elapsed = max(0.0, (self.clock.now() - saved_at).total_seconds())
        waiters = []
        for state in states:
            timeout = state.timeout_left
            if timeout is not None:
                timeout = max(1e-3, timeout - elapsed)  # an expired wait times out on first use
            ref = TaskRef(state.share_id, state.task_id, (kdstokens or {}).get(state.task_id))
            waiters.append(TaskWaiter(self._wait(ref, timeout, policy, resume=state)))
        return waiters


def _retryable(error: KooDriveError) -> bool:
    return error.retryable


def _nothing_was_done(error: KooDriveError) -> bool:
    return isinstance(error, (ConnectError, RateLimitedError))


def _base_url(base_url: object, allow_insecure_urls: object) -> URL:
    if not isinstance(base_url, str):
        raise InvalidArgumentError(f"base_url must be a string, got {type(base_url).__name__}")
    reason: str | None = None
    try:
        url = URL(base_url)
    except (TypeError, ValueError) as error:
        # yarl's message quotes the netloc, a password included: only its kind is named,
        # and the error is raised outside this block so that it has no context.
        reason = type(error).__name__
    if reason is not None:
        raise InvalidArgumentError(f"base_url is not a URL ({reason}): check its host and port")
    if url.scheme not in ("https", "http") or not url.host:
        raise InvalidArgumentError("base_url must be an absolute http(s) URL")
    if url.scheme == "http" and allow_insecure_urls is not True:
        raise InvalidArgumentError(
            "base_url must use https; pass allow_insecure_urls=True for a local emulator"
        )
    if url.user or url.password or url.query_string or url.fragment:
        raise InvalidArgumentError("base_url must not carry credentials, a query or a fragment")
    return url


def _check_types(
    *,
    auth: object,
    session: object,
    request_timeout: object,
    policy: object,
    attempts: object,
    max_response_bytes: object,
    allow_insecure_urls: object,
    clock: object,
    limits: object,
    on_request: object,
    on_retry: object,
) -> None:
    """Refuse arguments of the wrong type or range at construction, not at the first request."""
    # A class has the methods too (`auth=BearerToken`, `clock=AsyncioClock`): it failed
    # with a bare TypeError at the first request. `clock_sensitive` is read at the first
    # 401: an object without it failed there with a bare AttributeError.
    if (
        isinstance(auth, type)
        or not all(
            callable(getattr(auth, attr, None)) for attr in ("headers", "refresh", "secrets")
        )
        or not isinstance(getattr(auth, "clock_sensitive", None), bool)
    ):
        raise InvalidArgumentError(
            f"auth must be BearerToken(...) or AppSignature(...), got {_kind(auth)}"
        )
    if session is not None and not isinstance(session, aiohttp.ClientSession):
        raise InvalidArgumentError(
            f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
        )
    if session is not None and session.closed:
        raise InvalidArgumentError("session is closed: pass an open aiohttp.ClientSession")
    if not _positive_number(request_timeout):
        raise InvalidArgumentError(f"request_timeout must be a number > 0, got {request_timeout!r}")
    if policy is not None and not isinstance(policy, PollPolicy):
        raise InvalidArgumentError(f"policy must be a PollPolicy, got {type(policy).__name__}")
    if not (isinstance(attempts, int) and not isinstance(attempts, bool) and attempts >= 1):
        raise InvalidArgumentError(f"attempts must be an integer >= 1, got {attempts!r}")
    # Below sys.maxsize: the cap is handed to zlib as a C size (past it, OverflowError).
    if not (
        isinstance(max_response_bytes, int)
        and not isinstance(max_response_bytes, bool)
        and 1024 <= max_response_bytes < sys.maxsize
    ):
        raise InvalidArgumentError(
            f"max_response_bytes must be an integer from 1024 to {sys.maxsize - 1}, "
            f"got {max_response_bytes!r}"
        )
    if not isinstance(allow_insecure_urls, bool):
        raise InvalidArgumentError(
            f"allow_insecure_urls must be True or False, got {allow_insecure_urls!r}"
        )
    if clock is not None and (
        isinstance(clock, type)
        or not all(callable(getattr(clock, attr, None)) for attr in ("monotonic", "now", "sleep"))
    ):
        raise InvalidArgumentError(
            f"clock must offer monotonic(), now() and sleep(), got {_kind(clock)}"
        )
    if limits is not None and not isinstance(limits, Limits):
        raise InvalidArgumentError(f"limits must be a Limits, got {type(limits).__name__}")
    for name, hook in (("on_request", on_request), ("on_retry", on_retry)):
        if hook is not None and not callable(hook):
            raise InvalidArgumentError(f"{name} must be callable, got {type(hook).__name__}")


def _kind(value: object) -> str:
    """What a wrong argument is, for a message: ``the class BearerToken`` or its type's name."""
    if isinstance(value, type):
        return f"the class {value.__name__} (call it to make one)"
    return type(value).__name__


def _positive_number(value: object) -> bool:
    return is_number(value) and math.isfinite(value) and value > 0  # type: ignore[arg-type,operator]


def _require_ids(**ids: object) -> None:
    for name, value in ids.items():
        if not isinstance(value, str) or not value.strip():
            raise InvalidArgumentError(f"{name} must be a non-empty string, got {value!r}")
