"""One wait for one task, as a lone waiter and a batch both use it.

A :class:`Wait` subscribes to its task's poll stream (:mod:`._streams`), keeps what
it saw and how it ended, and knows whether its outcome has been delivered: handed to
the caller that awaited it, or yielded by the batch it belongs to. Checkpoints hold
exactly the waits not delivered yet.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from ._clock import Clock
from ._models import JobInfo, JobRef, Ref, TaskInfo, TaskRef
from ._outcome import TaskOutcome, outcome
from ._policy import PollPolicy
from ._resume import WaitState
from ._streams import DeadlineReached, PollStream, PollStreams, Subscriber
from .exceptions import KooDriveError, WaitTimeoutError


def cancel_requested() -> bool:
    """Whether the running task has been asked to cancel and not yet seen it.

    A result must not be handed to such a task: it would lose it to the
    ``CancelledError`` that comes at its next await.
    """
    task = asyncio.current_task()
    if task is None:
        return False
    if sys.version_info >= (3, 11):
        return task.cancelling() > 0
    # Python 3.10 has no cancelling(); the pending flag is asyncio's own attribute.
    return bool(getattr(task, "_must_cancel", False))


class Wait(Subscriber):
    """The state of one wait, and its place in its task's stream; see the module docstring.

    Args:
        streams: The client's poll streams.
        clock: The client's clock (the deadline starts at the first :meth:`join`).
        ref: The task.
        policy: How to poll it (the first wait's policy drives a shared stream).
        timeout: Seconds from the first join to ``WaitTimeoutError``, or ``None``.
        allow_insecure_urls: Whether an ``http`` download URL is acceptable.
        resume: Where a checkpointed wait stood.
    """

    __slots__ = (
        "_clock",
        "_polls",
        "_resume_polls",
        "_stream",
        "_streams",
        "allow_insecure_urls",
        "delivered",
        "error",
        "final",
        "last",
        "owner",
        "policy",
        "ref",
        "timeout",
    )

    def __init__(
        self,
        streams: PollStreams,
        clock: Clock,
        ref: Ref,
        *,
        policy: PollPolicy,
        timeout: float | None,
        allow_insecure_urls: bool,
        resume: WaitState | None = None,
    ) -> None:
        super().__init__()
        self._streams = streams
        self._clock = clock
        self.ref = ref
        self.policy = policy
        self.timeout = timeout
        self.allow_insecure_urls = allow_insecure_urls
        self._stream: PollStream | None = None
        self._polls = 0
        self._resume_polls: int | None = None
        self.last: TaskInfo | None = None
        self.final: TaskInfo | None = None
        self.error: KooDriveError | None = None
        self.delivered = False
        self.owner: object = None  # the batch that follows this wait, if any
        if resume is not None:
            self._polls = self._resume_polls = resume.polls
            if resume.status is not None:
                seen = JobInfo if isinstance(ref, JobRef) else TaskInfo
                self.last = seen(ref.task_id, resume.status, resume.progress or 0)

    @property
    def done(self) -> bool:
        """Whether the wait has ended (final state or error)."""
        return self.final is not None or self.error is not None

    def belongs_to(self, streams: PollStreams) -> bool:
        """Whether this wait polls through ``streams`` (those of one client)."""
        return self._streams is streams

    @property
    def joined(self) -> bool:
        """Whether it is subscribed to its task's stream now."""
        return self._stream is not None

    def join(self, listener: Callable[[Wait], None] | None = None) -> None:
        """Subscribe to the task's stream (no-op when subscribed or done); start the deadline.

        With ``listener`` (a batch's, called with this wait), every change is pushed to
        it; without, a coroutine pulls with :meth:`next`.
        """
        if self._stream is not None or self.done:
            return
        if self.deadline is None and self.timeout is not None:
            self.deadline = self._clock.monotonic() + self.timeout
        self.listener = listener
        self._stream = self._streams.subscribe(self, self.ref, self.policy, self._resume_polls)
        self._resume_polls = None

    def leave(self) -> asyncio.Task[TaskInfo] | None:
        """Unsubscribe; return the request this cancelled, if any."""
        stream, self._stream = self._stream, None
        if stream is None:
            return None
        self._polls = stream.plan.polls
        return stream.unsubscribe(self)

    def take(self) -> TaskInfo | None:
        """The next observation pushed to this wait, if any.

        Returns ``None`` when there is none yet, or when the wait just ended with an
        error (then :attr:`error` says which).

        Raises:
            Exception: A bug met by the stream (never a ``KooDriveError``).
        """
        stream = self._stream
        if stream is None:
            return None
        try:
            info = stream.take(self)
        except DeadlineReached:
            self._end(self._timeout_error())
            return None
        except KooDriveError as error:
            self._end(error)
            return None
        except BaseException:
            self.leave()
            raise
        if info is not None:
            self._record(info)
        return info

    async def next(self) -> TaskInfo | None:
        """Wait for the next observation; ``None`` when the wait ended with an error.

        Raises:
            asyncio.CancelledError: Cancelled; the wait leaves its stream (joining again
                continues it).
        """
        self.join()
        stream = self._stream
        if stream is None:
            return None  # done
        try:
            info = await stream.next(self)
        except DeadlineReached:
            self._end(self._timeout_error())
            return None
        except KooDriveError as error:
            self._end(error)
            return None
        except BaseException:
            self.leave()
            raise
        self._record(info)
        return info

    def _record(self, info: TaskInfo) -> None:
        self.last = info
        if info.is_terminal:
            self.final = info
            self.leave()

    def _end(self, error: KooDriveError) -> None:
        self.error = error
        self.leave()

    def end(self, error: KooDriveError) -> None:
        """End a wait that has not ended yet with ``error`` (the client closed)."""
        if not self.done:
            self._end(error)

    def outcome(self) -> TaskOutcome:
        """The outcome of this ended wait."""
        return outcome(
            self.ref,
            self.final,
            self.error,
            self.last,
            allow_insecure_urls=self.allow_insecure_urls,
        )

    def _timeout_error(self) -> WaitTimeoutError:
        stream = self._stream
        last = stream.latest if stream is not None and stream.latest is not None else self.last
        last_error = stream.last_error if stream is not None else None
        seen = (
            "no answer yet"
            if last is None
            else f"last seen {last.status.name.lower()} at {last.progress} %"
        )
        cause = f"; last error: {last_error}" if last_error is not None else ""
        if stream is not None and stream.waiting_for_turn:
            cause += (
                "; the next poll was waiting for its turn under the client's Limits "
                "(rate, max_in_flight) or a throttling pause"
            )
        return WaitTimeoutError(
            f"task {self.ref.task_id} did not end within {self.timeout:g} s ({seen}{cause}); "
            "raise the timeout or check the task in KooDrive",
            task_id=self.ref.task_id,
            timeout=self.timeout or 0.0,
            last_info=last,
            last_error=last_error,
        )

    def state(self) -> WaitState:
        """Where this wait stands now, for a checkpoint."""
        timeout_left = self.timeout
        if self.deadline is not None:
            timeout_left = max(0.0, self.deadline - self._clock.monotonic())
        polls = self._stream.plan.polls if self._stream is not None else self._polls
        last = self.last
        ref = self.ref
        if isinstance(ref, TaskRef) and ref.kdstoken is not None:
            ref = TaskRef(ref.share_id, ref.task_id)  # a checkpoint never holds a kdstoken
        return WaitState(
            ref=ref,
            status=None if last is None else last.status,
            progress=None if last is None else last.progress,
            polls=polls,
            timeout_left=timeout_left,
        )
