"""The ``koodrive-tasks`` command line, run for real in a subprocess against a loopback emulator.

A subprocess cannot share the virtual clock, so these tests run in real time: no run
waits more than about two seconds for a task, and the runs that need nothing but
their output start together in the module-scoped ``batch`` so the file stays fast. Every run is also
checked for leaked secrets, misplaced download URLs and stray tracebacks
(``cli_support.check_hygiene``).
"""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable

import aiohttp
import pytest
import pytest_asyncio
from cli_support import (
    KDSTOKEN,
    RUN_TIMEOUT,
    SHARE,
    WRONG_TOKEN,
    Cli,
    CliRun,
    base_env,
    finished,
    interrupt,
    run_cli,
    running,
    spawn_cli,
    start_serve,
)

from koodrive_tasks import BearerToken, KooDriveClient, TaskType
from koodrive_tasks.emulator import Emulator, Fault, Outcome, TaskScript
from koodrive_tasks.exceptions import NotFoundError

pytestmark = pytest.mark.asyncio(loop_scope="module")

FILES = ("file-a", "file-b", "file-c")
QUICK = TaskScript(pending_s=0.2, duration_s=0.6)
LONG = TaskScript(pending_s=0.1, duration_s=30)
CREATE_ZIP = ("create", SHARE, "f1", "--container", "c", "--zip", "a.zip")
BAD_COMMAND_LINES: dict[str, tuple[str, ...]] = {
    "no-command": (),
    "unknown-command": ("frobnicate",),
    "missing-task-id": ("wait", SHARE),
    "zero-timeout": ("wait", SHARE, "t-1", "--timeout", "0"),
    "bad-timeout": ("wait", SHARE, "t-1", "--timeout", "soon"),
    "unknown-flag": ("wait", SHARE, "t-1", "--bogus"),
    "create-without-container": ("create", SHARE, "f1", "--zip", "a.zip"),
    "watch-without-task": ("watch", SHARE),
}


@pytest_asyncio.fixture(loop_scope="module")
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


@pytest.fixture
def cli(emu: Emulator) -> Cli:
    return Cli(emu)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def batch() -> AsyncIterator[dict[str, asyncio.Future[CliRun]]]:
    """Runs started together on one emulator; each test awaits the ones it checks."""
    async with Emulator() as emulator:
        cli = Cli(emulator)
        app = {
            "KOODRIVE_TOKEN": None,
            "KOODRIVE_APP_ID": emulator.app_id,
            "KOODRIVE_APP_SECRET": emulator.app_secret,
            "KOODRIVE_USER_ID": emulator.user_id,
        }

        def task(script: TaskScript) -> str:
            return emulator.add_task(script, file_ids=FILES, share_id=SHARE)

        def wait(script: TaskScript, *flags: str, **env: str | None) -> Awaitable[CliRun]:
            return cli.run("wait", SHARE, task(script), *flags, **env)

        runs: dict[str, Awaitable[CliRun]] = {
            "partially_failed": wait(
                TaskScript(pending_s=0.1, duration_s=0.5, outcome=Outcome.PARTIALLY_FAILED)
            ),
            "failed": wait(TaskScript(pending_s=0.1, duration_s=0.5, outcome=Outcome.ALL_FAILED)),
            "canceled": wait(TaskScript(pending_s=0.1, duration_s=20, cancel_after_s=0.4)),
            "timeout": wait(LONG, "--timeout", "0.5"),
            "wrong_token": wait(LONG, KOODRIVE_TOKEN=WRONG_TOKEN),
            "wrong_token_debug": cli.run(
                "--debug", "wait", SHARE, task(LONG), KOODRIVE_TOKEN=WRONG_TOKEN
            ),
            "unknown_task": cli.run("wait", SHARE, "no-such-task"),
            "no_credentials": cli.run("wait", SHARE, "t-1", KOODRIVE_TOKEN=None),
            "half_app_signature": cli.run(
                "wait", SHARE, "t-1", KOODRIVE_TOKEN=None, KOODRIVE_APP_ID=emulator.app_id
            ),
            "no_base_url": cli.run("wait", SHARE, "t-1", KOODRIVE_BASE_URL=None),
            "app_signature": wait(QUICK, **app),
            "app_signature_wrong_secret": wait(LONG, **{**app, "KOODRIVE_APP_SECRET": WRONG_TOKEN}),
            "create_wrong_token": cli.run(*CREATE_ZIP, KOODRIVE_TOKEN=WRONG_TOKEN),
            "create_wrong_token_debug": cli.run("--debug", *CREATE_ZIP, KOODRIVE_TOKEN=WRONG_TOKEN),
            "debug_with_faults": cli.run(
                "--debug",
                "wait",
                SHARE,
                task(
                    TaskScript(
                        pending_s=0.1,
                        duration_s=0.5,
                        outcome=Outcome.PARTIALLY_FAILED,
                        faults=(Fault.throttle(0.1), None, Fault.throttle(0.1)),
                    )
                ),
            ),
            "debug_app_signature": cli.run("--debug", "wait", SHARE, task(QUICK), **app),
            "watch_worst_failed": cli.run(
                "watch",
                SHARE,
                task(QUICK),
                task(TaskScript(pending_s=0.1, duration_s=0.5, outcome=Outcome.PARTIALLY_FAILED)),
                task(TaskScript(pending_s=0.1, duration_s=0.5, outcome=Outcome.ALL_FAILED)),
            ),
            "watch_worst_partial": cli.run(
                "watch",
                SHARE,
                task(QUICK),
                task(TaskScript(pending_s=0.1, duration_s=0.5, outcome=Outcome.PARTIALLY_FAILED)),
                task(QUICK),
            ),
            "watch_worst_canceled": cli.run(
                "watch",
                SHARE,
                task(TaskScript(pending_s=0.1, duration_s=0.5, outcome=Outcome.ALL_FAILED)),
                task(TaskScript(pending_s=0.1, duration_s=20, cancel_after_s=0.4)),
                task(QUICK),
            ),
            "demo_json": run_cli(
                "demo", "--tasks", "8", "--time-scale", "0.05", "--json", env=base_env()
            ),
        }
        runs.update((f"usage-{name}", cli.run(*args)) for name, args in BAD_COMMAND_LINES.items())
        async with running(runs) as futures:
            yield futures


