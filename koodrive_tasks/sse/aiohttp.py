"""Serve an :class:`~koodrive_tasks.sse.EventStream` from an ``aiohttp.web`` handler.

::

    async def events(request: web.Request) -> web.StreamResponse:
        waiter = kd.wait_for_task(share_id, request.match_info["task_id"])
        return await sse_response(request, waiter)

The wait ends soon after the browser leaves, without ``handler_cancellation=True``
and without waiting for the next event to fail to write. For a clean shutdown, close
the client first: ``app.on_shutdown.append(lambda app: kd.close())`` ends every open
stream with an ``error`` event before the server waits for its handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Mapping

from aiohttp import web

from .. import Clock
from ..exceptions import InvalidArgumentError
from ._format import HEADERS
from ._sources import Source
from ._stream import DEFAULT_HEARTBEAT, EventStream

__all__ = ["DISCONNECT_CHECK", "sse_response"]

DISCONNECT_CHECK = 0.5
"""Seconds between two looks at whether the browser is still connected."""


async def sse_response(
    request: web.Request,
    source: Source,
    *,
    heartbeat: float | None = DEFAULT_HEARTBEAT,
    retry: float | None = None,
    clock: Clock | None = None,
    headers: Mapping[str, str] | None = None,
    disconnect_check: float = DISCONNECT_CHECK,
) -> web.StreamResponse:
    """Stream the events of a wait or a batch to the browser; return when they end.

    The ``Last-Event-ID`` request header resumes the stream (see
    :mod:`koodrive_tasks.sse`); when the browser has seen every result already, the
    answer is ``204 No Content`` and nothing is polled.

    aiohttp tells a handler that its client left only when a write fails, and the
    next write may be many seconds away; so the connection is looked at every
    ``disconnect_check`` seconds, and when it has closed the waits are cancelled
    (their polls stop) and the handler returns.

    Args:
        request: The request to answer.
        source: What to follow, as for :class:`~koodrive_tasks.sse.EventStream`.
        heartbeat: Seconds of silence before a keep-alive comment; ``None`` for none.
        retry: The reconnection delay to suggest to the browser, in seconds.
        clock: Times the heartbeats (tests pass a virtual clock).
        headers: More response headers (they may override the defaults).
        disconnect_check: Seconds between two looks at the connection.

    Returns:
        The finished response.

    Raises:
        InvalidArgumentError: As :class:`~koodrive_tasks.sse.EventStream`, or if
            ``disconnect_check`` is not a positive number.
    """
    if isinstance(disconnect_check, bool) or not (
        isinstance(disconnect_check, (int, float)) and 0 < disconnect_check < math.inf
    ):
        raise InvalidArgumentError(
            f"disconnect_check must be seconds > 0, not {disconnect_check!r}"
        )
    stream = EventStream(
        source,
        last_event_id=request.headers.get("Last-Event-ID"),
        heartbeat=heartbeat,
        retry=retry,
        clock=clock,
    )
    if stream.finished:
        await stream.aclose()
        return web.Response(status=204)
    response = web.StreamResponse(headers={**HEADERS, **(headers or {})})
    async with stream:
        await response.prepare(request)
        writer = asyncio.ensure_future(_write_all(stream, response))
        watcher = _DisconnectWatcher(request, writer, disconnect_check)
        try:
            await asyncio.wait({writer})
        finally:
            watcher.stop()
            if not writer.done():  # this handler was cancelled
                writer.cancel()
                await asyncio.wait({writer})
        if writer.cancelled() or watcher.gone:
            return response  # the browser left: nobody to finish the response for
        error = writer.exception()
        if isinstance(error, ConnectionError):
            return response  # it left between two looks, and a write found out
        if error is not None:
            raise error
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


async def _write_all(stream: EventStream, response: web.StreamResponse) -> None:
    async for chunk in stream:
        await response.write(chunk)


class _DisconnectWatcher:
    """Looks at the connection every ``interval`` seconds; cancels ``task`` once it closed."""

    def __init__(self, request: web.Request, task: asyncio.Future[None], interval: float) -> None:
        self.gone = False
        self._request = request
        self._task = task
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(interval, self._look)

    def _look(self) -> None:
        transport = self._request.transport  # None once the connection is lost
        if transport is None or transport.is_closing():
            self.gone = True
            self._handle = None
            self._task.cancel()
            return
        self._handle = self._loop.call_later(self._interval, self._look)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
