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
from typing import TYPE_CHECKING, Any, Protocol

from ._clock import Clock, Timer, call_later, reading
from ._limits import Limits
from .exceptions import RequestTimeoutError

if TYPE_CHECKING:
    from ._fleet import Coordinator

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

    __slots__ = ("_epoch", "_limiter", "_on_admit", "_state", "held", "lease", "retry_in")

    def __init__(
        self,
        limiter: LocalLimiter,
        on_admit: Callable[[Slot], object],
        state: _SlotState = _SlotState.QUEUED,
        epoch: int = 0,
        lease: Lease | None = None,
    ) -> None:
        self._limiter = limiter
        self._on_admit = on_admit
        self._state = state
        self._epoch = epoch
        self.lease = lease
        self.held = True
        """False when another process holds the task's lease: then it polls, not this one."""
        self.retry_in = 0.0
        """With ``held`` False: seconds until that process's lease lapses."""

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


class Lease:
    """A poll's claim on its task: in fleet mode one process polls each task.

    Attributes:
        key: The task, as the coordinator names it.
        hold_for: Seconds this process expects to hold it: the request and the delay
            to the next poll.
    """

    __slots__ = ("hold_for", "key")

    def __init__(self, key: str, hold_for: float) -> None:
        self.key = key
        self.hold_for = hold_for


def _admitted_at_once(_: Slot) -> None:
    """The callback of a slot admitted without queueing: nobody needs telling."""


_NO_SLOT: Any = None  # the local checks of a turn taken without queueing look at no slot


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

    def request(self, on_admit: Callable[[Slot], object], lease: Lease | None = None) -> Slot:
        """Queue a request; ``on_admit(slot)`` is called when it may be sent.

        ``on_admit`` may be called before this returns (a free turn costs no timer).
        It is called with a slot that is not admitted when the gate closes first, or
        when ``lease`` is given and another process holds it (``slot.held`` False).
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

    def request(self, on_admit: Callable[[Slot], object], lease: Lease | None = None) -> Slot:
        """Queue a request; ``on_admit(slot)`` is called when it may be sent (maybe at once).

        In one process every lease is this process's: ``lease`` matters to a fleet gate.
        """
        slot = Slot(self, on_admit, lease=lease)
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
        if refund and slot._epoch == self._epoch:
            self._refund()
        if self._queued:
            self._pump()

    def _refund(self) -> None:
        """Give back the rate's share of a turn that was admitted and not used."""
        if self._interval:
            self._tat -= self._interval

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
            wait = self._wait(now, slot)
            if wait > 0:
                if wait < math.inf:  # else an answer is awaited, and pumps again
                    self._arm(now + wait)
                return
            queue.popleft()
            self._queued -= 1
            self._in_flight += 1
            self._take(now)
            slot._admit(self._epoch)
        self._disarm()

    def _wait(self, now: float, head: Slot) -> float:
        """Seconds until ``head`` may go as far as the pause and the rate are concerned.

        ``math.inf``: not known yet (a fleet gate asks its coordinator; the answer pumps).
        """
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


class FleetLimiter(LocalLimiter):
    """The client's gate, with the rate and the 429 pause shared by a fleet's coordinator.

    The queue and the in-flight places stay in this process. The request at the head
    of the queue, once a place is free, books the fleet's next slot (one round trip; a
    poll claims its task's lease in the same one) and waits for the answer; a poll whose
    task another process holds leaves the queue with ``slot.held`` False. A pause, ours
    (then the coordinator pauses the fleet) or another process's, voids a slot booked
    before it.
    """

    def __init__(self, limits: Limits, clock: Clock, coordinator: Coordinator) -> None:
        super().__init__(limits, clock)
        self._coordinator = coordinator
        self._grant_at: float | None = None  # a booked fleet slot: when it may be used
        self._claimed: Slot | None = None  # the poll whose task's lease this process holds
        self._asking = False
        self._background: set[asyncio.Task[Any]] = set()
        coordinator.on_pause = self._paused_by_fleet

    def __repr__(self) -> str:
        return "<FleetLimiter" + super().__repr__()[len("<LocalLimiter") :]

    def admit_now(self) -> Slot | None:
        """A turn at once only when a fleet slot is already booked and due."""
        if self._grant_at is None or self._queued or self._closed:
            return None
        now = self._clock.monotonic()
        if self._grant_at > now or self._in_flight >= self._limits.max_in_flight:
            return None
        if super()._wait(now, _NO_SLOT) > 0:  # the local pause, or the pacing after it
            return None
        self._in_flight += 1
        self._take(now)
        return Slot(self, _admitted_at_once, _SlotState.ADMITTED, self._epoch)

    def _wait(self, now: float, head: Slot) -> float:
        local = super()._wait(now, head)  # the local pause, and the pacing after it
        if local > 0:
            return local
        if self._grant_at is not None and (head.lease is None or head is self._claimed):
            return max(0.0, self._grant_at - now)
        if not self._asking:
            self._asking = True
            self._spawn(self._ask(head))
        return math.inf

    def _take(self, now: float) -> None:
        self._grant_at = None
        self._claimed = None
        if now < self._paced_until:
            self._next_paced = max(self._next_paced, now) + self._pace

    async def _ask(self, head: Slot) -> None:
        """Book the fleet's next slot for ``head``; claim its task's lease if it is a poll."""
        epoch, limits, lease = self._epoch, self._limits, head.lease
        try:
            if lease is None:
                wait: float | None = await self._coordinator.reserve(limits.rate, limits.burst)
            elif self._grant_at is not None:  # a slot is booked already: the lease alone
                claim = await self._coordinator.claim(lease.key, lease.hold_for)
                wait = None
                if claim.held:
                    self._claimed = head
                else:
                    self._not_held(head, claim.expires_in)
            else:
                claim = await self._coordinator.claim_and_reserve(
                    lease.key, lease.hold_for, limits.rate, limits.burst
                )
                wait = claim.wait if claim.held else None
                if claim.held:
                    self._claimed = head
                else:
                    self._not_held(head, claim.expires_in)
        except Exception:  # the coordinator decides locally when Redis fails: this is a bug
            logger.exception("fleet mode: asking the coordinator failed; going on locally")
            wait = 0.0
        finally:
            self._asking = False
        if wait is not None and epoch == self._epoch:  # else a pause voided the slot
            self._grant_at = self._clock.monotonic() + wait
        if self._grant_at is not None and not self._queued:
            self._grant_at = None  # nobody left for it: give it back
            self._refund()
        if self._queued:
            self._pump()

    def _not_held(self, head: Slot, expires_in: float) -> None:
        """Another process polls ``head``'s task: its stream is told, and listens instead."""
        if head._state is not _SlotState.QUEUED:
            return
        head._state = _SlotState.DONE
        head.held = False
        head.retry_in = expires_in
        self._dequeued()
        head._on_admit(head)

    def _refund(self) -> None:
        self._spawn(self._coordinator.refund(self._limits.rate))

    def throttle(self, seconds: float) -> bool:
        """A 429 here: pause this process at once, and the fleet through the coordinator."""
        self._grant_at = None
        self._spawn(self._coordinator.pause(seconds))
        return super().throttle(seconds)

    def _paused_by_fleet(self, seconds: float) -> None:
        """Another process met a 429: pause here too (it told the coordinator itself)."""
        self._grant_at = None
        super().throttle(seconds)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def close(self, error: BaseException) -> None:
        """Stop admitting; the calls to the coordinator under way are cancelled."""
        super().close(error)
        for task in tuple(self._background):
            task.cancel()
