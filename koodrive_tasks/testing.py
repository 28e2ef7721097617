"""Test support: a virtual clock for the client and the emulator, and what the plugin needs.

Pass one :class:`VirtualClock` to both ``KooDriveClient(clock=...)`` and
``Emulator(clock=...)`` and waits, backoff, deadlines and task life cycles run in
zero real time::

    clock = VirtualClock()
    async with Emulator(clock=clock) as emu, KooDriveClient(emu.url, ..., clock=clock) as kd:
        url = await kd.wait_for_task("share-1", emu.add_task())   # an hour-long task, instantly

The pytest plugin (``koodrive_clock``, ``koodrive_emulator``, ``koodrive_client``)
wires exactly this.

:func:`parse_task_detail` reads a task-detail answer exactly as the client does (and
:func:`parse_job_detail` a batch job's), for tests of code that produces KooDrive JSON
(a fake server, a webhook relay).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from . import _wire
from ._models import JobInfo, TaskInfo
from .exceptions import InvalidArgumentError

__all__ = ["VirtualClock", "parse_job_detail", "parse_task_detail", "takes_shortcut"]

# The loop must look idle this many rounds in a row before time jumps: a callback that
# schedules another (a chain of call_soon) is still work in progress, not idleness.
_IDLE_ROUNDS = 3


class _VirtualTimer:
    """A callback due at a virtual time; ``done()`` once it ran or was cancelled."""

    __slots__ = ("_callback", "_done")

    def __init__(self, callback: Callable[[], object]) -> None:
        self._callback = callback
        self._done = False

    def cancel(self) -> None:
        self._done = True

    def done(self) -> bool:
        return self._done

    def set_result(self, _: None) -> None:
        # Like the event loop's own timers: due callbacks run from the ready queue.
        self._done = True
        asyncio.get_running_loop().call_soon(self._callback)


class VirtualClock:
    """A :class:`~koodrive_tasks.Clock` whose sleeps take no real time.

    With ``autojump`` (the default) time jumps to the earliest sleeper's wake-up once
    the event loop has nothing else ready to run, the way trio's autojump clock does;
    without it, time moves only when :meth:`advance` is called. Real I/O still takes
    real time: a request in flight does not stop virtual time from moving for others.

    Args:
        start: The initial monotonic reading.
        wall_start: The wall-clock time at ``start`` (aware, UTC).
        autojump: Jump ahead whenever the loop is idle.

    Attributes:
        sleeps: How many times :meth:`sleep` was called (tests count backoff steps).
    """

    def __init__(
        self,
        start: float = 0.0,
        wall_start: datetime = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc),
        *,
        autojump: bool = True,
    ) -> None:
        if wall_start.tzinfo is None:
            raise InvalidArgumentError("wall_start must be an aware datetime (UTC)")
        self._now = start
        self._start = start
        self._wall_start = wall_start
        self._autojump = autojump
        self._sleepers: list[tuple[float, int, asyncio.Future[None] | _VirtualTimer]] = []
        self._seq = itertools.count()
        self._tick_scheduled = False
        self._idle = 0
        self.sleeps = 0

    def __repr__(self) -> str:
        return f"<VirtualClock t={self._now:g} sleepers={len(self._sleepers)}>"

    def monotonic(self) -> float:
        """Virtual seconds."""
        return self._now

    def now(self) -> datetime:
        """Virtual wall-clock time (aware, UTC)."""
        return self._wall_start + timedelta(seconds=self._now - self._start)

    def advance(self, seconds: float) -> None:
        """Move time forward by hand, waking every sleeper that is due.

        Raises:
            InvalidArgumentError: If ``seconds`` is negative: a monotonic clock never
                goes back.
        """
        if not seconds >= 0:
            raise InvalidArgumentError(f"a clock cannot go back (advance({seconds!r}))")
        self._now += seconds
        self._wake_due()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of virtual time."""
        self.sleeps += 1
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        self._schedule_tick(loop)
        await future

    def call_later(self, delay: float, callback: Callable[[], object]) -> _VirtualTimer:
        """Run ``callback`` after ``delay`` virtual seconds."""
        timer = _VirtualTimer(callback)
        loop = asyncio.get_running_loop()
        if delay <= 0:
            timer.set_result(None)
            return timer
        heapq.heappush(self._sleepers, (self._now + delay, next(self._seq), timer))
        self._schedule_tick(loop)
        return timer

    def _schedule_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._autojump and not self._tick_scheduled:
            self._tick_scheduled = True
            loop.call_soon(self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._tick_scheduled = False
        while self._sleepers and self._sleepers[0][2].done():  # cancelled sleeps
            heapq.heappop(self._sleepers)
        if not self._sleepers:
            return
        # asyncio offers no public "is anything ready?": the ready queue is read directly.
        ready = getattr(loop, "_ready", None)
        if ready:  # others can still run: let them, and look again after
            self._idle = 0
            self._schedule_tick(loop)
            return
        self._idle += 1
        if self._idle < _IDLE_ROUNDS:
            self._schedule_tick(loop)
            return
        self._idle = 0
        self._now = max(self._now, self._sleepers[0][0])
        self._wake_due()
        if self._sleepers:
            self._schedule_tick(loop)

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)


def parse_task_detail(payload: object, *, task_id: str, shortcut: bool = True) -> TaskInfo:
    """A successful task-detail answer (decoded JSON) as the client reads it.

    The usual answer is built by a shortcut; ``shortcut=False`` sends every answer
    through the full, validating converter instead. Both give the same result or the
    same error on every input (the project's property tests check this).

    Raises:
        ProtocolError: The answer does not follow the API, or describes another task.
    """
    return _wire.parse_task_detail(payload, task_id=task_id, shortcut=shortcut)


def takes_shortcut(payload: object, *, task_id: str) -> bool:
    """Whether the client reads this answer through its shortcut for usual answers."""
    return _wire.takes_shortcut(payload, task_id=task_id)


def parse_job_detail(payload: object, *, job_id: str) -> JobInfo:
    """A successful batch-job detail answer (decoded JSON) as the client reads it.

    Raises:
        ProtocolError: The answer does not follow the API, or describes another job.
    """
    return _wire.parse_job_detail(payload, job_id=job_id)
