"""The time the emulator reads: one injectable clock, so tests drive hours of task time instantly."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Protocol


class TimeSource(Protocol):
    """What the emulator reads of a :class:`koodrive_tasks.Clock`: it never sleeps on it."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock (task life cycles, token expiry, retention)."""
        ...

    def now(self) -> datetime:
        """The aware UTC wall-clock time (``X-Date`` checks, timestamps, link expiry)."""
        ...


class SystemClock:
    """Real time, readable with or without a running event loop (the emulator's default).

    Tasks may be added before the emulator serves, outside any loop, so this reads
    ``time.monotonic()`` rather than the loop's clock (the same clock for the default loop).
    """

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def now(self) -> datetime:
        """The system's UTC time."""
        return datetime.now(timezone.utc)
