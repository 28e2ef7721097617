"""The values fleet mode hands to the core: claims, updates, statistics."""

from __future__ import annotations

import attrs


@attrs.frozen
class Claim:
    """The answer to :meth:`RedisCoordinator.claim`: who polls a task, and until when.

    True in a boolean context when this process holds the lease.

    Attributes:
        held: Whether this process holds the task's lease (and so polls it).
        expires_in: Seconds until the lease lapses: ours if held, else the holder's
            (try to claim again then; 0.0 when the holder's lease just ended).
        wait: :meth:`RedisCoordinator.claim_and_reserve` only: seconds until the
            booked request slot (0.0: send now); ``None`` when no slot was booked
            (not held, or not asked for).
        booked: Whether a slot was booked: ``False`` when the slot lay beyond
            ``max_wait`` (then ``wait`` says how far).
        local: Whether the answer was decided in this process because Redis is
            unreachable (the lease then exists nowhere else).
        holder: The id (``RedisCoordinator.origin``) of the process that holds the
            lease: ours when held, the other process's when not; ``None`` when
            decided locally.
        listened: Whether other processes listen to the task (they claimed it, or
            joined it, while this process held it): then the holder publishes each
            change at once; else it passes it to its next claim (``store=``).
    """

    held: bool
    expires_in: float
    wait: float | None = None
    booked: bool = False
    local: bool = False
    holder: str | None = None
    listened: bool = True

    def __bool__(self) -> bool:
        return self.held


@attrs.frozen
class FleetUpdate:
    """An observation of a task, as published by the process that polled it.

    Attributes:
        payload: The bytes the publisher passed (the core's encoding of its observation).
        final: Whether the publisher saw the task end.
        lease_expires_in: Seconds until the publisher's lease on the task lapses, when
            known: a listener need not try to claim the task before then.
        holder: The id of the process that polls the task: the publisher of a live
            update, the lease's holder for a stored one; ``None`` when nobody holds
            its lease (it was released, or lapsed): then a listener should claim it.
            A release arrives as an update with an empty payload and no holder.
        joined: Another process started listening to the task: its holder should
            publish what it saw last (the payload is empty).
    """

    payload: bytes
    final: bool
    lease_expires_in: float | None
    holder: str | None = None
    joined: bool = False


@attrs.define
class FleetStats:
    """What a coordinator has done, for dashboards, tests and benchmarks.

    Attributes:
        round_trips: Commands, scripts and pipelines sent to Redis (the pub/sub
            connection's reads aside).
        scripts_sent: Scripts sent in full (``EVAL``) because the server did not have
            them: the first use on a server, or after a restart, a failover or
            ``SCRIPT FLUSH``.
        outages: Times Redis became unreachable or failing and the coordinator
            started deciding locally.
        local_decisions: Calls answered locally during outages.
        dropped_publishes: Observations not shared because Redis was unreachable.
        updates_received: Task updates from other processes delivered to a subscriber.
        pauses_received: Pauses started by other processes.
        heartbeats: Heartbeats sent (counted in ``round_trips`` too): twice a second,
            whatever the number of tasks.
    """

    round_trips: int = 0
    scripts_sent: int = 0
    outages: int = 0
    local_decisions: int = 0
    dropped_publishes: int = 0
    updates_received: int = 0
    pauses_received: int = 0
    heartbeats: int = 0
