"""Batch jobs over real HTTP: life cycle per job type, packages, decompression, cancel, list."""

from __future__ import annotations

import io
import zipfile

import aiohttp
import pytest
from emulator_helpers import DETAIL, JOBS, Api, job_body

from koodrive_tasks.emulator import Emulator, Outcome, TaskScript
from koodrive_tasks.testing import VirtualClock

STEADY = TaskScript(pending_s=10, duration_s=100)
"""10 s pending, then 100 s processing, linear: 40 % done at 50 s."""


def statuses(data: dict) -> list[str]:
    return [item["status"] for item in data["taskInfos"]]


@pytest.mark.parametrize(("shape", "code"), [("B", 0), ("A", "0")])
async def test_copy_job_runs_through_its_life_cycle(
    api: Api, clock: VirtualClock, shape: str, code: object
) -> None:
    """A copy job is pending, then processing with rising progress, then completed with new ids."""
    async with Emulator(clock=clock, script=STEADY, shape=shape) as emu:  # type: ignore[arg-type]
        status, answer = await api.post(emu, JOBS, job_body())
        assert (status, answer["code"], answer["msg"]) == (200, code, "success")
        job_id = answer["data"]
        assert job_id.isdigit()
        assert len(job_id) == 19

        pending = await api.job(emu, job_id)
        info = pending["jobInfo"]
        assert (info["status"], info["progress"], info["taskResultCode"]) == (0, 0, 0)
        assert (info["beginTime"], info["endTime"]) == ("", "")
        assert info["createTime"] == "20261129120000"  # the virtual wall clock's start
        assert statuses(pending) == ["0"] * 4
        assert "uncompressedFileList" not in pending

        clock.advance(60)
        running = await api.job(emu, job_id)
        assert (running["jobInfo"]["status"], running["jobInfo"]["progress"]) == (1, 50)
        assert running["jobInfo"]["beginTime"] == "20261129120010"
        assert statuses(running) == ["1", "1", "0", "0"]

        clock.advance(50)
        done = await api.job(emu, job_id)
        info = done["jobInfo"]
        assert (info["status"], info["progress"], info["taskResultCode"]) == (2, 100, 1)
        assert info["endTime"] == "20261129120150"
        assert {
            key: info[key]
            for key in ("taskId", "taskType", "actionType", "contentNum", "containerId", "userId")
        } == {
            "taskId": job_id,
            "taskType": 1,
            "actionType": 101,
            "contentNum": 4,
            "containerId": "dst-1",
            "userId": emu.user_id,
        }
        assert info["taskName"]
        assert info["downloadUrl"] == ""
        assert all(item["srcContainerId"] == "src-1" for item in done["taskInfos"])
        assert all(item["newFileId"] not in ("", item["fileId"]) for item in done["taskInfos"])


@pytest.mark.parametrize(
    ("outcome", "result_code", "expected"),
    [
        (Outcome.ALL_SUCCEEDED, 1, ["1", "1", "1", "1"]),
        (Outcome.PARTIALLY_FAILED, 2, ["1", "2", "1", "2"]),
        (Outcome.ALL_FAILED, 3, ["2", "2", "2", "2"]),
    ],
)
async def test_job_outcomes_agree_with_the_files(
    api: Api, clock: VirtualClock, outcome: Outcome, result_code: int, expected: list[str]
) -> None:
    """taskResultCode follows the scripted outcome and agrees with the per-file statuses."""
    async with Emulator(
        clock=clock, script=TaskScript(pending_s=0, duration_s=5, outcome=outcome)
    ) as emu:
        job_id = await api.create_job(emu, job_body(3, actionType=301))
        clock.advance(5)
        data = await api.job(emu, job_id)
        assert data["jobInfo"]["taskResultCode"] == result_code
        assert statuses(data) == expected
        for item in data["taskInfos"]:  # a move keeps each file's id
            assert item.get("newFileId", item["fileId"]) == item["fileId"]


async def test_empty_recycle_bin_without_files_ends_as_scripted(
    api: Api, clock: VirtualClock
) -> None:
    """A type 7 job needs no fileInfo; with no files its result follows the script."""
    failing = TaskScript(pending_s=0, duration_s=5, outcome=Outcome.ALL_FAILED)
    async with Emulator(clock=clock, script=failing) as emu:
        body = job_body(7, taskInfo={"srcContainerId": "src-1"})
        job_id = await api.create_job(emu, body)
        clock.advance(5)
        info = (await api.job(emu, job_id))["jobInfo"]
        assert (info["taskType"], info["actionType"], info["contentNum"]) == (7, 701, 0)
        assert (info["status"], info["taskResultCode"]) == (2, 3)
        assert (await api.job(emu, job_id))["taskInfos"] == []


