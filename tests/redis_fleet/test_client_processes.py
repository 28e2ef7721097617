"""Fleets of real processes, each a ``KooDriveClient(coordinator=RedisCoordinator(...))``.

One emulator process (``tests/fleet_emulator.py``) logs every detail request with the
agent name of the worker that sent it, so each figure is measured at the server. Time
is real (processes cannot share a virtual clock) and the bounds are generous: the
machine has two shared cores. ``benchmarks/bench_fleet.py`` measures the real figures.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import fleet_processes as fp
from fleet_emulator import SHARE_ID, EmulatorProcess, Entry, per_window, polls_of
from redis_server import RedisServer

MakeServer = Callable[..., RedisServer]

QUICK = {
    "initial_delay": 0.2,
    "factor": 1.5,
    "max_delay": 0.5,
    "jitter": 0.1,
    "timeout": None,
    "progress_aware": False,
}
LEASE_TTL = 0.5


def settings(
    emu: EmulatorProcess, server: RedisServer, namespace: str, tasks: list[list[str]], **extra: Any
) -> list[dict[str, Any]]:
    """One worker per task list; every worker in one namespace (one fleet)."""
    base = {
        "url": emu.url,
        "token": emu.token,
        "share": SHARE_ID,
        "redis": server.url,
        "namespace": namespace,
        "lease_ttl": LEASE_TTL,
        "command_timeout": 0.5,
        "request_timeout": 2.0,
        "rate": 40,
        "burst": 2,
        "policy": QUICK,
    }
    return [{**base, **extra, "tasks": t, "name": f"{namespace}-w{i}"} for i, t in enumerate(tasks)]


def run(
    workers_settings: list[dict[str, Any]],
    until: float,
    during: Callable[[float, list[fp.Worker]], None] | None = None,
) -> tuple[float, list[dict[str, Any] | None]]:
    """Start the workers, let them run ``until`` seconds at most; their results (None: killed)."""
    workers = fp.start(workers_settings, kind=fp.ClientWorker)
    try:
        start = fp.go(workers, 0.3, until=until)
        if during is not None:
            during(start, workers)
        killed = -9
        return start, [
            None if worker.process.poll() == killed else worker.result(until + 30)
            for worker in workers
        ]
    finally:
        fp.stop(workers)


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def served(emu: EmulatorProcess, tasks: list[str]) -> list[Entry]:
    return polls_of(emu.log()[0], tasks)


def test_processes_share_one_rate(
    emulator_process: EmulatorProcess, shared_server: RedisServer, namespace: str
) -> None:
    """3 processes with 20 busy tasks each, Limits(rate=20) each: the server sees about 20/s in all."""
    emu = emulator_process
    tasks = [emu.add_tasks(20, duration=(60, 60), seed=i) for i in range(3)]
    start, results = run(settings(emu, shared_server, namespace, tasks, rate=20), until=4.0)
    entries = served(emu, [t for group in tasks for t in group])
    per_second = per_window([e[0] for e in entries], start + 1.0, start + 4.0, 1.0)
    assert sum(per_second) <= 3 * 20 + 2 + 8, per_second  # alone, each would send 20/s
    assert sum(per_second) >= 0.5 * 3 * 20, per_second  # busy cores slow it, never speed it
    by_agent = defaultdict(int)
    for entry in entries:
        by_agent[entry[1]] += 1
    assert len(by_agent) == 3, by_agent  # every process polled its own tasks
    assert all(r is not None and r["outages"] == 0 and r["healthy"] for r in results)


def test_one_process_polls_a_task_all_of_them_wait_on(
    emulator_process: EmulatorProcess, shared_server: RedisServer, namespace: str
) -> None:
    """3 processes wait on the same 15 tasks: each task is polled by one process, every wait ends."""
    emu = emulator_process
    tasks = emu.add_tasks(15, duration=(4, 5))
    _, results = run(settings(emu, shared_server, namespace, [tasks] * 3, rate=100), until=15)
    entries = served(emu, tasks)
    pollers = defaultdict(set)
    for _at, agent, task, _status in entries:
        pollers[task].add(agent)
    assert all(len(agents) == 1 for agents in pollers.values()), pollers
    # One process alone polls a 5-s task at most 5 / 0.45 + 3 times with this policy.
    assert len(entries) <= 15 * 14, len(entries)
    for result in results:
        assert result is not None
        assert result["outcomes"] == {"completed": 15}
        assert result["outages"] == 0


def test_a_429_pauses_every_process(
    emulator_process: EmulatorProcess, shared_server: RedisServer, namespace: str
) -> None:
    """One process meets a 429 (Retry-After 1.5 s): no process sends during the pause."""
    emu = emulator_process
    tasks = [emu.add_tasks(15, duration=(60, 60), seed=10 + i) for i in range(3)]

    def throttle(start: float, _: list[fp.Worker]) -> None:
        sleep_until(start + 1.5)
        emu.throttle_next(tasks[0], retry_after=1.5)

    _, results = run(settings(emu, shared_server, namespace, tasks, rate=30), 5.0, throttle)
    entries = served(emu, [t for group in tasks for t in group])
    throttled = [e for e in entries if e[3] == 429]
    assert len(throttled) == 1, throttled
    paused_at = throttled[0][0]
    # Requests admitted before the pause was heard may still arrive for a moment.
    during = [e for e in entries if paused_at + 0.15 < e[0] < paused_at + 1.5 - 0.05]
    after = [e for e in entries if paused_at + 1.5 <= e[0] < paused_at + 2.5]
    assert during == [], during
    assert 0 < len(after) <= 30 + 5, len(after)  # at the rate, not in a burst
    assert {e[1] for e in after} == {f"{namespace}-w{i}" for i in range(3)}
    assert sum(r["rate_limited"] for r in results if r is not None) == 1


def test_a_killed_holders_tasks_are_taken_over(
    emulator_process: EmulatorProcess, shared_server: RedisServer, namespace: str
) -> None:
    """kill -9 of the process polling every task: the others poll them within lease_ttl + 1 s."""
    emu = emulator_process
    tasks = emu.add_tasks(20, duration=(10, 11))  # they run from now: workers take seconds to start
    killed: dict[str, Any] = {}

    def kill_the_holder(start: float, workers: list[fp.Worker]) -> None:
        sleep_until(start + 1.5)
        agents = [e[1] for e in served(emu, tasks)]
        holder = max(set(agents), key=agents.count)
        index = int(holder.rsplit("-w", 1)[1])
        killed.update(name=holder, at=time.time())
        workers[index].kill()

    _, results = run(
        settings(emu, shared_server, namespace, [tasks] * 3, rate=100), 20, kill_the_holder
    )
    entries = served(emu, tasks)
    orphaned = {e[2] for e in entries if e[1] == killed["name"]}  # none ended before the kill
    taken = {}
    for at, agent, task, _ in entries:
        if task in orphaned and agent != killed["name"] and at > killed["at"]:
            taken.setdefault(task, at - killed["at"])
    late = {task: [e for e in entries if e[2] == task] for task in orphaned - set(taken)}
    assert not late, (killed, late, results)
    assert max(taken.values()) <= LEASE_TTL + 1.0, sorted(taken.values())
    survivors = [r for r in results if r is not None]
    assert len(survivors) == 2
    assert all(r["outcomes"] == {"completed": 20} for r in survivors)


def test_a_flushed_script_cache_mid_run_changes_nothing(
    emulator_process: EmulatorProcess, make_server: MakeServer, namespace: str
) -> None:
    """SCRIPT FLUSH mid-run: the scripts are sent again, no outage, every wait ends."""
    import redis

    emu = emulator_process
    server = make_server()
    tasks = [emu.add_tasks(15, duration=(6, 7), seed=20 + i) for i in range(2)]
    cached_before = {}

    def flush(start: float, _: list[fp.Worker]) -> None:
        sleep_until(start + 1.2)
        with redis.Redis.from_url(server.url) as raw:
            cached_before["scripts"] = raw.info("memory")["number_of_cached_scripts"]
            raw.script_flush()

    _, results = run(settings(emu, server, namespace, tasks, rate=60), 15, flush)
    sent = 0
    for result in results:
        assert result is not None
        assert result["outages"] == 0
        assert result["outcomes"] == {"completed": 15}
        sent += result["fleet"]["scripts_sent"]
    assert cached_before["scripts"] >= 2
    assert sent > cached_before["scripts"]  # each was sent once before the flush, some again
    with redis.Redis.from_url(server.url) as raw:
        assert raw.info("memory")["number_of_cached_scripts"] >= 1


def test_a_redis_restart_mid_run_warns_once_and_no_wait_fails(
    emulator_process: EmulatorProcess, make_server: MakeServer, namespace: str
) -> None:
    """Redis crashes for 1 s: each process warns once, polls at its fallback rate, recovers."""
    emu = emulator_process
    server = make_server()
    tasks = [emu.add_tasks(20, duration=(8, 9), seed=30 + i) for i in range(2)]
    restarted = {}

    def restart(start: float, _: list[fp.Worker]) -> None:
        sleep_until(start + 1.0)
        restarted["down"] = time.time()
        server.restart(down_for=1.0)
        restarted["up"] = time.time()

    _, results = run(settings(emu, server, namespace, tasks, rate=40, fallback_rate=4), 20, restart)
    for result in results:
        assert result is not None
        assert result["outages"] == 1, result["other_warnings"]
        assert len(result["recovered_at"]) == 1
        assert result["healthy"]
        assert result["outcomes"] == {"completed": 20}
        assert result["recovered_at"][0] - restarted["up"] < 5.0
    entries = served(emu, [t for group in tasks for t in group])
    recovered = min(r["recovered_at"][0] for r in results if r is not None)
    local = [e for e in entries if restarted["down"] + 0.8 < e[0] < recovered - 0.1]
    seconds = max(0.5, recovered - 0.1 - restarted["down"] - 0.8)
    assert len(local) <= 2 * 4 * seconds + 2 * 3, (len(local), seconds)  # each at its fallback


def test_redis_down_at_start_then_up(
    emulator_process: EmulatorProcess, make_server: MakeServer, namespace: str
) -> None:
    """Without Redis the processes poll at the fallback rate and warn once; then they join the fleet."""
    emu = emulator_process
    server = make_server(start=False)
    tasks = [emu.add_tasks(30, duration=(60, 60), seed=40 + i) for i in range(2)]
    started = {}

    def start_redis(start: float, _: list[fp.Worker]) -> None:
        sleep_until(start + 2.0)
        server.start()
        started["at"] = time.time()

    base = settings(emu, server, namespace, tasks, rate=30, fallback_rate=5, connect_first=False)
    start, results = run(base, 7.0, start_redis)
    for result in results:
        assert result is not None
        assert (result["outages"], len(result["recovered_at"]), result["healthy"]) == (1, 1, True)
        assert result["recovered_at"][0] - started["at"] < 4.0
    entries = served(emu, [t for group in tasks for t in group])
    local = per_window([e[0] for e in entries], start, start + 2.0, 2.0)[0]
    recovered = max(r["recovered_at"][0] for r in results if r is not None)
    shared = per_window([e[0] for e in entries], recovered + 0.2, recovered + 1.2, 1.0)[0]
    assert local <= 2 * 5 * 2 + 2 * 2, local  # 5/s each, not 30/s each
    assert shared <= 30 + 2 + 6, shared  # one fleet again
