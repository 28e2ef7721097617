"""Fleet mode when Redis is down, restarted or loses connections; arguments, state and closing."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest
from redis_server import RedisServer

from koodrive_tasks import ClientClosedError, InvalidArgumentError
from koodrive_tasks.fleet import FleetUpdate, RedisCoordinator
from koodrive_tasks.testing import VirtualClock

Make = Callable[..., RedisCoordinator]
MakeServer = Callable[..., RedisServer]
NOWHERE = "redis://127.0.0.1:1/0"  # for tests that never connect


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (real time: a real server recovers in real time) until ``condition()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def fleet_warnings(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "koodrive_tasks" and r.levelno == logging.WARNING and words in r.getMessage()
    ]


async def test_redis_down_at_start_means_local_decisions_and_one_warning(
    make_server: MakeServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Unreachable from the start: a local GCRA at fallback_rate, local claims, dropped publishes."""
    server = make_server(start=False)
    caplog.set_level(logging.INFO, logger="koodrive_tasks")
    # A clock that stands still: the local decisions' arithmetic, not the machine's speed.
    fleet = RedisCoordinator(
        server.url, namespace=namespace, fallback_rate=10, clock=VirtualClock(autojump=False)
    )
    try:
        waits = [await fleet.reserve(100, 1) for _ in range(3)]
        claim = await fleet.claim("task-a", 1.0)
        published = await fleet.publish("task-a", b"x", final=False)
        latest = await fleet.latest("task-a")
        await fleet.subscribe("task-a", lambda update: None)  # returns at once
        assert [round(w, 2) for w in waits] == [0.0, 0.1, 0.2]
        assert claim.held
        assert claim.local
        assert (published, latest) == (False, None)
        assert not fleet.healthy
        assert "fallback" in repr(fleet)
        assert len(fleet_warnings(caplog, "unreachable")) == 1
        assert fleet.stats.outages == 1
        assert fleet.stats.dropped_publishes == 1
    finally:
        await fleet.aclose()