def client_of(emu: Emulator) -> KooDriveClient:
    """A library client of the emulator, to look at what the CLI did."""
    return KooDriveClient(emu.url, auth=BearerToken(emu.token), allow_insecure_urls=True)


def one_line(run: CliRun) -> str:
    """The single stderr line of a run (fails on none or several)."""
    lines = run.stderr_lines()
    assert len(lines) == 1, run
    assert lines[0].startswith("koodrive-tasks: "), run
    return lines[0]


# --- wait: the product on stdout ------------------------------------------------------------


async def test_wait_prints_json_updates_then_the_result(cli: Cli, emu: Emulator) -> None:
    """`wait` off a terminal prints monotone update events, then one result with the URL; exit 0."""
    task_id = emu.add_task(TaskScript(pending_s=0.2, duration_s=1.0), file_ids=FILES)

    run = await cli.run("wait", SHARE, task_id)

    assert run.returncode == 0, run
    events = run.events()
    assert [e["event"] for e in events][-1] == "result"
    assert [e["event"] for e in events[:-1]] == ["update"] * (len(events) - 1)
    updates = run.updates(task_id)
    assert updates, run
    assert all(u["task_id"] == task_id for u in updates)
    assert all(u["status"] in ("pending", "processing", "completed") for u in updates)
    progress = [u["progress"] for u in updates]
    assert all(type(p) is int and 0 <= p <= 100 for p in progress)
    assert progress == sorted(progress)
    assert updates[-1] == {
        "event": "update",
        "task_id": task_id,
        "status": "completed",
        "progress": 100,
    }
    result = run.result()
    assert result["outcome"] == "completed"
    assert result["task_id"] == task_id
    assert result["download_url"].startswith(f"{emu.url}/download/")
    assert "failed_files" not in result
    assert "error" not in result
    assert run.stderr == "", run


async def test_download_url_is_fetchable(cli: Cli, emu: Emulator) -> None:
    """The printed URL is the task's real package link: it downloads a zip of the task's files."""
    task_id = emu.add_task(TaskScript(pending_s=0.0, duration_s=0.2), file_ids=FILES)
    await asyncio.sleep(0.3)  # already completed: the first poll sees the end

    run = await cli.run("wait", SHARE, task_id)

    assert run.returncode == 0, run
    url = run.result()["download_url"]
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        data = await response.read()
    assert sorted(zipfile.ZipFile(io.BytesIO(data)).namelist()) == sorted(FILES)


