"""The one seam through which the library reads time and sleeps.

Production uses the event loop's clock; tests inject a virtual clock so waits,
backoff and deadlines run in zero real time.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Time as the library sees it."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock (deadlines and delays)."""
        ...

    def now(self) -> datetime:
        """The aware UTC wall-clock time (``X-Date``, HTTP dates)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds``."""
        ...


class AsyncioClock:
    """The running event loop's clock and ``asyncio.sleep``."""

    def monotonic(self) -> float:
        """The loop's time."""
        return asyncio.get_running_loop().time()

    def now(self) -> datetime:
        """The system's UTC time."""
        return datetime.now(timezone.utc)

    # asyncio.sleep itself, not a coroutine wrapping it: one frame less per idle wait.
    sleep = staticmethod(asyncio.sleep)
