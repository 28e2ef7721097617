"""The fleet channel of one coordinator: a listener kept alive, and what it delivers.

One channel per namespace carries every task's updates and releases and every pause;
the coordinator keeps those of the tasks it was asked to watch. After a reconnection
it delivers each watched task's stored observation and lease holder again, since
messages published while it was away were lost (pub/sub keeps nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ._bounded import bounded, stop
from ._health import PROBE_FIRST, PROBE_MAX, Health
from ._listener import FleetListener
from ._models import FleetStats, FleetUpdate
from ._names import FINAL, JOINED, PAUSE, RELEASED, Names, parse_message

logger = logging.getLogger("koodrive_tasks")

UpdateCallback = Callable[[FleetUpdate], None]

KEEPALIVE = 5.0


class FleetChannel:
    """Reads the fleet channel while Redis answers; hands updates and pauses on.

    Args:
        client: The Redis client (its pool lends the pub/sub connection).
        names: The namespace's names.
        origin: The coordinator's id: its own messages are skipped.
        health: Told when the channel fails and Redis does not answer either.
        stats: Where deliveries and round trips are counted.
        timeout: Seconds a command may take.
        on_pause: Called with the seconds of a pause another process started.
        describe: ``"fleet coordinator (namespace …)"``, for log lines.
    """

    def __init__(
        self,
        client: Any,
        names: Names,
        *,
        origin: str,
        health: Health,
        stats: FleetStats,
        timeout: float,
        on_pause: Callable[[float], None],
        describe: Callable[[], str],
    ) -> None:
        self._client = client
        self._names = names
        self._origin = origin
        self._health = health
        self._stats = stats
        self._timeout = timeout
        self._on_pause = on_pause
        self._describe = describe
        self.subscriptions: dict[str, UpdateCallback] = {}
        """The callback of each watched task, by task id."""
        self.fleet_size = 1
        """Processes reading the channel when last counted (at least 1)."""
        self.reading = asyncio.Event()
        """Set while the channel is subscribed: no message published meanwhile is missed."""
        self._task = asyncio.get_running_loop().create_task(
            self._listen_forever(), name="koodrive-fleet-listener"
        )

    async def wait_reading(self) -> None:
        """Wait (at most two command timeouts) until the channel is read, if Redis answers."""
        if self._health.healthy and not self.reading.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.reading.wait(), self._timeout * 2)

    async def close(self) -> None:
        """Stop listening."""
        await stop(self._task)

    async def _listen_forever(self) -> None:
        resync = False
        failures = 0
        while True:
            await self._health.recovered.wait()
            listener = FleetListener(
                self._client,
                self._names.channel,
                on_message=self._dispatch,
                on_ready=self._resync if resync else self._count_fleet,
                on_tick=self._count_fleet,
                ready=self.reading,
                keepalive=KEEPALIVE,
                timeout=self._timeout,
            )
            try:
                await listener.run()
            except Exception as error:  # noqa: BLE001
                failures = 1 if listener.was_ready else failures + 1
                delay = min(PROBE_MAX, PROBE_FIRST * 2 ** (failures - 1))
                if not await self._health.answers():
                    self._health.fail(error)
                    continue
                # Only this connection failed (killed, evicted): decisions stay in Redis.
                logger.info(
                    "%s: the fleet channel's connection failed (%s); reconnecting in %.1f s",
                    self._describe(),
                    type(error).__name__,
                    delay,
                )
                await self._health.sleep(delay)
            resync = True

    async def _resync(self) -> None:
        """After a reconnection: count the fleet, deliver each watched task's latest."""
        await self._count_fleet()
        watched = list(self.subscriptions)
        if not watched:
            return
        updates = await read_stored(self._client, self._names, watched, self._timeout)
        self._stats.round_trips += 1 + (len(watched) - 1) // STORED_PER_ROUND_TRIP
        for tid, update in zip(watched, updates, strict=True):
            callback = self.subscriptions.get(tid)
            if callback is not None:
                # Nothing stored and no lease: nobody polls the task (a release may
                # have been missed meanwhile), which the listener needs to hear.
                _call(callback, update or FleetUpdate(b"", False, None, None))

    async def _count_fleet(self) -> None:
        """Count the processes reading the channel (``PUBSUB NUMSUB``).

        Only the fallback rate depends on it, so a server or proxy that refuses the
        command leaves the last count (on a cluster it counts one node's readers).
        """
        try:
            counts = await bounded(self._client.pubsub_numsub(self._names.channel), self._timeout)
        except Exception as error:  # noqa: BLE001 (a real outage shows on the channel itself)
            logger.debug("%s: cannot count the fleet: %r", self._describe(), error)
            return
        self._stats.round_trips += 1
        self.fleet_size = max(1, int(counts[0][1]) if counts else 1)

    def _dispatch(self, data: bytes) -> None:
        message = parse_message(data)
        if message is None or message.origin == self._origin:
            return
        if message.kind == PAUSE:
            self._stats.pauses_received += 1
            self._on_pause(message.number / 1_000_000)
            return
        if message.kind == JOINED:  # one message names every task a joiner listens to
            joined = FleetUpdate(b"", False, None, message.origin, joined=True)
            for tid in message.tid.split(","):
                heard = self.subscriptions.get(tid)
                if heard is not None:
                    _call(heard, joined)
            return
        callback = self.subscriptions.get(message.tid)
        if callback is None:
            return
        self._stats.updates_received += 1
        if message.kind == RELEASED:
            update = FleetUpdate(b"", False, None, None)
        else:
            final = message.kind == FINAL
            update = FleetUpdate(message.payload, final, message.number / 1000, message.origin)
        _call(callback, update)


STORED_PER_ROUND_TRIP = 500
"""Tasks whose stored observations one pipeline reads."""


async def read_stored(
    client: Any, names: Names, tids: list[str], timeout: float
) -> list[FleetUpdate | None]:
    """Each task's stored observation, its lease's holder and time left (``None``: none).

    One pipeline per :data:`STORED_PER_ROUND_TRIP` tasks, each bounded by ``timeout``.
    """
    updates: list[FleetUpdate | None] = []
    for start in range(0, len(tids), STORED_PER_ROUND_TRIP):
        chunk = tids[start : start + STORED_PER_ROUND_TRIP]
        async with client.pipeline(transaction=False) as pipe:
            for tid in chunk:
                pipe.get(names.latest(tid))
                pipe.get(names.lease(tid))
                pipe.pttl(names.lease(tid))
            answers = await bounded(pipe.execute(), timeout)
        updates.extend(
            stored_update(answers[i], answers[i + 1], answers[i + 2])
            for i in range(0, len(answers), 3)
        )
    return updates


def stored_update(stored: bytes | None, holder: bytes | None, left: int) -> FleetUpdate | None:
    """A stored observation (kind byte + payload) as an update, with its lease's holder.

    ``None`` when nothing is stored. No observation but a lease held: an update with
    an empty payload, so that a listener learns who polls the task.
    """
    who = None if holder is None else bytes(holder).decode(errors="replace")
    if not stored and who is None:
        return None
    expires = int(left) / 1000 if int(left) >= 0 else None
    if not stored:
        return FleetUpdate(b"", False, expires, who)
    return FleetUpdate(bytes(stored[1:]), stored[:1] == FINAL, expires, who)


def _call(callback: UpdateCallback, update: FleetUpdate) -> None:
    try:
        callback(update)
    except Exception:
        logger.exception("a fleet update callback raised; ignoring it")
