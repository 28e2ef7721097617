"""One stream of polls per task, shared by every wait on that task.

A stream is driven by timers on the client's clock, not by a task of its own.
Between polls it is one timer handle; when a poll is due it queues for a turn at the
client's gate (:mod:`._limiter`), and when its turn comes it sends the request in a
short-lived task that ends with the answer. Every changed observation goes to every
subscriber: a future for a wait awaited by a coroutine, a callback for a wait inside
a batch. When the last wait on a task leaves, its timers, its turn and its request
are cancelled: nothing is left running.

Invariants: a stream has at most one timer for its next poll, one turn at the gate
and one request at a time; its deadline timer tracks the earliest deadline of its
waits in every state, except deadlines that the request in flight cuts off itself.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import math
import random
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._clock import Timer, call_later, reading
from ._families import task_kind
from ._learning import DurationModel, TaskKind
from ._limiter import Slot
from ._models import Ref, TaskInfo, TaskStatus
from ._policy import PollPlan, PollPolicy
from ._transport import MIN_ATTEMPT, Request, Transport
from .exceptions import (
    ClientClosedError,
    KooDriveError,
    RequestTimeoutError,
    TaskStalledError,
    TransportError,
)

if TYPE_CHECKING:
    from ._fleet import Sharing

logger = logging.getLogger("koodrive_tasks")

_FAILURES_BEFORE_WARNING = 3
_CREATED_KEPT = 4096  # tasks created by this client and not waited for yet, remembered


class DeadlineReached(Exception):  # noqa: N818 - a signal inside the package, never raised to users
    """A subscriber's deadline passed; its wait turns this into ``WaitTimeoutError``."""


class Subscriber:
    """One wait's place in a stream: its deadline and the observations it has not taken.

    A wait *is* its subscriber (it subclasses this), so that a hundred thousand waits
    cost one object each here, not two. It is told of news by ``listener`` when it has
    one (a batch's, called with the subscriber), else by resolving ``wakeup`` while a
    coroutine awaits :meth:`PollStream.next`. A subscriber with neither is not
    listening now (an ``async for`` consumer busy elsewhere).
    """

    __slots__ = ("deadline", "expired", "listener", "pending", "wakeup")

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.listener: Callable[[Any], None] | None = None
        # Observations not taken yet: none most of the time, one or two at most.
        self.pending: list[TaskInfo] | None = None
        self.wakeup: asyncio.Future[None] | None = None
        self.expired = False

    @property
    def listening(self) -> bool:
        return self.listener is not None or self.wakeup is not None

    def wake(self) -> None:
        if self.listener is not None:
            self.listener(self)
        elif self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    def push(self, info: TaskInfo) -> None:
        if self.pending is None:
            self.pending = [info]
        else:
            self.pending.append(info)


class State(enum.Enum):
    """Where a stream is in its poll cycle."""

    IDLE = "idle"  # the timer is set for the next poll (or the stall limit)
    PAUSED = "paused"  # a poll is due but no wait listens: sent when one listens again
    QUEUED = "queued"  # waiting for its turn at the gate
    IN_FLIGHT = "in flight"  # the request is out
    ENDED = "ended"  # no more polls: the task ended, or polling failed for good
    CLOSED = "closed"  # nobody waits any more