# --- exit codes -----------------------------------------------------------------------------


async def test_partially_failed_exits_3_with_url_and_failed_files(batch: dict) -> None:
    """Some files failed: exit 3, the URL is still in the result, the failed files listed."""
    run = await finished(batch, "partially_failed")

    assert run.returncode == 3, run
    result = run.result()
    assert result["outcome"] == "partially_failed"
    assert "/download/" in result["download_url"]
    assert result["failed_files"]
    assert set(result["failed_files"]) < set(FILES)


async def test_all_failed_exits_4(batch: dict) -> None:
    """Every file failed: exit 4, no URL, the error says so."""
    run = await finished(batch, "failed")

    assert run.returncode == 4, run
    result = run.result()
    assert result["outcome"] == "failed"
    assert "download_url" not in result
    assert "failed" in result["error"]["message"]


async def test_canceled_exits_5(batch: dict) -> None:
    """A canceled task: exit 5, last update canceled, no URL."""
    run = await finished(batch, "canceled")

    assert run.returncode == 5, run
    assert run.updates()[-1]["status"] == "canceled"
    result = run.result()
    assert result["outcome"] == "canceled"
    assert "download_url" not in result


async def test_timeout_exits_6_soon_after_the_deadline(batch: dict) -> None:
    """`--timeout 0.5` on a long task: exit 6 and a timeout result."""
    run = await finished(batch, "timeout")

    assert run.returncode == 6, run
    result = run.result()
    assert result["outcome"] == "timeout"
    assert "0.5 s" in result["error"]["message"]
    assert "download_url" not in result


@pytest.mark.parametrize("name", ["wrong_token", "app_signature_wrong_secret"])
async def test_wrong_credentials_exit_7_with_trace_id(batch: dict, name: str) -> None:
    """A wrong token or app secret: exit 7, an auth_error result quoting the trace id, no traceback."""
    run = await finished(batch, name)

    assert run.returncode == 7, run
    result = run.result()
    assert result["outcome"] == "auth_error"
    assert "trace id" in result["error"]["message"]
    assert "HTTP 401" in result["error"]["message"]
    assert result["error"]["type"] in ("AuthenticationError", "ClockSkewError")
    assert len(result["error"]["trace_id"]) == 58
    assert "Traceback" not in run.stderr


async def test_wrong_token_on_a_terminal_prints_one_stderr_line(cli: Cli, emu: Emulator) -> None:
    """On a terminal a wrong token gives exit 7 and one stderr line with the trace id."""
    run = await cli.run("wait", SHARE, emu.add_task(LONG), tty=True, KOODRIVE_TOKEN=WRONG_TOKEN)

    assert run.returncode == 7, run
    line = one_line(run)
    assert "trace id" in line
    assert "HTTP 401" in line


@pytest.mark.parametrize("name", ["wrong_token", "unknown_task", "failed"])
async def test_errors_reach_stderr_when_stdout_is_not_a_terminal(batch: dict, name: str) -> None:
    """Off a terminal a failed wait still prints one error line to stderr, not only JSON to stdout."""
    run = await finished(batch, name)

    assert run.returncode != 0, run
    line = one_line(run)
    assert run.result()["error"]["message"] in line


async def test_unknown_task_exits_1_with_not_found(batch: dict) -> None:
    """An unknown task id: exit 1 and an error result saying it does not exist."""
    run = await finished(batch, "unknown_task")

    assert run.returncode == 1, run
    result = run.result()
    assert result["outcome"] == "error"
    assert "does not exist" in result["error"]["message"]
    assert "13000309" in result["error"]["message"]
    assert "trace id" in result["error"]["message"]
    assert result["error"]["code"] == "13000309"
    assert result["error"]["type"] == "NotFoundError"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("no_credentials", ["no credentials", "KOODRIVE_TOKEN"]),
        ("half_app_signature", ["KOODRIVE_APP_SECRET", "KOODRIVE_USER_ID"]),
        ("no_base_url", ["no endpoint", "KOODRIVE_BASE_URL"]),
    ],
)
async def test_missing_configuration_exits_2_with_a_clear_line(
    batch: dict, name: str, words: list[str]
) -> None:
    """Missing credentials or endpoint: exit 2, nothing on stdout, one line naming what to set."""
    run = await finished(batch, name)

    assert run.returncode == 2, run
    assert run.stdout == ""
    line = one_line(run)
    for word in words:
        assert word in line


