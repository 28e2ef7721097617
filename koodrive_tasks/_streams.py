"""One stream of polls per task, shared by every wait on that task.

A stream is driven by timers on the client's clock, not by a task of its own.
Between polls it is one timer handle; when a poll is due it books a slot with the
client's scheduler (rate limit, throttling pause), and when the slot comes it sends
the request in a short-lived task that ends with the answer. Every changed
observation goes to every subscriber: a future for a wait awaited by a coroutine,
a callback for a wait inside a batch. So an idle wait costs a few small objects
rather than a chain of suspended coroutines, and when the last wait on a task
leaves, its timers and its request are cancelled: nothing is left running.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import _wire
from ._clock import Timer, call_later
from ._models import TaskInfo, TaskStatus
from ._policy import PollPlan, PollPolicy
from ._wire import TASK_DETAIL_PATH
from .exceptions import KooDriveError, TaskStalledError

if TYPE_CHECKING:
    from ._client import KooDriveClient

logger = logging.getLogger("koodrive_tasks")

StreamKey = tuple[str, str, str | None]
_FAILURES_BEFORE_WARNING = 3


class DeadlineReached(Exception):  # noqa: N818 - a signal inside the package, never raised to users
    """A subscriber's deadline passed; its waiter turns this into ``WaitTimeoutError``."""


class Subscriber:
    """One wait's place in a stream: its deadline and the observations it has not taken.

    It is told of news by ``listener`` when it has one (a batch), else by resolving
    ``wakeup`` while a coroutine awaits :meth:`PollStream.next`. A subscriber with
    neither is not listening now (an ``async for`` consumer busy elsewhere).
    """

    __slots__ = ("deadline", "expired", "listener", "pending", "wakeup")

    def __init__(self, deadline: float | None, listener: Callable[[], None] | None) -> None:
        self.deadline = deadline
        self.listener = listener
        # A list, not a deque: it holds one or two items, and an empty deque costs 760 B.
        self.pending: list[TaskInfo] = []
        self.wakeup: asyncio.Future[None] | None = None
        self.expired = False

    @property
    def listening(self) -> bool:
        return self.listener is not None or self.wakeup is not None

    def wake(self) -> None:
        if self.listener is not None:
            self.listener()
        elif self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)


class State(enum.Enum):
    """Where a stream is in its poll cycle."""

    IDLE = "the timer is set for the next poll (or the stall limit)"
    PAUSED = "a poll is due but no wait is listening: it is sent when one listens again"
    BOOKED = "a slot is booked with the scheduler; the timer is set for it"
    QUEUED = "the slot has come; max_in_flight requests run, this one is next in line"
    IN_FLIGHT = "the request is out"
    ENDED = "no more polls: the task ended, or polling failed for good"
    CLOSED = "nobody waits any more"


