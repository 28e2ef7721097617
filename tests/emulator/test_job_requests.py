"""Batch-job requests: create bodies checked per job type, both auth schemes, faults, counters."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import aiohttp
import pytest
from emulator_helpers import CANCEL, JOBS, Api, job_body, signed_headers

from koodrive_tasks.emulator import Emulator, Fault, FaultPlan, TaskScript
from koodrive_tasks.testing import VirtualClock

SECRET_PASSWORD = "pw-never-echoed-42"


def with_task_info(job_type: int = 1, **task_info: Any) -> dict[str, Any]:
    """A body whose taskInfo is replaced by ``task_info`` (srcContainerId kept unless given)."""
    return job_body(job_type, taskInfo={"srcContainerId": "src-1", **task_info})


FILES = [{"fileId": "f1", "filePath": "/f1"}]

BAD_BODIES = {
    "not-json": (b"{taskType: 1", "not JSON"),
    "array": ([job_body()], "not a JSON object"),
    "no-type": (job_body(taskType=None), "taskType"),
    "type-0": (job_body(0), "taskType"),
    "type-8": (job_body(8), "taskType"),
    "type-string": (job_body("1"), "taskType"),
    "type-bool": (job_body(True), "taskType"),
    "action-of-another-type": (job_body(1, actionType=201), "actionType 201"),
    "action-for-restore": (job_body(4, actionType=101), "actionType 101 does not apply"),
    "action-for-package": (job_body(6, actionType=0), "actionType 0 does not apply"),
    "action-string": (job_body(2, actionType="201"), "actionType"),
    "no-dst": (job_body(dstContainerId=None), "dstContainerId"),
    "empty-dst": (job_body(dstContainerId=""), "dstContainerId"),
    "no-task-info": (job_body(taskInfo=None), "taskInfo must be an object"),
    "task-info-list": (job_body(taskInfo=[]), "taskInfo must be an object"),
    "no-src": (job_body(taskInfo={"fileInfo": FILES}), "srcContainerId"),
    "no-files": (with_task_info(1), "fileInfo"),
    "empty-files": (with_task_info(1, fileInfo=[]), "fileInfo"),
    "too-many-files": (
        with_task_info(1, fileInfo=[{"fileId": f"f{i}"} for i in range(1001)]),
        "1000",
    ),
    "file-not-object": (with_task_info(1, fileInfo=["f1"]), "must be an object"),
    "no-file-id": (with_task_info(1, fileInfo=[{"filePath": "/f1"}]), "fileId"),
    "logical-delete-no-path": (
        with_task_info(2, fileInfo=[{"fileId": "f1"}]),
        "filePath",
    ),
    "two-archives": (with_task_info(5, fileInfo=FILES * 2), "exactly one archive"),
    "partial-without-paths": (
        job_body(5, actionType=503, taskInfo={"srcContainerId": "s", "fileInfo": FILES}),
        "uncompressFilePaths",
    ),
    "paths-not-list": (
        with_task_info(5, fileInfo=FILES, uncompressFilePaths="a"),
        "uncompressFilePaths",
    ),
    "new-path-number": (with_task_info(1, fileInfo=FILES, newFilePath=3), "newFilePath"),
    "password-number": (job_body(5, password=1234), "password must be a string"),
}


@pytest.mark.parametrize(("body", "fragment"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_bad_create_bodies_get_13000102(api: Api, body: object, fragment: str) -> None:
    """A create body breaking its job type's rules is HTTP 400 code 13000102, and makes no job."""
    async with Emulator() as emu:
        status, answer = await api.post(emu, JOBS, body)
        assert (status, answer["code"]) == (400, "13000102")
        assert fragment in answer["msg"]
        assert emu.task_count == 0


GOOD_BODIES = {
    "copy": job_body(1, actionType=101),
    "logical-delete": job_body(2),
    "permanent-delete-no-paths": job_body(
        2, actionType=202, taskInfo={"srcContainerId": "s", "fileInfo": [{"fileId": "f1"}]}
    ),
    "move": job_body(3, actionType=301),
    "restore": job_body(4),
    "extract-all-with-password": job_body(
        5, password=SECRET_PASSWORD, taskInfo={"srcContainerId": "s", "fileInfo": FILES}
    ),
    "package": job_body(6),
    "empty-recycle-bin": job_body(7, actionType=701, taskInfo={"srcContainerId": "s"}),
    "unknown-fields": job_body(
        1, shiny=True, taskInfo={"srcContainerId": "s", "fileInfo": FILES, "x": 1}
    ),
}