async def test_package_job_links_a_real_zip_once_completed(
    api: Api, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    """A package-download job has a downloadUrl only when done; it serves a zip of the good files."""
    script = TaskScript(pending_s=0, duration_s=10, outcome=Outcome.PARTIALLY_FAILED)
    async with Emulator(clock=clock, script=script) as emu:
        job_id = await api.create_job(emu, job_body(6))
        clock.advance(9)
        assert (await api.job(emu, job_id))["jobInfo"]["downloadUrl"] == ""
        clock.advance(1)
        info = (await api.job(emu, job_id))["jobInfo"]
        assert info["actionType"] == 0
        url = info["downloadUrl"]
        assert url.startswith(f"{emu.url}/download/{job_id}.zip?")
        async with session.get(url) as resp:
            assert resp.status == 200
            assert f'filename="package-{job_id}.zip"' in resp.headers["Content-Disposition"]
            archive = zipfile.ZipFile(io.BytesIO(await resp.read()))
        assert sorted(archive.namelist()) == ["f1", "f3"]  # f2 and f4 failed
        listed = (await api.list_jobs(emu))[1]["data"]
        assert listed[0]["downloadUrl"].startswith(f"{emu.url}/download/{job_id}.zip?")


async def test_failed_package_job_has_no_link(api: Api, clock: VirtualClock) -> None:
    """A package job whose files all failed completes without a downloadUrl."""
    script = TaskScript(pending_s=0, duration_s=1, outcome=Outcome.ALL_FAILED)
    async with Emulator(clock=clock, script=script) as emu:
        job_id = await api.create_job(emu, job_body(6))
        clock.advance(1)
        info = (await api.job(emu, job_id))["jobInfo"]
        assert (info["status"], info["taskResultCode"], info["downloadUrl"]) == (2, 3, "")


def archive_body(action: int, **task_info: object) -> dict:
    return job_body(
        5,
        actionType=action,
        password="archive-pass-123",
        taskInfo={"srcContainerId": "src-1", "fileInfo": [{"fileId": "arc"}], **task_info},
    )


async def test_decompression_reports_the_extracted_files(api: Api, clock: VirtualClock) -> None:
    """uncompressedFileList is empty until done; then it lists the archive, ids for extractions."""
    async with Emulator(clock=clock, script=TaskScript(pending_s=0, duration_s=10)) as emu:
        full = await api.create_job(emu, archive_body(502))
        some = await api.create_job(emu, archive_body(503, uncompressFilePaths=["a/", "a/b.txt"]))
        view = await api.create_job(emu, archive_body(501))
        assert (await api.job(emu, full))["uncompressedFileList"] == []
        clock.advance(10)
        entries = (await api.job(emu, full))["uncompressedFileList"]
        assert [(e["name"], e["type"]) for e in entries] == [
            ("docs/", 2),
            ("docs/readme.txt", 1),
            ("data.bin", 1),
        ]
        assert all(e["containerId"] == "dst-1" and e["fileId"] for e in entries)
        assert entries[1]["fileSize"] > 0 == entries[0]["fileSize"]
        partial = (await api.job(emu, some))["uncompressedFileList"]
        assert [e["name"] for e in partial] == ["a/", "a/b.txt"]
        viewed = (await api.job(emu, view))["uncompressedFileList"]
        assert len(viewed) == 3
        assert not any("fileId" in e for e in viewed)  # viewing extracts nothing
        everything = str(await api.job(emu, full)) + str(await api.list_jobs(emu))
        assert "archive-pass-123" not in everything


async def test_failed_decompression_extracts_nothing(api: Api, clock: VirtualClock) -> None:
    """When the archive fails, the completed job lists no extracted files."""
    script = TaskScript(pending_s=0, duration_s=1, outcome=Outcome.ALL_FAILED)
    async with Emulator(clock=clock, script=script) as emu:
        job_id = await api.create_job(emu, archive_body(502))
        clock.advance(1)
        data = await api.job(emu, job_id)
        assert (data["jobInfo"]["taskResultCode"], data["uncompressedFileList"]) == (3, [])


# --- cancel -------------------------------------------------------------------------------


async def test_cancel_while_pending(api: Api, clock: VirtualClock) -> None:
    """A pending job cancels: status 3 from then on, no progress, never started."""
    async with Emulator(clock=clock, script=STEADY) as emu:
        job_id = await api.create_job(emu)
        clock.advance(5)
        status, answer = await api.cancel_job(emu, job_id)
        assert (status, answer) == (200, {"code": 0, "msg": "success"})
        clock.advance(500)
        info = (await api.job(emu, job_id))["jobInfo"]
        assert (info["status"], info["progress"], info["taskResultCode"]) == (3, 0, 0)
        assert (info["beginTime"], info["endTime"]) == ("", "20261129120005")
        listed = (await api.list_jobs(emu, "status=3&offset=0&limit=10"))[1]["data"]
        assert [job["taskId"] for job in listed] == [job_id]


async def test_cancel_while_processing_freezes_progress(api: Api, clock: VirtualClock) -> None:
    """A processing job cancels with its progress frozen and unreached files still pending."""
    async with Emulator(clock=clock, script=STEADY) as emu:
        job_id = await api.create_job(emu)
        clock.advance(60)
        assert (await api.cancel_job(emu, job_id))[0] == 200
        clock.advance(500)
        data = await api.job(emu, job_id)
        assert (data["jobInfo"]["status"], data["jobInfo"]["progress"]) == (3, 50)
        assert statuses(data) == ["1", "1", "0", "0"]


@pytest.mark.parametrize(("cancel_at", "ended_status"), [(None, 2), (60, 3)])
async def test_cancel_after_the_end_is_a_service_error(
    api: Api, clock: VirtualClock, cancel_at: float | None, ended_status: int
) -> None:
    """Canceling a completed or already canceled job answers 13000102 naming its status."""
    async with Emulator(clock=clock, script=STEADY) as emu:
        job_id = await api.create_job(emu)
        if cancel_at is not None:
            clock.advance(cancel_at)
            assert (await api.cancel_job(emu, job_id))[0] == 200
        clock.advance(200)
        status, answer = await api.cancel_job(emu, job_id)
        assert (status, answer["code"]) == (400, "13000102")
        assert f"status {ended_status}" in answer["msg"]
        assert (await api.job(emu, job_id))["jobInfo"]["status"] == ended_status


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({"jobId": "1000000000000000000"}, "13000309", id="unknown"),
        pytest.param({}, "13000102", id="no-job-id"),
        pytest.param({"jobId": 12}, "13000102", id="not-a-string"),
        pytest.param(b"not json", "13000102", id="not-json"),
    ],
)
async def test_cancel_of_nothing_is_an_error(api: Api, body: object, code: str) -> None:
    """A cancel naming no job, or no known job, gets the service error."""
    async with Emulator() as emu:
        status, answer = await api.post(emu, "/koodrive/ose/v1/cancel", body)
        assert (status, answer["code"]) == (400, code)


