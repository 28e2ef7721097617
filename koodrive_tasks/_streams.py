"""One stream of polls per task, shared by every wait on that task.

There is no background task. Whichever waiting coroutine finds no leader becomes
the leader: it sleeps until the next poll is due, polls, and hands every changed
observation to every subscriber. The others wait on a future. When the leader
leaves (it got its update, its deadline passed, or it was cancelled) it hands the
lead to a subscriber still waiting, so cancelling one wait never stalls the others
and cancelling all of them leaves nothing running.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from typing import TYPE_CHECKING

from . import _wire
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
    """One wait's place in a stream: its deadline and the observations it has not taken."""

    __slots__ = ("deadline", "pending", "wakeup")

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        # A list, not a deque: it holds one or two items, and an empty deque costs 760 B.
        self.pending: list[TaskInfo] = []
        self.wakeup: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)


class PollStream:
    """The polls of one task and what they observed."""

    __slots__ = (
        "_body",
        "_client",
        "_registry",
        "_secret",
        "changed_at",
        "failures",
        "fatal",
        "key",
        "last_error",
        "latest",
        "leader",
        "next_poll_at",
        "plan",
        "policy",
        "seen_running_at",
        "subscribers",
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
        self.leader: Subscriber | None = None
        self.latest: TaskInfo | None = None
        self.last_error: KooDriveError | None = None
        self.fatal: KooDriveError | None = None
        self.next_poll_at = -math.inf
        self.failures = 0
        self.seen_running_at: float | None = None
        self.changed_at: float | None = None
        self.plan = PollPlan(policy)

    @property
    def task_id(self) -> str:
        return self.key[1]

    def subscribe(self, deadline: float | None) -> Subscriber:
        sub = Subscriber(deadline)
        if self.latest is not None:
            sub.pending.append(self.latest)  # a late joiner's first observation
        self.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.remove(sub)
        if not self.subscribers:
            self._registry.discard(self)
        elif self.leader is None:
            # A follower woken to lead may leave (cancelled) before it runs: pass it on.
            self._hand_off()

    async def next(self, sub: Subscriber) -> TaskInfo:
        """The next changed observation for ``sub``.

        Raises:
            DeadlineReached: When ``sub``'s deadline passes first.
            KooDriveError: A non-retryable error met by the stream.
        """
        clock = self._client.clock
        while True:
            if sub.pending:
                self._resign(sub)
                return sub.pending.pop(0)
            if self.fatal is not None:
                self._resign(sub)
                raise self.fatal
            now = clock.monotonic()
            if sub.deadline is not None and now >= sub.deadline:
                self._resign(sub)
                raise DeadlineReached
            if self.leader is None:
                self.leader = sub
            if self.leader is not sub:
                sub.wakeup = asyncio.get_running_loop().create_future()
                try:
                    await sub.wakeup
                finally:
                    sub.wakeup = None
                continue
            # Leading, inline rather than in a helper coroutine: every idle wait holds
            # its chain of suspended frames, and 10,000 waits make each frame count.
            try:
                earliest = self._earliest_deadline(now)
                stall_at = self._stall_at()
                if now >= stall_at:
                    self._fail(self._stalled(now))
                elif now < self.next_poll_at:
                    # Never sleep past anyone's deadline: followers rely on the leader to wake them.
                    await clock.sleep(min(self.next_poll_at, earliest, stall_at) - now)
                else:
                    await self._poll(None if math.isinf(earliest) else earliest)
            except BaseException:
                self._resign(sub)
                raise

    def _resign(self, sub: Subscriber) -> None:
        """``sub`` stops leading (if it led): hand the lead to whoever still waits."""
        if self.leader is sub:
            self.leader = None
            self._hand_off()

    def _hand_off(self) -> None:
        # Wake every idle follower, not just one: the one picked might itself be in the
        # middle of being cancelled, and then nobody would lead. The first to run takes
        # the lead; the others see it taken and go back to waiting.
        for other in self.subscribers:
            if other.wakeup is not None and not other.pending:
                other.wake()

    def _earliest_deadline(self, now: float) -> float:
        """Wake followers whose deadline passed; return the earliest deadline still ahead."""
        earliest = math.inf
        for sub in self.subscribers:
            if sub.deadline is None:
                continue
            if sub.deadline <= now and sub is not self.leader:
                sub.wake()
            else:
                earliest = min(earliest, sub.deadline)
        return earliest

    async def _poll(self, deadline: float | None) -> None:
        clock = self._client.clock
        try:
            info = await self._client._fetch_task(
                self.key[0], self.task_id, self._body, self._secret, deadline=deadline
            )
        except KooDriveError as error:
            if not error.retryable:
                self._fail(error)
                return
            self.failures += 1
            self.last_error = error
            delay = self.policy.retry_delay(self.failures, getattr(error, "retry_after", None))
            self.next_poll_at = clock.monotonic() + delay
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
            return
        self.failures = 0
        previous, self.latest = self.latest, info
        now = clock.monotonic()
        if previous is None or (previous.status, previous.progress) != (info.status, info.progress):
            self.changed_at = now
            for other in self.subscribers:
                other.pending.append(info)
                other.wake()
            logger.debug("task %s: %s, %d %%", self.task_id, info.status.name, info.progress)
        if info.is_terminal:
            self._registry.discard(self)  # later waits on this task start a fresh stream
            if self.seen_running_at is not None:
                self._client.stats.tasks_ended += 1
                self._client.stats.detection_lag_bound += now - self.seen_running_at
        else:
            self.seen_running_at = now
            delay = self.plan.observe(now, info.status is TaskStatus.PROCESSING, info.progress)
            self.next_poll_at = now + delay

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

    def _fail(self, error: KooDriveError) -> None:
        self.fatal = error
        self._registry.discard(self)
        for other in self.subscribers:
            other.wake()


class PollStreams:
    """A client's live streams, by (share id, task id, kdstoken)."""

    def __init__(self) -> None:
        self._streams: dict[StreamKey, PollStream] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def subscribe(
        self,
        client: KooDriveClient,
        key: StreamKey,
        policy: PollPolicy,
        deadline: float | None,
        resume_polls: int | None = None,
    ) -> tuple[PollStream, Subscriber]:
        """Join the task's stream, starting one if none is live.

        The first wait's policy drives a shared stream. A stream started for a resumed
        wait continues its backoff and spreads its first poll over the delay it had
        reached, so that a restarted worker does not poll every task at once.
        """
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = PollStream(self, key, client, policy)
            if resume_polls:
                stream.plan.polls = resume_polls
                spread = policy.poll_delay(resume_polls) * random.random()
                stream.next_poll_at = client.clock.monotonic() + spread
        return stream, stream.subscribe(deadline)

    def discard(self, stream: PollStream) -> None:
        if self._streams.get(stream.key) is stream:
            del self._streams[stream.key]
