"""``TaskWaiter``: await a task's result, or iterate over its progress, or both.

``JobWaiter`` is the ``TaskWaiter`` of a batch job: the same polls, updates and
outcome; only ``await`` differs (the final :class:`JobInfo` rather than a URL).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Generator

from ._models import JobInfo, JobRef, ProgressUpdate, Ref, TaskInfo
from ._outcome import TaskOutcome, checked_download_url, judge
from ._policy import PollPolicy
from ._wait import Wait, cancel_requested
from .exceptions import InvalidArgumentError


class TaskWaiter:
    """Waits for one task; created by :meth:`KooDriveClient.wait_for_task`.

    * ``await waiter`` returns the ``downloadUrl`` of a completed package-download task.
    * ``await waiter.final_info()`` returns the final :class:`TaskInfo` (any task type).
    * ``async for update in waiter`` yields a :class:`ProgressUpdate` for the first
      observation and for every change of status or progress, the terminal one
      included, then ends.

    All three share one poll loop: awaiting after or during iteration continues the
    same polls. The deadline starts at the first await or iteration. Once the task
    awaiting a waiter is cancelled, the waiter raises ``CancelledError`` rather than
    hand over a result the caller would then lose.
    """

    __slots__ = ("__weakref__", "_backlog", "_finalizer", "_lock", "_wait", "_warned")

    def __init__(self, wait: Wait) -> None:
        self._wait = wait
        self._lock: asyncio.Lock | None = None  # made on first await: a batch needs none
        self._finalizer: weakref.finalize[[], object] | None = None
        self._warned = False
        # Only an iterating consumer needs a backlog; most waits are only awaited.
        self._backlog: list[ProgressUpdate] | None = None

    def __repr__(self) -> str:
        wait = self._wait
        state = "running"
        if wait.final is not None:
            state = wait.final.status.name.lower()
        elif wait.error is not None:
            state = type(wait.error).__name__
        elif not wait.joined:
            state = "not started" if wait.last is None else "paused"
        key = "job_id" if isinstance(wait.ref, JobRef) else "task_id"
        return f"<{type(self).__name__} {key}={wait.ref.task_id!r} {state}>"

    @property
    def ref(self) -> Ref:
        """The task (:class:`TaskRef`) or job (:class:`JobRef`) this waiter waits for."""
        return self._wait.ref

    @property
    def task_id(self) -> str:
        """The task's id."""
        return self._wait.ref.task_id

    @property
    def policy(self) -> PollPolicy:
        """The polling policy of this wait."""
        return self._wait.policy

    @property
    def timeout(self) -> float | None:
        """Seconds from the first await or iteration to ``WaitTimeoutError``, or ``None``."""
        return self._wait.timeout

    @property
    def last_info(self) -> TaskInfo | None:
        """The latest observation, or ``None`` before the first poll answered."""
        return self._wait.last

    @property
    def done(self) -> bool:
        """Whether the wait has ended (result or error)."""
        return self._wait.done

    @property
    def delivered(self) -> bool:
        """Whether its outcome has been handed over to the code waiting for it.

        Returned or raised to an awaiting caller, its last update yielded, or yielded
        by the batch it belongs to. :meth:`KooDriveClient.checkpoint` keeps exactly the
        waits not delivered yet.
        """
        return self._wait.delivered

    # --- pulling -----------------------------------------------------------------------

    async def _advance(self) -> None:
        """Take one observation, or the wait's end (the caller holds the lock)."""
        wait = self._wait
        if wait.owner is not None:
            raise InvalidArgumentError(
                f"the wait for task {wait.ref.task_id} belongs to a running batch: "
                "read its outcome from the batch"
            )
        was_joined = wait.joined
        info = await wait.next()
        if not was_joined and wait.joined and self._finalizer is None:
            # A waiter dropped mid-iteration (`break`, then forgotten) leaves its stream
            # when it is collected, rather than keep it until the client closes.
            self._finalizer = weakref.finalize(self, wait.leave)
        if info is not None and self._backlog is not None:
            self._backlog.append(ProgressUpdate.of(info))
        if wait.done and self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    def _consumer_lock(self) -> asyncio.Lock:
        # Awaiting and iterating at once share one poll loop: one consumer advances it.
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def __aiter__(self) -> AsyncIterator[ProgressUpdate]:
        return self

    async def __anext__(self) -> ProgressUpdate:
        wait = self._wait
        if self._backlog is None:
            self._backlog = []
            if wait.final is not None:  # already awaited: still show how it ended
                self._backlog.append(ProgressUpdate.of(wait.final))
        while not self._backlog:
            if wait.final is not None:
                raise StopAsyncIteration
            if wait.error is not None:
                self._deliver()
                raise wait.error
            async with self._consumer_lock():
                if not self._backlog and not wait.done:
                    await self._advance()
        update = self._backlog[0]
        if update.status.is_terminal:
            self._deliver()
        del self._backlog[0]
        return update

    def _deliver(self) -> None:
        """The outcome reaches the caller now, unless the caller's task is being cancelled."""
        if cancel_requested():
            raise asyncio.CancelledError
        self._wait.delivered = True

    async def final_info(self) -> TaskInfo:
        """Wait for the task to end and return its final state.

        Returns:
            The final :class:`TaskInfo`; partially failed tasks are returned (with a
            warning logged), ``info.failed_files`` says which files failed.

        Raises:
            TaskFailedError: The task completed and every file failed.
            TaskCanceledError: The task was canceled.
            WaitTimeoutError: The deadline passed first.
            ClientClosedError: The client was closed first.
            KooDriveError: Polling met a non-retryable error.
        """
        wait = self._wait
        while wait.final is None:
            if wait.error is not None:
                self._deliver()
                raise wait.error
            async with self._consumer_lock():
                if not wait.done:
                    await self._advance()
        try:
            info = judge(wait.final, warn_partial=not self._warned)
        finally:
            self._warned = True
            self._deliver()
        return info

    async def outcome(self) -> TaskOutcome:
        """Wait for the task to end and return its :class:`TaskOutcome`, as a batch would.

        Never raises a :class:`KooDriveError`: a failed, canceled or timed-out wait is an
        outcome with ``error`` set. A partially failed task logs no warning here (its
        outcome says so).
        """
        wait = self._wait
        while not wait.done:
            async with self._consumer_lock():
                if not wait.done:
                    await self._advance()
        self._deliver()
        return wait.outcome()

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
        info = await self.final_info()
        return checked_download_url(info, allow_insecure_urls=self._wait.allow_insecure_urls)

    def __await__(self) -> Generator[object, None, str]:
        return self.download_url().__await__()


