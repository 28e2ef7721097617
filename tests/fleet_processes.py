"""Worker processes of a test fleet, started and ended by PID.

``Worker``: a coordinator alone (tests/redis_fleet/fleet_worker.py, settings on its
command line); ``ClientWorker``: a ``KooDriveClient`` with a coordinator
(tests/redis_fleet/client_worker.py, settings on the first line of its stdin, which
holds thousands of task ids).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WORKER = Path(__file__).parent / "redis_fleet" / "fleet_worker.py"
CLIENT_WORKER = Path(__file__).parent / "redis_fleet" / "client_worker.py"


class Worker:
    """One worker process; its stdout is read line by line."""

    script = WORKER

    def __init__(self, settings: dict[str, Any]) -> None:
        on_stdin = self.script is CLIENT_WORKER
        self.process = subprocess.Popen(  # noqa: S603 (our own script)
            [sys.executable, str(self.script)] + ([] if on_stdin else [json.dumps(settings)]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,  # unbuffered: readline() takes one line, the selector sees the rest
        )
        self.lines: list[str] = []
        if on_stdin:
            assert self.process.stdin is not None
            self.process.stdin.write((json.dumps(settings) + "\n").encode())
            self.process.stdin.flush()

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_for(self, word: str, timeout: float = 30.0) -> None:
        """Read lines until one equals ``word``."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    line = self.process.stdout.readline().decode().strip()
                    if not line and self.process.poll() is not None:
                        break
                    self.lines.append(line)
                    if line == word:
                        return
        raise AssertionError(f"worker {self.pid} never said {word!r}: {self.errors()}")

    def go(self, **times: float) -> None:
        """Send the start times (wall clock) the worker waits for after ``ready``."""
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(times) + "\n").encode())
        self.process.stdin.flush()

    def result(self, timeout: float = 60.0) -> dict[str, Any]:
        """The JSON line the worker prints at its end."""
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        lines = [*self.lines, *out.decode().splitlines()]
        if self.process.returncode != 0 or not lines:
            raise AssertionError(f"worker {self.pid} failed: {self.errors()}")
        return json.loads(lines[-1])

    def errors(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return "(still running)"
        return self.process.stderr.read().decode(errors="replace")[-3000:]

    def kill(self) -> None:
        """``kill -9`` by PID, then close its pipes."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


class ClientWorker(Worker):
    """One process with a ``KooDriveClient`` (and a coordinator unless ``redis`` is unset)."""

    script = CLIENT_WORKER


def start(
    settings: list[dict[str, Any]], *, ready: str = "ready", kind: type[Worker] = Worker
) -> list[Worker]:
    """Start one worker per settings and wait until each says ``ready``."""
    workers = [kind(s) for s in settings]
    try:
        for worker in workers:
            worker.wait_for(ready)
    except BaseException:
        stop(workers)
        raise
    return workers


def go(workers: list[Worker], delay: float = 0.3, **offsets: float) -> float:
    """Start all workers ``delay`` seconds from now; ``offsets`` become times after that.

    Returns:
        The start time (wall clock).
    """
    start_at = time.time() + delay
    times = {"start_at": start_at, **{name: start_at + value for name, value in offsets.items()}}
    for worker in workers:
        worker.go(**times)
    return start_at


def stop(workers: list[Worker]) -> None:
    for worker in workers:
        worker.kill()


def rate_per_window(sends: list[float], start: float, end: float, window: float) -> list[int]:
    """Sends per window of ``window`` seconds from ``start`` to ``end`` (whole windows only)."""
    counts = [0] * int((end - start) // window)
    for t in sends:
        index = int((t - start) // window)
        if 0 <= index < len(counts):
            counts[index] += 1
    return counts
