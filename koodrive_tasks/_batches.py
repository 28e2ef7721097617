"""Waiting on many tasks at once: per-task outcomes, merged progress, completion order.

A batch holds no task or coroutine per wait: each :class:`Wait` is told of its task's
news by its poll stream (a callback), and the batch queues what its consumer reads.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import TypeVar, Union

import attrs

from ._models import ProgressUpdate, Ref
from ._outcome import TaskOutcome
from ._wait import Wait, cancel_requested
from .exceptions import InvalidArgumentError, KooDriveError


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

    def __init__(self, waits: Iterable[Wait], *, updates: bool) -> None:
        self._waits: dict[Ref, Wait] = {}  # one wait per task, order kept
        for wait in waits:
            self._waits.setdefault(wait.ref, wait)
        self._refs = list(self._waits)
        self._updates = updates
        self._events: deque[_Event] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._started = False
        self._ended: KooDriveError | None = None
        self.outcomes: dict[Ref, TaskOutcome] = {}

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} tasks={len(self._refs)} "
            f"ended={len(self.outcomes)} queued_events={len(self._events)}>"
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
    def pending(self) -> list[Ref]:
        """The tasks whose outcome has not been delivered yet, in the order given."""
        return [ref for ref in self._refs if not self._waits[ref].delivered]

    def waits(self) -> list[Wait]:
        """Every wait of the batch, in the order given."""
        return [self._waits[ref] for ref in self._refs]

    async def aclose(self) -> None:
        """Stop the waits still running, and wait until their requests have stopped."""
        cancelled = []
        for wait in self._waits.values():
            if wait.owner is self:
                wait.owner = None
                request = wait.leave()
                if request is not None:
                    cancelled.append(request)
        if cancelled:
            await asyncio.gather(*cancelled, return_exceptions=True)

    def end(self, error: KooDriveError) -> None:
        """End every wait not ended yet with ``error`` (the client closed); deliver them."""
        self._ended = error
        for wait in self._waits.values():
            if wait.owner is self:
                wait.end(error)
                self._changed(wait)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)  # a batch not started yet ends when it starts

    async def _start(self) -> None:
        self._started = True
        for count, wait in enumerate(self._waits.values(), 1):
            if wait.owner is not None or wait.joined:
                raise InvalidArgumentError(
                    f"the wait for task {wait.ref.task_id} is already in use (awaited, iterated "
                    "or in another batch); give a batch waits of its own"
                )
            wait.owner = self
            if self._ended is not None:
                wait.end(self._ended)
            elif wait.final is not None and self._updates:
                self._push(
                    (wait.ref, ProgressUpdate.of(wait.final))
                )  # awaited before: show its end
            elif not wait.done:
                wait.join(functools.partial(self._changed, wait))
            self._changed(wait)  # a late joiner may hold an observation; a done wait, its end
            if count % _START_STEP == 0:
                await asyncio.sleep(0)

    def _changed(self, wait: Wait) -> None:
        """A wait took news: queue its updates, and its outcome once it ended."""
        try:
            ref = wait.ref
            while (info := wait.take()) is not None:
                if self._updates:
                    self._push((ref, ProgressUpdate.of(info)))
            if wait.done and wait.ref not in self.outcomes and wait.owner is self:
                wait.owner = None
                self._push(wait.outcome())
        except Exception as error:  # noqa: BLE001 - a bug: surface it rather than hang the consumer
            self._push(_Crash(error))

    def _push(self, event: _Event) -> None:
        self._events.append(event)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _next_event(self) -> _Event | None:
        if not self._started:
            await self._start()
        while not self._events:
            if len(self.outcomes) == len(self._refs):
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
        return event

    @property
    def refs(self) -> list[Ref]:
        """The batch's tasks, in the order given (one entry per task)."""
        return list(self._refs)

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
