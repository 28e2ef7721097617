"""RedisCoordinator: one rate, one 429 pause and one poller per task for many processes.

What lives in Redis (all keys of a namespace share one hash tag, all carry a TTL):

- ``kdt:{ns}:gate`` (hash): the GCRA's theoretical arrival time, the pause's end and
  the burst tolerance, in the server's microseconds; gone about a second after both
  lie in the past.
- ``kdt:{ns}:lease:<task>``: the id of the process that polls the task; it renews the
  lease at each poll for "until my next poll + lease_ttl".
- ``kdt:{ns}:latest:<task>``: the latest observation of the task (at most
  :data:`MAX_PAYLOAD` bytes), kept while the lease lives plus ``lease_ttl``, and for
  ``final_ttl`` once final.
- ``kdt:{ns}:ears:<task>``: present while other processes listen to the task; its
  holder publishes each change at once then, and otherwise stores it with its next
  claim (no round trip of its own).
- ``kdt:{ns}:members``: each process's heartbeat (renewed twice a second, it lapses
  ``lease_ttl`` after the last). A lease whose holder's heartbeat lapsed goes to
  the next claimant at once, and every process hears of it within half a second: a dead
  process's tasks are taken over about ``lease_ttl`` after it died, however far away
  its next polls were.
- the channel ``kdt:{ns}:events``: task updates, releases, new listeners and pauses,
  read by every process on its one pub/sub connection.

Everything else (in-flight places, deadlines, policies, waiters, retries, statistics)
stays in each process. When Redis is unreachable or failing the coordinator warns once,
decides locally (a local GCRA at the fallback rate, every claim granted, publications
dropped), never raises into a wait, and probes Redis with backoff until it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..exceptions import ClientClosedError, InvalidArgumentError
from . import _scripts as scripts
from ._bounded import bounded, stop
from ._channel import (
    STORED_PER_ROUND_TRIP,
    FleetChannel,
    UpdateCallback,
    read_stored,
    stored_update,
)
from ._connect import client_from_url, describe_client, describe_url
from ._health import Health
from ._local import LocalGate
from ._models import Claim, FleetStats, FleetUpdate
from ._names import (
    DEFAULT_NAMESPACE,
    FINAL,
    JOINED,
    UPDATE,
    Names,
    check_namespace,
    joined_message,
    namespace_from_identity,
    pause_header,
    release_message,
    task_id,
    update_header,
)

if TYPE_CHECKING:
    from .._clock import Clock

logger = logging.getLogger("koodrive_tasks")

MAX_PAYLOAD = 720
"""Largest observation :meth:`RedisCoordinator.publish` stores, in bytes: with its two
keys and Redis's own overhead a task then takes at most 1 KiB of the server's memory."""

PauseCallback = Callable[[float], None]

_CLAIM_CACHE = 65536

HEARTBEAT_EVERY = 0.5
"""Seconds between heartbeats at most (``lease_ttl / 4`` when shorter)."""


def _wall_us() -> int:
    """The caller's wall clock, for servers that refuse ``TIME`` inside scripts."""
    return time.time_ns() // 1000


def _us(seconds: float) -> int:
    return math.ceil(seconds * 1_000_000)


def _check_seconds(name: str, value: float, *, allow_zero: bool = True) -> None:
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "at least 0" if allow_zero else "above 0"
        raise InvalidArgumentError(
            f"{name} must be a finite number of seconds {bound}; got {value!r}"
        )


