"""The fleet's scripts against a real server: GCRA, pause, leases, observations, keys and TTLs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest
from redis_server import RedisServer

from koodrive_tasks import InvalidArgumentError
from koodrive_tasks.fleet import MAX_PAYLOAD, FleetUpdate, RedisCoordinator

Make = Callable[..., RedisCoordinator]
SLACK = 0.04  # seconds: calls made back to back are a few ms apart even on a busy machine


def near(values: list[float], expected: list[float]) -> bool:
    return all(abs(v - e) <= SLACK for v, e in zip(values, expected, strict=True))


async def timed(calls: list[Callable[[], Awaitable[float]]]) -> tuple[list[float], list[float]]:
    """Each call's wait, and when (on this machine's clock, from the first) it was made."""
    start = time.monotonic()
    made: list[float] = []
    waits: list[float] = []
    for call in calls:
        made.append(time.monotonic() - start)
        waits.append(await call())
    return made, waits


def gcra(made: list[float], rate: float, burst: int) -> list[float]:
    """The waits a shared GCRA timeline gives requests made at these times: the oracle the
    script's answers are checked against, so that a loaded machine's delays between the
    calls cannot fail the test."""
    interval = 1 / rate
    waits: list[float] = []
    tat = made[0]
    for at in made:
        tat = max(tat, at)
        waits.append(max(0.0, tat - (burst - 1) * interval - at))
        tat += interval
    return waits


async def keys_of(raw: Any, namespace: str) -> list[bytes]:
    return [key async for key in raw.scan_iter(match=f"kdt:{{{namespace}}}:*")]


async def task_keys_of(raw: Any, namespace: str) -> list[bytes]:
    """The keys of tasks: not the fleet's rate gate, nor its members' heartbeats."""
    return [k for k in await keys_of(raw, namespace) if b":lease:" in k or b":latest:" in k]


async def test_reserve_admits_the_burst_then_spaces_requests_at_the_rate(
    make_coordinator: Make,
) -> None:
    """reserve() lets `burst` requests go at once, then one every 1/rate seconds."""
    fleet = make_coordinator()
    made, waits = await timed([lambda: fleet.reserve(10, 3)] * 6)
    assert gcra([0.0] * 6, 10, 3) == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])  # the oracle
    assert near(waits, gcra(made, 10, 3)), (made, waits)


async def test_two_coordinators_share_one_timeline(make_coordinator: Make) -> None:
    """Slots booked by two coordinators of one namespace come from one shared rate."""
    first, second = make_coordinator(), make_coordinator()
    made, waits = await timed(
        [partial((first if i % 2 else second).reserve, 20, 1) for i in range(6)]
    )
    assert near(waits, gcra(made, 20, 1)), (made, waits)


async def test_namespaces_do_not_share_a_rate(make_coordinator: Make) -> None:
    """Another namespace has a timeline of its own."""
    first, other = make_coordinator(), make_coordinator(namespace="elsewhere-ns")
    assert await first.reserve(1, 1) == 0.0
    assert await other.reserve(1, 1) == 0.0
    assert await first.reserve(1, 1) > 0.9


async def test_a_slot_beyond_max_wait_is_not_booked(make_coordinator: Make) -> None:
    """reserve(max_wait=...) reports a farther slot without taking it."""
    fleet = make_coordinator()
    await fleet.reserve(10, 1)
    too_far = await fleet.reserve(10, 1, max_wait=0.05)
    again = await fleet.reserve(10, 1)
    assert too_far > 0.05
    assert near([too_far, again], [0.1, 0.1]), (too_far, again)


async def test_without_a_rate_only_the_pause_delays(make_coordinator: Make) -> None:
    """reserve(None) is immediate unless the fleet is paused, then it waits for the pause's end."""
    fleet = make_coordinator()
    assert [await fleet.reserve(None) for _ in range(5)] == [0.0] * 5
    await fleet.pause(0.3)
    assert near([await fleet.reserve(None)], [0.3])


async def test_after_a_pause_the_fleet_resumes_at_the_rate_not_in_a_burst(
    make_coordinator: Make,
) -> None:
    """A pause moves the timeline past its end: no burst credit survives it."""
    fleet = make_coordinator()
    await fleet.reserve(10, 5)  # records the burst tolerance
    assert await fleet.pause(0.3)
    waits = [await fleet.reserve(10, 5) for _ in range(3)]
    assert near(waits, [0.3, 0.4, 0.5]), waits


