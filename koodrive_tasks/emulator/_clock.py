"""Clocks the emulator reads: injectable so tests drive hours of task time instantly."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def utc_now() -> datetime:
    """Return the real wall-clock time, aware and in UTC (the default ``wall_clock``)."""
    return datetime.now(timezone.utc)


class ManualClock:
    """A clock that only moves when told to.

    Call it for monotonic seconds (pass it as ``clock=``); call :meth:`wall` for the
    matching aware UTC datetime (pass ``clock.wall`` as ``wall_clock=`` when X-Date
    checks should follow virtual time too).

    Args:
        start: The initial monotonic reading, in seconds.
        wall_start: The wall-clock time at ``start``; the real current time by default.

    """

    def __init__(self, start: float = 0.0, wall_start: datetime | None = None) -> None:
        self._now = start
        self._start = start
        self._wall_start = wall_start if wall_start is not None else utc_now()

    def __call__(self) -> float:
        return self._now

    def wall(self) -> datetime:
        """Return the wall-clock time matching the current reading."""
        return self._wall_start + timedelta(seconds=self._now - self._start)

    def advance(self, seconds: float) -> None:
        """Move the clock forward.

        Raises:
            ValueError: If ``seconds`` is negative: a monotonic clock never goes back.

        """
        if seconds < 0:
            raise ValueError(f"a clock cannot go back (advance({seconds}))")
        self._now += seconds