class RedisCoordinator:
    """Shares one rate limit, one 429 pause and one poller per task across processes.

    Args:
        redis: A ``redis://``, ``rediss://`` or ``unix://`` URL (needs the ``redis``
            extra; the coordinator then owns a client over a blocking pool of
            ``max_connections``), or an asyncio client object of redis-py or valkey-py
            that the caller keeps and closes.
        namespace: Separates fleets on one server. Default: derived by
            :meth:`use_identity` from an app id or user id (a hash, never a secret),
            else ``"default"``. Every process of one fleet must use the same.
        lease_ttl: Seconds after its last heartbeat a process counts as dead (it died,
            or lost Redis): the others then take its tasks over (they hear of it within
            half a second). A task's lease also outlives its holder's announced next
            poll by this much.
        fallback_rate: Requests per second this process may send while Redis is
            unreachable. ``None``: the fleet's rate divided by the number of processes
            alive (their heartbeats) when Redis last answered (1 if it never did).
        final_ttl: Seconds a task's final observation stays readable for late joiners.
        max_connections: Size of the connection pool built from a URL, the pub/sub
            connection included; a caller waits for a free connection when all are busy.
        command_timeout: Seconds before a call to Redis counts as failed (waiting for a
            pooled connection included); the coordinator then decides locally.
        on_pause: Called with the pause's length in seconds when another process
            pauses the fleet (see :meth:`pause`).
        on_holder_gone: Called with a process's id when its heartbeat lapsed: the
            leases it holds can be claimed now.
        clock: The time source of local decisions and of the probe's backoff
            (default: the event loop's).

    Raises:
        InvalidArgumentError: If an argument is out of range, or a URL is given
            without redis-py installed.
    """

    def __init__(
        self,
        redis: str | Any,
        *,
        namespace: str | None = None,
        lease_ttl: float = 5.0,
        fallback_rate: float | None = None,
        final_ttl: float = 30.0,
        max_connections: int = 16,
        command_timeout: float = 1.0,
        on_pause: PauseCallback | None = None,
        on_holder_gone: Callable[[str], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        _check_seconds("lease_ttl", lease_ttl, allow_zero=False)
        _check_seconds("final_ttl", final_ttl, allow_zero=False)
        _check_seconds("command_timeout", command_timeout, allow_zero=False)
        if fallback_rate is not None:
            _check_seconds("fallback_rate", fallback_rate, allow_zero=False)
        if max_connections < 2:
            raise InvalidArgumentError(
                "max_connections must be at least 2: one is held by the fleet channel"
            )
        self._explicit_namespace = None if namespace is None else check_namespace(namespace)
        self._identity_namespace: str | None = None
        self._names: Names | None = None
        if isinstance(redis, str):
            self._client, self._pool = client_from_url(
                redis, max_connections=max_connections, connect_timeout=command_timeout
            )
            self._where = describe_url(redis)
        else:
            self._client, self._pool = redis, None
            self._where = describe_client(redis)
        self.lease_ttl = lease_ttl
        self.fallback_rate = fallback_rate
        self.final_ttl = final_ttl
        self.on_pause = on_pause
        """Called with the pause's seconds when another process pauses the fleet."""
        self.on_holder_gone = on_holder_gone
        """Called with a process's id when its heartbeat lapsed (its leases are free)."""
        self.stats = FleetStats()
        self.origin = os.urandom(6).hex()
        """This coordinator's id in leases and messages (random, not secret)."""
        self._timeout = command_timeout
        self._lease_ms = _us(lease_ttl) // 1000
        self._final_ms = _us(final_ttl) // 1000
        self._rates: dict[tuple[float | None, int], tuple[int, int]] = {}
        self._held: set[str] = set()
        self._local = LocalGate()
        self._health = Health(
            self._client,
            timeout=command_timeout,
            stats=self.stats,
            clock=clock,
            describe=lambda: f"{self._label()}: Redis at {self._where}",
            fallback=self._fallback_text,
        )
        self._channel: FleetChannel | None = None  # started at the first call
        self._heartbeat: asyncio.Task[None] | None = None
        self._members: dict[str, float] = {}  # id -> when its heartbeat lapses (monotonic)
        self._gone: set[str] = set()  # members reported gone
        self._members_read = asyncio.Event()  # set by the first heartbeat's answer
        self._claim_cache: dict[str, tuple[tuple[str, ...], bytes]] = {}
        self._origin_bytes = self.origin.encode()
        self._closed = False

    # -- identity and state -------------------------------------------------------

    def use_identity(self, identity: str) -> None:
        """Derive the default namespace from a non-secret identity (app id or user id).

        No effect when a namespace was given explicitly. The client calls this with
        its credentials' app id or user id; never pass a secret.

        Raises:
            InvalidArgumentError: If the identity is empty, or the coordinator is in
                use already under another namespace.
        """
        derived = namespace_from_identity(identity)
        if self._explicit_namespace is not None:
            return
        if self._names is not None and self._names.namespace != derived:
            raise InvalidArgumentError(
                "the fleet coordinator is in use already; set its identity before the first call"
            )
        self._identity_namespace = derived

    @property
    def namespace(self) -> str:
        """The namespace in use (or that will be used at the first call)."""
        if self._names is not None:
            return self._names.namespace
        return self._explicit_namespace or self._identity_namespace or DEFAULT_NAMESPACE

    @property
    def healthy(self) -> bool:
        """Whether decisions are taken in Redis now (``False``: locally, in an outage)."""
        return self._health.healthy

    @property
    def fleet_size(self) -> int:
        """Processes alive when Redis last answered (at least 1).

        Counted from their heartbeats, else from the readers of the fleet channel.
        """
        if self._members:
            now = time.monotonic()
            return max(1, sum(end > now for end in self._members.values()))
        return 1 if self._channel is None else self._channel.fleet_size

    def holder_alive(self, holder: str) -> bool | None:
        """Whether the process ``holder`` (an ``origin``) was alive at the last heartbeat.

        Returns:
            ``True`` while its heartbeat lasts, ``False`` once it lapsed, ``None`` when
            this process has not seen it (a listener then claims when its lease lapses).
        """
        end = self._members.get(holder)
        return None if end is None else end > time.monotonic()

    def __repr__(self) -> str:
        if self._closed:
            state = "closed"
        elif self._health.healthy:
            state = "healthy"
        else:
            state = f"fallback for {self._health.now() - self._health.down_since:.1f} s"
        watched = 0 if self._channel is None else len(self._channel.subscriptions)
        return (
            f"<RedisCoordinator namespace={self.namespace!r} redis={self._where} {state} "
            f"subscriptions={watched} leases={len(self._held)} fleet={self.fleet_size}>"
        )

    async def __aenter__(self) -> RedisCoordinator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- admission ----------------------------------------------------------------

    async def reserve(
        self, rate: float | None, burst: int = 1, *, max_wait: float | None = None
    ) -> float:
        """Book the fleet's next request slot: one round trip.

        The fleet as a whole sends at most ``rate`` requests per second, ``burst`` at
        once after a quiet spell, and none while a pause is on (the slot then lies
        after it). The slot is taken at once, first come first served, on the
        server's clock.

        Args:
            rate: The fleet's requests per second; ``None``: no rate, only pauses.
            burst: Requests that may go at once after a quiet spell.
            max_wait: A slot further away than this is not booked.

        Returns:
            Seconds to wait before sending (0.0: now). More than ``max_wait``: nothing
            was booked.

        Raises:
            InvalidArgumentError: If an argument is out of range (before any I/O).
            ClientClosedError: If the coordinator was closed.
        """
        interval, tolerance = self._rate_args(rate, burst)
        limit = -1 if max_wait is None else _us(max_wait)
        names = self._start()[0]
        if self._health.healthy:
            try:
                wait, _booked = await self._run(
                    scripts.RESERVE,
                    (names.gate,),
                    (_wall_us(), interval, tolerance, limit),
                )
            except Exception as error:  # noqa: BLE001 (any failure of Redis means: decide locally)
                self._health.fail(error)
            else:
                return int(wait) / 1_000_000
        return self._reserve_locally(rate, burst, max_wait)

    async def refund(self, rate: float | None) -> bool:
        """Give back one slot booked by :meth:`reserve` and not used: one round trip.

        Nothing is given back while a pause is on: the pause re-timed every slot.

        Returns:
            Whether a slot was given back.
        """
        interval, _ = self._rate_args(rate, 1)
        names = self._start()[0]
        if rate is None:
            return False
        if self._health.healthy:
            try:
                given = await self._run(scripts.REFUND, (names.gate,), (_wall_us(), interval))
            except Exception as error:  # noqa: BLE001
                self._health.fail(error)
            else:
                return bool(given)
        self.stats.local_decisions += 1
        return self._local.refund(self._health.now(), self._local_rate(rate))

    async def pause(self, seconds: float) -> bool:
        """Pause every request of the fleet for ``seconds`` (a 429 was received).

        One round trip: the pause is set on the server's clock, the rate's timeline
        moves past its end (the fleet resumes at the rate, not in a burst), and the
        other processes are told at once on the fleet channel: their ``on_pause``
        runs, and they must void slots they booked before it. This process's own
        ``on_pause`` is not called: its caller knows.

        Returns:
            Whether this started or extended a pause (``False``: one covers it already).

        Raises:
            InvalidArgumentError: If ``seconds`` is not above 0.
        """
        _check_seconds("seconds", seconds, allow_zero=False)
        names = self._start()[0]
        extended = self._local.pause(self._health.now(), seconds)
        if self._health.healthy:
            try:
                started, _left = await self._run(
                    scripts.PAUSE,
                    (names.gate,),
                    (_wall_us(), _us(seconds), names.channel, pause_header(self.origin)),
                )
            except Exception as error:  # noqa: BLE001
                self._health.fail(error)
            else:
                return bool(started)
        self.stats.local_decisions += 1
        return extended

    # -- per task -----------------------------------------------------------------

    async def claim(self, task_key: str, hold_for: float, *, store: bytes = b"") -> Claim:
        """Take or renew the task's lease unless another process holds it: one round trip.

        Args:
            task_key: The task (the core's key; hashed before use).
            hold_for: Seconds until this process's next renewal (its next poll, the
                request in flight included); the lease lasts that plus ``lease_ttl``.
            store: If held, also store this observation as the task's latest (at most
                :data:`MAX_PAYLOAD` bytes; not sent to anyone): how a holder whose
                task nobody else listens to keeps it current for late joiners without
                a round trip of its own.

        Returns:
            A :class:`Claim`, true when held (``listened`` says whether other processes
            listen). When not held, this process is counted among the listeners.
            During an outage every claim is granted (``local=True``): each process
            then polls its own tasks.

        Raises:
            InvalidArgumentError: If ``store`` is larger than :data:`MAX_PAYLOAD`.
        """
        return await self._claim(task_key, hold_for, False, None, 1, None, store)

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
        """:meth:`claim`, and if held, :meth:`reserve` a slot for the poll: one round trip.

        The holder's whole cost per poll: no slot is taken when another process holds
        the lease.

        Returns:
            A :class:`Claim` whose ``wait`` is the slot's wait when held.
        """
        self._rate_args(rate, burst)
        return await self._claim(task_key, hold_for, True, rate, burst, max_wait, store)

    async def release(self, task_key: str) -> bool:
        """Give up the task's lease if this process holds it: one round trip.

        The other processes are told on the fleet channel (their subscribers get an
        update with no holder), so one of them claims the task at once.

        Returns:
            Whether a lease of ours was removed in Redis.
        """
        tid = task_id(task_key)
        names = self._start()[0]
        self._held.discard(tid)
        if not self._health.healthy:
            self.stats.local_decisions += 1
            return False
        try:
            gone = await self._run(
                scripts.RELEASE,
                (names.lease(tid),),
                (self.origin, names.channel, release_message(self.origin, tid)),
            )
        except Exception as error:  # noqa: BLE001
            self._health.fail(error)
            return False
        return bool(gone)

    async def release_many(self, task_keys: list[str]) -> int:
        """:meth:`release` of many tasks: one round trip per 500 (a process stopping).

        Returns:
            How many leases of ours were removed in Redis.
        """
        tids = [task_id(key) for key in task_keys]
        names = self._start()[0]
        self._held.difference_update(tids)
        if not self._health.healthy or not tids:
            self.stats.local_decisions += bool(tids)
            return 0
        gone = 0
        try:
            for start in range(0, len(tids), STORED_PER_ROUND_TRIP):
                gone += await bounded(
                    self._release_pipeline(names, tids[start : start + STORED_PER_ROUND_TRIP]),
                    self._timeout,
                )
                self.stats.round_trips += 1
        except Exception as error:  # noqa: BLE001
            self._health.fail(error)
        return gone

    async def _release_pipeline(self, names: Names, tids: list[str]) -> int:
        # EVAL, not EVALSHA: the release script is a few lines, and a pipeline cannot
        # fall back per command when the server lost its script cache.
        async with self._client.pipeline(transaction=False) as pipe:
            for tid in tids:
                message = release_message(self.origin, tid)
                pipe.eval(
                    scripts.RELEASE.source, 1, names.lease(tid), self.origin, names.channel, message
                )
            return sum(int(gone) for gone in await pipe.execute())

    async def publish(
        self, task_key: str, payload: bytes, *, final: bool, hold_for: float | None = None
    ) -> bool:
        """Store the task's latest observation and send it to every process: one round trip.

        Args:
            task_key: The task.
            payload: The core's encoding of the observation, at most
                :data:`MAX_PAYLOAD` bytes.
            final: The task ended: the observation and the lease then stay
                ``final_ttl`` seconds, and every key of the task is gone after that.
            hold_for: Also renew this process's lease for that many seconds (plus
                ``lease_ttl``), as :meth:`claim` would.

        Returns:
            Whether it was shared (``False`` during an outage: it is dropped).

        Raises:
            InvalidArgumentError: If the payload is larger than :data:`MAX_PAYLOAD`.
        """
        if len(payload) > MAX_PAYLOAD:
            raise InvalidArgumentError(
                f"a fleet observation is at most {MAX_PAYLOAD} bytes; got {len(payload)}"
            )
        renew = 0
        if hold_for is not None:
            _check_seconds("hold_for", hold_for)
            renew = _us(hold_for) // 1000 + self._lease_ms
        tid = task_id(task_key)
        names = self._start()[0]
        if final:
            self._held.discard(tid)
        if not self._health.healthy:
            self.stats.dropped_publishes += 1
            return False
        kind = FINAL if final else UPDATE
        try:
            _left = await self._run(
                scripts.PUBLISH,
                (names.latest(tid), names.lease(tid)),
                (
                    self.origin,
                    "1" if final else "0",
                    payload,
                    self._final_ms,
                    self._lease_ms,
                    renew,
                    names.channel,
                    update_header(kind, self.origin, tid),
                ),
            )
        except Exception as error:  # noqa: BLE001
            self._health.fail(error)
            self.stats.dropped_publishes += 1
            return False
        return True

    async def latest(self, task_key: str) -> FleetUpdate | None:
        """The task's latest observation stored in Redis, and who polls it: one round trip.

        Returns:
            The observation (its ``holder`` is the lease's holder; an empty payload
            when a lease is held but nothing was published yet), or ``None`` when
            there is neither (or Redis is unreachable).
        """
        tid = task_id(task_key)
        names = self._start()[0]
        if not self._health.healthy:
            self.stats.local_decisions += 1
            return None
        try:
            (update,) = await read_stored(self._client, names, [tid], self._timeout)
        except Exception as error:  # noqa: BLE001
            self._health.fail(error)
            return None
        self.stats.round_trips += 1
        return update

    async def join(self, task_keys: list[str], hold_for: float) -> list[FleetUpdate | None]:
        """Read each task's latest observation and holder; take the leases nobody holds.

        What a process does when it starts waiting on tasks: those another live
        process polls, it listens to; the others it polls (their leases are now
        its own, for ``hold_for`` plus ``lease_ttl``). One round trip per 500 tasks.

        Returns:
            One update per key, in order: its ``holder`` is this process's ``origin``
            when the lease is ours, its payload empty when nothing was published yet.
            All ``None`` when Redis is unreachable (every task is then ours, locally).
        """
        _check_seconds("hold_for", hold_for)
        tids = [task_id(key) for key in task_keys]
        names = self._start()[0]
        if not self._health.healthy or not tids:
            self.stats.local_decisions += bool(tids)
            return [None] * len(tids)
        if not self._members_read.is_set():
            # Who is alive must be known before a caller decides to listen to a holder.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._members_read.wait(), self._timeout)
        lease_ms = _us(hold_for) // 1000 + self._lease_ms
        updates: list[FleetUpdate | None] = []
        try:
            for start in range(0, len(tids), STORED_PER_ROUND_TRIP):
                chunk = tids[start : start + STORED_PER_ROUND_TRIP]
                keys = [names.members]
                for tid in chunk:
                    keys += [names.latest(tid), names.lease(tid), names.ears(tid)]
                joined = update_header(JOINED, self.origin, "")
                flat = await self._run(
                    scripts.JOIN,
                    tuple(keys),
                    (_wall_us(), self.origin, lease_ms, self._lease_ms, names.channel, joined),
                )
                for tid, i in zip(chunk, range(0, len(flat), 3), strict=True):
                    update = stored_update(flat[i], flat[i + 1], flat[i + 2])
                    if update is not None and update.holder == self.origin:
                        self._held.add(tid)
                    updates.append(update)
        except Exception as error:  # noqa: BLE001
            # A bulk call may be slow on a busy machine without Redis being down: the
            # tasks not read are then claimed one by one, as any task nobody holds.
            if not (isinstance(error, TimeoutError) and await self._health.answers()):
                self._health.fail(error)
            return updates + [None] * (len(tids) - len(updates))
        return updates

    async def subscribe(self, task_key: str, callback: UpdateCallback) -> None:
        """Have ``callback`` receive the task's updates published by other processes.

        One callback per task (a second replaces the first). It runs on the event loop,
        must not block, and may see an update twice (after a reconnection the latest
        observation is delivered again): treat updates as idempotent. Returns once the
        fleet channel is being read, so no update published afterwards is missed
        (unless Redis is unreachable: then at once). Costs no round trip once the
        channel is read.
        """
        tid = task_id(task_key)
        channel = self._start()[1]
        channel.subscriptions[tid] = callback
        await channel.wait_reading()

    def unsubscribe(self, task_key: str) -> None:
        """Stop delivering the task's updates here (no round trip)."""
        if self._channel is not None:
            self._channel.subscriptions.pop(task_id(task_key), None)

    async def aclose(self) -> None:
        """Release this process's leases, stop listening, close what the coordinator built.

        Leases go in one round trip, so other processes take their tasks over at once;
        the client is closed only if the coordinator built it from a URL. Calls after
        this raise ``ClientClosedError``.
        """
        if self._closed:
            return
        self._closed = True
        if self._channel is not None:
            await self._channel.close()
            self._channel.subscriptions.clear()
        await stop(self._heartbeat)
        await self._health.close()
        if self._health.healthy and self._names is not None:
            names = self._names
            with contextlib.suppress(Exception):
                async with self._client.pipeline(transaction=False) as pipe:
                    for tid in self._held:
                        message = release_message(self.origin, tid)
                        pipe.eval(
                            scripts.RELEASE.source,
                            1,
                            names.lease(tid),
                            self.origin,
                            names.channel,
                            message,
                        )
                    # Our heartbeat ends now: leases we could not release go at once.
                    pipe.zadd(names.members, {self.origin: 0}, xx=True)
                    await bounded(pipe.execute(), self._timeout)
        self._held.clear()
        if self._pool is not None:
            await self._client.aclose()
            await self._pool.disconnect()

    # -- internals ----------------------------------------------------------------

    def _start(self) -> tuple[Names, FleetChannel]:
        """The names in use and the fleet channel, started at the first call."""
        if self._closed:
            raise ClientClosedError("the fleet coordinator was closed")
        if self._names is None or self._channel is None:
            self._names = Names.of(self.namespace)
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._beat_forever(), name="koodrive-fleet-heartbeat"
            )
            self._channel = FleetChannel(
                self._client,
                self._names,
                origin=self.origin,
                health=self._health,
                stats=self.stats,
                timeout=self._timeout,
                on_pause=self._paused_by_other,
                describe=self._label,
            )
        return self._names, self._channel

    async def _beat_forever(self) -> None:
        """Renew this process's heartbeat; tell ``on_holder_gone`` of lapsed ones."""
        names = self._start()[0]
        every = min(HEARTBEAT_EVERY, self.lease_ttl / 4)
        lease_us = _us(self.lease_ttl)
        while True:
            await self._health.recovered.wait()
            try:
                now, flat = await self._run(
                    scripts.HEARTBEAT, (names.members,), (_wall_us(), self.origin, lease_us)
                )
            except Exception as error:  # noqa: BLE001
                self._health.fail(error)
                continue
            self.stats.heartbeats += 1
            self._saw_members(int(now), flat)
            await asyncio.sleep(every)  # real time: heartbeats lapse on the server's clock

    def _saw_members(self, server_now: int, flat: list[Any]) -> None:
        local_now = time.monotonic()
        members = {
            bytes(flat[i]).decode(errors="replace"): local_now
            + (float(flat[i + 1]) - server_now) / 1_000_000
            for i in range(0, len(flat), 2)
        }
        self._members = members
        self._members_read.set()
        self._gone &= members.keys()
        for origin, ends in members.items():
            if ends > local_now:
                self._gone.discard(origin)
            elif origin not in self._gone and origin != self.origin:
                self._gone.add(origin)
                if self.on_holder_gone is not None:
                    try:
                        self.on_holder_gone(origin)
                    except Exception:
                        logger.exception("the fleet's on_holder_gone callback raised; ignoring it")

    def _label(self) -> str:
        return f"fleet coordinator (namespace {self.namespace})"

    def _fallback_text(self) -> str:
        rate = (
            f"{self.fallback_rate:g}/s"
            if self.fallback_rate is not None
            else f"the fleet's rate / {self.fleet_size}"
        )
        return (
            f"requests at {rate} in this process, every task polled by its own process, "
            "updates not shared"
        )

    def _rate_args(self, rate: float | None, burst: int) -> tuple[int, int]:
        """The GCRA's interval and burst tolerance in µs, checked once per pair."""
        key = (rate, burst)
        cached = self._rates.get(key)
        if cached is not None:
            return cached
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise InvalidArgumentError(
                f"rate must be above 0 requests per second or None; got {rate!r}"
            )
        if not isinstance(burst, int) or burst < 1:
            raise InvalidArgumentError(f"burst must be an integer of at least 1; got {burst!r}")
        interval = 0 if rate is None else round(1_000_000 / rate)
        self._rates[key] = cached = (interval, (burst - 1) * interval)
        return cached

    async def _run(
        self, script: scripts.LuaScript, keys: tuple[str, ...], args: tuple[object, ...]
    ) -> Any:
        """Run a fleet script (bounded in time) and count its round trips."""
        answer, sent = await scripts.run_script(self._client, script, keys, args, self._timeout)
        self.stats.round_trips += 2 if sent else 1
        self.stats.scripts_sent += sent
        return answer

    async def _claim(
        self,
        task_key: str,
        hold_for: float,
        book: bool,
        rate: float | None,
        burst: int,
        max_wait: float | None,
        store: bytes,
    ) -> Claim:
        _check_seconds("hold_for", hold_for)
        if len(store) > MAX_PAYLOAD:
            raise InvalidArgumentError(
                f"a fleet observation is at most {MAX_PAYLOAD} bytes; got {len(store)}"
            )
        tid = task_id(task_key)
        names = self._start()[0]
        lease_ms = _us(hold_for) // 1000 + self._lease_ms
        if self._health.healthy:
            interval, tolerance, limit = -1, 0, -1
            if book:
                interval, tolerance = self._rate_args(rate, burst)
                limit = -1 if max_wait is None else _us(max_wait)
            keys, joined = self._claim_names(names, tid)
            args = (
                _wall_us(),
                self._origin_bytes,
                lease_ms,
                interval,
                tolerance,
                limit,
                store,
                self._lease_ms,
                names.channel,
                joined,
            )
            try:
                answer = await self._run(scripts.CLAIM, keys, args)
            except Exception as error:  # noqa: BLE001
                self._health.fail(error)
            else:
                held, left, wait, booked, holder, listened = answer
                if held:
                    self._held.add(tid)
                else:
                    self._held.discard(tid)
                return Claim(
                    held=bool(held),
                    expires_in=max(0, int(left)) / 1000,
                    wait=None if int(wait) < 0 else int(wait) / 1_000_000,
                    booked=bool(booked),
                    holder=bytes(holder).decode(errors="replace"),
                    listened=bool(listened),
                )
        self._held.add(tid)
        if not book:
            self.stats.local_decisions += 1
            return Claim(True, lease_ms / 1000, local=True, listened=False)
        wait_local = self._reserve_locally(rate, burst, max_wait)
        booked_local = max_wait is None or wait_local <= max_wait
        return Claim(True, lease_ms / 1000, wait_local, booked_local, local=True, listened=False)

    def _claim_names(self, names: Names, tid: str) -> tuple[tuple[str, ...], bytes]:
        """A claim's keys and its join message, made once per task (claimed at each poll)."""
        made = self._claim_cache.get(tid)
        if made is None:
            if len(self._claim_cache) >= _CLAIM_CACHE:
                self._claim_cache.clear()
            keys = (names.lease(tid), names.members, names.ears(tid), names.gate, names.latest(tid))
            made = self._claim_cache[tid] = (keys, joined_message(self.origin, tid))
        return made

    def _local_rate(self, rate: float) -> float:
        if self.fallback_rate is not None:
            return self.fallback_rate
        return rate / self.fleet_size

    def _reserve_locally(self, rate: float | None, burst: int, max_wait: float | None) -> float:
        self.stats.local_decisions += 1
        if rate is None:
            return self._local.reserve(self._health.now(), None, burst, max_wait)
        share = self._local_rate(rate)
        local_burst = max(1, math.floor(burst * min(1.0, share / rate)))
        return self._local.reserve(self._health.now(), share, local_burst, max_wait)

    def _paused_by_other(self, seconds: float) -> None:
        """Another process paused the fleet: pause local decisions too, tell the core."""
        self._local.pause(self._health.now(), seconds)
        if self.on_pause is not None:
            try:
                self.on_pause(seconds)
            except Exception:
                logger.exception("the fleet's on_pause callback raised; ignoring it")