async def test_another_users_job_does_not_exist(api: Api) -> None:
    """Detail and cancel of another user's job read as 13000309, and it is not listed."""
    async with Emulator() as emu:
        theirs = emu.add_job(user_id="someone-else")
        status, answer = await api.get(emu, f"/koodrive/ose/v1/{theirs}")
        assert (status, answer["code"]) == (400, "13000309")
        status, answer = await api.cancel_job(emu, theirs)
        assert (status, answer["code"]) == (400, "13000309")
        assert (await api.list_jobs(emu))[1]["data"] == []
        assert emu.snapshot(theirs).status.value == 0  # not canceled


async def test_share_tasks_and_jobs_do_not_mix(api: Api) -> None:
    """A share task's id is no job, a job's id is no share task; GET /jobs is the list."""
    async with Emulator() as emu:
        task_id = emu.add_task()
        job_id = emu.add_job()
        status, answer = await api.get(emu, f"/koodrive/ose/v1/{task_id}")
        assert (status, answer["code"]) == (400, "13000309")
        status, answer = await api.post(emu, DETAIL, {"taskId": job_id, "shareId": "share-1"})
        assert (status, answer["code"]) == (400, "13000309")
        status, answer = await api.get(emu, JOBS)  # the list without its required query
        assert (status, answer["code"]) == (400, "13000102")
        assert "offset" in answer["msg"]


# --- list ---------------------------------------------------------------------------------


async def test_list_filters_by_type_and_status_newest_first(api: Api, clock: VirtualClock) -> None:
    """The list holds the caller's jobs newest first, filtered by type and by current status."""
    async with Emulator(clock=clock) as emu:
        quick = TaskScript(pending_s=0, duration_s=5)
        slow = TaskScript(pending_s=0, duration_s=500)
        first = emu.add_job(quick, job_type=1)
        second = emu.add_job(slow, job_type=2)
        third = emu.add_job(quick, job_type=1)
        fourth = emu.add_job(slow, job_type=6)
        clock.advance(10)

        async def ids(query: str) -> list[str]:
            status, answer = await api.list_jobs(emu, query)
            assert (status, answer["code"]) == (200, 0), answer
            return [job["taskId"] for job in answer["data"]]

        assert await ids("offset=0&limit=100") == [fourth, third, second, first]
        assert await ids("type=1&offset=0&limit=100") == [third, first]
        assert await ids("status=1&offset=0&limit=100") == [fourth, second]
        assert await ids("type=2&status=2&offset=0&limit=100") == []
        assert await ids("type=1&status=2&offset=0&limit=1") == [third]
        assert await ids("limit=100&offset=0&type=") == [fourth, third, second, first]


