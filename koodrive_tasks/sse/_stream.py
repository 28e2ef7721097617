"""``EventStream``: a wait or a batch as Server-Sent Events, heartbeats included."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any

from .. import AsyncioClock, Clock
from ..exceptions import InvalidArgumentError
from . import _ids
from ._format import format_comment, format_event, format_retry
from ._sources import Closed, Item, Progress, Result, Source, WaiterItems, items_of

DEFAULT_HEARTBEAT = 15.0


class EventStream:
    """The events of a wait or a batch, as the bytes of a ``text/event-stream``.

    ``async for chunk in EventStream(kd.wait_for_task(share_id, task_id)):`` yields

    * ``event: progress`` for every change of a task (data: ``ProgressUpdate.to_dict()``),
    * ``event: result`` when a task's wait ends, however it ends (data:
      ``TaskOutcome.to_dict()``: ``outcome`` is ``completed``, ``partially_failed``,
      ``failed``, ``canceled``, ``timeout``, ``auth_error`` or ``error``),
    * ``event: error`` when the client was closed under the stream (data:
      ``ClientClosedError.to_dict()``); it carries no id, so a browser that reconnects
      resumes after the last progress it saw,
    * ``: keep-alive`` comments after ``heartbeat`` seconds without an event,

    and ends after the last result (or the error). ``progress`` and ``result`` events
    carry an ``id:``; given the ``Last-Event-ID`` a reconnecting browser sends, a new
    stream skips what the browser has already seen: no duplicate, no step back.

    Args:
        source: A :class:`~koodrive_tasks.TaskWaiter` (``kd.wait_for_task``), or a batch
            (``kd.watch_many``: progress and results; ``kd.as_completed``: results).
            The stream consumes it; closing the stream stops its waits.
        last_event_id: The request's ``Last-Event-ID`` header, if any. An id this
            library did not make is ignored (the stream starts from the beginning).
        heartbeat: Seconds of silence before a keep-alive comment; ``None`` for none.
        retry: Seconds a browser should wait before reconnecting, sent first as
            ``retry:``; ``None`` leaves the browser's default (about 3 s).
        clock: Times the heartbeats; by default the event loop's.

    Raises:
        InvalidArgumentError: If ``source`` is not a wait or a batch, or a duration is
            not a positive number.
    """

    def __init__(
        self,
        source: Source,
        *,
        last_event_id: str | None = None,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        retry: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if heartbeat is not None and (
            isinstance(heartbeat, bool)
            or not isinstance(heartbeat, (int, float))
            or not 0 < heartbeat < math.inf
        ):
            raise InvalidArgumentError(f"heartbeat must be seconds > 0 or None, not {heartbeat!r}")
        self._retry = None if retry is None else format_retry(retry)
        self._items = items_of(source)
        self._heartbeat = heartbeat
        self._clock = clock or AsyncioClock()
        self._seen: _ids.Positions = {}
        self._events: AsyncGenerator[bytes, None] | None = None
        self.resume_after(last_event_id)

    def __repr__(self) -> str:
        return f"<EventStream tasks={self._items.task_count} seen={len(self._seen)}>"

    def resume_after(self, last_event_id: str | None) -> None:
        """Skip what a browser has seen, given the ``Last-Event-ID`` it sent.

        For adapters that learn the header after building the stream. An id this
        library did not make is ignored; ``None`` changes nothing.

        Raises:
            InvalidArgumentError: If the stream has started, or the id is not a str.
        """
        if last_event_id is not None and not isinstance(last_event_id, str):
            raise InvalidArgumentError("last_event_id must be a str (the Last-Event-ID header)")
        if self._events is not None:
            raise InvalidArgumentError("resume_after() must come before the stream starts")
        if last_event_id is not None:
            self._seen = _ids.decode(last_event_id)

    @property
    def finished(self) -> bool:
        """Whether the browser has already seen every result (per ``last_event_id``).

        Nothing is left to send: answer ``204 No Content``, which tells a browser's
        ``EventSource`` to stop reconnecting. The adapters do this.
        """
        items = self._items
        refs = [items.waiter.ref] if isinstance(items, WaiterItems) else items.batch.refs
        return bool(refs) and all(
            self._seen.get(_ids.task_key(ref)) == _ids.DELIVERED for ref in refs
        )

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._events is None:
            self._events = self._generate()
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Stop the stream and the waits it follows (idempotent)."""
        if self._events is None:
            self._events = self._generate()  # never started: close the source all the same
        await self._events.aclose()
        await self._items.aclose()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _generate(self) -> AsyncGenerator[bytes, None]:
        if self._retry is not None:
            yield self._retry
        if self.finished:
            return
        pending: asyncio.Future[Item | None] | None = None
        beat: asyncio.Future[None] | None = None
        try:
            while True:
                pending = pending or asyncio.ensure_future(self._items.next())
                if self._heartbeat is not None:
                    beat = beat or asyncio.ensure_future(self._clock.sleep(self._heartbeat))
                await asyncio.wait(
                    {pending} if beat is None else {pending, beat},
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not pending.done():
                    beat = None
                    yield format_comment()
                    continue
                item, pending = pending.result(), None
                if item is None:
                    return
                chunk = self._render(item)
                if chunk is None:
                    continue  # already seen: the silence since the last event goes on
                await _cancel(beat)  # an event restarts the silence
                beat = None
                yield chunk
                if isinstance(item, Closed):
                    return
        finally:
            await _cancel(pending)
            await _cancel(beat)

    def _render(self, item: Item) -> bytes | None:
        """The event for ``item``, or ``None`` if the browser has seen it."""
        if isinstance(item, Closed):
            return format_event("error", item.error.to_dict())
        if isinstance(item, Progress):
            key, pos, name = _ids.task_key(item.ref), _ids.position(item.update), "progress"
            data = item.update.to_dict()
        else:
            assert isinstance(item, Result)  # noqa: S101 - the third kind of item
            key, pos, name = _ids.task_key(item.outcome.ref), _ids.DELIVERED, "result"
            data = item.outcome.to_dict()
        if pos <= self._seen.get(key, 0):
            return None
        self._seen[key] = pos
        return format_event(name, data, event_id=_ids.encode(self._seen))


async def _cancel(future: asyncio.Future[Any] | None) -> None:
    """Cancel ``future`` (if running) and wait until it has stopped."""
    if future is not None and not future.done():
        future.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await future