@pytest.mark.parametrize("name", BAD_COMMAND_LINES)
async def test_bad_command_line_exits_2(batch: dict, name: str) -> None:
    """A bad command line: exit 2 with usage on stderr, nothing on stdout."""
    run = await finished(batch, f"usage-{name}")

    assert run.returncode == 2, run
    assert run.stdout == ""
    assert "usage: koodrive-tasks" in run.stderr


# --- --debug --------------------------------------------------------------------------------


async def test_debug_shows_a_traceback_for_an_error(batch: dict) -> None:
    """`--debug` adds the traceback (and request logs) to the error line of a failed create."""
    run = await finished(batch, "create_wrong_token_debug")

    assert run.returncode == 7, run
    assert "Traceback (most recent call last)" in run.stderr
    assert "AuthenticationError" in run.stderr
    assert run.stderr_lines()[-1].startswith("koodrive-tasks: create share task failed")


async def test_without_debug_an_error_is_one_line(batch: dict) -> None:
    """Without `--debug` the same error is one stderr line with the trace id, no traceback."""
    run = await finished(batch, "create_wrong_token")

    assert run.returncode == 7, run
    line = one_line(run)
    assert "trace id" in line
    assert "Traceback" not in run.stderr
    assert run.stdout == ""


async def test_debug_logs_requests_of_a_wait(batch: dict) -> None:
    """`--debug` on a wait logs the polls and retries to stderr, still exits by the outcome."""
    run = await finished(batch, "debug_with_faults")

    assert run.returncode == 3, run
    assert "DEBUG" in run.stderr
    assert "RateLimitedError" in run.stderr
    assert run.result()["outcome"] == "partially_failed"


# --- watch ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "outcomes", "code"),
    [
        ("watch_worst_failed", ["completed", "partially_failed", "failed"], 4),
        ("watch_worst_partial", ["completed", "partially_failed", "completed"], 3),
        ("watch_worst_canceled", ["failed", "canceled", "completed"], 5),
    ],
)
async def test_watch_reports_every_task_and_exits_with_the_worst(
    batch: dict, name: str, outcomes: list[str], code: int
) -> None:
    """`watch SHARE T1 T2 T3` prints a result per task, in order, and exits with the worst code."""
    run = await finished(batch, name)
    task_ids = list(run.args[2:])

    assert run.returncode == code, run
    results = run.results()
    assert list(results) == task_ids
    assert [results[t]["outcome"] for t in task_ids] == outcomes
    for task_id, outcome in zip(task_ids, outcomes, strict=True):
        assert ("download_url" in results[task_id]) == (outcome not in ("failed", "canceled"))
        assert run.updates(task_id), f"no update for {task_id}\n{run}"
    assert all(e["event"] == "result" for e in run.events()[-3:])


# --- create ---------------------------------------------------------------------------------


async def test_create_prints_the_id_of_a_real_task(cli: Cli, emu: Emulator) -> None:
    """`create ... --zip` prints a created event whose task exists in the emulator."""
    run = await cli.run("create", SHARE, "f1", "f2", "--container", "c", "--zip", "a.zip")

    assert run.returncode == 0, run
    (event,) = run.events()
    assert event["event"] == "created"
    task_id = event["task_id"]
    assert emu.snapshot(task_id).progress == 0
    async with client_of(emu) as kd:
        info = await kd.get_share_task(SHARE, task_id)
    assert info.task_type is TaskType.PACKAGE_DOWNLOAD
    task = emu.service.store.get(task_id, time.monotonic())  # the body as the emulator kept it
    assert task is not None
    assert task.file_ids == ("f1", "f2")
    assert task.container_id == "c"
    assert task.zip_name == "a.zip"


async def test_create_on_a_terminal_prints_the_bare_id(cli: Cli, emu: Emulator) -> None:
    """On a terminal `create` prints just the task id."""
    run = await cli.run(*CREATE_ZIP, tty=True)

    assert run.returncode == 0, run
    task_id = run.stdout.strip()
    emu.snapshot(task_id)  # raises KeyError if no such task