async def test_a_shorter_pause_does_not_shorten_or_extend_one_on(make_coordinator: Make) -> None:
    """pause() reports False when a pause already covers it, and the longer one holds."""
    fleet = make_coordinator()
    assert await fleet.pause(0.5)
    assert not await fleet.pause(0.1)
    assert near([await fleet.reserve(None)], [0.5])


async def test_a_pause_reaches_the_other_processes_at_once(make_coordinator: Make) -> None:
    """The other coordinators' on_pause runs with the pause's length; the pauser's does not."""
    heard: dict[str, list[float]] = {"self": [], "other": []}
    arrived = asyncio.Event()

    def other(seconds: float) -> None:
        heard["other"].append(seconds)
        arrived.set()

    pauser = make_coordinator(on_pause=heard["self"].append)
    listener = make_coordinator(on_pause=other)
    await listener.subscribe("any-task", lambda update: None)  # the channel is read from here on
    await pauser.pause(0.75)
    await asyncio.wait_for(arrived.wait(), 5)
    assert heard == {"self": [], "other": [0.75]}
    assert listener.stats.pauses_received == 1


async def test_refund_gives_one_slot_back_but_not_during_a_pause(make_coordinator: Make) -> None:
    """refund() moves the timeline back one interval; during a pause it gives nothing back."""
    fleet = make_coordinator()
    await fleet.reserve(10, 1)
    await fleet.reserve(10, 1)
    assert await fleet.refund(10)
    assert near([await fleet.reserve(10, 1)], [0.1])
    await fleet.pause(0.2)
    assert not await fleet.refund(10)


async def test_the_first_claim_holds_the_lease_and_others_see_when_it_ends(
    make_coordinator: Make,
) -> None:
    """claim() grants the lease to one process; the others learn when it will lapse."""
    holder, other = make_coordinator(lease_ttl=2.0), make_coordinator(lease_ttl=2.0)
    mine = await holder.claim("task-a", 1.0)
    theirs = await other.claim("task-a", 1.0)
    assert mine.held
    assert bool(mine)
    assert abs(mine.expires_in - 3.0) < SLACK
    assert not theirs.held
    assert not bool(theirs)
    assert 2.9 < theirs.expires_in <= 3.0


async def test_the_holder_renews_its_lease_for_its_next_poll(make_coordinator: Make) -> None:
    """A second claim by the holder extends the lease to its next poll plus lease_ttl."""
    holder, other = make_coordinator(lease_ttl=0.5), make_coordinator(lease_ttl=0.5)
    await holder.claim("task-a", 0.1)
    renewed = await holder.claim("task-a", 4.0)
    assert renewed.held
    assert abs(renewed.expires_in - 4.5) < SLACK
    assert 4.4 < (await other.claim("task-a", 1.0)).expires_in <= 4.5


async def test_a_lapsed_lease_goes_to_the_next_claimant(make_coordinator: Make) -> None:
    """Once the holder stops renewing, another process gets the lease after hold_for + lease_ttl."""
    holder, other = make_coordinator(lease_ttl=0.1), make_coordinator(lease_ttl=0.1)
    await holder.claim("task-a", 0.1)
    assert not await other.claim("task-a", 1.0)
    await asyncio.sleep(0.3)
    assert await other.claim("task-a", 1.0)
    assert not await holder.claim("task-a", 1.0)


async def test_release_hands_the_lease_over_at_once(make_coordinator: Make) -> None:
    """release() by the holder lets another process claim immediately; by others it does nothing."""
    holder, other = make_coordinator(), make_coordinator()
    await holder.claim("task-a", 10.0)
    assert not await other.release("task-a")
    assert not await other.claim("task-a", 1.0)
    assert await holder.release("task-a")
    assert await other.claim("task-a", 1.0)


async def test_claim_and_reserve_books_a_slot_only_for_the_holder(make_coordinator: Make) -> None:
    """A process that does not hold the lease gets no slot, so it does not eat the fleet's rate."""
    holder, other = make_coordinator(), make_coordinator()
    start = time.monotonic()
    first = await holder.claim_and_reserve("task-a", 1.0, 10, 1)
    refused = await other.claim_and_reserve("task-a", 1.0, 10, 1)
    made = time.monotonic() - start
    second = await holder.claim_and_reserve("task-a", 1.0, 10, 1)
    assert (first.held, first.booked, first.wait) == (True, True, 0.0)
    assert (refused.held, refused.booked, refused.wait) == (False, False, None)
    assert second.held
    assert second.booked
    assert second.wait is not None
    assert near([second.wait], [gcra([0.0, made], 10, 1)[1]])  # the refusal booked nothing


