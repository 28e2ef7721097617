"""Whether Redis answers: one warning per outage, and a probe with backoff until it is back."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._bounded import bounded, stop
from ._models import FleetStats

if TYPE_CHECKING:
    from .._clock import Clock

logger = logging.getLogger("koodrive_tasks")

PROBE_FIRST = 0.5
PROBE_MAX = 30.0


class Health:
    """The coordinator's view of Redis: answering, or in an outage being probed.

    Args:
        client: The Redis client.
        timeout: Seconds a PING may take.
        stats: Where outages and round trips are counted.
        clock: The time source (``None``: ``time.monotonic`` and ``asyncio.sleep``).
        describe: ``"fleet coordinator (namespace …): Redis at …"``, for log lines.
        fallback: What the process does meanwhile, for the outage's warning.
    """

    def __init__(
        self,
        client: Any,
        *,
        timeout: float,
        stats: FleetStats,
        clock: Clock | None,
        describe: Callable[[], str],
        fallback: Callable[[], str],
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._stats = stats
        self._clock = clock
        self._describe = describe
        self._fallback = fallback
        self.healthy = True
        """Whether decisions are taken in Redis now."""
        self.recovered = asyncio.Event()
        """Set while healthy: the fleet channel's listener waits on it."""
        self.recovered.set()
        self.down_since = 0.0
        self._probe: asyncio.Task[None] | None = None
        self._closed = False

    def now(self) -> float:
        """Monotonic seconds of the coordinator's clock."""
        return self._clock.monotonic() if self._clock is not None else time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the coordinator's clock."""
        if self._clock is not None:
            await self._clock.sleep(seconds)
        else:
            await asyncio.sleep(seconds)

    def fail(self, error: BaseException) -> None:
        """Redis failed a call: warn (once per outage) and start probing."""
        if self._closed or not self.healthy:
            return
        self.healthy = False
        self.recovered.clear()
        self.down_since = self.now()
        self._stats.outages += 1
        logger.warning(
            "%s is unreachable or failing (%s: %s); deciding locally until Redis is back: %s",
            self._describe(),
            type(error).__name__,
            error,
            self._fallback(),
        )
        self._probe = asyncio.get_running_loop().create_task(
            self._probe_until_back(), name="koodrive-fleet-probe"
        )

    async def answers(self) -> bool:
        """Whether Redis answers a PING now (one round trip)."""
        try:
            await bounded(self._client.ping(), self._timeout)
        except Exception:  # noqa: BLE001 (any failure means: not answering)
            return False
        self._stats.round_trips += 1
        return True

    async def close(self) -> None:
        """Stop probing."""
        self._closed = True
        await stop(self._probe)

    async def _probe_until_back(self) -> None:
        """PING with capped, jittered exponential backoff until Redis answers."""
        delay = PROBE_FIRST
        while True:
            await self.sleep(delay * (0.5 + random.random()))
            if await self.answers():
                break
            delay = min(PROBE_MAX, delay * 2)
        self.healthy = True
        self.recovered.set()
        logger.warning(
            "%s answers again after %.1f s; fleet decisions resume",
            self._describe(),
            self.now() - self.down_since,
        )
