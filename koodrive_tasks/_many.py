"""Waiting on many tasks at once: per-task outcomes, merged progress, completion order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar, Union

import attrs

from ._models import ProgressUpdate, TaskInfo, TaskRef, TaskType
from ._outcome import TaskOutcome
from ._policy import PollPolicy
from ._waiter import TaskWaiter
from .exceptions import InvalidArgumentError, KooDriveError

if TYPE_CHECKING:
    from ._client import KooDriveClient


TaskLike = Union[TaskRef, tuple[str, str], tuple[str, str, Union[str, None]]]  # noqa: UP007 - a runtime alias on 3.10


@attrs.define
class _Crash:
    """A bug inside a worker, re-raised in the consumer instead of hanging it."""

    error: BaseException


_B = TypeVar("_B", bound="TaskBatch")
_START_BATCH = 256
_Event = Union[tuple[TaskRef, ProgressUpdate], TaskOutcome, _Crash]  # noqa: UP007 - a runtime alias on 3.10


class TaskBatch:
    """Waits for several tasks; iterate it, or use it as an async context manager.

    Created by :meth:`KooDriveClient.watch_many` (yields ``(ref, update)`` pairs) and
    :meth:`KooDriveClient.as_completed` (yields :class:`TaskOutcome` as tasks end).
    Outcomes collected so far are in :attr:`outcomes`. Leaving the ``async with``
    block, or :meth:`aclose`, stops every wait still running.
    """

    def __init__(
        self,
        client: KooDriveClient,
        tasks: Iterable[TaskLike | TaskWaiter],
        *,
        updates: bool,
        timeout: float | None,
        policy: PollPolicy | None,
    ) -> None:
        # The waiters are made here, not when iteration starts: a bad id or kdstoken is
        # an InvalidArgumentError from this call, before any wait of the batch has begun.
        self._waiters: dict[TaskRef, TaskWaiter] = {}  # one wait per task, order kept
        for task in tasks:
            if isinstance(task, TaskWaiter):  # e.g. resumed from a continuation token
                self._waiters.setdefault(task.ref, task)
                continue
            ref = TaskRef.of(task)
            if ref not in self._waiters:
                self._waiters[ref] = client.wait_for_task(
                    ref.share_id, ref.task_id, kdstoken=ref.kdstoken, timeout=timeout, policy=policy
                )
        self._refs = list(self._waiters)
        self._client = client
        self._updates = updates
        self._queue: asyncio.Queue[_Event] = asyncio.Queue()
        self._running: dict[TaskRef, TaskWaiter] = {}
        self._started = False
        self.outcomes: dict[TaskRef, TaskOutcome] = {}

    def __len__(self) -> int:
        return len(self._refs)

    async def __aenter__(self: _B) -> _B:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the waits still running, and wait until their requests have stopped."""
        cancelled = [
            request for waiter in self._running.values() if (request := waiter._unfollow())
        ]
        self._running.clear()
        if cancelled:
            await asyncio.gather(*cancelled, return_exceptions=True)

    async def _start(self) -> None:
        # No task per wait: each waiter is told of its task's news by its poll stream
        # (push mode), so 10,000 waits cost 10,000 small objects, not 10,000 coroutines.
        self._started = True
        self._client._track(self)
        for count, (ref, waiter) in enumerate(self._waiters.items(), 1):
            self._running[ref] = waiter
            try:
                waiter._follow(self._changed, updates=self._updates)
            except InvalidArgumentError:
                del self._running[ref]  # in use elsewhere: not this batch's to stop
                raise
            if count == len(self._waiters):
                self._waiters = {}  # the running ones are in _running; let the ended go
            if count % _START_BATCH == 0:
                # Let the loop breathe: starting 10,000 waits in one step stalled it ~0.8 s.
                await asyncio.sleep(0)

    def _changed(self, waiter: TaskWaiter, crash: Exception | None) -> None:
        """A waiter took news: queue its updates, and its outcome once it is done."""
        if crash is not None:
            self._queue.put_nowait(_Crash(crash))
            return
        try:
            ref = waiter.ref
            for update in waiter._drain_updates():
                self._queue.put_nowait((ref, update))
            if waiter.done:
                self._running.pop(ref, None)
                self._queue.put_nowait(self._outcome(ref, waiter))
        except Exception as error:  # noqa: BLE001 - a bug: surface it rather than hang the consumer
            self._queue.put_nowait(_Crash(error))

    @staticmethod
    def _outcome(ref: TaskRef, waiter: TaskWaiter) -> TaskOutcome:
        try:
            info = waiter._judge_final()
            url = None
            if info.task_type is not TaskType.DUMP and (
                info.download_url or info.task_type is not None
            ):
                url = waiter._url_of(info)
            return TaskOutcome(ref, info, url)
        except KooDriveError as error:
            last: TaskInfo | None = getattr(error, "info", None) or waiter.last_info
            return TaskOutcome(ref, last, None, error)

    async def _next_event(self) -> _Event | None:
        if not self._started:
            await self._start()
        if len(self.outcomes) == len(self._refs) and self._queue.empty():
            return None
        event = await self._queue.get()
        if isinstance(event, _Crash):
            await self.aclose()
            raise event.error
        if isinstance(event, TaskOutcome):
            self.outcomes[event.ref] = event
        return event

    async def results(self) -> dict[TaskRef, TaskOutcome]:
        """Wait for every task and return the outcomes, in the order the tasks were given."""
        try:
            while await self._next_event() is not None:
                pass
        finally:
            await self.aclose()
        return {ref: self.outcomes[ref] for ref in self._refs}


class UpdateStream(TaskBatch):
    """``async for ref, update in kd.watch_many(tasks)``: every change of every task."""

    def __aiter__(self) -> AsyncIterator[tuple[TaskRef, ProgressUpdate]]:
        return self

    async def __anext__(self) -> tuple[TaskRef, ProgressUpdate]:
        while True:
            event = await self._next_event()
            if event is None:
                raise StopAsyncIteration
            if isinstance(event, tuple):
                return event


class CompletionStream(TaskBatch):
    """``async for outcome in kd.as_completed(tasks)``: each task's outcome as it ends."""

    def __aiter__(self) -> AsyncIterator[TaskOutcome]:
        return self

    async def __anext__(self) -> TaskOutcome:
        while True:
            event = await self._next_event()
            if event is None:
                raise StopAsyncIteration
            if isinstance(event, TaskOutcome):
                return event
