"""Fleet mode on a three-node Redis Cluster on loopback, through redis-py's RedisCluster client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from redis_server import RedisServer

from koodrive_tasks.fleet import FleetUpdate, RedisCoordinator

CLUSTER_NODE = ("cluster-enabled yes", "cluster-config-file nodes.conf")


@pytest.fixture
def cluster(make_server: Callable[..., RedisServer]) -> Iterator[list[RedisServer]]:
    """Three primaries sharing the 16384 slots, met and agreed on."""
    import redis

    nodes = [make_server(config=CLUSTER_NODE) for _ in range(3)]
    clients = [redis.Redis.from_url(node.url) for node in nodes]
    try:
        for client, (first, last) in zip(
            clients, [(0, 5460), (5461, 10922), (10923, 16383)], strict=True
        ):
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for client in clients[1:]:
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", nodes[0].port)
        deadline = time.monotonic() + 20
        while not all(b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO") for c in clients):
            assert time.monotonic() < deadline, "the cluster did not form"
            time.sleep(0.05)
        yield nodes
    finally:
        for client in clients:
            client.close()


async def test_a_fleet_on_a_three_node_cluster(cluster: list[RedisServer]) -> None:
    """Rate, lease, observation, fan-out and pause work through RedisCluster clients."""
    from redis.asyncio.cluster import RedisCluster

    if not hasattr(RedisCluster, "pubsub"):
        pytest.skip("this redis-py has no pub/sub on its asyncio cluster client")
    first_client = RedisCluster.from_url(cluster[0].url)
    second_client = RedisCluster.from_url(cluster[2].url)
    first = RedisCoordinator(first_client, namespace="cluster-fleet")
    second = RedisCoordinator(second_client, namespace="cluster-fleet")
    got: list[FleetUpdate] = []
    arrived = asyncio.Event()
    try:
        await second.subscribe("task-a", lambda update: (got.append(update), arrived.set()))
        waits = [await first.reserve(10, 2) for _ in range(4)]
        assert [round(w, 1) for w in waits] == [0.0, 0.0, 0.1, 0.2]
        assert await first.claim("task-a", 1.0)
        assert not await second.claim("task-a", 1.0)
        await first.publish("task-a", b"x", final=False)
        await asyncio.wait_for(arrived.wait(), 5)
        latest = await second.latest("task-a")
        assert latest is not None
        assert latest.payload == b"x"
        assert await first.pause(0.2)
        assert round(await second.reserve(None), 1) == 0.2
        assert first.healthy
        assert second.healthy
        assert [u.payload for u in got if u.payload] == [b"x"]  # b"": nobody polls it
    finally:
        await first.aclose()
        await second.aclose()
        await first_client.aclose()
        await second_client.aclose()