@pytest.mark.parametrize("body", GOOD_BODIES.values(), ids=GOOD_BODIES.keys())
async def test_valid_bodies_of_every_type_create_a_job(api: Api, body: dict[str, Any]) -> None:
    """Each job type's valid body creates a job of that type; the password is never echoed."""
    async with Emulator() as emu:
        status, answer = await api.post(emu, JOBS, body)
        assert status == 200, answer
        data = await api.job(emu, answer["data"])
        assert data["jobInfo"]["taskType"] == body["taskType"]
        assert SECRET_PASSWORD not in json.dumps(data) + json.dumps(answer)


async def test_bad_password_type_is_not_quoted(api: Api) -> None:
    """An error about the password never quotes it."""
    async with Emulator() as emu:
        status, answer = await api.post(emu, JOBS, job_body(5, password=[SECRET_PASSWORD]))
        assert status == 400
        assert SECRET_PASSWORD not in answer["msg"]


# --- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("POST", JOBS, "", job_body()),
        ("GET", "/koodrive/ose/v1/1000000000000000001", "", None),
        ("GET", JOBS, "offset=0&limit=10", None),
        ("POST", CANCEL, "", {"jobId": "1"}),
    ],
    ids=["create", "detail", "list", "cancel"],
)
async def test_every_job_route_needs_credentials(
    session: aiohttp.ClientSession, method: str, path: str, query: str, body: object
) -> None:
    """Without credentials, or with a wrong token, every job route answers 401 in the gateway shape."""
    async with Emulator() as emu:
        url = emu.url + path + (f"?{query}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            async with session.request(method, url, data=data, headers=headers) as resp:
                assert resp.status == 401
                assert (await resp.json())["error_code"] == "APIGW.0301"
        assert emu.stats.auth_failures == 2
        assert emu.task_count == 0


async def test_app_signature_works_on_every_job_route(api: Api) -> None:
    """Signed create, detail (GET, empty body), list (GET over its query) and cancel all pass."""
    async with Emulator() as emu:
        body = json.dumps(job_body()).encode()
        status, answer = await api.post(emu, JOBS, body, signed_headers(emu, JOBS, body))
        assert status == 200, answer
        job_id = answer["data"]
        path = f"/koodrive/ose/v1/{job_id}"
        status, answer = await api.get(
            emu, path, headers=signed_headers(emu, path, b"", method="GET")
        )
        assert (status, answer["data"]["jobInfo"]["taskId"]) == (200, job_id)
        query = "status=0&offset=0&limit=10&type=1"
        headers = signed_headers(emu, JOBS, b"", method="GET", query=query)
        status, answer = await api.get(emu, JOBS, query, headers=headers)
        assert (status, [job["taskId"] for job in answer["data"]]) == (200, [job_id])
        cancel = json.dumps({"jobId": job_id}).encode()
        status, _ = await api.post(emu, CANCEL, cancel, signed_headers(emu, CANCEL, cancel))
        assert status == 200
        assert emu.stats.auth_failures == 0


@pytest.mark.parametrize(
    ("signed_query", "sent_query", "accepted"),
    [
        ("offset=0&limit=10", "limit=10&offset=0", True),  # the canonical query is sorted
        ("offset=0&limit=10", "offset=0&limit=20", False),
        ("offset=0&limit=10", "offset=0&limit=10&type=1", False),
        ("", "offset=0&limit=10", False),
    ],
    ids=["reordered", "changed", "added", "unsigned"],
)
async def test_list_signature_covers_the_query(
    api: Api, signed_query: str, sent_query: str, accepted: bool
) -> None:
    """A GET is signed over its canonical query string: any change to the query fails."""
    async with Emulator() as emu:
        headers = signed_headers(emu, JOBS, b"", method="GET", query=signed_query)
        status, answer = await api.get(emu, JOBS, sent_query, headers=headers)
        if accepted:
            assert status == 200, answer
        else:
            assert (status, answer["error_code"]) == (401, "APIGW.0303")


async def test_signed_x_date_follows_the_emulator_clock(api: Api) -> None:
    """With the emulator on a virtual clock, a signature dated 20 minutes back is refused."""
    clock = VirtualClock(autojump=False)
    async with Emulator(clock=clock) as emu:
        headers = signed_headers(
            emu, JOBS, b"", method="GET", query="offset=0&limit=1", x_date=clock.now()
        )
        assert (await api.get(emu, JOBS, "offset=0&limit=1", headers=headers))[0] == 200
        clock.advance(20 * 60)
        status, answer = await api.get(emu, JOBS, "offset=0&limit=1", headers=headers)
        assert status == 401
        assert "X-Date" in answer["error_msg"]


# --- faults -------------------------------------------------------------------------------


async def test_scripted_faults_hit_a_jobs_detail_polls(api: Api) -> None:
    """A job's script faults its successive detail requests, then it answers normally."""
    async with Emulator() as emu:
        job_id = emu.add_job(TaskScript(faults=[Fault.server_error(), None, Fault.throttle(0)]))
        path = f"/koodrive/ose/v1/{job_id}"
        answers = [await api.get(emu, path) for _ in range(4)]
        assert [status for status, _ in answers] == [500, 200, 429, 200]
        assert emu.stats.polls[job_id] == 4
        assert emu.stats.faults == {"server_error": 1, "throttle": 1}


async def test_random_faults_hit_job_reads_not_writes(api: Api) -> None:
    """A plan faults job details and lists; creates and cancels only with on_create=True."""
    plan = FaultPlan(rate=1.0, mix=[Fault.gateway(503, html=False)])
    async with Emulator(faults=plan) as emu:
        job_id = await api.create_job(emu)
        assert (await api.get(emu, f"/koodrive/ose/v1/{job_id}"))[0] == 503
        assert (await api.list_jobs(emu))[0] == 503
        assert (await api.cancel_job(emu, job_id))[0] == 200
    writes = FaultPlan(rate=1.0, mix=[Fault.server_error()], on_create=True)
    async with Emulator(faults=writes) as emu:
        assert (await api.post(emu, JOBS, job_body()))[0] == 500
        assert emu.task_count == 0  # the faulted create made nothing
        job_id = emu.add_job()
        assert (await api.cancel_job(emu, job_id))[0] == 500
        assert emu.snapshot(job_id).status.value == 0  # the faulted cancel did nothing


async def test_queued_create_faults_apply_to_job_creates(api: Api) -> None:
    """fail_next_create faults the next creates, share task or job alike."""
    async with Emulator() as emu:
        emu.fail_next_create(Fault.throttle(0), None)
        first, answer = await api.post(emu, JOBS, job_body())
        assert (first, answer["error_code"]) == (429, "APIGW.0308")
        second, _ = await api.post(emu, JOBS, job_body())
        assert second == 200
        assert emu.task_count == 1


async def test_truncated_and_dropped_list_answers(session: aiohttp.ClientSession) -> None:
    """A truncated list answer is cut JSON under 200; a dropped one closes the connection."""
    async with Emulator(faults=FaultPlan(rate=1.0, mix=[Fault.truncated_json()])) as emu:
        emu.add_job()
        headers = {"Authorization": f"Bearer {emu.token}"}
        async with session.get(emu.url + JOBS + "?offset=0&limit=5", headers=headers) as resp:
            assert resp.status == 200
            with pytest.raises(ValueError):  # noqa: PT011 - json's own error
                json.loads(await resp.read())
    async with Emulator(faults=FaultPlan(rate=1.0, mix=[Fault.drop()])) as emu:
        headers = {"Authorization": f"Bearer {emu.token}"}
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            async with session.get(emu.url + JOBS + "?offset=0&limit=5", headers=headers):
                pass
        # aiohttp may resend an idempotent GET once after a drop: every attempt was dropped.
        assert emu.stats.faults["drop"] == emu.stats.requests["job_list"] >= 1


async def test_job_routes_are_counted(api: Api) -> None:
    """Each job route has its own request counter; job details count as polls."""
    async with Emulator() as emu:
        job_id = await api.create_job(emu)
        await api.job(emu, job_id)
        await api.job(emu, job_id)
        await api.list_jobs(emu)
        await api.cancel_job(emu, job_id)
        with contextlib.suppress(AssertionError):
            await api.create_job(emu, {"taskType": 99})
        assert emu.stats.requests == {
            "job_create": 2,
            "job_detail": 2,
            "job_list": 1,
            "job_cancel": 1,
        }
        assert emu.stats.detail_polls == 2
        assert emu.stats.polls[job_id] == 2
        assert emu.stats.tasks_created == 1