async def test_the_coordinator_recovers_when_redis_comes_up(
    make_server: MakeServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that starts later is found by the probe; decisions move back to Redis."""
    server = make_server(start=False)
    caplog.set_level(logging.INFO, logger="koodrive_tasks")
    fleet = RedisCoordinator(server.url, namespace=namespace)
    try:
        assert await fleet.claim("task-a", 1.0)
        server.start()
        await until(lambda: fleet.healthy)
        other = RedisCoordinator(server.url, namespace=namespace)
        try:
            assert not (await fleet.claim("task-a", 1.0)).local
            assert not await other.claim("task-a", 1.0)
        finally:
            await other.aclose()
        assert len(fleet_warnings(caplog, "unreachable")) == 1
        assert len(fleet_warnings(caplog, "answers again")) == 1
    finally:
        await fleet.aclose()


async def test_a_restart_mid_use_warns_once_then_the_fleet_resumes(
    make_server: MakeServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash and restart: one warning, local decisions meanwhile, then shared again, channel too."""
    server = make_server()
    caplog.set_level(logging.INFO, logger="koodrive_tasks")
    fleet = RedisCoordinator(server.url, namespace=namespace)
    other = RedisCoordinator(server.url, namespace=namespace)
    got: list[FleetUpdate] = []
    try:
        await fleet.subscribe("task-a", got.append)
        await fleet.reserve(10, 1)
        server.stop(sig=9)
        for _ in range(5):  # every call during the outage is answered, none raises
            await fleet.reserve(10, 1)
        assert not fleet.healthy
        server.start()
        await until(lambda: fleet.healthy)
        assert await fleet.reserve(10, 1) == 0.0  # the restarted server's fresh gate
        await until(lambda: other.healthy)
        await other.publish("task-a", b"after", final=False)
        await until(lambda: bool(got))
        assert got[-1].payload == b"after"
        assert len(fleet_warnings(caplog, "unreachable")) <= 2  # one per coordinator
        assert fleet.stats.outages == 1
    finally:
        await fleet.aclose()
        await other.aclose()


async def test_a_server_that_stops_answering_costs_one_command_timeout(
    make_server: MakeServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A frozen server (SIGSTOP): the call gives up after command_timeout, later calls decide locally."""
    import signal

    server = make_server()
    caplog.set_level(logging.INFO, logger="koodrive_tasks")
    fleet = RedisCoordinator(server.url, namespace=namespace, command_timeout=0.3)
    try:
        await fleet.reserve(10, 1)
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)
        loop = asyncio.get_running_loop()
        try:
            started = loop.time()
            await fleet.reserve(10, 1)
            first = loop.time() - started
            started = loop.time()
            await fleet.reserve(10, 1)
            second = loop.time() - started
            assert not fleet.healthy
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert 0.25 < first < 1.0
        assert second < 0.05
        await until(lambda: fleet.healthy)
        assert len(fleet_warnings(caplog, "unreachable")) == 1
    finally:
        await fleet.aclose()


async def test_a_dropped_channel_connection_is_resynced_without_an_outage(
    make_server: MakeServer, namespace: str
) -> None:
    """When only the pub/sub connection dies, it reconnects and delivers what it missed."""
    import redis.asyncio

    server = make_server()
    raw = redis.asyncio.Redis.from_url(server.url)
    listener = RedisCoordinator(server.url, namespace=namespace)
    got: list[FleetUpdate] = []
    try:
        await listener.subscribe("task-a", got.append)
        await raw.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        publisher = RedisCoordinator(server.url, namespace=namespace)
        try:
            await publisher.publish("task-a", b"missed", final=False)
        finally:
            await publisher.aclose()
        await until(lambda: bool(got))
        assert got[0].payload == b"missed"
        assert listener.healthy
        assert listener.stats.outages == 0
    finally:
        await listener.aclose()
        await raw.aclose()


async def test_a_failing_callback_is_logged_and_the_others_still_run(
    make_coordinator: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in a subscriber or on_pause is logged; delivery goes on."""

    def broken(_: Any) -> None:
        raise RuntimeError("boom")

    publisher, listener = make_coordinator(), make_coordinator(on_pause=broken)
    got = asyncio.Event()
    await listener.subscribe("task-a", broken)
    await listener.subscribe("task-b", lambda update: got.set())
    await publisher.pause(0.01)
    await publisher.publish("task-a", b"x", final=False)
    await publisher.publish("task-b", b"y", final=False)
    await asyncio.wait_for(got.wait(), 5)
    errors = [
        r for r in caplog.records if r.levelno == logging.ERROR and r.name == "koodrive_tasks"
    ]
    assert len(errors) == 2
    assert listener.healthy


async def test_closing_hands_the_leases_over_at_once(make_coordinator: Make) -> None:
    """aclose() releases this process's leases, so others need not wait for them to lapse."""
    leaving, staying = make_coordinator(), make_coordinator()
    for task in ("a", "b", "c"):
        assert await leaving.claim(task, 60.0)
    await leaving.aclose()
    assert [bool(await staying.claim(task, 1.0)) for task in ("a", "b", "c")] == [True] * 3


async def test_a_closed_coordinator_refuses_calls(make_coordinator: Make) -> None:
    """After aclose() every call raises ClientClosedError; closing twice is harmless."""
    fleet = make_coordinator()
    await fleet.reserve(10, 1)
    await fleet.aclose()
    await fleet.aclose()
    with pytest.raises(ClientClosedError):
        await fleet.reserve(10, 1)
    with pytest.raises(ClientClosedError):
        await fleet.claim("task-a", 1.0)
    assert "closed" in repr(fleet)


async def test_a_coordinator_works_as_an_async_context_manager(
    shared_server: RedisServer, namespace: str
) -> None:
    """async with RedisCoordinator(...) closes it on exit."""
    async with RedisCoordinator(shared_server.url, namespace=namespace) as fleet:
        assert await fleet.reserve(None) == 0.0
    with pytest.raises(ClientClosedError):
        await fleet.reserve(None)


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="Python 3.10 cannot tell a lost cancellation"
)
@pytest.mark.parametrize("steps", range(4))
async def test_cancelling_a_call_always_raises_cancelled_error(
    shared_server: RedisServer, namespace: str, steps: int
) -> None:
    """A cancelled call raises CancelledError even through a client that swallows it.

    A client given a socket_timeout sends under asyncio.wait_for, which loses some
    cancellations before Python 3.12.
    """
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(shared_server.url, socket_timeout=1.0)
    fleet = RedisCoordinator(client, namespace=namespace)
    try:
        await fleet.reserve(10, 1)
        call = asyncio.ensure_future(fleet.reserve(10, 1))
        for _ in range(steps):
            await asyncio.sleep(0)
        if call.done():
            pytest.skip("the call ended before the cancellation")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    finally:
        await fleet.aclose()
        await client.aclose()


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda f: f.reserve(0, 1), "rate"),
        (lambda f: f.reserve(10, 0), "burst"),
        (lambda f: f.reserve(float("nan"), 1), "rate"),
        (lambda f: f.claim("task", -1.0), "hold_for"),
        (lambda f: f.claim("", 1.0), "task key"),
        (lambda f: f.pause(0), "seconds"),
        (lambda f: f.publish("task", b"x", final=False, hold_for=float("inf")), "hold_for"),
    ],
)
async def test_bad_arguments_raise_invalid_argument_error(call: Any, words: str) -> None:
    """Out-of-range arguments are refused with InvalidArgumentError before any I/O."""
    fleet = RedisCoordinator(NOWHERE)
    with pytest.raises(InvalidArgumentError, match=words):
        await call(fleet)
    assert fleet.stats.round_trips == 0
    assert fleet.stats.outages == 0  # nothing was tried
    await fleet.aclose()


