"""Waiting on many tasks at once: per-task outcomes, merged progress, completion order.

A batch holds no task or coroutine per wait: each :class:`Wait` is told of its task's
news by its poll stream (a callback), and the batch queues what its consumer reads.
A batch may cap how many of its waits run at once (the rest wait their turn in order)
and may take more waits while it runs: that is the work pool, :class:`WorkPool`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import TypeVar, Union

import attrs

from ._models import ProgressUpdate, Ref, TaskLike
from ._outcome import TaskOutcome
from ._wait import Wait, cancel_requested
from ._waiter import TaskWaiter
from .exceptions import ClientClosedError, InvalidArgumentError, KooDriveError


@attrs.define
class _Crash:
    """A bug met while polling, re-raised in the consumer instead of hanging it."""

    error: BaseException


_B = TypeVar("_B", bound="TaskBatch")
_START_STEP = 256  # waits joined per loop step: a batch of 100,000 must not stall the loop
_Event = Union[tuple[Ref, ProgressUpdate], TaskOutcome, _Crash]  # noqa: UP007 - a runtime alias on 3.10


class TaskBatch:
    """Waits for several tasks; iterate it, or use it as an async context manager.

    Created by :meth:`KooDriveClient.watch_many` (yields ``(ref, update)`` pairs) and
    :meth:`KooDriveClient.as_completed` (yields :class:`TaskOutcome` as tasks end).
    Outcomes collected so far are in :attr:`outcomes`. Leaving the ``async with``
    block, or :meth:`aclose`, stops every wait still running; closing the client ends
    them with ``ClientClosedError`` outcomes, which are still delivered.
    """

    def __init__(
        self,
        waits: Iterable[Wait],
        *,
        updates: bool,
        max_running: int | None = None,
        sealed: bool = True,
    ) -> None:
        self._waits: dict[Ref, Wait] = {}  # one wait per task, order kept
        self._refs: list[Ref] = []
        self._not_started: deque[Wait] = deque()
        self._running = 0
        self._max_running = max_running
        self._sealed = sealed  # no more waits will be added
        self._updates = updates
        self._events: deque[_Event] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._started = False
        self._filling = False
        self._closed = False  # aclose() was called: nothing more comes
        self._ended: KooDriveError | None = None
        # Every wait is given this one bound method as its listener, not one of its own.
        self._on_change: Callable[[Wait], None] = self._changed
        self.outcomes: dict[Ref, TaskOutcome] = {}
        for wait in waits:
            self._add(wait)

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} tasks={len(self._refs)} running={self._running} "
            f"waiting_to_start={len(self._not_started)} delivered={len(self.outcomes)} "
            f"queued_events={len(self._events)}>"
        )

    async def __aenter__(self: _B) -> _B:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def refs(self) -> list[Ref]:
        """The batch's tasks, in the order given (one entry per task)."""
        return list(self._refs)

    @property
    def pending(self) -> list[Ref]:
        """The tasks whose outcome has not been delivered yet, in the order given."""
        return [ref for ref in self._refs if not self._waits[ref].delivered]

    def waits(self) -> list[Wait]:
        """Every wait of the batch, in the order given."""
        return [self._waits[ref] for ref in self._refs]

    def _add(self, wait: Wait) -> bool:
        """Take ``wait`` in (once per task); False when the batch has it already."""
        if wait.ref in self._waits:
            return False
        self._waits[wait.ref] = wait
        self._refs.append(wait.ref)
        self._not_started.append(wait)
        return True

    async def aclose(self) -> None:
        """Stop the waits still running, and wait until their requests have stopped.

        Waits not started yet, and outcomes not read yet, stay undelivered: a checkpoint
        taken afterwards still holds them.
        """
        cancelled = []
        for wait in self._waits.values():
            if wait.owner is self:
                wait.owner = None
                request = wait.leave()
                if request is not None:
                    cancelled.append(request)
        self._running = 0
        self._not_started.clear()
        self._sealed = self._closed = True
        self._wake()
        if cancelled:
            await asyncio.gather(*cancelled, return_exceptions=True)

    def end(self, error: KooDriveError) -> None:
        """End every wait not ended yet with ``error`` (the client closed); deliver them."""
        self._ended = error
        self._sealed = True
        for wait in self._waits.values():
            if wait.owner is self:
                wait.end(error)
                self._changed(wait)
        if self._started:
            self._fill()  # the waits not started yet end at once, and are delivered too
        self._wake()

    # --- starting waits -----------------------------------------------------------------------

    async def _start(self) -> None:
        for wait in self._waits.values():
            if wait.owner is not None or wait.joined:
                raise InvalidArgumentError(
                    f"the wait for task {wait.ref.task_id} is already in use (awaited, iterated "
                    "or in another batch); give a batch waits of its own"
                )
        self._started = True
        # The first start of a large batch yields to the loop between steps.
        while self._not_started and self._room():
            self._fill(limit=_START_STEP)
            await asyncio.sleep(0)

    def _room(self) -> bool:
        return self._max_running is None or self._running < self._max_running

    def _fill(self, limit: int | None = None) -> None:
        """Start waits in order while there is room (all of them without a cap)."""
        if self._filling:
            return  # a wait that ended at once while starting: the loop below goes on
        self._filling = True
        try:
            started = 0
            while self._not_started and self._room() and (limit is None or started < limit):
                wait = self._not_started.popleft()
                started += 1
                self._running += 1
                wait.owner = self
                if self._ended is not None:
                    wait.end(self._ended)
                elif wait.final is not None and self._updates:
                    self._push((wait.ref, ProgressUpdate.of(wait.final)))  # awaited before
                elif not wait.done:
                    wait.join(self._on_change)
                self._changed(wait)  # a late joiner may hold an observation; a done wait, its end
        finally:
            self._filling = False

    # --- news ---------------------------------------------------------------------------------

    def _changed(self, wait: Wait) -> None:
        """A wait took news: queue its updates, and its outcome once it ended."""
        try:
            ref = wait.ref
            while (info := wait.take()) is not None:
                if self._updates:
                    self._push((ref, ProgressUpdate.of(info)))
            if wait.done and wait.owner is self:
                wait.owner = None
                self._running -= 1
                self._push(wait.outcome())
                if self._not_started and not self._filling:
                    self._fill()
        except Exception as error:  # noqa: BLE001 - a bug: surface it rather than hang the consumer
            self._push(_Crash(error))

    def _push(self, event: _Event) -> None:
        self._events.append(event)
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _finished(self) -> bool:
        return self._closed or (self._sealed and len(self.outcomes) == len(self._refs))

    async def _next_event(self) -> _Event | None:
        if not self._started:
            await self._start()
        while not self._events:
            if self._finished():
                return None
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        if cancel_requested():  # the consumer would lose what it is handed now
            raise asyncio.CancelledError
        event = self._events.popleft()
        if isinstance(event, _Crash):
            await self.aclose()
            raise event.error
        if isinstance(event, TaskOutcome):
            self.outcomes[event.ref] = event
            self._waits[event.ref].delivered = True
            self._delivered()
        return event

    def _delivered(self) -> None:
        """An outcome reached the consumer (a pool lets a waiting producer go on)."""

    async def events(self) -> AsyncIterator[tuple[Ref, ProgressUpdate] | TaskOutcome]:
        """Every event in the order it happened.

        ``(ref, update)`` pairs (for a batch that follows updates, ``watch_many``) and
        each task's :class:`TaskOutcome` right after its task ends.
        """
        while (event := await self._next_event()) is not None:
            assert not isinstance(event, _Crash)  # noqa: S101 - _next_event raises those
            yield event

    async def results(self) -> dict[Ref, TaskOutcome]:
        """Wait for every task and return the outcomes, in the order the tasks were given."""
        try:
            while await self._next_event() is not None:
                pass
        finally:
            await self.aclose()
        return {ref: self.outcomes[ref] for ref in self._refs}


