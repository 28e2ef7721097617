"""``KooDriveClient``: the public façade over the waits, the poll streams and the request path."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import sys
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from types import TracebackType
from typing import Final, TypeVar

import aiohttp
from yarl import URL

from . import _resume, _wire
from ._auth import Auth
from ._batches import CompletionStream, TaskBatch, UpdateStream, WorkPool
from ._clock import AsyncioClock, Clock
from ._families import detail_request, job_detail
from ._fleet import Coordinator, Sharing
from ._job_specs import JOB_SPECS, JobSpec
from ._learning import DurationModel, TaskKind
from ._limiter import FleetLimiter, LocalLimiter
from ._limits import Limits
from ._models import (
    JobInfo,
    JobRef,
    JobType,
    Ref,
    TargetFolder,
    TaskInfo,
    TaskLike,
    TaskRef,
    TaskStatus,
    TaskType,
    ref_of,
)
from ._outcome import TaskOutcome
from ._policy import PollPolicy
from ._stats import ClientStats, RequestEvent, RetryEvent
from ._streams import PollStreams
from ._transport import Request, Transport
from ._validate import header_value, is_number
from ._wait import Wait
from ._waiter import JobWaiter, TaskWaiter, wait_of
from .exceptions import (
    ClientClosedError,
    ConnectError,
    InvalidArgumentError,
    KooDriveError,
    ProtocolError,
    RateLimitedError,
)

DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_MAX_RESPONSE_BYTES = 1 << 20
"""A task detail is a few KB; a 1000-file ``taskInfos`` list stays far below 1 MiB."""
MAX_FILE_IDS = 1000
_E = TypeVar("_E", bound=enum.IntEnum)
_T = TypeVar("_T")
_DEFAULT_ATTEMPTS = 4
_KEPT_REQUESTS = 256
_CLOSE_STEP = 256  # streams ended per loop step by close()
_MAKE_STEP = 1024  # waits made per loop step by wait_many()
MAX_JOB_PAGE = 100
"""The most jobs one page of ``list_jobs`` may ask for (the API's ``limit``)."""


class UseClientDefault(enum.Enum):
    """The type of :data:`USE_CLIENT_DEFAULT`."""

    USE_CLIENT_DEFAULT = "use the client's default"


USE_CLIENT_DEFAULT: Final = UseClientDefault.USE_CLIENT_DEFAULT
"""Stands for "the client's (or the policy's) default" where ``None`` means something else."""


class KooDriveClient:
    """An async client for KooDrive's asynchronous share tasks and batch jobs.

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
        coordinator: Fleet mode: a ``koodrive_tasks.fleet.RedisCoordinator`` shared by
            every process of the fleet. ``limits.rate``, ``burst`` and the 429 pause then
            apply to the whole fleet, and each task is polled by one process, the others
            hearing what it sees. The client never closes it (its owner does).
        durations: Learns how long tasks take, by family, type and file count, from the
            tasks this client saw finish; waits then aim their polls near the expected
            end. By default a model of the client's own; pass one to share or keep it,
            ``None`` to learn nothing.

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
        coordinator: Coordinator | None = None,
        durations: DurationModel | UseClientDefault | None = USE_CLIENT_DEFAULT,
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
        if coordinator is not None:
            if not all(
                callable(getattr(coordinator, name, None))
                for name in ("reserve", "claim_and_reserve", "publish", "subscribe", "aclose")
            ):
                raise InvalidArgumentError(
                    "coordinator must be a fleet coordinator such as "
                    f"koodrive_tasks.fleet.RedisCoordinator, got {type(coordinator).__name__}"
                )
            # The fleet's namespace comes from who the client acts for, never a secret.
            identity = getattr(auth, "app_id", None) or getattr(auth, "user_id", None)
            if isinstance(identity, str):
                coordinator.use_identity(identity)
        self._coordinator = coordinator
        self._limiter: LocalLimiter = (
            LocalLimiter(limits or Limits(), self.clock)
            if coordinator is None
            else FleetLimiter(limits or Limits(), self.clock, coordinator)
        )
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
        self._sharing = (
            None if coordinator is None else Sharing(coordinator, float(request_timeout))
        )
        if durations is USE_CLIENT_DEFAULT:
            durations = DurationModel()
        elif durations is not None and not isinstance(durations, DurationModel):
            raise InvalidArgumentError(
                f"durations must be a DurationModel or None, got {type(durations).__name__}"
            )
        self._streams = PollStreams(self._transport, detail_request, self._sharing, durations)
        self._batches: weakref.WeakSet[TaskBatch] = weakref.WeakSet()
        self._requests: dict[tuple[str, str, str | None], Request[TaskInfo]] = {}

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
        self._limiter.close(error)  # nothing is admitted from here on
        cancelled: list[asyncio.Task[TaskInfo]] = []
        try:
            # In steps, the loop running between them: ending a hundred thousand waits
            # (and telling their batches) at once would hold it for seconds.
            more = self._streams.close(error, cancelled, _CLOSE_STEP)
            while more:
                await asyncio.sleep(0)
                more = self._streams.close(error, cancelled, _CLOSE_STEP)
        finally:
            self._streams.close(error, cancelled)  # cancelled meanwhile: the rest at once
        for batch in list(self._batches):
            batch.end(error)  # what is left: waits not started yet
        await self._transport.close()
        if cancelled:
            await asyncio.gather(*cancelled, return_exceptions=True)
        if self._sharing is not None:
            await self._sharing.aclose()  # our leases go now: others take over at once

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
        # A caller polling in its own loop sends the same request again and again: it is
        # built (and encoded, and its ids checked) once. Bounded, dropped on close (it may
        # hold a kdstoken).
        key = (share_id, task_id, kdstoken)
        try:
            request = self._requests.get(key)
        except TypeError:  # an unhashable id: TaskRef says what is wrong with it
            request = None
        if request is None:
            ref = TaskRef(share_id, task_id, kdstoken)
            if len(self._requests) >= _KEPT_REQUESTS:
                self._requests.clear()
            request = self._requests[key] = detail_request(ref)
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
            _ignore_subject(_wire.parse_created_task_id),
            body=_wire.encode_body(body),
            secrets=(ref.kdstoken,) if ref.kdstoken else (),
        )
        # Only failures where the server surely did nothing are safe to repeat.
        task_id = await self._transport.call(request, task_id=None, may_retry=_nothing_was_done)
        with contextlib.suppress(InvalidArgumentError):  # an id that cannot be waited for
            self._streams.created(
                TaskRef(share_id, task_id, ref.kdstoken),
                self.clock.monotonic(),
                TaskKind("share", int(task_type), len(ids)),
            )
        return task_id

    # --- waits ---------------------------------------------------------------------------------

    def _wait(
        self,
        ref: Ref,
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

    def _wait_for(
        self,
        task: TaskLike | TaskWaiter,
        timeout: float | UseClientDefault | None,
        policy: PollPolicy | None,
    ) -> Wait:
        """The wait for one task of a batch: a waiter's own, or a new one."""
        if not isinstance(task, TaskWaiter):
            return self._wait(ref_of(task), timeout, policy)
        wait = wait_of(task)
        if not wait.belongs_to(self._streams):
            raise InvalidArgumentError(
                f"the waiter for task {task.task_id} belongs to another KooDriveClient: "
                "resume its checkpoint with this client instead"
            )
        return wait

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
        _check_iterable(tasks)
        return self._batch_of(
            kind, [self._wait_for(task, timeout, policy) for task in tasks], updates=updates
        )

    def _batch_of(self, kind: type[TaskBatch], waits: list[Wait], *, updates: bool) -> TaskBatch:
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
            tasks: :class:`TaskRef` and :class:`JobRef` objects, ``(share_id, task_id)``
                tuples or waiters (e.g. resumed ones).
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
    ) -> dict[Ref, TaskOutcome]:
        """Wait for every task; return each one's :class:`TaskOutcome`, in the order given.

        A failed, canceled or timed-out task is an outcome with ``error`` set; it never
        aborts the others. Closing the client ends the call with ``ClientClosedError``
        outcomes for the tasks still running.
        """
        # A coroutine can make its waits in steps, the loop running between them: a
        # hundred thousand made at once would hold it for most of a second.
        _check_iterable(tasks)
        waits: list[Wait] = []
        for task in tasks:
            waits.append(self._wait_for(task, timeout, policy))
            if len(waits) % _MAKE_STEP == 0:
                await asyncio.sleep(0)
        return await self._batch_of(TaskBatch, waits, updates=False).results()

    def pool(
        self,
        max_waits: int,
        *,
        max_queued: int | None = None,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        policy: PollPolicy | None = None,
    ) -> WorkPool:
        """A work pool: tasks handed over time, at most ``max_waits`` waited for at once.

        ``await pool.submit(task)`` (waits while the pool is full), ``async for outcome in
        pool``, ``pool.finish()`` when no more tasks come; ``kd.checkpoint([pool])`` holds
        its running and queued tasks. Use it as ``async with kd.pool(100) as pool:``.

        Args:
            max_waits: Waits running at once (each still shares its task's poll stream).
            max_queued: Tasks that may wait to start (and outcomes not yet read) before
                ``submit`` makes the producer wait; by default ``max_waits``.
            timeout: Per-task deadline, counted from when its wait starts.
            policy: Polling policy; by default the client's.

        Raises:
            InvalidArgumentError: If a bound is not a positive integer.
        """
        for name, value in (("max_waits", max_waits), ("max_queued", max_queued)):
            if value is not None and not (
                isinstance(value, int) and not isinstance(value, bool) and value >= 1
            ):
                raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")

        pool = WorkPool(
            lambda task: self._wait_for(task, timeout, policy),
            max_waits=max_waits,
            max_queued=max_queued or max_waits,
        )
        self._batches.add(pool)
        if self._transport.closed:
            pool.end(ClientClosedError("this KooDriveClient is closed"))
        return pool

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
            ref = state.ref
            if isinstance(ref, TaskRef):
                ref = TaskRef(ref.share_id, ref.task_id, (kdstokens or {}).get(ref.task_id))
            wait = self._wait(ref, timeout, policy, resume=state)
            waiters.append(JobWaiter(wait) if isinstance(ref, JobRef) else TaskWaiter(wait))
        return waiters

    # --- batch jobs ------------------------------------------------------------------------
    # The second task family rides on the same machinery: a JobRef selects the job detail
    # request (``_families``); waits, batches and checkpoints take either kind of ref.

    async def create_job(self, job: JobSpec) -> str:
        """Create a batch job and return its id.

        Args:
            job: What to do: a :class:`CopyJob`, :class:`MoveJob`, :class:`DeleteJob`,
                :class:`RestoreJob`, :class:`DecompressJob`, :class:`PackageJob` or
                :class:`EmptyRecycleBinJob` (each checks its own arguments when made).

        Returns:
            The new job's id (wait for it with :meth:`wait_for_job`).

        Raises:
            InvalidArgumentError: Before any request, if ``job`` is not one of those.
            KooDriveError: A subclass saying what the server answered. Only throttling
                and refused connections are retried: a job must not be created twice.
        """
        if not isinstance(job, JOB_SPECS):
            names = ", ".join(cls.__name__ for cls in JOB_SPECS)
            raise InvalidArgumentError(f"job must be one of {names}; got {type(job).__name__}")
        spec = job.to_request()
        request = Request(
            "POST",
            _wire.JOBS_PATH,
            f"create {spec.job_type.name.lower().replace('_', ' ')} job",
            _ignore_subject(_wire.parse_created_task_id),
            body=_wire.encode_body(_wire.job_body(spec)),
            secrets=(spec.password,) if spec.password else (),
        )
        job_id = await self._transport.call(request, task_id=None, may_retry=_nothing_was_done)
        try:
            ref = JobRef(job_id)
        except InvalidArgumentError:
            raise ProtocolError(
                "create job: the server answered with an id that cannot be queried"
            ) from None
        self._streams.created(ref, self.clock.monotonic(), None)  # kind: from its first answer
        return job_id

    async def get_job(self, job_id: str) -> JobInfo:
        """Query one batch job once (transient failures are retried a few times).

        Raises:
            InvalidArgumentError: If ``job_id`` is not a valid id (before any request).
            NotFoundError: No such job (or another user's).
            KooDriveError: A subclass for any other failure.
        """
        request = job_detail(JobRef(job_id))
        return await self._transport.call(request, task_id=job_id, may_retry=_retryable)

    def list_jobs(
        self,
        *,
        job_type: JobType | int | None = None,
        status: TaskStatus | int | None = None,
        page_size: int = MAX_JOB_PAGE,
    ) -> AsyncIterator[list[JobInfo]]:
        """Iterate over this user's batch jobs, one page (a list of :class:`JobInfo`) at a time.

        ``async for page in kd.list_jobs(status=TaskStatus.PROCESSING): ...``. Pages are
        fetched as they are consumed, ``page_size`` jobs each, until a page comes back
        shorter than that. The API pages by offset: a job created while paging may
        shift the rest, so a job can show up twice or be missed (the reference service
        lists newest first). List entries carry no per-file results.

        Args:
            job_type: Only jobs of this type.
            status: Only jobs in this status (their current one).
            page_size: Jobs per request, 1 to 100.

        Raises:
            InvalidArgumentError: At once, before any request, for a bad argument.
            KooDriveError: From the iteration, if a page cannot be fetched (transient
                failures are retried a few times first).
        """
        if job_type is not None:
            job_type = _member(JobType, "job_type", job_type)
        if status is not None:
            status = _member(TaskStatus, "status", status)
        if not (
            isinstance(page_size, int)
            and not isinstance(page_size, bool)
            and 1 <= page_size <= MAX_JOB_PAGE
        ):
            raise InvalidArgumentError(
                f"page_size must be an integer from 1 to {MAX_JOB_PAGE}, got {page_size!r}"
            )
        return self._job_pages(job_type, status, page_size)

    async def _job_pages(
        self, job_type: JobType | None, status: TaskStatus | None, page_size: int
    ) -> AsyncIterator[list[JobInfo]]:
        offset, previous = 0, None
        while True:
            query = _wire.job_list_query(
                offset=offset, limit=page_size, job_type=job_type, status=status
            )
            request = Request(
                "GET",
                _wire.JOBS_PATH,
                "list jobs",
                _ignore_subject(_wire.parse_job_list),
                query=query,
            )
            page = await self._transport.call(request, task_id=None, may_retry=_retryable)
            ids = [job.task_id for job in page]
            if page and ids == previous:
                # Without this, a server that ignores the offset would be paged forever.
                raise ProtocolError(f"list jobs: offset {offset} returned the previous page again")
            if page:
                yield page
            if len(page) < page_size:
                return
            offset, previous = offset + len(page), ids

    async def cancel_job(self, job_id: str) -> None:
        """Ask the server to cancel a batch job (effective while it is pending or processing).

        This stops the job itself. Waits on it then end with ``TaskCanceledError``
        (a batch's outcome of kind ``"canceled"``) at their next poll. To stop
        *watching* a job and leave it running, cancel the awaiting asyncio task, leave
        the batch's ``async with`` block, or close the client instead.

        Raises:
            InvalidArgumentError: If ``job_id`` is not a valid id (before any request).
            InvalidParameterError: The job had already ended (as the emulator answers;
                the reference does not say what the service answers then).
            NotFoundError: No such job (or another user's).
            KooDriveError: A subclass for any other failure. Only throttling and
                refused connections are retried, so that "canceled" is never
                answered for a cancel that had already gone through.
        """
        JobRef(job_id)  # checks the id
        request = Request(
            "POST",
            _wire.CANCEL_JOB_PATH,
            "cancel job",
            _ignore_subject(_wire.parse_acknowledgement),
            job_id,
            body=_wire.encode_body(_wire.cancel_job_body(job_id)),
        )
        await self._transport.call(request, task_id=job_id, may_retry=_nothing_was_done)

    def wait_for_job(
        self,
        job_id: str,
        *,
        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        policy: PollPolicy | None = None,
    ) -> JobWaiter:
        """Wait for a batch job to end: a :class:`JobWaiter`, the ``TaskWaiter`` of a job.

        ``await waiter`` returns the final :class:`JobInfo` (any job type);
        ``await waiter.download_url()`` the checked URL of a package-download job;
        ``async for update in waiter`` yields a :class:`ProgressUpdate` per change;
        ``await waiter.outcome()`` a :class:`TaskOutcome`. Waits on the same job share
        one stream of polls, with share tasks under the same limits.

        Cancelling the task that awaits the waiter (or leaving its batch) only stops
        watching: the job runs on. :meth:`cancel_job` stops the job on the server.

        Args:
            job_id: The job's id.
            timeout: Seconds until ``WaitTimeoutError``; ``None`` for no limit; by default
                the policy's ``timeout``. Counted from the first await or iteration.
            policy: Polling policy; by default the client's.

        Raises:
            InvalidArgumentError: If the id, the policy or the timeout is invalid.
        """
        return JobWaiter(self._wait(JobRef(job_id), timeout, policy))


