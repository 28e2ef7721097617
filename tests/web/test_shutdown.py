"""Each example, run as its one command, stopped with SIGTERM while a browser follows a task."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import aiohttp
import pytest
from sse_support import EXAMPLES, parse

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")

# run_app ends normally after a graceful exit; uvicorn re-raises the signal it caught,
# so that a supervisor sees the process was terminated.
EXIT_CODES = {"aiohttp_app": 0, "fastapi_app": -signal.SIGTERM}


@pytest.mark.parametrize("name", sorted(EXIT_CODES))
async def test_sigterm_ends_open_streams_with_a_final_event_and_exits_cleanly(name: str) -> None:
    """SIGTERM: the open stream gets a final event, the process exits at once, stderr has no traceback."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / f"{name}.py"),
        "--port=0",
        "--task-seconds=600",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        assert line.startswith("Serving on http://"), line
        url = line.split()[2].rstrip("/")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/exports") as created:
                task_id = (await created.json())["task_id"]
            async with http.get(f"{url}/exports/{task_id}/events") as answer:
                head = await answer.content.readuntil(b"event: progress")
                process.send_signal(signal.SIGTERM)
                stopped_at = time.monotonic()
                rest = await asyncio.wait_for(answer.read(), 10)
        code = await asyncio.wait_for(process.wait(), 5)
        exit_seconds = time.monotonic() - stopped_at
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stderr = (await process.stderr.read()).decode()
    assert code == EXIT_CODES[name], stderr
    assert exit_seconds < 5  # seconds; without the recipe uvicorn waits for ever
    assert "Traceback" not in stderr
    assert "CancelledError" not in stderr
    assert "ERROR" not in stderr
    last = parse((head + rest).decode())[-1]
    assert last.name == "error"
    assert last.json["type"] == "ClientClosedError"
