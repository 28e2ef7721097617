"""The process's one pub/sub connection to the fleet channel.

One channel per namespace carries every task's updates and every pause; each process
keeps the messages of the tasks it waits on. The channel's traffic is bounded by the
fleet's request rate (one update at most per poll), so filtering locally costs little
and needs no ``SUBSCRIBE`` per task, and a wait that subscribes misses nothing: the
channel is already being read.

redis-py's pub/sub object does not reliably reconnect by itself, so the listener
throws it away on any error and the coordinator starts a new one once Redis answers
again. A connection that goes silent is pinged; a ping left unanswered for one more
keepalive period counts as a failure (a half-open TCP connection never errors).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from ._bounded import bounded


class ListenerSilentError(ConnectionError):
    """Raised when the pub/sub connection answered neither messages nor a ping."""


class FleetListener:
    """Reads the fleet channel on one connection until it fails or is cancelled."""

    def __init__(
        self,
        client: Any,
        channel: str,
        *,
        on_message: Callable[[bytes], None],
        on_ready: Callable[[], Awaitable[None]],
        on_tick: Callable[[], Awaitable[None]],
        ready: asyncio.Event,
        keepalive: float,
        timeout: float,
    ) -> None:
        self._client = client
        self._channel = channel
        self._on_message = on_message
        self._on_ready = on_ready
        self._on_tick = on_tick
        self._keepalive = keepalive
        self._timeout = timeout  # bounds each command; a read waits keepalive + timeout
        self._ready = ready  # set while the channel is subscribed: no message is missed
        self.was_ready = False
        """Whether the channel was subscribed at some point of :meth:`run`."""

    async def run(self) -> None:
        """Subscribe, then read until an error (raised) or cancellation.

        Raises:
            Exception: Whatever the connection raised, or :class:`ListenerSilentError`.
        """
        pubsub = self._client.pubsub()
        try:
            await bounded(pubsub.subscribe(self._channel), self._timeout)
            await self._await_confirmation(pubsub)
            self._ready.set()
            self.was_ready = True
            await self._on_ready()
            await self._read(pubsub)
        finally:
            self._ready.clear()
            with contextlib.suppress(Exception):  # it is being dropped anyway
                await bounded(pubsub.aclose(), self._timeout)

    async def _await_confirmation(self, pubsub: Any) -> None:
        while True:
            message = await bounded(
                pubsub.get_message(timeout=self._keepalive), self._keepalive + self._timeout
            )
            if message is None:
                raise ListenerSilentError("Redis did not confirm the fleet subscription")
            if message.get("type") == "subscribe":
                return
            self._deliver(message)

    async def _read(self, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        pinged = False
        next_tick = loop.time() + self._keepalive
        while True:
            message = await bounded(
                pubsub.get_message(ignore_subscribe_messages=True, timeout=self._keepalive),
                self._keepalive + self._timeout,
            )
            if message is not None:
                pinged = False
                self._deliver(message)
            elif pinged:
                raise ListenerSilentError("the fleet channel's connection stopped answering")
            else:
                await bounded(pubsub.ping(), self._timeout)
                pinged = True
            if loop.time() >= next_tick:
                next_tick = loop.time() + self._keepalive
                await self._on_tick()

    def _deliver(self, message: dict[str, Any]) -> None:
        if message.get("type") == "message":
            self._on_message(message["data"])
