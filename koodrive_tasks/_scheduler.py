"""One scheduler per client: every request of every wait passes through it.

It caps requests in flight, limits the request rate (a token bucket in GCRA form:
one timestamp, O(1) per request, first come first served) and, when the server
throttles, pauses the whole client so that all waits back off together and then
come back spread over a window rather than all at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import Counter, deque
from collections.abc import Callable

import attrs

from ._clock import Clock, call_later
from ._policy import Random
from ._validate import at_least_one, fraction, positive_or_none
from .exceptions import RequestTimeoutError

logger = logging.getLogger("koodrive_tasks")


@attrs.frozen
class Limits:
    """How hard one client may press on the server.

    Attributes:
        max_in_flight: Requests in flight at once.
        rate: Sustained requests per second (``None``: unlimited).
        burst: Requests that may go at once after a quiet spell.
        pause_spread: After a throttling pause, waits resume spread over this fraction
            of the pause (at least one second), not all at the same instant.
        default_pause: Seconds to pause after a 429 that carries no ``Retry-After``.
    """

    max_in_flight: int = attrs.field(default=64, validator=at_least_one)
    rate: float | None = attrs.field(default=50.0, validator=positive_or_none)
    burst: int = attrs.field(default=50, validator=at_least_one)
    pause_spread: float = attrs.field(default=0.25, validator=fraction)
    default_pause: float = attrs.field(default=1.0, validator=positive_or_none)


@attrs.define
class ClientStats:
    """What a client has done, for dashboards and tests. Never holds a secret.

    Attributes:
        requests: HTTP requests sent (polls, creates, retries, auth refreshes).
        polls: ``taskDetail`` requests sent.
        retries: Transient failures that were retried.
        rate_limited: HTTP 429 answers.
        pauses: Client-wide pauses started by throttling.
        errors: Errors met, by class name.
        tasks_ended: Waits that saw their task end.
        detection_lag_bound: Sum over ended tasks of the time between the last poll
            that saw the task running and the poll that saw it end: an upper bound
            of how late the end was noticed.
        in_flight: Requests in flight now.
    """

    requests: int = 0
    polls: int = 0
    retries: int = 0
    rate_limited: int = 0
    pauses: int = 0
    errors: Counter[str] = attrs.field(factory=Counter)
    tasks_ended: int = 0
    detection_lag_bound: float = 0.0
    in_flight: int = 0

    @property
    def mean_detection_lag_bound(self) -> float | None:
        """Mean upper bound of the detection lag, or ``None`` before any task ended."""
        return self.detection_lag_bound / self.tasks_ended if self.tasks_ended else None


@attrs.frozen
class RequestEvent:
    """Passed to ``on_request`` after every HTTP request.

    Attributes:
        operation: What was attempted (``"query task …"``, ``"create share task"``).
        http_status: The answer's status, or ``None`` when none came.
        seconds: How long the request took (client clock).
        trace_id: The ``X-Traceid`` sent.
        error: The error's class name, or ``None`` on success.
    """

    operation: str
    http_status: int | None
    seconds: float
    trace_id: str
    error: str | None


@attrs.frozen
class RetryEvent:
    """Passed to ``on_retry`` whenever a transient failure is going to be retried.

    Attributes:
        task_id: The task being polled, or ``None`` for a create.
        error: The error's class name.
        attempt: Consecutive failures so far.
        delay: Seconds until the next attempt.
    """

    task_id: str | None
    error: str
    attempt: int
    delay: float


class RequestScheduler:
    """Admits requests under the client's :class:`Limits`."""

    def __init__(self, limits: Limits, clock: Clock, rand: Random = random.random) -> None:
        self.limits = limits
        self._clock = clock
        self._rand = rand
        self.in_flight = 0
        """Requests holding one of the ``max_in_flight`` places."""
        # Not an asyncio.Semaphore: its acquire() is a coroutine and walks its waiters
        # even when a place is free, on every request.
        self._entering: deque[asyncio.Future[None]] = deque()
        self._interval = 0.0 if limits.rate is None else 1.0 / limits.rate
        self._tolerance = (limits.burst - 1) * self._interval
        self._tat = -math.inf  # GCRA: the theoretical arrival time of the next request
        self.paused_until = -math.inf
        self._pause_length = 0.0
        self.epoch = 0
        """Pauses started so far: a slot booked before the latest pause is void."""

    def enter_now(self) -> bool:
        """Take a place among the ``max_in_flight`` if one is free and nobody queues for it."""
        if self.in_flight < self.limits.max_in_flight and not self._entering:
            self.in_flight += 1
            return True
        return False

    async def enter(self, deadline: float | None = None) -> None:
        """Take a place among the ``max_in_flight``, queueing first come first served.

        Raises:
            RequestTimeoutError: If no place came free before ``deadline``.
        """
        if self.enter_now():
            return
        place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._entering.append(place)
        timer = None
        if deadline is not None:

            def give_up() -> None:
                if not place.done():
                    place.set_exception(self._no_place())

            timer = call_later(self._clock, deadline - self._clock.monotonic(), give_up)
        try:
            await place  # leave() hands its place over: in_flight already counts it
        except BaseException:
            if place.done() and not place.cancelled() and place.exception() is None:
                self.leave()  # handed a place, then cancelled: pass it on
            elif place in self._entering:
                self._entering.remove(place)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def leave(self) -> None:
        """Give a place back, to the first still queueing."""
        self.in_flight -= 1
        while self._entering:
            place = self._entering.popleft()
            if not place.done():
                self.in_flight += 1
                place.set_result(None)
                return

    def reserve(self, deadline: float | None, now: float | None = None) -> float:
        """Book the earliest moment a request may be sent: after any pause, within the rate.

        The slot is taken at once (first come, first served); a caller that will not
        send after all gives it back with :meth:`refund`. A caller that reaches its
        slot while a pause began in the meantime books again: the old slot is void.

        Returns:
            The monotonic time to send at (now, or later).

        Raises:
            RequestTimeoutError: If that moment lies beyond ``deadline``.
        """
        if now is None:
            now = self._clock.monotonic()
        start = now
        if self.paused_until > now:
            window = max(1.0, self._pause_length * self.limits.pause_spread)
            start = self.paused_until + window * self._rand()
        if self._interval:
            tat = max(self._tat, start)
            start = max(start, tat - self._tolerance)
            if deadline is not None and start > deadline:
                raise self._no_time(start - now)
            self._tat = tat + self._interval
        elif deadline is not None and start > deadline:
            raise self._no_time(start - now)
        return start

    def refund(self, epoch: int) -> None:
        """Give back a slot booked by :meth:`reserve` (at ``epoch``) and not used.

        A slot booked before the latest pause is void already (the pause moved the
        rate's timeline past it): giving it back would hand out a slot twice.
        """
        if self._interval and epoch == self.epoch:
            self._tat -= self._interval

    async def admit(self, deadline: float | None) -> None:
        """Wait until a request may be sent (:meth:`reserve`, then :meth:`wait_for_slot`).

        Raises:
            RequestTimeoutError: If that moment lies beyond ``deadline``.
        """
        epoch = self.epoch
        await self.wait_for_slot(self.reserve(deadline), epoch, deadline)

    async def wait_for_slot(self, start: float, epoch: int, deadline: float | None) -> None:
        """Sleep until the slot booked at ``start`` (during ``epoch``) comes.

        Callers that reserve first only await this when the slot lies ahead, so a free
        slot costs no coroutine. Cancelled, the slot is given back.

        Raises:
            RequestTimeoutError: If a pause began meanwhile and leaves no slot before
                ``deadline``.
        """
        now = self._clock.monotonic()
        if start <= now:
            return
        try:
            await self._clock.sleep(start - now)
        except BaseException:
            self.refund(epoch)
            raise
        # A 429 may have paused the client while this request queued: then queue again
        # behind the pause. Its old slot lay inside the pause and is simply void.
        if self.paused_until > self._clock.monotonic():
            await self.admit(deadline)

    def _no_place(self) -> RequestTimeoutError:
        return RequestTimeoutError(
            f"no request can be sent before the deadline: all {self.limits.max_in_flight} "
            "places for requests in flight stayed taken (Limits.max_in_flight)"
        )

    @staticmethod
    def _no_time(wait: float) -> RequestTimeoutError:
        return RequestTimeoutError(
            f"no request can be sent before the deadline: the client must wait {wait:.1f} s "
            "for its rate limit or a throttling pause"
        )

    def pause(self, seconds: float) -> bool:
        """Pause every request of the client for ``seconds`` (a 429 was received).

        Returns:
            Whether this extended the pause (False when one already covers it).
        """
        until = self._clock.monotonic() + seconds
        if until <= self.paused_until:
            return False
        self.paused_until = until
        self._pause_length = seconds
        self.epoch += 1
        # No burst credit survives a pause: after it, requests come back at the rate,
        # not all at once. (Requests already queued re-queue when they wake into it.)
        self._tat = max(self._tat, until + self._tolerance)
        logger.info("throttled: pausing all requests for %.1f s", seconds)
        return True


def call_hook(
    hook: Callable[[RequestEvent], None] | Callable[[RetryEvent], None] | None, event: object
) -> None:
    """Call an observer; its failure is logged, never allowed to break a wait."""
    if hook is None:
        return
    try:
        hook(event)  # type: ignore[arg-type]
    except Exception:
        logger.exception("an on_request/on_retry hook raised; ignoring it")