class PollStream:
    """The polls of one task and what they observed."""

    __slots__ = (
        "_registry",
        "_request",
        "_sharing",
        "_transport",
        "changed_at",
        "crash",
        "deadline_at",
        "deadline_timer",
        "failures",
        "fatal",
        "holds_lease",
        "last_delay",
        "last_error",
        "latest",
        "lease_hold",
        "lease_less",
        "left_fleet",
        "next_poll_at",
        "plan",
        "policy",
        "ref",
        "request_deadline",
        "seen_running_at",
        "sending",
        "slot",
        "state",
        "subscribers",
        "timer",
    )

    def __init__(
        self,
        registry: PollStreams,
        ref: Ref,
        request: Request[TaskInfo],
        transport: Transport,
        policy: PollPolicy,
        plan: PollPlan,
    ) -> None:
        self._registry = registry
        self.ref = ref
        self._request = request  # built once, sent every poll
        self._transport = transport
        self.policy = policy
        self.subscribers: list[Subscriber] = []
        self.latest: TaskInfo | None = None
        self.last_error: KooDriveError | None = None
        self.fatal: KooDriveError | None = None
        self.crash: Exception | None = None  # a bug met while polling, re-raised to the waits
        self.next_poll_at = -math.inf
        self.failures = 0
        self.seen_running_at: float | None = None
        self.changed_at: float | None = None
        self.plan = plan
        self.state = State.IDLE
        self.timer: Timer | None = None  # IDLE: the next poll or the stall limit
        self.slot: Slot | None = None  # QUEUED and IN_FLIGHT: the turn at the gate
        self.sending: asyncio.Task[TaskInfo] | None = None
        self.request_deadline: float | None = None  # the request's own cutoff stops there
        self.deadline_timer: Timer | None = None
        self.deadline_at = math.inf
        # Fleet mode: whether this process holds the task's lease, for how long it
        # claimed it, and whether the next poll skips the lease (a final observation
        # another process shared without its per-file results).
        self._sharing = registry.sharing
        self.holds_lease = False
        self.lease_hold = 0.0
        self.lease_less = False
        self.left_fleet = False
        self.last_delay = policy.initial_delay

    def __repr__(self) -> str:
        parts = [
            f"task_id={self.ref.task_id!r}",
            self.state.value,
            f"waits={len(self.subscribers)}",
        ]
        parts.append(f"polls={self.plan.polls}")
        if self.state is State.IDLE and math.isfinite(self.next_poll_at):
            now = reading(self._transport.clock)
            parts.append(f"next_poll_in={max(0.0, self.next_poll_at - now):.3g}s")
        if self.failures:
            parts.append(f"failures={self.failures}")
        return f"<PollStream {' '.join(parts)}>"

    @property
    def task_id(self) -> str:
        return self.ref.task_id

    @property
    def done(self) -> bool:
        return self.state is State.ENDED or self.state is State.CLOSED

    @property
    def waiting_for_turn(self) -> bool:
        """Whether the next poll waits at the gate (rate, pause, ``max_in_flight``)."""
        return self.state is State.QUEUED

    # --- subscribers -------------------------------------------------------------------

    def subscribe(self, sub: Subscriber) -> None:
        """``sub`` joins, with its ``deadline`` and ``listener`` set."""
        sub.pending = None if self.latest is None else [self.latest]  # a late joiner's first
        sub.wakeup = None
        sub.expired = False
        self.subscribers.append(sub)
        if sub.deadline is not None and sub.deadline < self.deadline_at:
            self._arm_deadline()
        if sub.listener is not None:
            self._resume()

    def unsubscribe(self, sub: Subscriber) -> asyncio.Task[TaskInfo] | None:
        """``sub`` leaves; the last one to leave closes the stream.

        Returns:
            The request this cancelled, if any, for a caller that wants to await its end.
        """
        sub.listener = None
        sub.pending = None
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
        pending = sub.pending
        if pending:
            info = pending.pop(0)
            if not pending:
                sub.pending = None
            return info
        if self.crash is not None:
            raise self.crash
        if self.fatal is not None:
            raise self.fatal
        if sub.expired or (
            sub.deadline is not None and self._transport.clock.monotonic() >= sub.deadline
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
        # While the request is out, deadlines it cuts off itself are left to it: a
        # virtual clock would otherwise jump to them while real I/O is pending.
        cutoff = self.request_deadline if self.state is State.IN_FLIGHT else None
        upcoming = [
            sub.deadline
            for sub in self.subscribers
            if sub.deadline is not None
            and not sub.expired
            and (cutoff is None or sub.deadline < cutoff)
        ]
        if upcoming:
            clock = self._transport.clock
            self.deadline_at = min(upcoming)
            self.deadline_timer = call_later(
                clock, self.deadline_at - clock.monotonic(), self._on_deadline
            )

    def _on_deadline(self) -> None:
        self.deadline_timer = None
        self.deadline_at = math.inf
        self._guarded(self._expire_and_rearm)

    def _expire_and_rearm(self) -> None:
        now = self._transport.clock.monotonic()
        for sub in tuple(self.subscribers):
            if sub.deadline is not None and not sub.expired and sub.deadline <= now:
                sub.expired = True
                if sub.listening:
                    sub.wake()  # it raises DeadlineReached and leaves
                else:
                    # Nobody is there to hear it (an `async for` left with `break`): leave
                    # for it, so that the stream does not live on for it. Its wait still
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
        if self.timer is not None:  # fleet mode may re-time a stream that has one
            self.timer.cancel()
            self.timer = None
        clock = self._transport.clock
        when = min(self.next_poll_at, self._stall_at())
        if when < math.inf:  # else it listens to the fleet until told to poll
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
        now = self._transport.clock.monotonic()
        if now >= self._stall_at():
            self.fail(self._stalled(now))
        elif now < self.next_poll_at:
            self._arm_poll()  # a timer may ring a hair early
        elif not any(sub.listening for sub in self.subscribers):
            # Nobody listens (an `async for` consumer busy elsewhere, or one that left the
            # loop): poll when someone does, rather than for nobody.
            self.state = State.PAUSED
            if self._sharing is not None and self.holds_lease:
                self.holds_lease = False  # fleet mode: another process may poll meanwhile
                self._sharing.give_up(self)
        else:
            self.state = State.QUEUED
            lease = None
            if self._sharing is not None and not self.lease_less:
                lease = self._sharing.lease(self)
            slot = self._transport.limiter.request(self._on_turn, lease)
            if self.slot is None and self.state is State.QUEUED:
                self.slot = slot  # not admitted at once: its turn comes later

    def expected_delay(self) -> float:
        """The delay to the poll after the next, as far as it can be told now (a lease covers it)."""
        return self.last_delay

    def _on_turn(self, slot: Slot) -> None:
        """The gate let this poll go (or closed); maybe before ``request`` returned."""
        if self.state is not State.QUEUED or (self.slot is not None and self.slot is not slot):
            slot.cancel()  # closed or ended while queued
        elif slot.admitted:
            self.slot = slot
            self.holds_lease = slot.lease is not None
            self.lease_hold = 0.0 if slot.lease is None else slot.lease.hold_for
            self._guarded(self._send)
        elif not slot.held and self._sharing is not None:
            # Another process polls this task: listen to what it shares until it gives
            # the task up or dies (the fleet tells), then claim it again.
            self.slot = None
            self.holds_lease = False
            self.state = State.IDLE
            self._sharing.listen(self, slot.holder, slot.retry_in)

    # --- fleet mode: what the other processes share -------------------------------------

    def heard(self, info: TaskInfo, *, complete: bool) -> None:
        """Another process of the fleet polled this task and shares what it saw."""
        self._guarded(lambda: self._heard(info, complete=complete))

    def _heard(self, info: TaskInfo, *, complete: bool) -> None:
        if self.done or (self.latest is not None and _rank(info) < _rank(self.latest)):
            return  # old news, or nobody listens any more
        now = self._transport.clock.monotonic()
        if info.is_terminal and not complete:
            self.lease_less = True  # the per-file results did not fit: fetch them once
            self.poll_soon()
            return
        if not info.is_terminal:
            self.plan.observe(now, info.status is TaskStatus.PROCESSING, info.progress)
        self._seen(info, now, remote=True)

    def listen(self, retry_in: float | None) -> None:
        """Poll only in ``retry_in`` seconds, or (``None``) when :meth:`poll_soon` says so."""
        if self.done or self.state is not State.IDLE:
            return  # a poll of ours is under way: its answer schedules the next
        now = self._transport.clock.monotonic()
        self.next_poll_at = math.inf if retry_in is None else now + retry_in
        self._arm_poll()

    def poll_soon(self) -> None:
        """Nobody polls this task now (its holder gave it up or died): poll it, now."""
        if self.done or self.state is not State.IDLE or (self.holds_lease and not self.lease_less):
            return
        self.next_poll_at = self._transport.clock.monotonic()
        self._arm_poll()

    def _send(self) -> None:
        now = self._transport.clock.monotonic()
        self.state = State.IN_FLIGHT
        self.request_deadline = self._earliest_deadline(now)
        self.sending = asyncio.get_running_loop().create_task(
            self._transport.send(self._request, deadline=self.request_deadline, slot=self.slot),
            name=f"koodrive-poll-{self.task_id}",
        )
        self.sending.add_done_callback(self._on_response)
        self._arm_deadline()  # the request now cuts off the deadlines up to its own

    def _on_response(self, sending: asyncio.Task[TaskInfo]) -> None:
        # A done callback, not code after the await: it runs even for a request cancelled
        # before it ever started, whose turn is then given back here (else the request
        # path released it, and this does nothing).
        if self.slot is not None:
            self.slot.cancel()
            self.slot = None
        if self.sending is not sending:
            return
        self.sending = None
        if self.state is State.IN_FLIGHT:
            self._guarded(lambda: self._answered(sending))

    def _answered(self, sending: asyncio.Task[TaskInfo]) -> None:
        if sending.cancelled():
            # Cancelled by someone else than this stream (a harness cancelling every task):
            # a failure like any other, retried after the retry backoff.
            self._failed(
                TransportError(f"query task {self.task_id}: the request was cancelled from outside")
            )
        else:
            error = sending.exception()
            if error is None:
                self._observed(sending.result())
            elif isinstance(error, KooDriveError):
                self._failed(error)
            else:
                raise error
        self._expire_and_rearm()  # deadlines the request cut off have passed by now

    def _observed(self, info: TaskInfo) -> None:
        """Our own poll answered."""
        self.failures = 0
        self.lease_less = False
        now = self._transport.clock.monotonic()
        durations = self._registry.durations
        if durations is not None:
            # What a task's duration is learned by (its kind) is read from its answers
            # when needed, not kept: the first says what to expect, the last teaches.
            if self.latest is None and self.plan.expected is None:
                self.plan.expected = durations.expect(task_kind(info))
            if info.status is TaskStatus.COMPLETED:
                seconds = self.plan.observed_duration(now)
                if seconds is not None:
                    durations.learn(task_kind(info), seconds)
        delay = 0.0
        if not info.is_terminal:
            self.seen_running_at = now
            delay = self.plan.observe(now, info.status is TaskStatus.PROCESSING, info.progress)
            self.last_delay = delay
            self.next_poll_at = now + delay
        changed = self._seen(info, now, remote=False)
        if self._sharing is not None and self.holds_lease:
            self._sharing.observed(self, info, changed=changed, next_delay=delay)
        if not info.is_terminal:
            self._arm_poll()

    def _seen(self, info: TaskInfo, now: float, *, remote: bool) -> bool:
        """Record an observation (ours or the fleet's); tell the waits if it changed."""
        previous, self.latest = self.latest, info
        if info.is_terminal:
            self.state = State.ENDED
            self._registry.discard(self)  # later waits on this task start a fresh stream
            self._stop()
            stats = self._transport.stats
            stats.tasks_ended += 1
            if self.seen_running_at is not None and not remote:
                stats.lag_samples += 1
                stats.detection_lag_bound += now - self.seen_running_at
        changed = previous is None or (previous.status, previous.progress) != (
            info.status,
            info.progress,
        )
        if changed:
            self.changed_at = now
            logger.debug("task %s: %s, %d %%", self.task_id, info.status.name, info.progress)
            for sub in self.subscribers:
                sub.push(info)
            self._wake_all()
        return changed

    def _failed(self, error: KooDriveError) -> None:
        """A poll failed: retry a transient failure, end the stream on any other."""
        if not error.retryable:
            self.fail(error)
            return
        self.failures += 1
        if self.last_error is None or not self._cut_by_deadline(error):
            self.last_error = error
        delay = self.policy.retry_delay(self.failures, getattr(error, "retry_after", None))
        self.next_poll_at = self._transport.clock.monotonic() + delay
        self._transport.retrying(self.task_id, error, self.failures, delay)
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

    def _cut_by_deadline(self, error: KooDriveError) -> bool:
        """Whether ``error`` only says that the waits' deadline cut the request short.

        Such a timeout tells nothing about the server, and the waits end with
        WaitTimeoutError now anyway: their ``last_error`` stays the failure before it.
        The transport gives an attempt at least MIN_ATTEMPT seconds, hence the slack.
        """
        deadline = self.request_deadline
        return (
            isinstance(error, RequestTimeoutError)
            and deadline is not None
            and self._transport.clock.monotonic() >= deadline - MIN_ATTEMPT
        )

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

    def fail(self, error: KooDriveError) -> asyncio.Task[TaskInfo] | None:
        """Polling is over for good: every wait gets ``error``.

        Returns:
            The request this cancelled, if any.
        """
        self.fatal = error
        return self._end()

    def _end(self) -> asyncio.Task[TaskInfo] | None:
        self._registry.discard(self)
        request = self._stop()
        self.state = State.ENDED
        self._wake_all()
        return request

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
        """Cancel the timers, leave the gate's queue and the fleet, cancel the request."""
        if self._sharing is not None and not self.left_fleet:
            self.left_fleet = True
            self._sharing.left(self)
        for timer in (self.timer, self.deadline_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.deadline_timer = None
        self.deadline_at = math.inf
        sending, self.sending = self.sending, None
        if sending is None and self.slot is not None:
            self.slot.cancel()  # queued, or admitted and not yet sent
            self.slot = None
        if sending is not None and sending is not asyncio.current_task():
            sending.cancel()  # its done callback gives its turn back
            return sending
        return None


class PollStreams:
    """A client's live streams, one per task.

    Args:
        transport: The request path every stream sends through.
        detail_request: Builds a task's detail request (its family's).
        sharing: In fleet mode, the leases and shared observations of tasks.
        durations: Learns how long tasks of each kind take (``None``: nothing learned).
    """

    def __init__(
        self,
        transport: Transport,
        detail_request: Callable[[Ref], Request[TaskInfo]],
        sharing: Sharing | None = None,
        durations: DurationModel | None = None,
    ) -> None:
        self._transport = transport
        self._detail_request = detail_request
        self.sharing = sharing
        self.durations = durations
        # Tasks this client created: when (a fresh task is not polled at once) and, when
        # known from the create request, what kind (its expected duration).
        self._created: dict[Ref, tuple[float, TaskKind | None]] = {}
        self._streams: dict[Ref, PollStream] = {}
        self._closed: KooDriveError | None = None

    def __len__(self) -> int:
        return len(self._streams)

    def __iter__(self) -> Iterator[PollStream]:
        return iter(tuple(self._streams.values()))

    def __repr__(self) -> str:
        return f"<PollStreams {len(self._streams)} live>"

    def created(self, ref: Ref, at: float, kind: TaskKind | None) -> None:
        """Record a task the client created at ``at`` (its clock): no need to poll it at once."""
        if len(self._created) >= _CREATED_KEPT:
            del self._created[next(iter(self._created))]  # the oldest: waited for, or never
        self._created[ref] = (at, kind)

    def subscribe(
        self, sub: Subscriber, ref: Ref, policy: PollPolicy, resume_polls: int | None = None
    ) -> PollStream:
        """``sub`` joins the task's stream, starting one if none is live.

        The first wait's policy drives a shared stream. A stream started for a resumed
        wait continues its backoff and spreads its first poll over the delay it had
        reached, so that a restarted worker does not poll every task at once.
        """
        stream = self._streams.get(ref)
        if stream is None:
            transport = self._transport
            created_at, kind = self._created.pop(ref, (None, None))
            expected = None
            if kind is not None and self.durations is not None:
                expected = self.durations.expect(kind)
            plan = PollPlan(policy, created_at=created_at, expected=expected)
            stream = PollStream(self, ref, self._detail_request(ref), transport, policy, plan)
            if self._closed is not None or transport.closed:
                # A wait that starts after close() (made before it, or after): the gate
                # admits nothing any more, so a stream would queue until the deadline, or
                # forever without one. It ends at once instead; no stream is kept.
                stream.fail(
                    self._closed
                    or ClientClosedError("this KooDriveClient is closed; create a new one")
                )
                stream.subscribe(sub)
                return stream
            self._streams[ref] = stream
            now = transport.clock.monotonic()
            if resume_polls:
                # Spread over the delay reached, but never later than initial_delay: a
                # restarted worker neither polls every task at once nor sits idle.
                stream.plan.polls = resume_polls
                spread = min(policy.poll_delay(resume_polls), policy.initial_delay)
                first_poll_at = now + spread * random.random()
            else:
                first_poll_at = now + stream.plan.first_delay(now)
            if self.sharing is not None:
                self.sharing.joined(stream, first_poll_at)  # it starts the stream
            else:
                stream.start(first_poll_at)
        stream.subscribe(sub)
        return stream

    def discard(self, stream: PollStream) -> None:
        if self._streams.get(stream.ref) is stream:
            del self._streams[stream.ref]

    def close(
        self,
        error: KooDriveError,
        cancelled: list[asyncio.Task[TaskInfo]],
        limit: int | None = None,
    ) -> bool:
        """The client closes: end live streams with ``error``, at most ``limit`` of them.

        From the first call on, a wait that starts ends at once with ``error``. The
        requests it cancels are added to ``cancelled``, for the caller to await.

        Returns:
            Whether live streams are left (call again).
        """
        self._closed = error
        for stream in list(itertools.islice(self._streams.values(), limit)):
            request = stream.fail(error)  # it leaves self._streams
            if request is not None:
                cancelled.append(request)
        return bool(self._streams)


def _rank(info: TaskInfo) -> tuple[int, int]:
    """How far an observation is along a task's life: pending, processing at p %, ended."""
    if info.is_terminal:
        return (2, 100)
    return (int(info.status is TaskStatus.PROCESSING), info.progress)
