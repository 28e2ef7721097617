"""The gate a process uses alone while Redis is unreachable: the same GCRA, locally."""

from __future__ import annotations

import math


class LocalGate:
    """A GCRA and a pause in one process, with the fleet scripts' arithmetic.

    Times are the caller's monotonic seconds; rate and burst are the caller's share of
    the fleet's (see ``RedisCoordinator``'s ``fallback_rate``).
    """

    __slots__ = ("_paused_until", "_tat", "_tolerance")

    def __init__(self) -> None:
        self._tat = -math.inf
        self._paused_until = -math.inf
        self._tolerance = 0.0

    def reserve(self, now: float, rate: float | None, burst: int, max_wait: float | None) -> float:
        """Book the earliest slot; return the wait. A slot beyond ``max_wait`` is not booked."""
        start = max(now, self._paused_until)
        if rate is None:
            return start - now
        interval = 1.0 / rate
        self._tolerance = (burst - 1) * interval
        tat = max(self._tat, start)
        at = max(start, tat - self._tolerance)
        wait = at - now
        if max_wait is None or wait <= max_wait:
            self._tat = tat + interval
        return wait

    def pause(self, now: float, seconds: float) -> bool:
        """Pause for ``seconds`` unless a pause covers it already; resume at the rate."""
        until = now + seconds
        if until <= self._paused_until:
            return False
        self._paused_until = until
        self._tat = max(self._tat, until + self._tolerance)
        return True

    def refund(self, now: float, rate: float | None) -> bool:
        """Give one unused slot back, unless paused (a pause re-timed every slot)."""
        if rate is None or self._paused_until > now:
            return False
        back = max(now, self._tat - 1.0 / rate)
        if back >= self._tat:
            return False
        self._tat = back
        return True

    def paused_for(self, now: float) -> float:
        """Seconds left of the pause (0 when none)."""
        return max(0.0, self._paused_until - now)