async def test_create_wait_follows_the_task_to_its_result(cli: Cli, emu: Emulator) -> None:
    """`create --wait` prints the id, then updates and the result of that task; exit 0."""
    emu.queue_script(TaskScript(pending_s=0.1, duration_s=0.5))

    run = await cli.run("create", SHARE, "f1", "f2", "--container", "c", "--zip", "a.zip", "--wait")

    assert run.returncode == 0, run
    events = run.events()
    assert events[0]["event"] == "created"
    task_id = events[0]["task_id"]
    assert run.updates(task_id)
    assert run.updates(task_id)[-1]["status"] == "completed"
    result = run.result()
    assert result["task_id"] == task_id
    assert result["outcome"] == "completed"
    assert result["download_url"].startswith(f"{emu.url}/download/{task_id}")
    assert emu.snapshot(task_id).ended_after_s is not None


async def test_create_needs_zip_or_save_to(cli: Cli, emu: Emulator) -> None:
    """`create` with neither (or both) of --zip and --save-to exits 2 and creates nothing."""
    neither = await cli.run("create", SHARE, "f1", "--container", "c")
    both = await cli.run(
        "create", SHARE, "f1", "--container", "c", "--zip", "a.zip", "--save-to", "c2"
    )

    for run in (neither, both):
        assert run.returncode == 2, run
        assert run.stdout == ""
        assert "--zip" in one_line(run)
        assert "--save-to" in one_line(run)
    assert emu.task_count == 0


@pytest.mark.parametrize(
    ("save_to", "target"),
    [("c2:folder", ("folder", "c2")), ("c2", ("root", "c2"))],
)
async def test_create_save_to_makes_a_dump_task(
    cli: Cli, emu: Emulator, save_to: str, target: tuple[str, str]
) -> None:
    """`--save-to CONTAINER[:FOLDER]` creates a dump task into that folder (root by default)."""
    run = await cli.run("create", SHARE, "f1", "f2", "--container", "c", "--save-to", save_to)

    assert run.returncode == 0, run
    task_id = run.events()[0]["task_id"]
    async with client_of(emu) as kd:
        info = await kd.get_share_task(SHARE, task_id)
    assert info.task_type is TaskType.DUMP
    task = emu.service.store.get(task_id, time.monotonic())
    assert task is not None
    assert task.target == target  # (fileId, containerId) as received
    assert task.zip_name == ""


# --- credentials and secrets ----------------------------------------------------------------


async def test_app_signature_from_the_environment(batch: dict) -> None:
    """KOODRIVE_APP_ID/APP_SECRET/USER_ID without KOODRIVE_TOKEN authenticate a wait."""
    run = await finished(batch, "app_signature")

    assert run.returncode == 0, run
    assert run.result()["outcome"] == "completed"


@pytest.mark.parametrize(
    "name",
    ["debug_with_faults", "debug_app_signature", "wrong_token_debug", "create_wrong_token_debug"],
)
async def test_debug_output_holds_no_secret(batch: dict, name: str) -> None:
    """Even with --debug, retries and auth errors, no token, app secret, kdstoken or URL query leaks."""
    run = await finished(batch, name)
    env_secrets = [KDSTOKEN, WRONG_TOKEN]

    assert run.stderr, run  # --debug did log something
    for value in env_secrets:
        assert value not in run.stdout + run.stderr
    assert "sig=" not in run.stderr
    assert "expires=" not in run.stderr


async def test_secrets_never_reach_the_output_of_any_run(batch: dict) -> None:
    """Across every batch run, stdout and stderr hold no credential; URLs only in results."""
    runs = [await finished(batch, name) for name in batch]
    urls = 0
    for run in runs:
        text = run.stdout + run.stderr
        assert KDSTOKEN not in text
        assert WRONG_TOKEN not in text
        for line in run.stdout.splitlines():
            if "/download/" in line:
                urls += 1
                assert '"event": "result"' in line
    assert urls >= 10  # the check above saw plenty of URLs


async def test_serve_does_not_echo_a_token_from_the_environment() -> None:
    """`serve` with KOODRIVE_TOKEN already set uses it but does not print it."""
    token = f"user-secret-{WRONG_TOKEN}"
    proc, lines = await start_serve(base_env(KOODRIVE_TOKEN=token))
    try:
        url = lines[1].strip().split("=", 1)[1]
        async with KooDriveClient(url, auth=BearerToken(token), allow_insecure_urls=True) as kd:
            with pytest.raises(NotFoundError):  # the emulator accepts the environment's token
                await kd.get_share_task(SHARE, "no-such-task")
    finally:
        _, rest, stderr = await interrupt(proc)
    assert token not in "".join(lines) + rest + stderr


