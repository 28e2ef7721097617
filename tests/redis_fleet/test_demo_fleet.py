"""``koodrive-tasks demo --fleet N``: worker processes on a local Redis, one fleet-wide rate."""

from __future__ import annotations

import pytest
from cli_support import base_env, run_cli


@pytest.mark.usefixtures("redis_binary")
async def test_the_fleet_demo_shows_one_rate_and_ends_with_a_summary() -> None:
    """`demo --fleet 2 --json`: one fleet rate under the limit, every wait completed, exit 0."""
    run = await run_cli(
        "demo",
        "--fleet",
        "2",
        "--tasks",
        "6",
        "--time-scale",
        "0.1",
        "--json",
        env=base_env(),
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    lines = run.events()
    summary = lines[-1]
    assert summary["event"] == "summary"
    assert summary["workers"] == 2
    assert summary["all_completed"] is True
    workers = summary["per_worker"].values()
    assert all(w["outcomes"] == {"completed": 6} for w in workers)
    assert sum(w["polls"] for w in workers) == summary["polls_sent"]  # the emulator saw them all
    fleet = [line for line in lines if line["event"] == "fleet"]
    assert fleet
    assert all(line["requests_per_s"] <= line["limit"] * 1.5 + 1 for line in fleet), fleet


@pytest.mark.usefixtures("redis_binary")
async def test_the_fleet_demo_says_clearly_when_redis_cannot_be_reached() -> None:
    """`demo --fleet 2 --redis URL` with nothing there: exit 2 and one line naming the URL, no password."""
    run = await run_cli(
        "demo", "--fleet", "2", "--redis", "redis://user:hunter2@127.0.0.1:1/0", env=base_env()
    )
    assert run.returncode == 2
    assert "cannot reach Redis at redis://127.0.0.1:1" in run.stderr
    assert "hunter2" not in run.stderr + run.stdout