async def test_claim_and_reserve_respects_max_wait(make_coordinator: Make) -> None:
    """A slot beyond max_wait is reported, not booked, and the lease is still renewed."""
    fleet = make_coordinator()
    await fleet.reserve(2, 1)
    claim = await fleet.claim_and_reserve("task-a", 1.0, 2, 1, max_wait=0.1)
    assert claim.held
    assert not claim.booked
    assert claim.wait is not None
    assert claim.wait > 0.4
    assert near([await fleet.reserve(2, 1)], [0.5])


async def test_a_late_joiner_reads_the_latest_observation_at_once(make_coordinator: Make) -> None:
    """latest() returns what the holder published last, with the lease's time left."""
    holder, joiner = make_coordinator(lease_ttl=1.0), make_coordinator(lease_ttl=1.0)
    assert await joiner.latest("task-a") is None
    await holder.claim("task-a", 2.0)
    await holder.publish("task-a", b"progress=10", final=False)
    await holder.publish("task-a", b"progress=40", final=False)
    latest = await joiner.latest("task-a")
    assert latest is not None
    assert (latest.payload, latest.final) == (b"progress=40", False)
    assert latest.lease_expires_in is not None
    assert 2.9 < latest.lease_expires_in <= 3.0


async def test_publish_fans_out_to_the_other_processes_subscribers(make_coordinator: Make) -> None:
    """A subscriber elsewhere receives every update, final included; the publisher's own does not."""
    publisher, listener = make_coordinator(), make_coordinator()
    got: list[FleetUpdate] = []
    own: list[FleetUpdate] = []
    done = asyncio.Event()

    def receive(update: FleetUpdate) -> None:
        got.append(update)
        if update.final:
            done.set()

    await listener.subscribe("task-a", receive)
    await listener.subscribe("task-b", lambda update: pytest.fail("task-b got task-a's update"))
    await publisher.subscribe("task-a", own.append)
    await publisher.claim("task-a", 1.0)
    await publisher.publish("task-a", b"one", final=False)
    await publisher.publish("task-a", b"two", final=True)
    await asyncio.wait_for(done.wait(), 5)
    assert [(u.payload, u.final) for u in got] == [(b"one", False), (b"two", True)]
    assert own == []


async def test_unsubscribe_stops_the_updates(make_coordinator: Make) -> None:
    """After unsubscribe() a task's updates are no longer delivered."""
    publisher, listener = make_coordinator(), make_coordinator()
    got: list[bytes] = []
    marker = asyncio.Event()
    await listener.subscribe("task-a", lambda update: got.append(update.payload))
    await listener.subscribe("marker", lambda update: marker.set())
    listener.unsubscribe("task-a")
    await publisher.publish("task-a", b"unseen", final=False)
    await publisher.publish("marker", b"", final=False)
    await asyncio.wait_for(marker.wait(), 5)
    assert got == []


async def test_publish_can_renew_the_lease(make_coordinator: Make) -> None:
    """publish(hold_for=...) renews the holder's lease in the same round trip."""
    holder, other = make_coordinator(lease_ttl=0.5), make_coordinator(lease_ttl=0.5)
    await holder.claim("task-a", 0.1)
    await holder.publish("task-a", b"x", final=False, hold_for=5.0)
    assert 5.4 < (await other.claim("task-a", 1.0)).expires_in <= 5.5


async def test_an_observation_larger_than_the_cap_is_refused_before_any_io(
    make_coordinator: Make, raw: Any, namespace: str
) -> None:
    """publish() raises InvalidArgumentError past MAX_PAYLOAD bytes and stores nothing."""
    fleet = make_coordinator()
    assert await fleet.publish("task-a", b"x" * MAX_PAYLOAD, final=False)
    with pytest.raises(InvalidArgumentError, match=str(MAX_PAYLOAD)):
        await fleet.publish("task-b", b"x" * (MAX_PAYLOAD + 1), final=False)
    assert await fleet.latest("task-b") is None
    assert len(await task_keys_of(raw, namespace)) == 1


async def test_a_task_takes_at_most_1_kib_of_the_servers_memory(
    make_coordinator: Make, raw: Any, namespace: str
) -> None:
    """Lease and latest observation of a task, at the largest payload, fit in 1 KiB (MEMORY USAGE)."""
    fleet = make_coordinator()
    await fleet.claim("a task key that is rather long, like a share id / a task id", 30.0)
    await fleet.publish(
        "a task key that is rather long, like a share id / a task id",
        b"\xff" * MAX_PAYLOAD,
        final=False,
    )
    task_keys = await task_keys_of(raw, namespace)
    assert len(task_keys) == 2
    assert sum([await raw.memory_usage(key, samples=0) for key in task_keys]) <= 1024


