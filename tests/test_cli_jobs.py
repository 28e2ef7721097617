"""``koodrive-tasks jobs ...``, run for real in a subprocess against a loopback emulator.

Real time, as in ``test_cli.py``: jobs last under two seconds, and the runs that need
nothing but their output start together in the module-scoped ``batch``. Every run is
checked for leaked secrets (the archive password included), misplaced download URLs
and stray tracebacks (``cli_support.check_hygiene``).
"""

from __future__ import annotations

import asyncio
import io
import secrets
import zipfile
from collections.abc import AsyncIterator, Awaitable

import aiohttp
import pytest
import pytest_asyncio
from cli_support import (
    RUN_TIMEOUT,
    WRONG_TOKEN,
    Cli,
    CliRun,
    finished,
    interrupt,
    running,
    spawn_cli,
)

from koodrive_tasks import TaskStatus
from koodrive_tasks.emulator import Emulator, Outcome, TaskScript

pytestmark = pytest.mark.asyncio(loop_scope="module")

QUICK = TaskScript(pending_s=0.1, duration_s=0.5)
LONG = TaskScript(pending_s=0.1, duration_s=60)
PASSWORD = f"pw-{secrets.token_hex(12)}"
BAD_COMMAND_LINES: dict[str, tuple[str, ...]] = {
    "no-action": ("jobs",),
    "unknown-action": ("jobs", "frobnicate"),
    "create-no-kind": ("jobs", "create"),
    "create-unknown-kind": ("jobs", "create", "shred", "f1", "--container", "c"),
    "create-no-files": ("jobs", "create", "copy", "--container", "c"),
    "create-no-container": ("jobs", "create", "copy", "f1"),
    "delete-without-paths": ("jobs", "create", "delete", "f1", "f2", "--container", "c"),
    "delete-bad-file-path": (
        "jobs",
        "create",
        "delete",
        "f1",
        "--container",
        "c",
        "--file-path",
        "f1",
    ),
    "view-and-extract": (
        "jobs",
        "create",
        "decompress",
        "arc",
        "--container",
        "c",
        "--view-only",
        "--extract",
        "x",
    ),
    "list-page-size-0": ("jobs", "list", "--page-size", "0"),
    "list-page-size-101": ("jobs", "list", "--page-size", "101"),
    "list-unknown-type": ("jobs", "list", "--type", "shred"),
    "list-max-0": ("jobs", "list", "--max", "0"),
    "wait-no-id": ("jobs", "wait"),
    "wait-bad-id": ("jobs", "wait", "a/b"),
    "cancel-no-id": ("jobs", "cancel"),
}


@pytest_asyncio.fixture(loop_scope="module")
async def emu() -> AsyncIterator[Emulator]:
    """An emulator of its own per test: list and cancel see only their own jobs."""
    async with Emulator(script=QUICK) as emulator:
        yield emulator


@pytest.fixture
def cli(emu: Emulator) -> Cli:
    return Cli(emu)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def batch() -> AsyncIterator[dict[str, asyncio.Future[CliRun]]]:
    """Runs started together on one emulator; each test awaits the ones it checks."""
    async with Emulator(script=QUICK) as emulator:
        cli = Cli(emulator)
        app = {
            "KOODRIVE_TOKEN": None,
            "KOODRIVE_APP_ID": emulator.app_id,
            "KOODRIVE_APP_SECRET": emulator.app_secret,
            "KOODRIVE_USER_ID": emulator.user_id,
        }

        def job(script: TaskScript, **fields: object) -> str:
            return emulator.add_job(script, file_ids=("f1", "f2", "f3"), **fields)  # type: ignore[arg-type]

        def wait(script: TaskScript, *flags: str, **env: str | None) -> Awaitable[CliRun]:
            return cli.run("jobs", "wait", job(script), *flags, **env)

        runs: dict[str, Awaitable[CliRun]] = {
            "copy_wait": cli.run(
                "jobs", "create", "copy", "f1", "f2", "--container", "c1", "--to", "c2", "--wait"
            ),
            "package_wait": cli.run(
                "jobs", "create", "package", "f1", "f2", "--container", "c1", "--wait"
            ),
            "decompress": cli.run(
                "--debug",
                "jobs",
                "create",
                "decompress",
                "arc",
                "--container",
                "c1",
                "--extract",
                "docs/a.txt",
                "--wait",
                KOODRIVE_ARCHIVE_PASSWORD=PASSWORD,
            ),
            "delete_wait": cli.run(
                "jobs",
                "create",
                "delete",
                "f1",
                "f2",
                "--container",
                "c1",
                "--file-path",
                "f1=/docs/f1",
                "--file-path",
                "f2=/docs/f2",
                "--wait",
            ),
            "empty_bin": cli.run("jobs", "create", "empty-recycle-bin", "--container", "c1"),
            "partially_failed": wait(
                TaskScript(pending_s=0.1, duration_s=0.5, outcome=Outcome.PARTIALLY_FAILED)
            ),
            "failed": wait(TaskScript(pending_s=0.1, duration_s=0.5, outcome=Outcome.ALL_FAILED)),
            "canceled": wait(TaskScript(pending_s=0.1, duration_s=20, cancel_after_s=0.4)),
            "timeout": wait(LONG, "--timeout", "0.5"),
            "wrong_token": wait(LONG, KOODRIVE_TOKEN=WRONG_TOKEN),
            "unknown_job": cli.run("jobs", "wait", "1234567890123456789"),
            "get_unknown": cli.run("jobs", "get", "1234567890123456789"),
            "worst_of_three": cli.run(
                "jobs",
                "wait",
                job(QUICK),
                job(TaskScript(pending_s=0.1, duration_s=0.5, outcome=Outcome.ALL_FAILED)),
                job(TaskScript(pending_s=0.1, duration_s=0.5, outcome=Outcome.PARTIALLY_FAILED)),
            ),
            "app_signature_wait": wait(QUICK, **app),
            "app_signature_list": cli.run(
                "jobs", "list", "--type", "copy", "--status", "completed", "--max", "1", **app
            ),
        }
        runs.update((f"usage-{name}", cli.run(*args)) for name, args in BAD_COMMAND_LINES.items())
        async with running(runs) as futures:
            yield futures


