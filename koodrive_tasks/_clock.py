"""The one seam through which the library reads time, sleeps and sets timers.

Production uses the event loop's clock; tests inject a virtual clock so waits,
backoff and deadlines run in zero real time.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Time as the library sees it.

    A clock may also offer ``call_later(delay, callback)`` returning a handle with
    ``cancel()`` (both built-in clocks do); without it, timers are tasks that sleep.
    """

    def monotonic(self) -> float:
        """Seconds on a monotonic clock (deadlines and delays)."""
        ...

    def now(self) -> datetime:
        """The aware UTC wall-clock time (``X-Date``, HTTP dates)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds``."""
        ...


class Timer(Protocol):
    """A callback scheduled by :func:`call_later`."""

    def cancel(self) -> None:
        """Make sure the callback will not run (no effect once it ran)."""
        ...


class AsyncioClock:
    """The running event loop's clock and ``asyncio.sleep``."""

    def monotonic(self) -> float:
        """The loop's time."""
        return asyncio.get_running_loop().time()

    def now(self) -> datetime:
        """The system's UTC time."""
        return datetime.now(timezone.utc)

    sleep = staticmethod(asyncio.sleep)

    @staticmethod
    def call_later(delay: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` after ``delay`` seconds, from the event loop."""
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback)


class _SleepingTimer:
    """A timer for a clock that offers only ``sleep``: a task that sleeps, then calls."""

    __slots__ = ("_task",)

    def __init__(self, clock: Clock, delay: float, callback: Callable[[], object]) -> None:
        async def ring() -> None:
            await clock.sleep(delay)
            callback()

        self._task = asyncio.get_running_loop().create_task(ring(), name="koodrive-timer")

    def cancel(self) -> None:
        self._task.cancel()


def reading(clock: Clock) -> float:
    """``clock.monotonic()``, or NaN where it cannot be read (the loop's clock outside a loop).

    For reprs, which may be asked for anywhere.
    """
    try:
        return clock.monotonic()
    except RuntimeError:
        return math.nan


def call_later(clock: Clock, delay: float, callback: Callable[[], object]) -> Timer:
    """Run ``callback`` after ``delay`` seconds of ``clock``, from the event loop."""
    delay = max(0.0, delay)  # "overdue" comes as a negative or -inf delay: run it soon
    native: Callable[[float, Callable[[], object]], Timer] | None = getattr(
        clock, "call_later", None
    )
    if native is not None:
        return native(delay, callback)
    return _SleepingTimer(clock, delay, callback)