async def test_list_pages_by_offset_and_limit(api: Api) -> None:
    """offset skips, limit bounds; pages put together give every job once; past the end is []."""
    async with Emulator() as emu:
        made = [emu.add_job() for _ in range(7)]
        pages = []
        for offset in range(0, 9, 3):
            status, answer = await api.list_jobs(emu, f"offset={offset}&limit=3")
            assert status == 200
            pages.append([job["taskId"] for job in answer["data"]])
        assert [len(page) for page in pages] == [3, 3, 1]
        assert [job for page in pages for job in page] == made[::-1]
        assert (await api.list_jobs(emu, "offset=7&limit=100"))[1]["data"] == []


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("limit=10", id="no-offset"),
        pytest.param("offset=0", id="no-limit"),
        pytest.param("offset=0&limit=0", id="limit-0"),
        pytest.param("offset=0&limit=101", id="limit-101"),
        pytest.param("offset=-1&limit=10", id="negative-offset"),
        pytest.param("offset=abc&limit=10", id="offset-word"),
        pytest.param("offset=0&limit=1.5", id="limit-fraction"),
        pytest.param("offset=0&limit=1_0", id="limit-underscore"),
        pytest.param("offset=0&limit=", id="limit-empty"),
        pytest.param("type=0&offset=0&limit=10", id="type-0"),
        pytest.param("type=8&offset=0&limit=10", id="type-8"),
        pytest.param("status=4&offset=0&limit=10", id="status-4"),
        pytest.param("status=-1&offset=0&limit=10", id="status-negative"),
    ],
)
async def test_list_query_is_checked(api: Api, query: str) -> None:
    """A missing, non-integer or out-of-range list parameter is 13000102 under HTTP 400."""
    async with Emulator() as emu:
        emu.add_job()
        status, answer = await api.list_jobs(emu, query)
        assert (status, answer["code"]) == (400, "13000102")


@pytest.mark.parametrize("query", ["offset=0&limit=1", "offset=0&limit=100", "offset=5&limit=1"])
async def test_list_accepts_the_edges(api: Api, query: str) -> None:
    """limit 1 and 100 and any offset >= 0 are valid."""
    async with Emulator() as emu:
        assert (await api.list_jobs(emu, query))[0] == 200


# --- retention, capacity, the Python API -----------------------------------------------------


async def test_ended_jobs_are_purged_after_retention(api: Api, clock: VirtualClock) -> None:
    """An ended job answers until retention_s has passed, then is gone from detail and list."""
    async with Emulator(clock=clock, retention_s=100) as emu:
        job_id = emu.add_job(TaskScript(pending_s=0, duration_s=10))
        clock.advance(109)
        assert (await api.job(emu, job_id))["jobInfo"]["status"] == 2
        clock.advance(1)
        status, answer = await api.get(emu, f"/koodrive/ose/v1/{job_id}")
        assert (status, answer["code"]) == (400, "13000309")
        assert (await api.list_jobs(emu))[1]["data"] == []


async def test_tasks_and_jobs_share_max_tasks(api: Api) -> None:
    """max_tasks bounds share tasks and jobs together: the next create gets 13000311."""
    async with Emulator(max_tasks=2) as emu:
        emu.add_task()
        await api.create_job(emu)
        status, answer = await api.post(emu, JOBS, job_body())
        assert (status, answer["code"]) == (400, "13000311")
        with pytest.raises(OverflowError, match="max_tasks=2"):
            emu.add_job()
        assert emu.stats.tasks_created == 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"job_type": 9}, "taskType", id="type"),
        pytest.param({"job_type": 1, "action_type": 201}, "actionType 201", id="action"),
        pytest.param({"job_type": 5, "file_ids": ("a", "b")}, "exactly one archive", id="archives"),
        pytest.param({"job_type": 5, "action_type": 503}, "uncompressFilePaths", id="paths"),
        pytest.param({"file_ids": ()}, "fileInfo", id="no-files"),
    ],
)
def test_add_job_checks_its_fields(fields: dict, message: str) -> None:
    """add_job follows the create rules and raises ValueError saying what is wrong."""
    emu = Emulator()
    with pytest.raises(ValueError, match=message):
        emu.add_job(**fields)


async def test_seeded_job_ids_are_reproducible() -> None:
    """With a seed, job ids repeat from run to run."""
    first = Emulator(seed=11)
    second = Emulator(seed=11)
    assert [first.add_job() for _ in range(3)] == [second.add_job() for _ in range(3)]
    assert Emulator(seed=12).add_job() != first.add_job()