def one_line(run: CliRun) -> str:
    lines = run.stderr_lines()
    assert len(lines) == 1, run
    assert lines[0].startswith("koodrive-tasks: "), run
    return lines[0]


# --- create -----------------------------------------------------------------------------------


async def test_create_wait_prints_the_id_updates_and_the_result(batch: dict) -> None:
    """`jobs create copy --wait`: a created event, rising updates, a completed result; exit 0."""
    run = await finished(batch, "copy_wait")

    assert run.returncode == 0, run
    events = run.events()
    created = events[0]
    assert created["event"] == "created"
    assert created["job_type"] == "copy"
    job_id = created["job_id"]
    updates = run.updates(job_id)
    assert updates[-1] == {
        "event": "update",
        "task_id": job_id,
        "status": "completed",
        "progress": 100,
    }
    assert [u["progress"] for u in updates] == sorted(u["progress"] for u in updates)
    assert run.result() == {"event": "result", "task_id": job_id, "outcome": "completed"}
    assert run.stderr == "", run


async def test_package_job_prints_a_url_that_downloads(batch: dict) -> None:
    """`jobs create package --wait` ends with the zip's URL in the result; it downloads."""
    run = await finished(batch, "package_wait")

    assert run.returncode == 0, run
    url = run.result()["download_url"]
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        names = zipfile.ZipFile(io.BytesIO(await response.read())).namelist()
    assert sorted(names) == ["f1", "f2"]


async def test_decompression_takes_its_password_from_the_environment(batch: dict) -> None:
    """The archive password comes from KOODRIVE_ARCHIVE_PASSWORD and never shows, even with --debug."""
    run = await finished(batch, "decompress")

    assert run.returncode == 0, run  # check_hygiene already refused any sight of the password
    assert run.result()["outcome"] == "completed"
    assert PASSWORD not in run.stdout + run.stderr


@pytest.mark.parametrize("name", ["delete_wait", "empty_bin"])
async def test_delete_and_empty_bin_are_created(batch: dict, name: str) -> None:
    """A delete with its paths, and emptying the recycle bin, are created; exit 0."""
    run = await finished(batch, name)

    assert run.returncode == 0, run
    assert run.events()[0]["event"] == "created"


# --- exit codes, as for share tasks -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code", "outcome"),
    [
        ("partially_failed", 3, "partially_failed"),
        ("failed", 4, "failed"),
        ("canceled", 5, "canceled"),
        ("timeout", 6, "timeout"),
        ("wrong_token", 7, "auth_error"),
        ("unknown_job", 1, "error"),
    ],
)
async def test_wait_exits_as_for_share_tasks(
    batch: dict, name: str, code: int, outcome: str
) -> None:
    """`jobs wait` ends with the exit code and result word a share task's wait would get."""
    run = await finished(batch, name)

    assert run.returncode == code, run
    assert run.result()["outcome"] == outcome
    if outcome != "partially_failed":  # a partial success has a URL and no error
        assert run.result()["error"]["message"] in one_line(run)


async def test_partial_job_lists_its_failed_files(batch: dict) -> None:
    """A partially failed job's result names the failed files."""
    run = await finished(batch, "partially_failed")

    assert set(run.result()["failed_files"]) < {"f1", "f2", "f3"}


async def test_several_jobs_exit_with_the_worst(batch: dict) -> None:
    """Three jobs, one failed and one partial: three results, exit 4."""
    run = await finished(batch, "worst_of_three")

    assert run.returncode == 4, run
    assert sorted(r["outcome"] for r in run.results().values()) == [
        "completed",
        "failed",
        "partially_failed",
    ]