# --- terminal rendering ---------------------------------------------------------------------


async def test_wait_on_a_terminal_draws_bars_then_the_url(cli: Cli, emu: Emulator) -> None:
    """On a pty `wait` redraws a bar in place with ANSI escapes, then prints the URL line."""
    task_id = emu.add_task(TaskScript(pending_s=0.2, duration_s=1.0), file_ids=FILES)

    run = await cli.run("wait", SHARE, task_id, tty=True)

    assert run.returncode == 0, run
    assert "\x1b[2K" in run.stdout
    assert "[###" in run.stdout
    assert "%" in run.stdout
    assert "\x1b[1F" in run.stdout  # moved up to redraw
    assert "100% completed" in run.stdout
    last = run.stdout.splitlines()[-1]
    assert last.startswith(f"{emu.url}/download/{task_id}.zip?")
    assert "{" not in run.stdout  # no JSON on a terminal
    assert run.stderr == "", run


async def test_json_flag_wins_over_a_terminal(cli: Cli, emu: Emulator) -> None:
    """`--json` prints JSON lines even on a terminal."""
    task_id = emu.add_task(TaskScript(pending_s=0.0, duration_s=0.2), file_ids=FILES)
    await asyncio.sleep(0.3)

    run = await cli.run("wait", SHARE, task_id, "--json", tty=True)

    assert run.returncode == 0, run
    assert "\x1b[" not in run.stdout
    assert run.result()["outcome"] == "completed"


async def test_demo_on_a_terminal_draws_bars_and_a_summary() -> None:
    """`demo --tasks 6 --time-scale 0.05` on a pty shows bars and the summary table; exit 0."""
    run = await run_cli("demo", "--tasks", "6", "--time-scale", "0.05", env=base_env(), tty=True)

    assert run.returncode == 0, run
    assert "\x1b[2K" in run.stdout
    assert "[###" in run.stdout
    assert "%" in run.stdout
    for label in ("polls sent", "mean detection lag", "package check"):
        assert label in run.stdout
    assert "matches its files" in run.stdout
    assert "canceled" in run.stdout
    assert "partially failed" in run.stdout


async def test_demo_json_checks_the_package(batch: dict) -> None:
    """`demo --json` off a terminal prints a result per task and a summary whose package check matched."""
    run = await finished(batch, "demo_json")

    assert run.returncode == 0, run
    events = run.events()
    results = [e for e in events if e["event"] == "result"]
    assert len(results) == 8
    assert {"canceled", "partially_failed", "completed"} <= {r["outcome"] for r in results}
    summary = events[-1]
    assert summary["event"] == "summary"
    assert summary["tasks"] == 8
    assert summary["polls_sent"] >= 8
    assert "matches its files" in summary["package_check"]


# --- serve and interruption -----------------------------------------------------------------


async def test_serve_prints_url_and_token_that_work() -> None:
    """`serve` prints its URL and a token a client can use; SIGINT stops it without a traceback."""
    proc, lines = await start_serve(base_env())
    try:
        assert lines[0].startswith("KooDrive emulator serving on http://127.0.0.1:")
        assert lines[1].startswith("export KOODRIVE_BASE_URL=")
        token_line = (await asyncio.wait_for(proc.stdout.readline(), RUN_TIMEOUT)).decode()
        assert token_line.startswith("export KOODRIVE_TOKEN=")
        url = lines[1].strip().split("=", 1)[1]
        token = token_line.strip().split("=", 1)[1]
        async with KooDriveClient(url, auth=BearerToken(token), allow_insecure_urls=True) as kd:
            with pytest.raises(NotFoundError):  # not AuthenticationError: the token was accepted
                await kd.get_share_task(SHARE, "no-such-task")
    finally:
        code, _, stderr = await interrupt(proc)
    assert code in (0, 130)
    assert "Traceback" not in stderr


async def test_interrupted_wait_exits_130(cli: Cli, emu: Emulator) -> None:
    """Ctrl-C during a wait exits 130 with one line, no traceback."""
    proc = await spawn_cli("wait", SHARE, emu.add_task(LONG), env=cli.env())
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), RUN_TIMEOUT)  # it is polling
    assert b'"event": "update"' in first

    code, _, stderr = await interrupt(proc)

    assert code == 130
    assert stderr == "koodrive-tasks: interrupted\n"
