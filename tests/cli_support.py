"""Run the real ``koodrive-tasks`` entry point in a subprocess and check what it printed.

Every run is checked for hygiene on the way out, so each CLI test also checks that no
credential reaches the output, that a download URL shows only as the product (the
result event or the URL line on stdout) and that no traceback shows without ``--debug``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass
from typing import Any

from koodrive_tasks.emulator import Emulator

SHARE = "share-1"
KDSTOKEN = f"kds-{secrets.token_hex(16)}"
"""A share link token passed to every run; the emulator accepts any."""
WRONG_TOKEN = f"wrong-{secrets.token_hex(16)}"
RUN_TIMEOUT = 20.0
"""Seconds a run may take before it is killed and the test fails (a hung CLI)."""

_SECRET_VARS = (
    "KOODRIVE_TOKEN",
    "KOODRIVE_APP_SECRET",
    "KOODRIVE_KDSTOKEN",
    "KOODRIVE_ARCHIVE_PASSWORD",
)
_URL_LINE = re.compile(r"(\S+ )?https?://\S+")


@dataclass(frozen=True)
class CliRun:
    """What one ``koodrive-tasks`` run did."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    tty: bool = False

    def events(self) -> list[dict[str, Any]]:
        """Every stdout line parsed as JSON (fails on a line that is not)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def updates(self, task_id: str | None = None) -> list[dict[str, Any]]:
        """The update events, of one task if given."""
        return [
            e for e in self.events() if e["event"] == "update" and task_id in (None, e["task_id"])
        ]

    def results(self) -> dict[str, dict[str, Any]]:
        """The result events by task id (fails on a duplicate)."""
        found: dict[str, dict[str, Any]] = {}
        for event in self.events():
            if event["event"] == "result":
                assert event["task_id"] not in found, f"two results for {event['task_id']}"
                found[event["task_id"]] = event
        return found

    def result(self) -> dict[str, Any]:
        """The one result event."""
        (only,) = self.results().values()
        return only

    def stderr_lines(self) -> list[str]:
        """Non-empty stderr lines."""
        return [line for line in self.stderr.splitlines() if line.strip()]

    def __str__(self) -> str:
        return (
            f"koodrive-tasks {' '.join(self.args)} -> {self.returncode}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


def base_env(**overrides: str | None) -> dict[str, str]:
    """This process's environment without any KOODRIVE_* variable, then ``overrides``.

    A ``None`` override leaves the variable unset.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOODRIVE_")}
    env["PYTHONFAULTHANDLER"] = "1"  # a run that hangs shows its threads when aborted
    env.update({k: v for k, v in overrides.items() if v is not None})
    return env


def check_hygiene(run: CliRun, secret_values: Iterable[str]) -> None:
    """Fail if a run leaked a secret, showed a download URL off stdout's product, or a traceback."""
    for value in secret_values:
        assert value not in run.stdout, f"a secret reached stdout\n{run}"
        assert value not in run.stderr, f"a secret reached stderr\n{run}"
    assert "/download/" not in run.stderr, f"a download URL reached stderr\n{run}"
    assert "sig=" not in run.stderr, f"a signed URL reached stderr\n{run}"
    if "--debug" not in run.args:
        assert "Traceback" not in run.stderr, f"a traceback without --debug\n{run}"
    for line in run.stdout.splitlines():
        if "/download/" not in line:
            continue
        if run.tty and "--json" not in run.args:
            assert _URL_LINE.fullmatch(line), f"a download URL inside a bar line: {line!r}"
        else:
            event = json.loads(line)
            assert event["event"] == "result", f"a download URL outside the result: {line!r}"
            assert line.count("/download/") == 1
            assert "/download/" in event["download_url"]


async def run_cli(
    *args: str,
    env: dict[str, str],
    tty: bool = False,
    secret_values: Iterable[str] = (),
    timeout: float = RUN_TIMEOUT,
) -> CliRun:
    """Run ``python -m koodrive_tasks.cli ARGS``; stdout is a pipe, or a pseudo-terminal if ``tty``.

    The run is checked with :func:`check_hygiene` against ``secret_values`` and every
    secret-bearing variable of ``env``.
    """
    master = slave = -1
    if tty:
        master, slave = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "koodrive_tasks.cli",
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=slave if tty else asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    finally:
        if tty:
            os.close(slave)  # the child holds it; the master then sees EOF when it exits
    reading = asyncio.ensure_future(asyncio.to_thread(_drain, master)) if tty else None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        if reading is not None:
            out = await asyncio.wait_for(reading, 5)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.communicate()
        raise AssertionError(f"koodrive-tasks {' '.join(args)} ran over {timeout} s") from None
    finally:
        if reading is not None:
            await asyncio.gather(reading, return_exceptions=True)
            os.close(master)
    stdout = out.decode()
    if tty:
        stdout = stdout.replace("\r\n", "\n")  # the terminal's output processing
    run = CliRun(
        args, proc.returncode if proc.returncode is not None else -1, stdout, err.decode(), tty
    )
    check_hygiene(run, [*secret_values, *(env[name] for name in _SECRET_VARS if name in env)])
    return run


