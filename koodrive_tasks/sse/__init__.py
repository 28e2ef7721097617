"""Server-Sent Events for waits and batches, framework-neutral; adapters for aiohttp and Starlette.

:class:`EventStream` turns a wait (``kd.wait_for_task``) or a batch (``kd.watch_many``,
``kd.as_completed``) into the bytes of a ``text/event-stream``: ``progress``,
``result`` and ``error`` events, ``id:`` fields for reconnection, keep-alive comments.
Serve it with :func:`koodrive_tasks.sse.aiohttp.sse_response` (aiohttp) or
:class:`koodrive_tasks.sse.starlette.EventStreamResponse` (Starlette, FastAPI), which
also end the waits when the browser leaves::

    async def events(request):
        waiter = kd.wait_for_task(share_id, request.match_info["task_id"])
        return await sse_response(request, waiter)

**Reconnection.** Each ``progress`` and ``result`` event carries an opaque id that
records how far the browser has seen every task of the stream. A browser's
``EventSource`` sends the last one back as ``Last-Event-ID`` when it reconnects (after
a network failure or a server restart); the new stream skips every observation not
past it, so the browser sees no duplicate and never goes back, and a task whose
result was delivered gets no second one. When every result was delivered, the
adapters answer ``204 No Content``, which stops the browser from reconnecting. The
``error`` event (the client was closed, e.g. the server is shutting down) carries no
id: the browser reconnects, after the ``retry:`` delay if one was sent, and resumes.
The server polls each task once more after a reconnection; the browser is not shown it
unless something changed.
"""

from ._format import HEADERS, format_comment, format_event, format_retry
from ._stream import DEFAULT_HEARTBEAT, EventStream

__all__ = [
    "DEFAULT_HEARTBEAT",
    "HEADERS",
    "EventStream",
    "format_comment",
    "format_event",
    "format_retry",
]