async def test_get_of_an_unknown_job_exits_1(batch: dict) -> None:
    """`jobs get` of no such job: exit 1, one line saying it does not exist."""
    run = await finished(batch, "get_unknown")

    assert run.returncode == 1, run
    assert run.stdout == ""
    assert "13000309" in one_line(run)


@pytest.mark.parametrize("name", ["app_signature_wait", "app_signature_list"])
async def test_app_signature_signs_job_requests(batch: dict, name: str) -> None:
    """Signed GETs (detail, and list with its query) are accepted: exit 0."""
    run = await finished(batch, name)

    assert run.returncode == 0, run


@pytest.mark.parametrize("name", list(BAD_COMMAND_LINES))
async def test_bad_command_lines_exit_2(batch: dict, name: str) -> None:
    """A malformed `jobs` command line: exit 2, nothing on stdout."""
    run = await finished(batch, f"usage-{name}")

    assert run.returncode == 2, run
    assert run.stdout == ""
    assert run.stderr.strip(), run


# --- get, list, cancel --------------------------------------------------------------------------


async def test_get_prints_one_job_without_its_url(cli: Cli, emu: Emulator) -> None:
    """`jobs get` prints one JSON line with the job's fields; a package's URL is not among them."""
    job_id = emu.add_job(TaskScript(pending_s=0, duration_s=0.1), job_type=6, file_ids=["a"])
    await asyncio.sleep(0.3)

    run = await cli.run("jobs", "get", job_id)

    assert run.returncode == 0, run
    (event,) = run.events()
    assert event["event"] == "job"
    assert event["job_id"] == job_id
    assert (event["job_type"], event["status"], event["progress"], event["result"]) == (
        "package-download",
        "completed",
        100,
        "all_succeeded",
    )
    assert event["content_num"] == 1
    assert "/download/" not in run.stdout


async def test_list_pages_and_filters(cli: Cli, emu: Emulator) -> None:
    """`jobs list` prints every job newest first, across pages; --type and --max narrow it."""
    copies = [emu.add_job(LONG, job_type=1) for _ in range(3)]
    moves = [emu.add_job(LONG, job_type=3) for _ in range(2)]

    every = await cli.run("jobs", "list", "--page-size", "2")
    only_copies = await cli.run("jobs", "list", "--type", "copy", "--max", "2")
    on_terminal = await cli.run("jobs", "list", "--status", "processing", tty=True)

    assert every.returncode == only_copies.returncode == on_terminal.returncode == 0
    assert [e["job_id"] for e in every.events()] == (copies + moves)[::-1]
    assert [e["job_id"] for e in only_copies.events()] == copies[::-1][:2]
    lines = on_terminal.stdout.splitlines()
    assert len(lines) == 5
    assert all(" processing " in line for line in lines)
    assert lines[0].startswith(moves[-1])
    assert emu.stats.requests["job_list"] == 3 + 1 + 1


async def test_cancel_stops_the_job_and_a_later_wait_says_so(cli: Cli, emu: Emulator) -> None:
    """`jobs cancel` stops a running job (exit 0); `jobs wait` then exits 5; a second cancel exits 1."""
    job_id = emu.add_job(LONG)

    canceled = await cli.run("jobs", "cancel", job_id)
    waited = await cli.run("jobs", "wait", job_id)
    again = await cli.run("jobs", "cancel", job_id)

    assert canceled.returncode == 0, canceled
    assert canceled.events() == [{"event": "canceled", "job_id": job_id}]
    assert emu.snapshot(job_id).status is TaskStatus.CANCELED
    assert waited.returncode == 5, waited
    assert waited.result()["outcome"] == "canceled"
    assert again.returncode == 1, again
    assert "has ended" in one_line(again)


async def test_wait_on_a_terminal_draws_bars_then_the_url(cli: Cli, emu: Emulator) -> None:
    """On a pty `jobs wait` of a package job draws bars, then prints the URL line."""
    job_id = emu.add_job(TaskScript(pending_s=0.2, duration_s=1.0), job_type=6)

    run = await cli.run("jobs", "wait", job_id, tty=True)

    assert run.returncode == 0, run
    assert "[###" in run.stdout
    assert "100% completed" in run.stdout
    assert run.stdout.splitlines()[-1].startswith(f"{emu.url}/download/")


async def test_interrupting_a_wait_leaves_the_job_running(cli: Cli, emu: Emulator) -> None:
    """Ctrl-C during `jobs wait` exits 130 and stops only the watching: the job runs on."""
    job_id = emu.add_job(LONG)
    proc = await spawn_cli("jobs", "wait", job_id, env=cli.env())
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), RUN_TIMEOUT)
    assert b'"event": "update"' in first

    code, _, stderr = await interrupt(proc)

    assert code == 130
    assert stderr == "koodrive-tasks: interrupted\n"
    assert emu.snapshot(job_id).status in (TaskStatus.PENDING, TaskStatus.PROCESSING)
    assert emu.stats.requests["job_cancel"] == 0
