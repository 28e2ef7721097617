"""The one admission gate every request of a client passes: rate, throttling pause, places.

Requests queue in ONE first-come-first-served queue, whether a coroutine awaits its
turn (:meth:`LocalLimiter.acquire`) or a poll stream is called back
(:meth:`LocalLimiter.request`); one timer wakes the queue's head. A request is
admitted when three things hold at once:

- no throttling pause is on (a 429 pauses every request of the client);
- the rate allows it (GCRA: one theoretical arrival time, checked when the request is
  admitted, not when it queued, so timers that fire late cannot send a burst beyond
  ``burst``);
- one of the ``max_in_flight`` places is free.

An admitted request holds its place until its :class:`Slot` is released. A slot that
is cancelled before it was sent gives its place, and its share of the rate, back.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ._clock import Clock, Timer, call_later, reading
from ._limits import Limits
from .exceptions import RequestTimeoutError

logger = logging.getLogger("koodrive_tasks")


class _SlotState(enum.Enum):
    QUEUED = "queued"
    ADMITTED = "admitted"
    DONE = "done"


class Slot:
    """One request's turn at the gate: queued, then admitted, then done.

    The request is sent only once the slot is admitted; :meth:`release` after it was
    sent, :meth:`cancel` when it will not be sent (left the queue, or admitted but
    dropped). Both are idempotent.
    """

    __slots__ = ("_epoch", "_limiter", "_on_admit", "_state")

    def __init__(
        self,
        limiter: LocalLimiter,
        on_admit: Callable[[Slot], object],
        state: _SlotState = _SlotState.QUEUED,
        epoch: int = 0,
    ) -> None:
        self._limiter = limiter
        self._on_admit = on_admit
        self._state = state
        self._epoch = epoch

    def __repr__(self) -> str:
        return f"<Slot {self._state.value}>"

    @property
    def admitted(self) -> bool:
        """Whether the request may be sent now (and holds a place)."""
        return self._state is _SlotState.ADMITTED

    def release(self) -> None:
        """The request was sent and has ended: free its place for the next one."""
        if self._state is _SlotState.ADMITTED:
            self._state = _SlotState.DONE
            limiter = self._limiter
            limiter._in_flight -= 1
            if limiter._queued:
                limiter._pump()
        else:
            self.cancel()

    def cancel(self) -> None:
        """The request will not be sent: leave the queue, or give the place and rate back."""
        state, self._state = self._state, _SlotState.DONE
        if state is _SlotState.QUEUED:
            self._limiter._dequeued()
        elif state is _SlotState.ADMITTED:
            self._limiter._left(self, refund=True)

    def _admit(self, epoch: int) -> None:
        self._state = _SlotState.ADMITTED
        self._epoch = epoch
        self._on_admit(self)


def _admitted_at_once(_: Slot) -> None:
    """The callback of a slot admitted without queueing: nobody needs telling."""


class Limiter(Protocol):
    """The admission gate as the request path and the poll streams use it.

    :class:`LocalLimiter` is the in-process gate; a fleet coordinator provides one
    with the same methods whose rate and pause are shared by many processes.
    """

    @property
    def limits(self) -> Limits:
        """The limits it applies."""
        ...

    @property
    def in_flight(self) -> int:
        """Requests holding a place now."""
        ...

    @property
    def queued(self) -> int:
        """Requests waiting for their turn now."""
        ...

    def admit_now(self) -> Slot | None:
        """A turn at once when nothing stands in the way, else ``None`` (then queue)."""
        ...

    def request(self, on_admit: Callable[[Slot], object]) -> Slot:
        """Queue a request; ``on_admit(slot)`` is called when it may be sent.

        ``on_admit`` may be called before this returns (a free turn costs no timer).
        When the gate closes first, it is called with a slot that is not admitted.
        """
        ...

    async def acquire(self, deadline: float | None) -> Slot:
        """Wait for a turn; cancelled, the turn is given back.

        Raises:
            RequestTimeoutError: If no turn came before ``deadline``.
        """
        ...

    def throttle(self, seconds: float) -> bool:
        """The server throttled us: pause every request for ``seconds``.

        Returns:
            Whether this started or extended a pause.
        """
        ...

    def close(self, error: BaseException) -> None:
        """Stop admitting; coroutines still waiting for a turn get ``error``."""
        ...


class LocalLimiter:
    """The in-process gate: one queue, one timer, GCRA rate, pause, ``max_in_flight``.

    Args:
        limits: What to apply.
        clock: The client's clock.
    """

    def __init__(self, limits: Limits, clock: Clock) -> None:
        self._limits = limits
        self._clock = clock
        self._queue: deque[Slot] = deque()
        self._queued = 0  # slots in the queue still QUEUED (cancelled ones are skipped lazily)
        self._in_flight = 0
        self._interval = 0.0 if limits.rate is None else 1.0 / limits.rate
        self._tolerance = (limits.burst - 1) * self._interval
        self._tat = -math.inf  # GCRA: the theoretical arrival time of the next request
        self._paused_until = -math.inf
        self._epoch = 0  # pauses so far: a turn admitted before the latest is not refunded
        # After a pause, the requests that queued during it go out evenly over a window.
        self._spread_window = 0.0
        self._pace = 0.0
        self._paced_until = -math.inf
        self._next_paced = -math.inf
        self._timer: Timer | None = None
        self._timer_at = math.inf
        self._closed: BaseException | None = None

    def __repr__(self) -> str:
        now = reading(self._clock)
        parts = [
            f"rate={'unlimited' if self._limits.rate is None else f'{self._limits.rate:g}/s'}",
            f"in_flight={self._in_flight}/{self._limits.max_in_flight}",
            f"queued={self._queued}",
        ]
        if self._paused_until > now:
            parts.append(f"paused_for={self._paused_until - now:.3g}s")
        if self._timer is not None:
            parts.append(f"next_turn_in={max(0.0, self._timer_at - now):.3g}s")
        return f"<LocalLimiter {' '.join(parts)}>"

    @property
    def limits(self) -> Limits:
        """The limits it applies."""
        return self._limits

    @property
    def in_flight(self) -> int:
        """Requests holding a place now."""
        return self._in_flight

    @property
    def queued(self) -> int:
        """Requests waiting for their turn now."""
        return self._queued

    # --- queueing ------------------------------------------------------------------------

    def request(self, on_admit: Callable[[Slot], object]) -> Slot:
        """Queue a request; ``on_admit(slot)`` is called when it may be sent (maybe at once)."""
        slot = Slot(self, on_admit)
        if self._closed is not None:
            slot._state = _SlotState.DONE
            return slot
        self._queue.append(slot)
        self._queued += 1
        if self._queued == 1:
            self._pump()
        return slot

    def admit_now(self) -> Slot | None:
        """A turn now if nobody queues and the pause, the rate and a place allow it, else None.

        The usual case costs no future, callback or coroutine.
        """
        if self._queued or self._in_flight >= self._limits.max_in_flight or self._closed:
            return None
        now = self._clock.monotonic()
        if self._paused_until > now or self._spread_window or now < self._paced_until:
            return None  # right after a pause: the queue paces what follows
        if self._interval:
            if self._tat - self._tolerance > now:
                return None
            self._tat = max(self._tat, now) + self._interval
        self._in_flight += 1
        return Slot(self, _admitted_at_once, _SlotState.ADMITTED, self._epoch)

    async def acquire(self, deadline: float | None) -> Slot:
        """Wait for a turn (see :class:`Limiter`)."""
        slot = self.admit_now()
        if slot is not None:
            return slot
        if self._closed is not None:
            raise self._closed
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def admitted(_: Slot) -> None:
            if not waiter.done():
                waiter.set_result(None)

        slot = self.request(admitted)
        if slot.admitted:
            return slot
        timer = None
        if deadline is not None:

            def expire() -> None:
                if not waiter.done():
                    slot.cancel()
                    waiter.set_exception(self._too_late())

            timer = call_later(self._clock, deadline - self._clock.monotonic(), expire)
        try:
            await waiter
        except BaseException:
            slot.cancel()  # queued: leaves; admitted meanwhile: gives its turn back
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if self._closed is not None:
            slot.cancel()
            raise self._closed
        return slot

    def _dequeued(self) -> None:
        self._queued -= 1
        if self._queued == 0:
            self._queue.clear()  # only cancelled slots are left in it
            self._disarm()

    def _left(self, slot: Slot, *, refund: bool) -> None:
        self._in_flight -= 1
        if refund and self._interval and slot._epoch == self._epoch:
            self._tat -= self._interval
        if self._queued:
            self._pump()

    # --- admission -----------------------------------------------------------------------

    def _pump(self) -> None:
        """Admit from the head of the queue while everything allows it; else set the timer."""
        queue = self._queue
        while self._queued and self._closed is None:
            slot = queue[0]
            if slot._state is not _SlotState.QUEUED:
                queue.popleft()  # cancelled while queued
                continue
            if self._in_flight >= self._limits.max_in_flight:
                self._disarm()  # a release pumps again
                return
            now = self._clock.monotonic()
            wait = self._wait(now)
            if wait > 0:
                self._arm(now + wait)
                return
            queue.popleft()
            self._queued -= 1
            self._in_flight += 1
            self._take(now)
            slot._admit(self._epoch)
        self._disarm()

    def _wait(self, now: float) -> float:
        """Seconds until the head may go as far as the pause and the rate are concerned."""
        if self._paused_until > now:
            return self._paused_until - now
        if self._spread_window:
            # The first look after a pause: spread what queued during it.
            self._pace = self._spread_window / max(1, self._queued)
            self._paced_until = now + self._spread_window
            self._next_paced = now
            self._spread_window = 0.0
        wait = 0.0
        if self._interval:
            wait = self._tat - self._tolerance - now
        if now < self._paced_until:
            wait = max(wait, self._next_paced - now)
        return wait

    def _take(self, now: float) -> None:
        if self._interval:
            self._tat = max(self._tat, now) + self._interval
        if now < self._paced_until:
            self._next_paced = max(self._next_paced, now) + self._pace

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            if self._timer_at <= at:
                return  # an earlier wake-up is set; the pump then looks again
            self._timer.cancel()
        self._timer_at = at
        self._timer = call_later(self._clock, at - self._clock.monotonic(), self._ring)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = math.inf

    def _ring(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self._pump()

    # --- throttling ----------------------------------------------------------------------

    def throttle(self, seconds: float) -> bool:
        """Pause every request for ``seconds`` (a 429 came); True if this extended the pause."""
        now = self._clock.monotonic()
        until = now + seconds
        if until <= self._paused_until:
            return False
        self._paused_until = until
        self._epoch += 1
        # No burst credit survives a pause: afterwards requests go at the rate, not at once.
        self._tat = max(self._tat, until + self._tolerance)
        self._spread_window = max(1.0, seconds * self._limits.pause_spread)
        logger.info("throttled: pausing all requests for %.1f s", seconds)
        if self._queued:
            self._disarm()
            self._pump()
        return True

    def _too_late(self) -> RequestTimeoutError:
        now = self._clock.monotonic()
        if self._paused_until > now:
            why = "the server throttles this client (a pause after HTTP 429)"
        elif self._in_flight >= self._limits.max_in_flight:
            why = f"all {self._limits.max_in_flight} places for requests in flight stayed taken (Limits.max_in_flight)"
        else:
            why = "requests queued ahead of it under the rate limit (Limits.rate)"
        return RequestTimeoutError(f"no request could be sent before the deadline: {why}")

    def close(self, error: BaseException) -> None:
        """Stop admitting; coroutines still waiting for a turn get ``error``."""
        self._closed = error
        self._disarm()
        queue, self._queue = self._queue, deque()
        self._queued = 0
        for slot in queue:
            if slot._state is _SlotState.QUEUED:
                slot._state = _SlotState.DONE
                # Only a coroutine's turn is told: a stream's is cancelled by its stream.
                slot._on_admit(slot)
