"""What an event stream follows: one wait, or a batch, as a sequence of items."""

from __future__ import annotations

from typing import Union

import attrs

from .. import (
    CompletionStream,
    JobRef,
    KooDriveError,
    ProgressUpdate,
    TaskOutcome,
    TaskRef,
    TaskWaiter,
    UpdateStream,
)
from ..exceptions import ClientClosedError, InvalidArgumentError

Source = Union[TaskWaiter, UpdateStream, CompletionStream]  # noqa: UP007 - a runtime alias on 3.10


@attrs.frozen
class Progress:
    """A task changed."""

    ref: TaskRef | JobRef
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
        return _ended(await self.waiter.outcome())

    async def aclose(self) -> None:
        """Nothing to stop: a wait cancelled mid-poll has already left its task's stream."""


class BatchItems:
    """A batch: each task's progress (``watch_many``) and each task's outcome, in order."""

    def __init__(self, batch: UpdateStream | CompletionStream) -> None:
        self.batch = batch
        self._events = batch.events()

    @property
    def task_count(self) -> int:
        return len(self.batch)

    async def next(self) -> Item | None:
        """The next item; ``None`` once every task's outcome was given."""
        async for event in self._events:
            if isinstance(event, TaskOutcome):
                return _ended(event)
            return Progress(*event)
        return None

    async def aclose(self) -> None:
        """Stop the batch's waits."""
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
