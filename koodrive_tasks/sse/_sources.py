"""What an event stream follows: one wait, or a batch, as a sequence of items."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Union

import attrs

from .. import (
    CompletionStream,
    KooDriveError,
    ProgressUpdate,
    TaskOutcome,
    TaskRef,
    TaskType,
    TaskWaiter,
    UpdateStream,
)
from ..exceptions import ClientClosedError, InvalidArgumentError

Source = Union[TaskWaiter, UpdateStream, CompletionStream]  # noqa: UP007 - a runtime alias on 3.10


@attrs.frozen
class Progress:
    """A task changed."""

    ref: TaskRef
    update: ProgressUpdate


@attrs.frozen
class Result:
    """A task's wait ended: the task's outcome (a result, or why there is none)."""

    outcome: TaskOutcome


@attrs.frozen
class Closed:
    """The client was closed: the stream ends, and a reconnection may resume it."""

    error: KooDriveError


Item = Union[Progress, Result, Closed]  # noqa: UP007 - a runtime alias on 3.10


def _ended(outcome: TaskOutcome) -> Result | Closed:
    # A closed client says nothing about the task: the browser should come back.
    if isinstance(outcome.error, ClientClosedError):
        return Closed(outcome.error)
    return Result(outcome)


async def outcome_of(waiter: TaskWaiter) -> TaskOutcome:
    """The outcome of a wait, as a batch would report it (waits for the end)."""
    try:
        info = await waiter.final_info()
        url = None
        # As a batch does: a dump task has no URL; a package task must have a valid one.
        if info.task_type is not TaskType.DUMP and (
            info.download_url or info.task_type is not None
        ):
            url = await waiter.download_url()
        return TaskOutcome(waiter.ref, info, url)
    except KooDriveError as error:
        return TaskOutcome(
            waiter.ref, getattr(error, "info", None) or waiter.last_info, None, error
        )


class WaiterItems:
    """One wait: its progress, then its outcome."""

    def __init__(self, waiter: TaskWaiter) -> None:
        self.waiter = waiter
        self._iterating = True
        self._ended = False

    @property
    def task_count(self) -> int:
        return 1

    async def next(self) -> Item | None:
        """The next item; ``None`` once the outcome was given."""
        if self._ended:
            return None
        if self._iterating:
            try:
                return Progress(self.waiter.ref, await self.waiter.__anext__())
            except StopAsyncIteration:
                self._iterating = False
            except KooDriveError:
                self._iterating = False  # the waiter keeps the error: outcome_of reads it
        self._ended = True
        return _ended(await outcome_of(self.waiter))

    async def aclose(self) -> None:
        """Nothing to stop: a wait cancelled mid-poll has already left its task's stream."""


class BatchItems:
    """A batch: each task's progress (``watch_many``) and each task's outcome."""

    def __init__(self, batch: UpdateStream | CompletionStream) -> None:
        self.batch = batch
        self._iterator = batch.__aiter__()
        self._step: asyncio.Future[object] | None = None
        self._exhausted = False
        self._given: set[TaskRef] = set()
        self._backlog: deque[Item] = deque()

    @property
    def task_count(self) -> int:
        return len(self.batch)

    async def next(self) -> Item | None:
        """The next item; ``None`` once every task's outcome was given."""
        while not self._backlog:
            if self._exhausted:
                return None
            step = self._step or asyncio.ensure_future(self._iterator.__anext__())
            self._step = None
            try:
                event = await step
            except StopAsyncIteration:
                self._exhausted = True
                self._take_outcomes()
                continue
            if isinstance(event, tuple):
                ref, update = event
                self._backlog.append(Progress(ref, update))
                if update.status.is_terminal and ref not in self.batch.outcomes:
                    # A batch records a task's outcome when its iteration next runs,
                    # which for watch_many is when another update arrives. Start that
                    # step and let it run once, so that the result follows the final
                    # update at once instead of waiting for news of another task.
                    self._step = asyncio.ensure_future(self._iterator.__anext__())
                    await asyncio.sleep(0)
            self._take_outcomes()
        return self._backlog.popleft()

    def _take_outcomes(self) -> None:
        for ref, outcome in list(self.batch.outcomes.items()):
            if ref not in self._given:
                self._given.add(ref)
                self._backlog.append(_ended(outcome))

    async def aclose(self) -> None:
        """Stop the batch's waits (and the step started ahead, if any)."""
        step, self._step = self._step, None
        if step is not None and not step.done():
            step.cancel()
            await asyncio.wait({step})
        await self.batch.aclose()


def items_of(source: Source) -> WaiterItems | BatchItems:
    """The items of a wait or a batch.

    Raises:
        InvalidArgumentError: If ``source`` is neither.
    """
    if isinstance(source, TaskWaiter):
        return WaiterItems(source)
    if isinstance(source, (UpdateStream, CompletionStream)):
        return BatchItems(source)
    raise InvalidArgumentError(
        "an event stream follows a TaskWaiter (kd.wait_for_task) or a batch "
        f"(kd.watch_many, kd.as_completed), not {type(source).__name__}"
    )
