"""Serve an :class:`~koodrive_tasks.sse.EventStream` from Starlette or FastAPI.

Needs the ``starlette`` extra (``pip install 'koodrive-tasks[starlette]'``)::

    @app.get("/exports/{task_id}/events")
    async def events(task_id: str) -> EventStreamResponse:
        return EventStreamResponse(kd.wait_for_task(share_id, task_id))

The response reads ``Last-Event-ID`` itself, and ends the waits as soon as the server
reports ``http.disconnect``. For a clean shutdown under uvicorn, close the client
before uvicorn drains its connections (lifespan shutdown comes after): see the
README's "Web apps" section.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .. import Clock
from ._format import HEADERS
from ._sources import Source
from ._stream import DEFAULT_HEARTBEAT, EventStream

__all__ = ["EventStreamResponse"]


class EventStreamResponse(Response):
    """A ``text/event-stream`` response following a wait or a batch.

    Args:
        source: What to follow, as for :class:`~koodrive_tasks.sse.EventStream`.
        last_event_id: Where a reconnecting browser left off; by default the
            request's ``Last-Event-ID`` header.
        heartbeat: Seconds of silence before a keep-alive comment; ``None`` for none.
        retry: The reconnection delay to suggest to the browser, in seconds.
        clock: Times the heartbeats (tests pass a virtual clock).
        status_code: The status of a stream that has something to send (a browser
            that has seen every result gets ``204 No Content``).
        headers: More response headers (they may override the defaults).
        background: Run after the response has been sent, as with any Starlette
            response.

    Attributes:
        stream: The :class:`~koodrive_tasks.sse.EventStream` it sends.

    Raises:
        InvalidArgumentError: As :class:`~koodrive_tasks.sse.EventStream`.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        source: Source,
        *,
        last_event_id: str | None = None,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        retry: float | None = None,
        clock: Clock | None = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.stream = EventStream(
            source, last_event_id=last_event_id, heartbeat=heartbeat, retry=retry, clock=clock
        )
        self._reads_header = last_event_id is None
        self.status_code = status_code
        self.background = background
        self.init_headers({**HEADERS, **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the events until they end or the client disconnects (the ASGI call)."""
        stream = self.stream
        if self._reads_header:
            stream.resume_after(_header(scope, b"last-event-id"))
        async with stream:
            if stream.finished:
                await Response(status_code=204)(scope, receive, send)
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            sender = asyncio.ensure_future(_send_all(stream, send))
            # Servers announce a gone client as http.disconnect; without this listener
            # it would show only when a write fails, at the next event or heartbeat.
            listener = asyncio.ensure_future(_until_disconnect(receive))
            try:
                await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sender, listener):
                    task.cancel()
                await asyncio.wait({sender, listener})
            if not sender.cancelled():
                error = sender.exception()
                # ASGI 2.4 servers raise OSError from send() once the client is gone.
                if error is not None and not isinstance(error, OSError):
                    raise error
        if self.background is not None and not sender.cancelled() and sender.exception() is None:
            await self.background()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _send_all(stream: EventStream, send: Send) -> None:
    async for chunk in stream:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