class JobWaiter(TaskWaiter):
    """Waits for one batch job; created by :meth:`KooDriveClient.wait_for_job`.

    A :class:`TaskWaiter` in every way (updates, :meth:`outcome`, batches,
    checkpoints, cancellation), except what ``await`` gives:

    * ``await waiter`` returns the final :class:`JobInfo`, whatever the job's type (a
      job's type is only known from its first answer; one result type keeps the
      await honest). It raises as :meth:`final_info` does.
    * ``await waiter.download_url()`` returns the checked URL of a package-download
      job (``https`` unless the client allows insecure URLs).
    """

    __slots__ = ()

    @property
    def job_id(self) -> str:
        """The job's id (also :attr:`task_id`)."""
        return self.ref.task_id

    async def final_info(self) -> JobInfo:
        """Wait for the job to end and return its final state; see :meth:`TaskWaiter.final_info`."""
        info = await super().final_info()
        assert isinstance(info, JobInfo)  # noqa: S101 - a job's polls are read into JobInfo
        return info

    def __await__(self) -> Generator[object, None, JobInfo]:  # type: ignore[override]
        # Deliberately not a URL (see the class docstring): code that awaits any
        # TaskWaiter for a URL should call download_url() instead.
        return self.final_info().__await__()


def wait_of(waiter: TaskWaiter) -> Wait:
    """The :class:`Wait` behind a waiter (a batch follows it directly)."""
    return waiter._wait