@pytest.mark.parametrize(
    "kwargs",
    [{"namespace": "has space"}, {"namespace": "{tag}"}, {"lease_ttl": 0}, {"max_connections": 1}],
)
def test_bad_settings_raise_invalid_argument_error(kwargs: dict[str, Any]) -> None:
    """A namespace unfit for a key, a zero TTL or a pool too small is refused at construction."""
    with pytest.raises(InvalidArgumentError):
        RedisCoordinator(NOWHERE, **kwargs)


def test_the_default_namespace_is_a_hash_of_the_identity() -> None:
    """use_identity() derives a namespace that does not show the identity; an explicit one wins."""
    derived = RedisCoordinator(NOWHERE)
    derived.use_identity("app-1234567")
    same = RedisCoordinator(NOWHERE)
    same.use_identity("app-1234567")
    explicit = RedisCoordinator(NOWHERE, namespace="mine")
    explicit.use_identity("app-1234567")
    assert derived.namespace == same.namespace
    assert "1234567" not in derived.namespace
    assert len(derived.namespace) == 12
    assert explicit.namespace == "mine"
    assert RedisCoordinator(NOWHERE).namespace == "default"


async def test_the_identity_cannot_change_once_in_use(shared_server: RedisServer) -> None:
    """Setting another identity after the first call raises: processes would split the fleet."""
    async with RedisCoordinator(shared_server.url) as fleet:
        fleet.use_identity("app-1")
        await fleet.reserve(None)
        fleet.use_identity("app-1")
        with pytest.raises(InvalidArgumentError):
            fleet.use_identity("app-2")


async def test_no_password_in_the_repr_or_the_warning(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The URL's user and password appear neither in repr() nor in the outage warning."""
    server = make_server(start=False)
    url = f"redis://alice:s3cr3t-pw@127.0.0.1:{server.port}/0"
    caplog.set_level(logging.INFO, logger="koodrive_tasks")
    fleet = RedisCoordinator(url, namespace="secretive")
    try:
        await fleet.subscribe("task-a", lambda update: None)
        await fleet.reserve(10, 1)
        text = repr(fleet) + " ".join(r.getMessage() for r in caplog.records)
        assert f"127.0.0.1:{server.port}" in text
        assert "s3cr3t" not in text
        assert "alice" not in text
        assert "namespace='secretive'" in repr(fleet)
        assert "subscriptions=1" in repr(fleet)
    finally:
        await fleet.aclose()