def _ignore_subject(parse: Callable[[object], _T]) -> Callable[[object, str], _T]:
    """A ``Request.parse`` for a request whose answer does not depend on its subject."""
    return lambda payload, _subject: parse(payload)


def _check_iterable(tasks: object) -> None:
    if isinstance(tasks, (str, bytes)):
        raise InvalidArgumentError(
            "tasks must be an iterable of TaskRef, JobRef or (share_id, task_id)"
        )


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
        host = url.host  # decoded lazily: an odd IDNA host fails here, not in URL()
    except (TypeError, ValueError, IndexError) as error:  # UnicodeError is a ValueError
        # yarl's parser raises IndexError for some netlocs ("https://u:[]@": brackets in
        # the userinfo, no host). Its message quotes the netloc, a password included: only
        # its kind is named, and the error is raised outside this block (no context).
        reason = type(error).__name__
    if reason is not None:
        raise InvalidArgumentError(f"base_url is not a URL ({reason}): check its host and port")
    if url.scheme not in ("https", "http") or not host:
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


def _member(enum_type: type[_E], name: str, value: object) -> _E:
    """``value`` as a member of ``enum_type`` (a member or its number), else a clear error."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return enum_type(value)
        except ValueError:
            pass
    allowed = ", ".join(f"{m.name} ({m.value})" for m in enum_type)
    raise InvalidArgumentError(f"{name} must be one of {allowed}; got {value!r}")
