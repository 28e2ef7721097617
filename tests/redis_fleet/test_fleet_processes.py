"""Fleets of real processes on loopback: one rate, one pause, lease takeover, faults mid-run.

Bounds are generous (2 shared cores, busy neighbours); benchmarks/bench_fleet_redis.py
measures the real figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import fleet_processes as fp
from redis_server import RedisServer

MakeServer = Callable[..., RedisServer]


def rate_settings(
    server: RedisServer, namespace: str, n: int, **extra: Any
) -> list[dict[str, Any]]:
    base = {"scenario": "rate", "url": server.url, "namespace": namespace, "concurrency": 4}
    return [{**base, **extra, "index": i} for i in range(n)]


def all_sends(results: list[dict[str, Any]]) -> list[float]:
    return sorted(t for r in results for t in r["sends"])


def run(settings: list[dict[str, Any]], **offsets: float) -> tuple[float, list[dict[str, Any]]]:
    workers = fp.start(settings)
    try:
        start = fp.go(workers, **offsets)
        return start, [w.result() for w in workers]
    finally:
        fp.stop(workers)


def test_four_processes_share_one_rate(make_server: MakeServer, namespace: str) -> None:
    """4 processes of 4 loops each against a fleet limit of 200/s send about 200/s, not 800/s."""
    server = make_server()
    start, results = run(rate_settings(server, namespace, 4, rate=200, burst=10, duration=2.0))
    sends = all_sends(results)
    per_second = fp.rate_per_window(sends, start, start + 2.0, 1.0)
    assert len(sends) <= 2 * 200 + 10 + 5, per_second
    assert len(sends) >= 0.75 * 2 * 200, per_second  # CPU contention may slow it, never speed it
    assert all(count <= 200 + 10 + 20 for count in per_second), per_second
    assert all(len(r["sends"]) > 0 for r in results)  # every process got its share
    assert all(r["healthy"] and r["outages"] == 0 for r in results)


def test_a_pause_stops_every_process_then_the_rate_resumes(
    make_server: MakeServer, namespace: str
) -> None:
    """While one process's pause is on, no process sends; after it, the rate, not a burst."""
    server = make_server()
    settings = rate_settings(server, namespace, 3, rate=100, burst=20, duration=2.6, pause_for=0.6)
    start, results = run(settings, pause_at=0.8)
    sends = all_sends(results)
    paused_at = results[0]["pause_called"]
    assert paused_at is not None
    during = [t for t in sends if paused_at + 0.05 < t < paused_at + 0.6 - 0.01]
    after = [t for t in sends if paused_at + 0.6 <= t < paused_at + 1.6]
    before = [t for t in sends if start <= t < paused_at]
    assert during == []
    assert len(after) <= 100 + 10, len(after)  # burst=20 would allow 120 in that second
    assert len(after) >= 50
    assert len(before) >= 40
    assert sum(r["stats"]["pauses_received"] for r in results[1:]) == 2


def test_leases_move_to_other_processes_after_kill_9(
    make_server: MakeServer, namespace: str
) -> None:
    """After the holder is killed, the other processes take all its tasks within hold_for + lease_ttl."""
    server = make_server()
    base = {
        "url": server.url,
        "namespace": namespace,
        "tasks": 20,
        "hold_for": 0.3,
        "lease_ttl": 0.4,
    }
    holder = fp.Worker({**base, "scenario": "hold", "await_go": False})
    watchers: list[fp.Worker] = []
    try:
        holder.wait_for("held")
        watchers = fp.start(
            [{**base, "scenario": "take_over", "duration": 3.0, "await_go": False}] * 2
        )
        time.sleep(0.5)  # the watchers find every task held
        killed_at = time.time()
        holder.kill()
        taken = [w.result()["taken"] for w in watchers]
    finally:
        holder.kill()
        fp.stop(watchers)
    times = [t for got in taken for t in got.values()]
    assert sorted(task for got in taken for task in got) == sorted(f"task-{i}" for i in range(20))
    assert min(times) > killed_at - 0.05  # nobody took a task from a live holder
    assert max(times) - killed_at <= 0.3 + 0.4 + 0.5, max(times) - killed_at


def test_a_flushed_script_cache_mid_run_changes_nothing(
    make_server: MakeServer, namespace: str
) -> None:
    """SCRIPT FLUSH during a run: every process sends its scripts again; no outage, same rate."""
    import redis

    server = make_server()
    workers = fp.start(rate_settings(server, namespace, 3, rate=150, burst=5, duration=2.0))
    try:
        start = fp.go(workers)
        time.sleep(max(0.0, start + 1.0 - time.time()))
        with redis.Redis.from_url(server.url) as raw:
            raw.script_flush()
            results = [w.result() for w in workers]
            cached_after = raw.info("memory")["number_of_cached_scripts"]
    finally:
        fp.stop(workers)
    sends = all_sends(results)
    assert 0.75 * 300 <= len(sends) <= 300 + 5 + 5
    assert all(r["healthy"] and r["outages"] == 0 for r in results)
    assert cached_after >= 1  # a process sent the script again after the flush


def test_a_redis_restart_mid_run_warns_once_per_process_then_recovers(
    make_server: MakeServer, namespace: str
) -> None:
    """Redis crashes and restarts mid-run: one warning per process, local decisions, then the fleet again."""
    server = make_server()
    settings = rate_settings(
        server, namespace, 3, rate=150, burst=5, duration=7.0, fallback_rate=30
    )
    workers = fp.start(settings)
    try:
        start = fp.go(workers)
        time.sleep(max(0.0, start + 1.0 - time.time()))
        server.restart(down_for=0.5)
        restarted = time.time()
        results = [w.result() for w in workers]
    finally:
        fp.stop(workers)
    assert [(r["outages"], r["recoveries"], r["healthy"]) for r in results] == [(1, 1, True)] * 3
    recovered = max(r["recovered_at"][0] for r in results)
    assert recovered - restarted < 5.0  # the probe's backoff: 0.5 s, then 1 s, 2 s, ... ±50 %
    shared = fp.rate_per_window(all_sends(results), recovered + 0.1, recovered + 1.1, 1.0)
    assert shared[0] <= 150 + 5 + 15, shared  # shared again: not 3 x 150


def test_redis_down_at_start_then_up(make_server: MakeServer, namespace: str) -> None:
    """Processes started without Redis decide locally at the fallback rate, then join the fleet."""
    server = make_server(start=False)
    settings = rate_settings(
        server, namespace, 3, rate=150, burst=5, duration=7.0, fallback_rate=20, connect_first=False
    )
    workers = fp.start(settings)
    try:
        start = fp.go(workers)
        time.sleep(max(0.0, start + 1.0 - time.time()))
        server.start()
        started = time.time()
        results = [w.result() for w in workers]
    finally:
        fp.stop(workers)
    sends = all_sends(results)
    assert [(r["outages"], r["recoveries"], r["healthy"]) for r in results] == [(1, 1, True)] * 3
    recovered = max(r["recovered_at"][0] for r in results)
    assert recovered - started < 5.0
    local = fp.rate_per_window(sends, start, start + 1.0, 1.0)[0]
    shared = fp.rate_per_window(sends, recovered + 0.1, recovered + 1.1, 1.0)[0]
    assert local <= 3 * 20 + 3 + 5, local  # each process at its fallback rate
    assert 0.6 * 150 <= shared <= 150 + 5 + 15, shared  # then the shared rate
