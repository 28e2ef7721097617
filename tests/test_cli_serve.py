"""``koodrive-tasks serve`` options: checked by argparse, and wired into the running emulator.

Flag checks run in process (argparse exits before anything starts); the wiring runs the
real command in a subprocess, in real time, with sub-second tasks.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from cli_support import RUN_TIMEOUT, base_env, interrupt, start_serve

from koodrive_tasks.cli import main

CREATE = "/koodrive/ose/v1/share/tasks"
DETAIL = "/koodrive/ose/v1/share/taskDetail"
CREATE_BODY = {
    "taskType": 1,
    "containerId": "c-1",
    "fileIds": ["f1", "f2"],
    "zipName": "a.zip",
    "shareId": "share-1",
}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(("--durations", "10,5,20"), "need 0 < MIN <= MEDIAN <= MAX", id="order"),
        pytest.param(("--durations", "0"), "need 0 < MIN", id="zero-duration"),
        pytest.param(("--durations", "1,2"), "MIN,MEDIAN,MAX", id="two-numbers"),
        pytest.param(("--durations", "1,x,3"), "'x' is not a number", id="not-a-number"),
        pytest.param(("--durations", "nan"), "not a finite number", id="nan"),
        pytest.param(("--max-pending", "-1"), "max-pending: must be >= 0", id="pending"),
        pytest.param(("--outcomes", "won=1"), "NAME one of completed, partial", id="name"),
        pytest.param(("--outcomes", "failed"), "is not NAME=WEIGHT", id="no-weight"),
        pytest.param(("--outcomes", "failed=1,failed=2"), "failed given twice", id="twice"),
        pytest.param(("--outcomes", "failed=-1"), "failed must be >= 0", id="negative"),
        pytest.param(("--outcomes", "completed=0"), "at least one weight", id="all-zero"),
        pytest.param(("--faults", "1.5"), "a probability from 0 to 1", id="fault-rate"),
        pytest.param(("--faults", "-0.1"), "a probability from 0 to 1", id="negative-rate"),
    ],
)
def test_bad_serve_flags_are_usage_errors(
    capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], message: str
) -> None:
    """A bad serve flag exits 2 before serving, with usage and a message naming the flag."""
    with pytest.raises(SystemExit) as exited:
        main(["serve", *flags])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "usage: koodrive-tasks serve" in err
    assert f"argument {flags[0]}" in err
    assert message in err


async def read_lines(proc: asyncio.subprocess.Process, count: int) -> list[str]:
    assert proc.stdout is not None
    return [
        (await asyncio.wait_for(proc.stdout.readline(), RUN_TIMEOUT)).decode() for _ in range(count)
    ]


async def stats_of(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url + "/_emulator/stats") as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def detail(http: aiohttp.ClientSession, url: str, task_id: str) -> dict[str, Any] | None:
    """The task's info, or None when the answer was a (transient) fault."""
    try:
        async with http.post(
            url + DETAIL, data=json.dumps({"taskId": task_id, "shareId": "share-1"})
        ) as resp:
            body = json.loads(await resp.read())
    except (aiohttp.ClientError, ValueError):
        return None
    if resp.status != 200 or not isinstance(body, dict) or body.get("code") not in (0, "0"):
        return None
    info = body.get("jobInfo")
    return info if isinstance(info, dict) else None


async def test_serve_flags_shape_tasks_faults_and_stats() -> None:
    """Durations, pending, outcome mix and transient faults reach the emulator; stats are JSON."""
    proc, lines = await start_serve(
        base_env(),
        *("--durations", "0.3", "--max-pending", "0", "--outcomes", "failed=1"),
        *("--faults", "0.5", "--seed", "3"),
    )
    try:
        token_line, describe, stats_line = await read_lines(proc, 3)
        url = lines[1].strip().split("=", 1)[1]
        token = token_line.strip().split("=", 1)[1]
        assert describe.startswith("# tasks: 0.3-0.3 s (median 0.3 s) after up to 0 s pending")
        assert "failed 100%" in describe
        assert "50% transient faults" in describe
        assert stats_line.strip() == f"# counters as JSON: GET {url}/_emulator/stats"
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(url + CREATE, data=json.dumps(CREATE_BODY)) as resp:
                assert resp.status == 200
                task_id = (await resp.json())["taskId"]
            info = None
            for _ in range(100):
                info = await detail(http, url, task_id)
                if info is not None and info["taskStatus"] == 2:
                    break
                await asyncio.sleep(0.05)
            assert info is not None
            assert (info["taskStatus"], info["taskResultCode"]) == (2, 3)  # all failed
            stats = await stats_of(http, url)
        assert stats["requests"]["create"] == 1
        assert stats["faults_injected"] > 0
        assert "error_code" not in stats["faults"]
    finally:
        code, _, stderr = await interrupt(proc)
    assert code in (0, 130)
    assert "Traceback" not in stderr


async def test_serve_permanent_faults_are_opt_in() -> None:
    """With --permanent-faults the random faults also include service error codes."""
    proc, lines = await start_serve(base_env(), "--faults", "1", "--permanent-faults")
    try:
        token_line, describe, _ = await read_lines(proc, 3)
        assert "100% transient and permanent faults" in describe
        url = lines[1].strip().split("=", 1)[1]
        headers = {"Authorization": f"Bearer {token_line.strip().split('=', 1)[1]}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            for _ in range(200):
                await detail(http, url, "any-task")
                stats = await stats_of(http, url)
                if stats["faults"].get("error_code"):
                    break
        assert stats["faults"]["error_code"] == 1
    finally:
        await interrupt(proc)
