"""The worker example: a pool, SIGTERM, a checkpoint, a restart, each outcome recorded once."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from sse_support import EXAMPLES


async def test_the_worker_example_records_every_outcome_once_across_restarts(
    tmp_path: Path,
) -> None:
    """examples/worker.py: SIGTERM twice, restart from the checkpoint, each outcome recorded once."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "worker.py"),
        "--tasks", "60", "--stops", "2", "--time-scale", "0.2", "--dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    text = stdout.decode()
    assert process.returncode == 0, (text, stderr.decode())
    assert "every outcome recorded exactly once" in text
    assert text.count("exit 143") == 2  # it was stopped twice and resumed
    assert "Traceback" not in stderr.decode()
