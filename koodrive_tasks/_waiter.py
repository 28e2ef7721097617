"""``TaskWaiter``: await a task's result, or iterate over its progress, or both."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING

from yarl import URL

from ._models import ProgressUpdate, TaskInfo, TaskRef, TaskResultCode, TaskStatus
from ._policy import PollPolicy
from ._redact import redact_url
from ._resume import WaitState
from ._streams import DeadlineReached, PollStream, PollStreams, State, Subscriber
from .exceptions import (
    InsecureURLError,
    InvalidArgumentError,
    KooDriveError,
    ProtocolError,
    TaskCanceledError,
    TaskFailedError,
    WaitTimeoutError,
)

if TYPE_CHECKING:
    from ._client import KooDriveClient

logger = logging.getLogger("koodrive_tasks")


class TaskWaiter:
    """Waits for one task; created by :meth:`KooDriveClient.wait_for_task`.

    * ``await waiter`` returns the ``downloadUrl`` of a completed package-download task.
    * ``await waiter.final_info()`` returns the final :class:`TaskInfo` (any task type).
    * ``async for update in waiter`` yields a :class:`ProgressUpdate` for the first
      observation and for every change of status or progress, the terminal one
      included, then ends.

    All three share one poll loop: awaiting after or during iteration continues the
    same polls. The deadline starts at the first await or iteration.
    """

    __slots__ = (
        "__weakref__",
        "_backlog",
        "_client",
        "_deadline",
        "_error",
        "_final",
        "_finalizer",
        "_key",
        "_last",
        "_listener",
        "_lock",
        "_resume_polls",
        "_stream",
        "_streams",
        "_sub",
        "_warned",
        "policy",
        "task_id",
        "timeout",
    )

    def __init__(
        self,
        client: KooDriveClient,
        streams: PollStreams,
        share_id: str,
        task_id: str,
        *,
        kdstoken: str | None,
        policy: PollPolicy,
        timeout: float | None,
        resume: WaitState | None = None,
    ) -> None:
        self._client = client
        self._streams = streams
        self._key = (share_id, task_id, kdstoken)
        self.task_id = task_id
        self.policy = policy
        self.timeout = timeout
        self._deadline: float | None = None
        self._stream: PollStream | None = None
        self._sub: Subscriber | None = None
        self._lock: asyncio.Lock | None = None  # made on first await: a batch needs none
        self._finalizer: weakref.finalize[[Subscriber], object] | None = None
        self._listener: Callable[[TaskWaiter, Exception | None], None] | None = None
        self._final: TaskInfo | None = None
        self._error: KooDriveError | None = None
        self._last: TaskInfo | None = None
        self._warned = False
        # Only an iterating consumer needs a backlog; most waits are only awaited.
        self._backlog: list[ProgressUpdate] | None = None
        self._resume_polls = None if resume is None else resume.polls
        if resume is not None and resume.status is not None:
            self._last = TaskInfo(task_id, resume.status, resume.progress or 0)

    def __repr__(self) -> str:
        state = "running"
        if self._final is not None:
            state = self._final.status.name.lower()
        elif self._error is not None:
            state = type(self._error).__name__
        return f"<TaskWaiter task_id={self.task_id!r} {state}>"

    @property
    def ref(self) -> TaskRef:
        """The task this waiter waits for."""
        return TaskRef(*self._key)

    @property
    def last_info(self) -> TaskInfo | None:
        """The latest observation, or ``None`` before the first poll answered."""
        return self._last

    @property
    def done(self) -> bool:
        """Whether the wait has ended (result or error)."""
        return self._final is not None or self._error is not None

    # --- consuming the stream ------------------------------------------------------------

    def _join(self, listener: Callable[[], None] | None = None) -> tuple[PollStream, Subscriber]:
        """Subscribe to the task's stream, unless already subscribed; start the deadline."""
        if self._sub is None:
            if self._deadline is None and self.timeout is not None:
                self._deadline = self._client.clock.monotonic() + self.timeout
            self._stream, self._sub = self._streams.subscribe(
                self._client, self._key, self.policy, self._deadline, self._resume_polls, listener
            )
            self._resume_polls = None
            if listener is None:
                # A waiter dropped mid-iteration (`break`, then forgotten) leaves its stream
                # when it is collected, rather than keep it until the client closes.
                self._finalizer = weakref.finalize(self, self._stream.unsubscribe, self._sub)
        assert self._stream is not None  # noqa: S101 - set together with _sub
        return self._stream, self._sub

    async def _advance(self) -> None:
        """Take one observation (the caller holds ``_lock``)."""
        if self._listener is not None:
            raise InvalidArgumentError(
                f"the wait for task {self.task_id} belongs to a running batch: "
                "read its outcome from the batch"
            )
        stream, sub = self._join()
        try:
            info = await stream.next(sub)
        except DeadlineReached:
            raise self._end(self._timeout_error()) from None
        except KooDriveError as error:
            self._end(error)
            raise
        except BaseException:
            # Cancelled: leave the stream so it does not keep observations for nobody;
            # awaiting this waiter again joins afresh.
            self._leave()
            raise
        self._take(info)

    def _take(self, info: TaskInfo) -> None:
        self._last = info
        if self._backlog is not None:
            self._backlog.append(ProgressUpdate.of(info))
        if info.is_terminal:
            self._final = info
            self._leave()

    def _end(self, error: KooDriveError) -> KooDriveError:
        self._error = error
        self._leave()
        return error

    def _leave(self) -> asyncio.Task[TaskInfo] | None:
        """Leave the stream; return the request this cancelled, if any."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        cancelled = None
        if self._stream is not None and self._sub is not None:
            cancelled = self._stream.unsubscribe(self._sub)
        self._stream = self._sub = None
        return cancelled

    # --- push mode, for batches: no coroutine per wait ------------------------------------

    def _follow(
        self, listener: Callable[[TaskWaiter, Exception | None], None], *, updates: bool
    ) -> None:
        """Take every observation as it arrives and call ``listener(self, crash)`` after.

        ``crash`` is a bug met while polling (``None`` normally). With ``updates``,
        :meth:`_drain_updates` returns the updates not yet handed out.
        """
        if self._listener is not None or self._sub is not None:
            raise InvalidArgumentError(
                f"the wait for task {self.task_id} is already in use (awaited, iterated or "
                "in another batch); give a batch waits of its own"
            )
        if updates and self._backlog is None:
            self._backlog = []
            if self._final is not None:
                self._backlog.append(ProgressUpdate.of(self._final))
        self._listener = listener
        if not self.done:
            self._join(self._pushed)
        self._pushed()  # a late joiner may hold an observation already; a done wait, its end

    def _pushed(self) -> None:
        listener = self._listener
        if listener is None:
            return
        crash: Exception | None = None
        while not self.done and self._stream is not None and self._sub is not None:
            try:
                info = self._stream.take(self._sub)
            except DeadlineReached:
                self._end(self._timeout_error())
            except KooDriveError as error:
                self._end(error)
            except Exception as error:  # noqa: BLE001 - a bug met by the stream: the batch re-raises it
                crash = error
                self._leave()
            else:
                if info is None:
                    break
                self._take(info)
        if self.done or crash is not None:
            self._listener = None
        listener(self, crash)

    def _unfollow(self) -> asyncio.Task[TaskInfo] | None:
        """Stop push mode (the batch closes); return the request this cancelled, if any."""
        self._listener = None
        return self._leave()

    def _drain_updates(self) -> list[ProgressUpdate]:
        backlog = self._backlog or []
        self._backlog = []
        return backlog

    def _timeout_error(self) -> WaitTimeoutError:
        last = self._stream.latest if self._stream is not None else self._last
        last_error = self._stream.last_error if self._stream is not None else None
        seen = (
            "no answer yet"
            if last is None
            else f"last seen {last.status.name.lower()} at {last.progress} %"
        )
        cause = f"; last error: {last_error}" if last_error is not None else ""
        if self._stream is not None and self._stream.state in (State.BOOKED, State.QUEUED):
            cause += (
                "; the next poll was waiting for a turn under the client's Limits "
                "(rate, max_in_flight) or a throttling pause"
            )
        return WaitTimeoutError(
            f"task {self.task_id} did not end within {self.timeout:g} s ({seen}{cause}); "
            "raise the timeout or check the task in KooDrive",
            task_id=self.task_id,
            timeout=self.timeout or 0.0,
            last_info=last,
            last_error=last_error,
        )

    def state(self) -> WaitState:
        """Where this wait stands now, for :meth:`KooDriveClient.checkpoint`."""
        timeout_left = self.timeout
        if self._deadline is not None:
            timeout_left = max(0.0, self._deadline - self._client.clock.monotonic())
        polls = self._stream.plan.polls if self._stream is not None else (self._resume_polls or 0)
        last = self._last
        return WaitState(
            share_id=self._key[0],
            task_id=self.task_id,
            status=None if last is None else last.status,
            progress=None if last is None else last.progress,
            polls=polls,
            timeout_left=timeout_left,
        )

    def __aiter__(self) -> AsyncIterator[ProgressUpdate]:
        return self

    async def __anext__(self) -> ProgressUpdate:
        if self._backlog is None:
            self._backlog = []
            if self._final is not None:  # already awaited: still show how it ended
                self._backlog.append(ProgressUpdate.of(self._final))
        while not self._backlog:
            if self._final is not None:
                raise StopAsyncIteration
            if self._error is not None:
                raise self._error
            async with self._consumer_lock():
                if not self._backlog and not self.done:
                    await self._advance()
        return self._backlog.pop(0)

    async def final_info(self) -> TaskInfo:
        """Wait for the task to end and return its final state.

        Returns:
            The final :class:`TaskInfo`; partially failed tasks are returned (with a
            warning logged), ``info.failed_files`` says which files failed.

        Raises:
            TaskFailedError: The task completed and every file failed.
            TaskCanceledError: The task was canceled.
            WaitTimeoutError: The deadline passed first.
            KooDriveError: Polling met a non-retryable error.
        """
        while self._final is None:
            if self._error is not None:
                raise self._error
            async with self._consumer_lock():
                if not self.done:
                    await self._advance()
        return self._judge(self._final)

    def _consumer_lock(self) -> asyncio.Lock:
        # Awaiting and iterating at once share one poll loop: one consumer advances it.
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _judge_final(self) -> TaskInfo:
        """As :meth:`final_info`, for a wait already done."""
        if self._final is None:
            assert self._error is not None  # noqa: S101 - done means one of the two
            raise self._error
        return self._judge(self._final)

    def _judge(self, info: TaskInfo) -> TaskInfo:
        if info.status is TaskStatus.CANCELED:
            raise TaskCanceledError(
                f"task {info.task_id} was canceled at {info.progress} %", info=info
            )
        if info.result_code is TaskResultCode.ALL_FAILED:
            raise TaskFailedError(
                f"task {info.task_id} completed but every file failed"
                f"{f' ({len(info.failed_files)} of them)' if info.failed_files else ''}; "
                "check the files' state in the share",
                info=info,
            )
        if info.result_code is TaskResultCode.PARTIALLY_FAILED and not self._warned:
            self._warned = True
            failed = [f.file_id for f in info.failed_files]
            logger.warning(
                "task %s completed with some files failed%s",
                info.task_id,
                f": {', '.join(failed[:20])}{' …' if len(failed) > 20 else ''}" if failed else "",
            )
        return info

    async def download_url(self) -> str:
        """Wait for a package-download task and return its ``downloadUrl``.

        Raises:
            ProtocolError: The completed task has no URL (a dump task has none:
                use :meth:`final_info`).
            InsecureURLError: The URL is not ``https`` and the client does not
                allow insecure URLs.
            TaskFailedError, TaskCanceledError, WaitTimeoutError, KooDriveError:
                As :meth:`final_info`.
        """
        return self._url_of(await self.final_info())

    def _url_of(self, info: TaskInfo) -> str:
        """The checked ``downloadUrl`` of a completed task (see :meth:`download_url`)."""
        url = info.download_url
        if not url:
            raise ProtocolError(
                f"task {info.task_id} completed without a downloadUrl; a dump task has none: "
                "use `await waiter.final_info()` for it"
            )
        try:
            parsed = URL(url)
            scheme, host = parsed.scheme, parsed.host
        except ValueError:
            scheme, host = "", None
        if scheme != "https" and not (scheme == "http" and self._client.allow_insecure_urls):
            raise InsecureURLError(
                f"task {info.task_id}: refusing downloadUrl {redact_url(url)}: it is not https "
                "(pass allow_insecure_urls=True to the client to accept http, e.g. an emulator)"
            )
        if not host or url != url.strip():
            raise ProtocolError(
                f"task {info.task_id}: the downloadUrl {redact_url(url)} is not a valid absolute URL"
            )
        return url

    def __await__(self) -> Generator[object, None, str]:
        return self.download_url().__await__()