def _drain(fd: int) -> bytes:
    """Read a pty master until every holder of the slave has closed it."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the slave side is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


class Cli:
    """``koodrive-tasks`` pointed at one emulator, with its token and a kdstoken set."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    def env(self, **overrides: str | None) -> dict[str, str]:
        """The environment of a run: endpoint, token and kdstoken, then ``overrides``."""
        values: dict[str, str | None] = {
            "KOODRIVE_BASE_URL": self.emu.url,
            "KOODRIVE_TOKEN": self.emu.token,
            "KOODRIVE_KDSTOKEN": KDSTOKEN,
        }
        values.update(overrides)
        return base_env(**values)

    async def run(self, *args: str, tty: bool = False, **overrides: str | None) -> CliRun:
        """Run with :meth:`env` (``overrides`` as KOODRIVE_* keyword arguments)."""
        return await run_cli(
            *args,
            env=self.env(**overrides),
            tty=tty,
            secret_values=(self.emu.token, self.emu.app_secret, KDSTOKEN),
        )


async def interrupt(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    """Send SIGINT, as Ctrl-C does; return the exit code, the rest of stdout, and stderr."""
    proc.send_signal(signal.SIGINT)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
    except asyncio.TimeoutError:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints where every thread is
        try:
            _, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            _, err = await proc.communicate()
        raise AssertionError(
            f"koodrive-tasks ignored SIGINT; its threads:\n{(err or b'').decode()[-6000:]}"
        ) from None
    assert proc.returncode is not None
    return proc.returncode, (out or b"").decode(), (err or b"").decode()


def _sigint_as_in_a_terminal() -> None:
    # A suite started in the background of a non-interactive shell (`pytest &` in a
    # script) ignores SIGINT, and children inherit that: a run meant to be interrupted
    # gets SIGINT as a terminal's foreground job has it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def spawn_cli(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    """Start ``koodrive-tasks args`` with pipes, for a test that interrupts it."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "koodrive_tasks.cli", *args,
        env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=_sigint_as_in_a_terminal,
    )  # fmt: skip


async def start_serve(
    env: dict[str, str], *flags: str
) -> tuple[asyncio.subprocess.Process, list[str]]:
    """Start `serve` with ``flags`` on a free loopback port; return it and its first two lines."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await spawn_cli("serve", "--port", str(port), *flags, env=env)
    assert proc.stdout is not None
    lines = []
    try:
        for _ in range(2):
            line = await asyncio.wait_for(proc.stdout.readline(), RUN_TIMEOUT)
            lines.append(line.decode())
    except BaseException:
        await interrupt(proc)
        raise
    assert f"http://127.0.0.1:{port}" in lines[0], lines
    return proc, lines


@contextlib.asynccontextmanager
async def running(
    runs: dict[str, Awaitable[CliRun]],
) -> AsyncIterator[dict[str, asyncio.Future[CliRun]]]:
    """Start every run, a few per core at once; leave once every one has ended."""
    # Enough at once to overlap their polls, not so many that starting them all starves
    # each (and its time limit) of CPU.
    limit = asyncio.Semaphore(3 * (os.cpu_count() or 1))

    async def limited(run: Awaitable[CliRun]) -> CliRun:
        async with limit:
            return await run

    futures = {name: asyncio.ensure_future(limited(run)) for name, run in runs.items()}
    try:
        yield futures
    finally:
        # The emulator must outlive every run, checked or not.
        await asyncio.gather(*futures.values(), return_exceptions=True)


async def finished(batch: dict[str, asyncio.Future[CliRun]], name: str) -> CliRun:
    """The run ``name`` of a batch, once ended (``run_cli`` bounds its time)."""
    return await asyncio.shield(batch[name])
