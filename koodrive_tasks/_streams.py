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
    ``wakeup`` (a coroutine awaiting :meth:`PollStream.next`).
    """

    __slots__ = ("deadline", "listener", "pending", "wakeup")

    def __init__(self, deadline: float | None, listener: Callable[[], None] | None) -> None:
        self.deadline = deadline
        self.listener = listener
        # A list, not a deque: it holds one or two items, and an empty deque costs 760 B.
        self.pending: list[TaskInfo] = []
        self.wakeup: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self.listener is not None:
            self.listener()
        elif self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)


class PollStream:
    """The polls of one task and what they observed."""

    __slots__ = (
        "_body",
        "_client",
        "_registry",
        "_secret",
        "booked",
        "changed_at",
        "closed",
        "crash",
        "ended",
        "failures",
        "fatal",
        "key",
        "last_error",
        "latest",
        "next_poll_at",
        "plan",
        "policy",
        "request",
        "seen_running_at",
        "subscribers",
        "timer",
        "timer_at",
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
        self._body = _wire.task_detail_body(share_id, task_id, kdstoken)
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
        # One timer per stream: the next poll, the earliest deadline of its waits or the
        # stall limit, whichever comes first; or the slot booked for the next request.
        # None while a request is in flight: its own timeout is clipped to the deadline,
        # so the stream looks at the time again when it ends.
        self.timer: Timer | None = None
        self.timer_at = math.inf
        self.booked = False  # holds a scheduler slot not yet used
        self.request: asyncio.Task[None] | None = None
        self.ended = False  # no more polls: the task ended, or polling failed for good
        self.closed = False  # nobody waits any more

    @property
    def task_id(self) -> str:
        return self.key[1]

    # --- subscribers -------------------------------------------------------------------

    def subscribe(
        self, deadline: float | None, listener: Callable[[], None] | None = None
    ) -> Subscriber:
        sub = Subscriber(deadline, listener)
        if self.latest is not None:
            sub.pending.append(self.latest)  # a late joiner's first observation
        self.subscribers.append(sub)
        if (
            deadline is not None
            and deadline < self.timer_at
            and self.timer is not None
            and not self.booked
        ):
            self.timer.cancel()
            self._arm()
        return sub

    def unsubscribe(self, sub: Subscriber) -> asyncio.Task[None] | None:
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
        if sub.deadline is not None and self._client.clock.monotonic() >= sub.deadline:
            raise DeadlineReached
        return None

    async def next(self, sub: Subscriber) -> TaskInfo:
        """Wait for ``sub``'s next changed observation (as :meth:`take`, but waiting)."""
        while (info := self.take(sub)) is None:
            sub.wakeup = asyncio.get_running_loop().create_future()
            try:
                await sub.wakeup
            finally:
                sub.wakeup = None
        return info

    def _wake_all(self) -> None:
        # A copy: a listener may leave the stream while it is told.
        for sub in tuple(self.subscribers):
            sub.wake()

    # --- the poll cycle ----------------------------------------------------------------

    def start(self, first_poll_at: float | None = None) -> None:
        """Schedule the first poll: now, or at ``first_poll_at``."""
        if first_poll_at is not None:
            self.next_poll_at = first_poll_at
        self._arm()

    def _arm(self) -> None:
        """Set the timer for what comes next: a poll, a wait's deadline, the stall limit."""
        if self.closed or self.ended:
            return
        clock = self._client.clock
        now = clock.monotonic()
        deadline = self._earliest_deadline(after=now)
        when = min(self.next_poll_at, self._stall_at(), math.inf if deadline is None else deadline)
        self.timer_at = when
        self.timer = call_later(clock, when - now, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self.timer_at = math.inf
        if self.closed or self.ended:
            return
        try:
            now = self._client.clock.monotonic()
            self._expire(now)
            if self.closed or self._all_expired(now):
                return  # every wait reached its deadline: they are leaving
            if now >= self._stall_at():
                self._fail(self._stalled(now))
            elif now < self.next_poll_at:
                self._arm()  # a timer may ring a hair early
            else:
                self._book(now)
        except Exception as error:  # noqa: BLE001 - a bug: the waits must hear of it, not hang
            self._crashed(error)

    def _book(self, now: float) -> None:
        """Book the next request's slot with the client's scheduler."""
        try:
            send_at = self._client._scheduler.reserve(self._earliest_deadline(after=now))
        except KooDriveError as error:  # no slot before the deadline: like a failed poll
            self._failed(error)
            return
        if send_at <= now:
            self._registry.send(self)
            return
        self.booked = True
        self.timer_at = send_at
        self.timer = call_later(self._client.clock, send_at - now, self._on_slot)

    def _on_slot(self) -> None:
        self.timer = None
        self.timer_at = math.inf
        self.booked = False
        if self.closed or self.ended:
            return
        try:
            now = self._client.clock.monotonic()
            if self._client._scheduler.paused_until > now:
                # Throttled while this waited for its slot: queue again behind the pause.
                self._book(now)
            else:
                self._registry.send(self)
        except Exception as error:  # noqa: BLE001 - as in _on_timer
            self._crashed(error)

    async def poll(self) -> None:
        """Send one ``taskDetail`` request (run as a task by :class:`PollStreams`)."""
        result: TaskInfo | Exception
        try:
            result = await self._client._fetch_task(
                self.key[0],
                self.task_id,
                self._body,
                self._secret,
                deadline=self._earliest_deadline(after=self._client.clock.monotonic()),
                admitted=True,
            )
        except asyncio.CancelledError:
            if not self.closed:
                # Cancelled by someone else than this stream (a harness cancelling every
                # task): poll again rather than leave the waits without a poll to come.
                self.request = None
                self.next_poll_at = self._client.clock.monotonic()
                self._arm()
            raise
        except Exception as error:  # noqa: BLE001 - sorted out below, outside the request
            result = error
        finally:
            self.request = None
            self._registry.request_done()
        # The request is over: what follows may close the stream (its last wait leaves).
        try:
            if isinstance(result, TaskInfo):
                self._observed(result)
            elif isinstance(result, KooDriveError):
                self._failed(result)
            else:
                self._crashed(result)
        except Exception as error:  # noqa: BLE001 - as in _on_timer
            self._crashed(error)

    def _observed(self, info: TaskInfo) -> None:
        clock = self._client.clock
        self.failures = 0
        previous, self.latest = self.latest, info
        now = clock.monotonic()
        if info.is_terminal:
            self.ended = True
            self._registry.discard(self)  # later waits on this task start a fresh stream
            if self.seen_running_at is not None:
                self._client.stats.tasks_ended += 1
                self._client.stats.detection_lag_bound += now - self.seen_running_at
        else:
            self.seen_running_at = now
            delay = self.plan.observe(now, info.status is TaskStatus.PROCESSING, info.progress)
            self.next_poll_at = now + delay
        if previous is None or (previous.status, previous.progress) != (info.status, info.progress):
            self.changed_at = now
            logger.debug("task %s: %s, %d %%", self.task_id, info.status.name, info.progress)
            for sub in self.subscribers:
                sub.pending.append(info)
            self._wake_all()
        self._arm()

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
        self._arm()

    def _expire(self, now: float) -> None:
        """Tell the waits whose deadline has passed (each then leaves)."""
        for sub in tuple(self.subscribers):
            if sub.deadline is not None and sub.deadline <= now:
                sub.wake()

    def _earliest_deadline(self, after: float = -math.inf) -> float | None:
        """The earliest deadline of the waits, among those later than ``after``."""
        deadlines = [
            sub.deadline
            for sub in self.subscribers
            if sub.deadline is not None and sub.deadline > after
        ]
        return min(deadlines) if deadlines else None

    def _all_expired(self, now: float) -> bool:
        return all(sub.deadline is not None and sub.deadline <= now for sub in self.subscribers)

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

    def _fail(self, error: KooDriveError) -> None:
        """Polling is over for good: every wait gets ``error``."""
        self.fatal = error
        self._end()
        self._wake_all()

    def _crashed(self, error: Exception) -> None:
        logger.error("task %s: polling stopped by an internal error", self.task_id, exc_info=error)
        self.crash = error
        self._end()
        self._wake_all()

    def _end(self) -> None:
        self.ended = True
        self._registry.discard(self)
        self._stop()

    def close(self) -> asyncio.Task[None] | None:
        """Nobody waits any more: stop polling.

        Returns:
            The request in flight, now cancelled, if there was one.
        """
        self.closed = True
        self._registry.discard(self)
        return self._stop()

    def _stop(self) -> asyncio.Task[None] | None:
        """Cancel the timer, give back a booked slot, cancel a request in flight."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.booked:
            self.booked = False
            self._client._scheduler.refund()
        request = self.request
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
            self._launch(stream)
        else:
            self._queued.append(stream)

    def _launch(self, stream: PollStream) -> None:
        self._in_flight += 1
        stream.request = asyncio.get_running_loop().create_task(
            stream.poll(), name=f"koodrive-poll-{stream.task_id}"
        )

    def request_done(self) -> None:
        self._in_flight -= 1
        while self._queued and self._in_flight < self._max_in_flight:
            stream = self._queued.popleft()
            if not (stream.closed or stream.ended):
                self._launch(stream)

    def close(self, error: KooDriveError) -> list[asyncio.Task[None]]:
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
        return cancelled