class UpdateStream(TaskBatch):
    """``async for ref, update in kd.watch_many(tasks)``: every change of every task."""

    def __aiter__(self) -> AsyncIterator[tuple[Ref, ProgressUpdate]]:
        return self

    async def __anext__(self) -> tuple[Ref, ProgressUpdate]:
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


class WorkPool(CompletionStream):
    """Waits for tasks handed over time, at most ``max_waits`` at once; made by :meth:`KooDriveClient.pool`.

    ``await pool.submit(task)`` hands a task over (the producer waits while the pool is
    full: ``max_waits`` running plus ``max_queued`` waiting to start, outcomes not yet
    read included); ``async for outcome in pool`` yields each :class:`TaskOutcome` as
    its task ends; :meth:`finish` says no more tasks are coming, and the iteration ends
    once every outcome was read. ``kd.checkpoint([pool])`` holds the running and the
    queued tasks alike, and ``kd.resume(token)`` gives them back as waiters to submit
    again: delivery is at least once (see the README's "Resuming").
    """

    def __init__(
        self,
        make_wait: Callable[[TaskLike | TaskWaiter], Wait],
        *,
        max_waits: int,
        max_queued: int,
    ) -> None:
        super().__init__((), updates=False, max_running=max_waits, sealed=False)
        self._make_wait = make_wait
        self._capacity = max_waits + max_queued
        self._space: asyncio.Future[None] | None = None
        self._started = True  # waits start as they are submitted, not when iteration starts

    def _undelivered(self) -> int:
        return len(self._refs) - len(self.outcomes)

    async def submit(self, task: TaskLike | TaskWaiter) -> None:
        """Hand a task over: a ``TaskRef``, a ``JobRef``, a ``(share_id, task_id)`` tuple or a waiter.

        Waits while the pool is full. A task the pool already has is ignored.

        Raises:
            InvalidArgumentError: The task is not valid (before it is queued), or the pool
                was finished.
            ClientClosedError: The client was closed.
        """
        wait = self._make_wait(task)  # checked before it takes any room
        while self._undelivered() >= self._capacity:
            if self._ended is not None:
                raise ClientClosedError("this KooDriveClient was closed")
            self._space = asyncio.get_running_loop().create_future()
            try:
                await self._space
            finally:
                self._space = None
        if self._ended is not None:
            raise ClientClosedError("this KooDriveClient was closed")
        if self._sealed:
            raise InvalidArgumentError("this pool was finished: it takes no more tasks")
        if wait.owner is not None or wait.joined:
            raise InvalidArgumentError(
                f"the wait for task {wait.ref.task_id} is already in use (awaited, iterated "
                "or in another batch)"
            )
        if self._add(wait):
            self._fill()

    def finish(self) -> None:
        """No more tasks: iterating ends once every submitted task's outcome was read."""
        self._sealed = True
        self._wake()

    def _delivered(self) -> None:
        if self._space is not None and not self._space.done():
            self._space.set_result(None)

    def end(self, error: KooDriveError) -> None:
        """End every wait with ``error`` (the client closed); producers waiting are told."""
        super().end(error)
        self._delivered()