class PollStream:
    """The polls of one task and what they observed."""

    __slots__ = (
        "_client",
        "_query",
        "_registry",
        "_secret",
        "booked_epoch",
        "changed_at",
        "crash",
        "deadline_at",
        "deadline_timer",
        "failures",
        "fatal",
        "key",
        "last_error",
        "latest",
        "next_poll_at",
        "plan",
        "policy",
        "request",
        "request_deadline",
        "seen_running_at",
        "state",
        "subscribers",
        "timer",
    )

    def __init__(
        self,
        registry: PollStreams,
        key: StreamKey,
        client: KooDriveClient,
        policy: PollPolicy,
    ) -> None:
        self._registry = registry
        self.key = key
        self._client = client
        self.policy = policy
        share_id, task_id, kdstoken = key
        self._query = _wire.detail_query(share_id, task_id, kdstoken)  # sent every poll
        self._secret = (kdstoken,) if kdstoken else ()
        self.subscribers: list[Subscriber] = []
        self.latest: TaskInfo | None = None
        self.last_error: KooDriveError | None = None
        self.fatal: KooDriveError | None = None
        self.crash: Exception | None = None  # a bug met while polling, re-raised to the waits
        self.next_poll_at = -math.inf
        self.failures = 0
        self.seen_running_at: float | None = None
        self.changed_at: float | None = None
        self.plan = PollPlan(policy)
        self.state = State.IDLE
        self.timer: Timer | None = None  # IDLE: the next poll or stall limit; BOOKED: the slot
        self.booked_epoch = 0  # the scheduler's pause count when the slot was booked
        self.request: asyncio.Task[TaskInfo] | None = None
        self.request_deadline: float | None = None  # the request's own timeout stops there
        # The earliest deadline of the waits, on a timer of its own so that it is kept
        # in every state. Not while the request is out for deadlines it cuts off itself:
        # a virtual clock would otherwise jump to them while real I/O is pending.
        self.deadline_timer: Timer | None = None
        self.deadline_at = math.inf

    @property
    def task_id(self) -> str:
        return self.key[1]

    @property
    def done(self) -> bool:
        return self.state is State.ENDED or self.state is State.CLOSED

    # --- subscribers -------------------------------------------------------------------

    def subscribe(
        self, deadline: float | None, listener: Callable[[], None] | None = None
    ) -> Subscriber:
        sub = Subscriber(deadline, listener)
        if self.latest is not None:
            sub.pending.append(self.latest)  # a late joiner's first observation
        self.subscribers.append(sub)
        if deadline is not None and deadline < self.deadline_at:
            self._arm_deadline()
        if listener is not None:
            self._resume()
        return sub

    def unsubscribe(self, sub: Subscriber) -> asyncio.Task[TaskInfo] | None:
        """``sub`` leaves; the last one to leave closes the stream.

        Returns:
            The request this cancelled, if any, for a caller that wants to await its end.
        """
        sub.listener = None
        if sub in self.subscribers:
            self.subscribers.remove(sub)
        if not self.subscribers:
            return self.close()
        return None

    def take(self, sub: Subscriber) -> TaskInfo | None:
        """``sub``'s next changed observation, or ``None`` when there is none yet.

        Raises:
            DeadlineReached: When ``sub``'s deadline has passed.
            KooDriveError: A non-retryable error met by the stream.
        """
        if sub.pending:
            return sub.pending.pop(0)
        if self.crash is not None:
            raise self.crash
        if self.fatal is not None:
            raise self.fatal
        if sub.expired or (
            sub.deadline is not None and self._client.clock.monotonic() >= sub.deadline
        ):
            raise DeadlineReached
        return None

    async def next(self, sub: Subscriber) -> TaskInfo:
        """Wait for ``sub``'s next changed observation (as :meth:`take`, but waiting)."""
        while (info := self.take(sub)) is None:
            sub.wakeup = asyncio.get_running_loop().create_future()
            self._resume()
            try:
                await sub.wakeup
            finally:
                sub.wakeup = None
        return info

    def _wake_all(self) -> None:
        # A copy: a listener may leave the stream while it is told.
        for sub in tuple(self.subscribers):
            sub.wake()

    # --- deadlines ---------------------------------------------------------------------

    def _arm_deadline(self) -> None:
        if self.deadline_timer is not None:
            self.deadline_timer.cancel()
            self.deadline_timer = None
        self.deadline_at = math.inf
        if self.done:
            return
        cutoff = self.request_deadline if self.state is State.IN_FLIGHT else None
        upcoming = [
            sub.deadline
            for sub in self.subscribers
            if sub.deadline is not None
            and not sub.expired
            and (cutoff is None or sub.deadline < cutoff)
        ]
        if upcoming:
            clock = self._client.clock
            self.deadline_at = min(upcoming)
            self.deadline_timer = call_later(
                clock, self.deadline_at - clock.monotonic(), self._on_deadline
            )

    def _on_deadline(self) -> None:
        self.deadline_timer = None
        self.deadline_at = math.inf
        self._guarded(self._expire_and_rearm)

    def _expire_and_rearm(self) -> None:
        now = self._client.clock.monotonic()
        for sub in tuple(self.subscribers):
            if sub.deadline is not None and not sub.expired and sub.deadline <= now:
                sub.expired = True
                if sub.listening:
                    sub.wake()  # it raises DeadlineReached and leaves
                else:
                    # Nobody is there to hear it (an `async for` left with `break`): leave
                    # for it, so that the stream does not live on for it. Its waiter still
                    # raises WaitTimeoutError if it is ever asked again.
                    self.unsubscribe(sub)
        self._arm_deadline()

    def _earliest_deadline(self, now: float) -> float | None:
        """The earliest deadline still ahead among the waits."""
        upcoming = [
            sub.deadline
            for sub in self.subscribers
            if sub.deadline is not None and sub.deadline > now
        ]
        return min(upcoming) if upcoming else None

    # --- the poll cycle ----------------------------------------------------------------

    def start(self, first_poll_at: float | None = None) -> None:
        """Schedule the first poll: now, or at ``first_poll_at``."""
        if first_poll_at is not None:
            self.next_poll_at = first_poll_at
        self._arm_poll()

    def _arm_poll(self) -> None:
        """IDLE: set the timer for the next poll, or the stall limit if sooner."""
        if self.done:
            return
        self.state = State.IDLE
        clock = self._client.clock
        when = min(self.next_poll_at, self._stall_at())
        self.timer = call_later(clock, when - clock.monotonic(), self._on_poll_timer)

    def _resume(self) -> None:
        """A wait listens again: send the poll that was due meanwhile."""
        if self.state is State.PAUSED:
            self._arm_poll()

    def _on_poll_timer(self) -> None:
        self.timer = None
        if self.state is State.IDLE:
            self._guarded(self._poll_due)

    def _poll_due(self) -> None:
        now = self._client.clock.monotonic()
        if now >= self._stall_at():
            self._fail(self._stalled(now))
        elif now < self.next_poll_at:
            self._arm_poll()  # a timer may ring a hair early
        elif not any(sub.listening for sub in self.subscribers):
            # Nobody listens (an `async for` consumer busy elsewhere, or one that left the
            # loop): poll when someone does, rather than for nobody.
            self.state = State.PAUSED
        else:
            self._book(now)

    def _book(self, now: float) -> None:
        """Book the next request's slot with the client's scheduler."""
        scheduler = self._client._scheduler
        self.booked_epoch = scheduler.epoch
        # Booked even when the slot lies past a wait's deadline: that wait's own timer
        # ends it on time, and the slot serves the others (or is given back).
        send_at = scheduler.reserve(None)
        if send_at <= now:
            self._registry.send(self)
        else:
            self.state = State.BOOKED
            self.timer = call_later(self._client.clock, send_at - now, self._on_slot)

    def _on_slot(self) -> None:
        self.timer = None
        if self.state is State.BOOKED:
            self._guarded(self._slot_came)

    def _slot_came(self) -> None:
        now = self._client.clock.monotonic()
        if self._client._scheduler.paused_until > now:
            # Throttled while this waited for its slot: queue again behind the pause. The
            # old slot lay inside the pause and is void.
            self._book(now)
        else:
            self._registry.send(self)

    def send(self) -> None:
        """Send the request now (called by :class:`PollStreams` within its in-flight cap)."""
        now = self._client.clock.monotonic()
        self.state = State.IN_FLIGHT
        self.request_deadline = self._earliest_deadline(now)
        self.request = asyncio.get_running_loop().create_task(
            self._client._post(
                TASK_DETAIL_PATH,
                self._query.body,
                self._secret,
                self._query.operation,
                self._query.parse,
                deadline=self.request_deadline,
                admitted=True,
            ),
            name=f"koodrive-poll-{self.task_id}",
        )
        self.request.add_done_callback(self._on_response)
        self._arm_deadline()  # the request now cuts off the deadlines up to its own

    def _on_response(self, request: asyncio.Task[TaskInfo]) -> None:
        # A done callback, not code after the await: it runs even for a request
        # cancelled before it ever started, so the in-flight count never drifts.
        self._registry.request_done()
        if self.request is not request:
            return
        self.request = None
        if self.state is State.IN_FLIGHT:
            self._guarded(lambda: self._answered(request))

    def _answered(self, request: asyncio.Task[TaskInfo]) -> None:
        if request.cancelled():
            # Cancelled by someone else than this stream (a harness cancelling every
            # task): poll again rather than leave the waits without a poll to come.
            self.next_poll_at = self._client.clock.monotonic()
            self._arm_poll()
        else:
            error = request.exception()
            if error is None:
                self._observed(request.result())
            elif isinstance(error, KooDriveError):
                self._failed(error)
            else:
                raise error
        self._expire_and_rearm()  # deadlines the request cut off have passed by now

    def _observed(self, info: TaskInfo) -> None:
        clock = self._client.clock
        self.failures = 0
        previous, self.latest = self.latest, info
        now = clock.monotonic()
        if info.is_terminal:
            self.state = State.ENDED
            self._registry.discard(self)  # later waits on this task start a fresh stream
            self._stop()
            if self.seen_running_at is not None:
                self._client.stats.tasks_ended += 1
                self._client.stats.detection_lag_bound += now - self.seen_running_at
        else:
            self.seen_running_at = now
            delay = self.plan.observe(now, info.status is TaskStatus.PROCESSING, info.progress)
            self.next_poll_at = now + delay
            self._arm_poll()
        if previous is None or (previous.status, previous.progress) != (info.status, info.progress):
            self.changed_at = now
            logger.debug("task %s: %s, %d %%", self.task_id, info.status.name, info.progress)
            for sub in self.subscribers:
                sub.pending.append(info)
            self._wake_all()

    def _failed(self, error: KooDriveError) -> None:
        """A poll failed: retry a transient failure, end the stream on any other."""
        if not error.retryable:
            self._fail(error)
            return
        self.failures += 1
        self.last_error = error
        delay = self.policy.retry_delay(self.failures, getattr(error, "retry_after", None))
        self.next_poll_at = self._client.clock.monotonic() + delay
        self._client._retried(self.task_id, error, self.failures, delay)
        # Say it once, loudly, when failures persist: a wrong base URL or a network
        # outage should not stay silent until the deadline.
        log = logger.warning if self.failures == _FAILURES_BEFORE_WARNING else logger.info
        log(
            "task %s: poll %d failed in a row (%s: %s); retrying in %.1f s until the deadline",
            self.task_id,
            self.failures,
            type(error).__name__,
            error,
            delay,
        )
        self._arm_poll()

    def _stall_at(self) -> float:
        limit = self.policy.stall_timeout
        if limit is None or self.changed_at is None:
            return math.inf
        return self.changed_at + limit

    def _stalled(self, now: float) -> TaskStalledError:
        info = self.latest
        assert info is not None  # noqa: S101 - changed_at is set with the first observation
        assert self.changed_at is not None  # noqa: S101
        stalled_for = now - self.changed_at
        return TaskStalledError(
            f"task {self.task_id} made no progress for {stalled_for:g} s "
            f"({info.status.name.lower()} at {info.progress} %); it may still be running: "
            "check it in KooDrive or raise stall_timeout",
            task_id=self.task_id,
            timeout=self.policy.stall_timeout or 0.0,
            last_info=info,
            last_error=self.last_error,
            stalled_for=stalled_for,
        )

    # --- ending ------------------------------------------------------------------------

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run a step of the cycle from a timer or callback; a bug in it ends the stream."""
        try:
            step()
        except Exception as error:  # the waits must hear of it, not hang
            logger.exception("task %s: polling stopped by an internal error", self.task_id)
            self.crash = error
            self._end()

    def _fail(self, error: KooDriveError) -> None:
        """Polling is over for good: every wait gets ``error``."""
        self.fatal = error
        self._end()

    def _end(self) -> None:
        self._registry.discard(self)
        self._stop()
        self.state = State.ENDED
        self._wake_all()

    def close(self) -> asyncio.Task[TaskInfo] | None:
        """Nobody waits any more: stop polling.

        Returns:
            The request in flight, now cancelled, if there was one.
        """
        self._registry.discard(self)
        request = self._stop()
        self.state = State.CLOSED
        return request

    def _stop(self) -> asyncio.Task[TaskInfo] | None:
        """Cancel the timers, give back a slot booked and unused, cancel the request."""
        for timer in (self.timer, self.deadline_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.deadline_timer = None
        self.deadline_at = math.inf
        if self.state is State.BOOKED or self.state is State.QUEUED:
            self._client._scheduler.refund(self.booked_epoch)
        request, self.request = self.request, None
        if request is not None and request is not asyncio.current_task():
            request.cancel()
            return request
        return None


class PollStreams:
    """A client's live streams, by (share id, task id, kdstoken), and their requests.

    At most ``max_in_flight`` poll requests run at once; streams whose slot came
    while that many were in flight queue here, first come first served, rather than
    each holding a task that waits for the client's semaphore.
    """

    def __init__(self, max_in_flight: int) -> None:
        self._streams: dict[StreamKey, PollStream] = {}
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._queued: deque[PollStream] = deque()

    def __len__(self) -> int:
        return len(self._streams)

    def subscribe(
        self,
        client: KooDriveClient,
        key: StreamKey,
        policy: PollPolicy,
        deadline: float | None,
        resume_polls: int | None = None,
        listener: Callable[[], None] | None = None,
    ) -> tuple[PollStream, Subscriber]:
        """Join the task's stream, starting one if none is live.

        The first wait's policy drives a shared stream. A stream started for a resumed
        wait continues its backoff and spreads its first poll over the delay it had
        reached, so that a restarted worker does not poll every task at once.
        """
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = PollStream(self, key, client, policy)
            first_poll_at = None
            if resume_polls:
                stream.plan.polls = resume_polls
                spread = policy.poll_delay(resume_polls) * random.random()
                first_poll_at = client.clock.monotonic() + spread
            stream.start(first_poll_at)
        return stream, stream.subscribe(deadline, listener)

    def discard(self, stream: PollStream) -> None:
        if self._streams.get(stream.key) is stream:
            del self._streams[stream.key]

    def send(self, stream: PollStream) -> None:
        """``stream``'s slot has come: send its request now, or as soon as one ends."""
        if self._in_flight < self._max_in_flight:
            stream.send()
            self._in_flight += 1  # after: a send that raised left nothing in flight
        else:
            stream.state = State.QUEUED
            self._queued.append(stream)

    def request_done(self) -> None:
        self._in_flight -= 1
        while self._queued and self._in_flight < self._max_in_flight:
            stream = self._queued.popleft()
            if stream.state is State.QUEUED:  # else it closed or ended while queued
                # As when a booked slot comes: behind a pause that began meanwhile, it
                # books again; otherwise it is sent.
                stream._guarded(stream._slot_came)

    def close(self, error: KooDriveError) -> list[asyncio.Task[TaskInfo]]:
        """The client closes: every live stream ends with ``error``.

        Returns:
            The requests cancelled, for the caller to await.
        """
        cancelled = []
        for stream in list(self._streams.values()):
            request = stream.request
            stream._fail(error)
            if request is not None:
                cancelled.append(request)
        self._queued.clear()
        return cancelled