async def test_the_observation_lives_as_long_as_the_lease_plus_lease_ttl(
    make_coordinator: Make, raw: Any, namespace: str
) -> None:
    """A non-final observation expires lease_ttl after the holder's lease."""
    fleet = make_coordinator(lease_ttl=1.0)
    await fleet.claim("task-a", 4.0)
    await fleet.publish("task-a", b"x", final=False)
    (latest,) = [key for key in await keys_of(raw, namespace) if b":latest:" in key]
    assert 5900 < await raw.pttl(latest) <= 6000


async def test_a_final_observation_and_the_lease_go_after_final_ttl(
    make_coordinator: Make, raw: Any, namespace: str
) -> None:
    """After a final publish the task's keys last final_ttl, then are gone."""
    fleet = make_coordinator(final_ttl=0.2, lease_ttl=5.0)
    await fleet.claim("task-a", 60.0)
    await fleet.publish("task-a", b"done", final=True)
    latest = await fleet.latest("task-a")
    assert latest is not None
    assert latest.final
    ttls = [await raw.pttl(key) for key in await task_keys_of(raw, namespace)]
    assert len(ttls) == 2
    assert all(0 < ttl <= 200 for ttl in ttls), ttls
    await asyncio.sleep(0.3)
    assert await task_keys_of(raw, namespace) == []


async def test_every_key_written_carries_a_ttl(
    make_coordinator: Make, raw: Any, namespace: str
) -> None:
    """Whatever the calls, no key of the namespace is left without an expiry."""
    first, second = make_coordinator(), make_coordinator()
    await first.reserve(5, 2)
    await first.pause(0.5)
    await first.claim_and_reserve("task-a", 3.0, 5, 2)
    await second.claim("task-b", 3.0)
    await second.publish("task-b", b"x", final=False)
    await first.publish("task-c", b"y", final=False)  # published without a lease
    await first.publish("task-a", b"z", final=True)
    await first.refund(5)
    keys = await keys_of(raw, namespace)
    assert len(keys) >= 5
    ttls = {key: await raw.pttl(key) for key in keys}
    assert all(ttl > 0 for ttl in ttls.values()), ttls


async def test_the_gate_expires_about_a_second_after_its_timeline(
    make_coordinator: Make, raw: Any, namespace: str
) -> None:
    """The rate's state lives only while it matters, plus a second."""
    fleet = make_coordinator()
    await fleet.reserve(100, 1)
    assert 0 < await raw.pttl(f"kdt:{{{namespace}}}:gate") <= 1010


async def test_a_flushed_script_cache_is_refilled_without_an_outage(
    make_coordinator: Make, raw: Any
) -> None:
    """After SCRIPT FLUSH the next call sends the script's source (EVAL) and all stays healthy."""
    fleet = make_coordinator()
    await fleet.reserve(10, 1)
    sent = fleet.stats.scripts_sent
    await raw.script_flush()
    await fleet.reserve(10, 1)
    await fleet.reserve(10, 1)
    assert fleet.healthy
    assert fleet.stats.scripts_sent == sent + 1
    assert fleet.stats.outages == 0


async def test_a_server_that_refuses_time_in_scripts_is_timed_by_the_callers_clock(
    make_server: Callable[..., RedisServer],
) -> None:
    """With TIME disabled the scripts fall back to the wall clock sent by the caller."""
    import redis.asyncio
    from redis.exceptions import ResponseError

    server = make_server(config=('rename-command TIME ""',))
    fleet = RedisCoordinator(server.url, namespace="no-time")
    raw = redis.asyncio.Redis.from_url(server.url)
    try:
        with pytest.raises(ResponseError):  # the refusal this test relies on
            await raw.time()
        made, waits = await timed([lambda: fleet.reserve(10, 2)] * 4)
        await fleet.pause(0.3)
        paused_at = time.monotonic()
        left = await fleet.reserve(None)
        assert near(waits, gcra(made, 10, 2)), (made, waits)
        assert near([left], [0.3 - (time.monotonic() - paused_at)])
        assert fleet.healthy
    finally:
        await fleet.aclose()
        await raw.aclose()


