"""Fleet mode, the core's side: what a coordinator shares between processes, and how.

A coordinator (``koodrive_tasks.fleet.RedisCoordinator``; the core never imports it)
keeps the fleet's rate, its 429 pause and one lease per task. Here:

- ``_limiter.FleetLimiter`` is the client's gate with the rate and the pause asked of
  the coordinator (the local queue and ``max_in_flight`` stay per process).
- :class:`Sharing` lets a task's poll stream poll only while this process holds the
  task's lease: the holder publishes what it sees, the other processes listen, and
  take over when the holder gives the lease up (it says so on the fleet channel) or
  dies (its heartbeat lapses ``lease_ttl`` after it died, and every process hears of
  it within a second). Listeners never claim on a timer while the holder lives: their
  cost does not grow with the number of tasks they listen to.
- :func:`encode` / :func:`decode`: an observation in at most 720 bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ._limiter import Lease
from ._models import (
    ActionType,
    FileResult,
    FileStatus,
    JobInfo,
    JobRef,
    JobType,
    Ref,
    TaskInfo,
    TaskResultCode,
    TaskStatus,
    TaskType,
    UncompressedFile,
)

if TYPE_CHECKING:
    from ._streams import PollStream

logger = logging.getLogger("koodrive_tasks")

_REQUEST_MARGIN = 2.0  # seconds a lease allows for the request itself
_CLOSE_WAIT = 1.0  # seconds close() gives the releases of leases (the coordinator bounds each)
MAX_PAYLOAD = 720
"""Bytes an observation may take in the coordinator (the Redis side's limit)."""


class Claim(Protocol):
    """A coordinator's answer to a claim (see ``koodrive_tasks.fleet.Claim``)."""

    @property
    def held(self) -> bool:
        """Whether this process holds the lease."""
        ...

    @property
    def expires_in(self) -> float:
        """Seconds until the lease lapses."""
        ...

    @property
    def wait(self) -> float | None:
        """Seconds until the booked slot, if one was booked."""
        ...

    @property
    def holder(self) -> str | None:
        """The id of the process holding the lease (when not held: the other one)."""
        ...

    @property
    def listened(self) -> bool:
        """Whether other processes listen to the task."""
        ...


class Update(Protocol):
    """An observation another process published (see ``koodrive_tasks.fleet.FleetUpdate``)."""

    @property
    def payload(self) -> bytes:
        """What the publisher's :func:`encode` made."""
        ...

    @property
    def lease_expires_in(self) -> float | None:
        """Seconds until the publisher's lease lapses, if known."""
        ...

    @property
    def holder(self) -> str | None:
        """The id of the process polling the task; ``None``: nobody holds its lease."""
        ...


class Coordinator(Protocol):
    """What the client needs from a fleet coordinator; ``RedisCoordinator`` is one."""

    lease_ttl: float
    origin: str
    on_pause: Callable[[float], None] | None
    on_holder_gone: Callable[[str], None] | None

    def holder_alive(self, holder: str) -> bool | None:
        """Whether process ``holder`` lives (``None``: not known here)."""
        ...

    def use_identity(self, identity: str) -> None:
        """Derive the default namespace from a non-secret identity."""
        ...

    async def reserve(
        self, rate: float | None, burst: int = 1, *, max_wait: float | None = None
    ) -> float:
        """Book the fleet's next request slot; seconds to wait."""
        ...

    async def refund(self, rate: float | None) -> bool:
        """Give back a slot booked and not used."""
        ...

    async def pause(self, seconds: float) -> bool:
        """Pause the whole fleet."""
        ...

    async def claim(self, task_key: str, hold_for: float, *, store: bytes = b"") -> Claim:
        """Take or renew a task's lease unless another process holds it."""
        ...

    async def claim_and_reserve(
        self,
        task_key: str,
        hold_for: float,
        rate: float | None,
        burst: int = 1,
        *,
        max_wait: float | None = None,
        store: bytes = b"",
    ) -> Claim:
        """Claim, and if held, book a slot: one round trip."""
        ...

    async def release(self, task_key: str) -> bool:
        """Give up a lease of ours."""
        ...

    async def release_many(self, task_keys: list[str]) -> int:
        """Give up leases of ours."""
        ...

    async def publish(
        self, task_key: str, payload: bytes, *, final: bool, hold_for: float | None = None
    ) -> bool:
        """Store and fan out an observation (and renew our lease)."""
        ...

    async def join(self, task_keys: list[str], hold_for: float) -> list[Any]:
        """Each task's latest observation and holder (an ``Update`` or ``None``); take free leases."""
        ...

    async def subscribe(self, task_key: str, callback: Callable[[Any], None]) -> None:
        """Receive the task's updates published by other processes."""
        ...

    def unsubscribe(self, task_key: str) -> None:
        """Stop receiving them."""
        ...

    async def aclose(self) -> None:
        """Release our leases and stop."""
        ...


def task_key(ref: Ref) -> str:
    """How the fleet names a task or a job (the coordinator hashes it; never a kdstoken)."""
    if isinstance(ref, JobRef):
        return f"job/{ref.job_id}"
    return f"share/{ref.share_id}/{ref.task_id}"


# --- observations in a few hundred bytes --------------------------------------------------------

_TIME = "%Y%m%d%H%M%S"


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime(_TIME)


def _parse_time(text: object) -> datetime | None:
    return datetime.strptime(text, _TIME) if isinstance(text, str) else None


def encode(info: TaskInfo) -> tuple[bytes, bool]:
    """``info`` in at most :data:`MAX_PAYLOAD` bytes, and whether all of it fits.

    False: the per-file results (and a job's archive entries) were left out (a listener
    that needs them polls once itself); an empty payload: not even the rest fits
    (nothing is shared).
    """
    data: dict[str, Any] = {
        "s": int(info.status),
        "p": info.progress,
        "t": None if info.task_type is None else int(info.task_type),
        "r": None if info.result_code is None else int(info.result_code),
        "c": info.content_result_code,
        "ct": _time(info.created_at),
        "st": _time(info.started_at),
        "et": _time(info.ended_at),
        "u": info.download_url,
        "f": [[f.file_id, int(f.status), f.new_file_id, f.src_container_id] for f in info.files],
    }
    if isinstance(info, JobInfo):
        data["j"] = [
            None if info.job_type is None else int(info.job_type),
            None if info.action_type is None else int(info.action_type),
            info.task_name,
            info.content_num,
            info.container_id,
            info.tenant_id,
        ]
        data["x"] = [
            [e.name, e.entry_type, e.size, e.container_id, e.file_id]
            for e in info.uncompressed_files
        ]
    payload = json.dumps(data, separators=(",", ":")).encode()
    if len(payload) <= MAX_PAYLOAD:
        return payload, True
    data["f"] = None
    if "x" in data:
        data["x"] = None
    payload = json.dumps(data, separators=(",", ":")).encode()
    return (payload, False) if len(payload) <= MAX_PAYLOAD else (b"", False)


def decode(payload: bytes, ref: Ref) -> tuple[TaskInfo, bool] | None:
    """What :func:`encode` made, and whether it is complete; ``None`` if it is not that."""
    try:
        data = json.loads(payload)
        files = data["f"]
        if isinstance(ref, JobRef):
            return _decode_job(data, ref)
        info = TaskInfo(
            task_id=ref.task_id,
            status=TaskStatus(data["s"]),
            progress=int(data["p"]),
            task_type=None if data["t"] is None else TaskType(data["t"]),
            result_code=None if data["r"] is None else TaskResultCode(data["r"]),
            content_result_code=data["c"],
            created_at=_parse_time(data["ct"]),
            started_at=_parse_time(data["st"]),
            ended_at=_parse_time(data["et"]),
            download_url=data["u"],
            files=tuple(FileResult(f[0], FileStatus(f[1]), f[2], f[3]) for f in (files or ())),
        )
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return info, files is not None


def _decode_job(data: dict[str, Any], ref: JobRef) -> tuple[TaskInfo, bool]:
    files, entries = data["f"], data.get("x")
    job_type, action_type, task_name, content_num, container_id, tenant_id = data["j"]
    info = JobInfo(
        task_id=ref.job_id,
        status=TaskStatus(data["s"]),
        progress=int(data["p"]),
        result_code=None if data["r"] is None else TaskResultCode(data["r"]),
        content_result_code=data["c"],
        created_at=_parse_time(data["ct"]),
        started_at=_parse_time(data["st"]),
        ended_at=_parse_time(data["et"]),
        download_url=data["u"],
        files=tuple(FileResult(f[0], FileStatus(f[1]), f[2], f[3]) for f in (files or ())),
        job_type=None if job_type is None else JobType(job_type),
        action_type=None if action_type is None else ActionType(action_type),
        task_name=task_name,
        content_num=content_num,
        container_id=container_id,
        tenant_id=tenant_id,
        uncompressed_files=tuple(UncompressedFile(*e) for e in (entries or ())),
    )
    return info, files is not None and entries is not None


# --- the streams' side ---------------------------------------------------------------------------


class Sharing:
    """One lease and one stream of observations per task, across the fleet.

    A stream that did not get its task's lease listens: it polls again only when the
    holder gives the lease up or dies, or (a holder this process has not seen a
    heartbeat of) when the lease lapses.

    Args:
        coordinator: The fleet's coordinator.
        request_timeout: Seconds a request may take (a lease covers a usual one).
    """

    def __init__(self, coordinator: Coordinator, request_timeout: float) -> None:
        self._coordinator = coordinator
        # A lease covers the delay to the next poll and a usual request, not the longest
        # one: a request that runs past its lease costs at most one poll by another process.
        self._margin = min(request_timeout, _REQUEST_MARGIN)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._joining: list[tuple[PollStream, float | None]] = []
        self._releasing: list[str] = []
        self._holder_of: dict[PollStream, str] = {}  # listening streams: who polls their task
        self._listeners: dict[str, set[PollStream]] = {}  # the same, by holder
        # Polling streams: their last claim, and the change nobody listened to yet
        # (stored with the next claim instead of a round trip of its own).
        self._leases: dict[PollStream, Lease] = {}
        self._unstored: dict[PollStream, bytes] = {}
        coordinator.on_holder_gone = self._holder_gone

    def lease(self, stream: PollStream) -> Lease:
        """The claim a due poll of ``stream`` makes: the request, and a next delay like the last."""
        hold_for = self._margin + stream.expected_delay()
        lease = Lease(task_key(stream.ref), hold_for, self._unstored.pop(stream, b""))
        previous = self._leases.get(stream)
        self._leases[stream] = lease
        if previous is not None and not previous.listened:
            lease.listened = False  # until this claim answers
        return lease

    def joined(self, stream: PollStream, first_poll_at: float | None) -> None:
        """A new stream: listen, read what the fleet knows, then start polling or listening.

        The streams that join in one turn of the event loop read the fleet's state in
        one round trip (per 500), taking the leases of the tasks nobody polls. A task
        another live process polls is listened to, not claimed.
        """
        self._joining.append((stream, first_poll_at))
        if len(self._joining) == 1:
            self._spawn(self._join())

    async def _join(self) -> None:
        joining, self._joining = self._joining, []
        coordinator = self._coordinator
        try:
            for stream, _ in joining:
                if not stream.done:  # subscribed first: nothing published later is missed
                    key = task_key(stream.ref)
                    await coordinator.subscribe(key, self._callback(stream))
            hold_for = max(self.lease(stream).hold_for for stream, _ in joining)
            updates = await coordinator.join([task_key(s.ref) for s, _ in joining], hold_for)
        except Exception:  # the coordinator decides locally when Redis fails: this is a bug
            logger.exception("fleet mode: joining the fleet's tasks failed; polling them here")
            updates = [None] * len(joining)
        for (stream, first_poll_at), update in zip(joining, updates, strict=True):
            if stream.done:
                continue
            if update is not None:
                self._heard(stream, update)
            if stream not in self._holder_of:
                stream.start(first_poll_at)

    def _callback(self, stream: PollStream) -> Callable[[Any], None]:
        return lambda update: self._heard(stream, update)

    def _heard(self, stream: PollStream, update: Update) -> None:
        if getattr(update, "joined", False):
            self._listener_joined(stream)
            return
        if update.payload:
            decoded = decode(update.payload, stream.ref)
            if decoded is not None:  # else not ours to read (another version)
                info, complete = decoded
                stream.heard(info, complete=complete)
        if stream.done or stream.holds_lease:
            return  # our own next claim says whether we still hold it
        holder = update.holder
        if holder is None:
            self._forget(stream)
            stream.poll_soon()  # nobody polls it: claim it
        elif holder != self._coordinator.origin:
            self.listen(stream, holder, update.lease_expires_in)

    def _listener_joined(self, stream: PollStream) -> None:
        """Another process listens to a task we poll: from now on it hears every change."""
        lease = self._leases.get(stream)
        if lease is not None:
            lease.listened = True
        latest = stream.latest
        if stream.done or not stream.holds_lease or latest is None:
            return
        self._unstored.pop(stream, None)
        payload, _complete = encode(latest)
        if payload:
            key = task_key(stream.ref)
            self._spawn(self._coordinator.publish(key, payload, final=latest.is_terminal))

    def listen(self, stream: PollStream, holder: str | None, lease_left: float | None) -> None:
        """Another process (``holder``) polls ``stream``'s task: hear it instead of polling."""
        alive = None if holder is None else self._coordinator.holder_alive(holder)
        if alive is False:
            self._forget(stream)
            stream.poll_soon()  # dead: its lease is ours to take
            return
        retry_in = None
        if alive is None:  # not seen alive: claim when its lease lapses
            retry_in = max(0.05, lease_left or 0.0) * (1 + 0.1 * random.random())
        if holder is not None:
            previous = self._holder_of.get(stream)
            if previous != holder:
                self._forget(stream)
                self._holder_of[stream] = holder
                self._listeners.setdefault(holder, set()).add(stream)
        stream.listen(retry_in)

    def _forget(self, stream: PollStream) -> None:
        holder = self._holder_of.pop(stream, None)
        if holder is not None:
            streams = self._listeners.get(holder)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self._listeners[holder]

    def _holder_gone(self, holder: str) -> None:
        """A process died: the tasks it polled are claimed by the streams listening to them."""
        for stream in self._listeners.pop(holder, set()):
            del self._holder_of[stream]
            stream.poll_soon()

    def observed(
        self, stream: PollStream, info: TaskInfo, *, changed: bool, next_delay: float
    ) -> None:
        """Our poll of ``stream``'s task answered: share a change, keep the lease to the next poll."""
        self._forget(stream)
        hold_for = self._margin + next_delay
        lease = self._leases.get(stream)
        listened = lease is None or lease.listened
        if info.is_terminal or (listened and (changed or hold_for > stream.lease_hold)):
            payload, _complete = encode(info)
            if payload:
                self._spawn(
                    self._coordinator.publish(
                        task_key(stream.ref), payload, final=info.is_terminal, hold_for=hold_for
                    )
                )
        elif changed:
            # Nobody else listens: the next claim stores it, for a process joining later.
            payload, _complete = encode(info)
            if payload:
                self._unstored[stream] = payload

    def give_up(self, stream: PollStream) -> None:
        """``stream`` holds its task's lease but stops polling for now: another process may."""
        self._spawn(self._coordinator.release(task_key(stream.ref)))

    def left(self, stream: PollStream) -> None:
        """The stream ends here: stop listening; give its lease up if this process held it.

        Not after a final observation of ours: its publication ends the lease itself,
        and a release sent before it would have the listeners poll the task once more.
        """
        key = task_key(stream.ref)
        self._forget(stream)
        self._leases.pop(stream, None)
        self._unstored.pop(stream, None)
        self._coordinator.unsubscribe(key)
        ended = stream.latest is not None and stream.latest.is_terminal
        if stream.holds_lease and not ended:
            # Streams leave together when a client closes: one round trip per 500.
            self._releasing.append(key)
            if len(self._releasing) == 1:
                self._spawn(self._release())

    async def _release(self) -> None:
        keys, self._releasing = self._releasing, []
        await self._coordinator.release_many(keys)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Let the calls under way (the last publishes, the releases) finish, briefly."""
        tasks = tuple(self._tasks)
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=_CLOSE_WAIT)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
