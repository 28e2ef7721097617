"""The emulator of a fleet's tests and benchmark, in a process of its own, started and ended by PID.

``python fleet_emulator.py`` prints one JSON line (``url``, ``token``) once it serves,
and serves until its stdin closes. Besides the emulator's routes it answers:

- ``POST /_fleet/tasks`` ``{"count", "pending": [lo, hi], "duration": [lo, hi], "seed"}``:
  adds ``count`` share tasks (uniform pending time and duration, seeded) and answers
  their ids;
- ``GET /_fleet/log?since=N``: every detail request from the N-th on, as
  ``[arrival (wall clock), agent, task id, HTTP status]``; the agent is the client's
  ``agent_name`` (each worker of a fleet has its own);
- ``POST /_fleet/throttle`` ``{"retry_after", "tasks"}``: the next detail request for
  one of ``tasks`` is answered with a 429 (``APIGW.0308``, ``Retry-After``).

:class:`EmulatorProcess` starts it from a test or a benchmark; :func:`per_window` and
:func:`polls_of` read the log.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

SHARE_ID = "fleet-share"
DETAIL_PATH = "/koodrive/ose/v1/share/taskDetail"

Entry = tuple[float, str, str, int]  # arrival, agent, task id, status


def serve() -> None:
    """The emulator process."""
    from aiohttp import web

    from koodrive_tasks.emulator import Emulator, TaskScript

    log: list[Entry] = []
    throttle: dict[str, Any] = {}

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path != DETAIL_PATH:
            return await handler(request)
        arrived = time.time()
        try:
            task_id = str(json.loads(await request.read()).get("taskId", ""))
        except ValueError:
            task_id = ""
        agent = request.headers.get("X-Hw-Agentname", "")
        if throttle and task_id in throttle["tasks"]:
            retry_after = throttle.pop("retry_after")
            throttle.clear()
            log.append((arrived, agent, task_id, 429))
            body = {"error_code": "APIGW.0308", "error_msg": "throttled", "request_id": "fleet"}
            return web.json_response(body, status=429, headers={"Retry-After": f"{retry_after:g}"})
        response = await handler(request)
        log.append((arrived, agent, task_id, response.status))
        return response

    async def main() -> None:
        emu = Emulator(seed=1, max_tasks=1_000_000)

        async def add_tasks(request: web.Request) -> web.Response:
            spec = await request.json()
            rng = random.Random(spec.get("seed", 1))
            ids = [
                emu.add_task(
                    TaskScript(
                        pending_s=rng.uniform(*spec.get("pending", (0.0, 0.0))),
                        duration_s=rng.uniform(*spec["duration"]),
                    ),
                    share_id=SHARE_ID,
                )
                for _ in range(spec["count"])
            ]
            return web.json_response({"ids": ids})

        async def read_log(request: web.Request) -> web.Response:
            since = int(request.query.get("since", "0"))
            return web.json_response({"entries": log[since:], "next": len(log)})

        async def arm_throttle(request: web.Request) -> web.Response:
            spec = await request.json()
            throttle.update(retry_after=float(spec["retry_after"]), tasks=set(spec["tasks"]))
            return web.json_response({"armed": True})

        # Before the app starts: its middlewares and routes freeze then.
        emu.app.middlewares.append(record)
        emu.app.router.add_post("/_fleet/tasks", add_tasks)
        emu.app.router.add_get("/_fleet/log", read_log)
        emu.app.router.add_post("/_fleet/throttle", arm_throttle)
        async with emu:
            print(json.dumps({"url": emu.url, "token": emu.token}), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


class EmulatorProcess:
    """The emulator process: its URL and token, and its ``/_fleet`` routes."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and file)
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError("the emulator process did not start")
        setup = json.loads(line)
        self.url: str = setup["url"]
        self.token: str = setup["token"]

    @property
    def pid(self) -> int:
        return self.process.pid

    def _call(self, path: str, body: object | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (our own loopback server)
            self.url + path, data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return json.loads(response.read())

    def add_tasks(
        self,
        count: int,
        *,
        duration: tuple[float, float],
        pending: tuple[float, float] = (0.0, 0.0),
        seed: int = 1,
    ) -> list[str]:
        """Add ``count`` tasks; their ids."""
        spec = {"count": count, "duration": duration, "pending": pending, "seed": seed}
        return list(self._call("/_fleet/tasks", spec)["ids"])

    def log(self, since: int = 0) -> tuple[list[Entry], int]:
        """The detail requests from the ``since``-th on, and the index after the last."""
        answer = self._call(f"/_fleet/log?since={since}")
        return [tuple(entry) for entry in answer["entries"]], int(answer["next"])  # type: ignore[misc]

    def throttle_next(self, tasks: Iterable[str], retry_after: float) -> None:
        """Answer the next detail request for one of ``tasks`` with a 429."""
        self._call("/_fleet/throttle", {"retry_after": retry_after, "tasks": list(tasks)})

    def stats(self) -> dict[str, Any]:
        return dict(self._call("/_emulator/stats"))

    def stop(self) -> None:
        """Close its stdin (it then ends), or end it by PID."""
        process = self.process
        if process.poll() is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def polls_of(entries: Iterable[Entry], tasks: Iterable[str]) -> list[Entry]:
    """The log's entries for ``tasks``, in arrival order."""
    wanted = set(tasks)
    return sorted((e for e in entries if e[2] in wanted), key=lambda e: e[0])


def per_window(times: Sequence[float], start: float, end: float, window: float) -> list[int]:
    """Requests per window of ``window`` seconds from ``start`` to ``end`` (whole windows only)."""
    counts = [0] * int((end - start) // window + 1e-9)
    for t in times:
        index = int((t - start) // window)
        if 0 <= index < len(counts):
            counts[index] += 1
    return counts


if __name__ == "__main__":
    serve()