async def test_every_script_runs_on_a_cluster_mode_server(
    make_server: Callable[..., RedisServer],
) -> None:
    """On a one-node Redis Cluster every script's keys hash to one slot (no CROSSSLOT)."""
    import redis.asyncio
    from redis.exceptions import ResponseError

    server = make_server(config=("cluster-enabled yes", "cluster-config-file nodes.conf"))
    raw = redis.asyncio.Redis.from_url(server.url)
    fleet = RedisCoordinator(server.url, namespace="cluster")
    try:
        await raw.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        for _ in range(100):
            if b"cluster_state:ok" in await raw.execute_command("CLUSTER", "INFO"):
                break
            await asyncio.sleep(0.05)
        with pytest.raises(ResponseError, match="same slot"):  # the check this test relies on
            await raw.eval("return 1", 2, "kdt:{a}:x", "kdt:{b}:x")
        await fleet.reserve(10, 2)
        await fleet.pause(0.1)
        await fleet.refund(10)
        await fleet.claim_and_reserve("task-a", 1.0, 10, 2)
        await fleet.claim("task-b", 1.0)
        await fleet.publish("task-a", b"x", final=False, hold_for=1.0)
        await fleet.publish("task-a", b"y", final=True)
        assert await fleet.latest("task-a") is not None
        assert await fleet.release("task-b")
        assert fleet.healthy
        assert fleet.stats.outages == 0
    finally:
        await fleet.aclose()
        await raw.aclose()


async def test_a_valkey_py_client_works_as_well(shared_server: RedisServer, namespace: str) -> None:
    """A valkey-py asyncio client object can be passed instead of a URL; the caller keeps it."""
    valkey = pytest.importorskip("valkey.asyncio")
    client = valkey.Valkey.from_url(shared_server.url)
    first = RedisCoordinator(client, namespace=namespace)
    second = RedisCoordinator(client, namespace=namespace)
    got = asyncio.Event()
    try:
        await second.subscribe("task-a", lambda update: got.set())
        assert await first.claim("task-a", 1.0)
        assert not await second.claim("task-a", 1.0)
        await first.publish("task-a", b"x", final=False)
        await asyncio.wait_for(got.wait(), 5)
        assert [await first.reserve(10, 1) for _ in range(2)][1] > 0.05
        assert "Valkey 127.0.0.1" in repr(first)
    finally:
        await first.aclose()
        await second.aclose()
    assert await client.ping()  # not closed by the coordinators
    await client.aclose()


# Shadows the global `redis` for the script that follows it: every command that takes a
# key must name one of KEYS, as Redis Cluster, ACLs and Dragonfly require.
_DECLARED_KEYS_ONLY = """
local real_redis = redis
local declared = {}
for _, key in ipairs(KEYS) do declared[key] = true end
local keyless = {time = true, publish = true}
local function check(command, key)
  if not keyless[string.lower(command)] and not declared[key] then
    error('undeclared key ' .. tostring(key) .. ' for ' .. command)
  end
end
local redis = {
  call = function(command, ...) check(command, (...)) return real_redis.call(command, ...) end,
  pcall = function(command, ...) check(command, (...)) return real_redis.pcall(command, ...) end,
}
"""


class NoScriptError(Exception):
    """What a client raises for NOSCRIPT (matched by name, as for redis-py and valkey-py)."""


class DeclaredKeysOnlyClient:
    """A real client whose scripts fail when they touch a key not passed in KEYS."""

    def __init__(self, real: Any) -> None:
        self._real = real

    async def evalsha(self, *args: Any) -> Any:
        raise NoScriptError("NOSCRIPT")

    async def eval(self, source: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self._real.eval(_DECLARED_KEYS_ONLY + source, numkeys, *keys_and_args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


async def test_every_script_touches_only_keys_it_declares(
    shared_server: RedisServer, namespace: str
) -> None:
    """Each script names every key it reads or writes in KEYS (checked inside the server)."""
    import redis.asyncio
    from redis.exceptions import ResponseError

    real = redis.asyncio.Redis.from_url(shared_server.url)
    checking = DeclaredKeysOnlyClient(real)
    fleet = RedisCoordinator(checking, namespace=namespace)
    try:
        with pytest.raises(ResponseError, match="undeclared key"):  # the check works
            await checking.eval("return redis.call('GET', 'elsewhere')", 0)
        await fleet.reserve(10, 2)
        await fleet.pause(0.1)
        await fleet.refund(10)
        await fleet.claim_and_reserve("task-a", 1.0, 10, 2)
        await fleet.claim("task-b", 1.0)
        await fleet.publish("task-a", b"x", final=False, hold_for=1.0)
        await fleet.publish("task-a", b"y", final=True)
        assert await fleet.release("task-b")
        assert fleet.healthy
        assert fleet.stats.outages == 0
        assert fleet.stats.scripts_sent > 0
    finally:
        await fleet.aclose()
        await real.aclose()
