"""Batch jobs against a mocked KooDrive: what is sent, how answers are read, what is refused.

Arguments are checked before any request; bodies, paths and queries are exactly the
wire format; answers of every documented variant are read; retries follow the rule
for each call; the archive password never shows.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from aioresponses import CallbackResult
from kd_fakes import (
    BASE,
    CANCEL,
    FAST,
    JOBS,
    PACKAGE_URL,
    TOKEN,
    MockKooDrive,
    job_detail,
    job_info,
    job_url,
)
from yarl import URL

from koodrive_tasks import (
    ActionType,
    BearerToken,
    ClientClosedError,
    CopyJob,
    DecompressJob,
    DeleteJob,
    EmptyRecycleBinJob,
    FileStatus,
    InsecureURLError,
    InvalidArgumentError,
    InvalidParameterError,
    JobInfo,
    JobRef,
    JobSpec,
    JobType,
    KooDriveClient,
    MoveJob,
    NotFoundError,
    PackageJob,
    ProtocolError,
    RestoreJob,
    ServerError,
    TaskOutcome,
    TaskRef,
    TaskStatus,
    UncompressedFile,
)
from koodrive_tasks.testing import VirtualClock, parse_job_detail

JOB_ID = "1309243162258308352"
LIST = re.compile(re.escape(JOBS) + r"\?.*")
PASSWORD = "ARCHIVE-PW-SECRET-42"


def requests_of(mock: MockKooDrive, method: str) -> list[tuple[str, Any]]:
    """(URL as sent, call) of every request with ``method``, oldest first."""
    return [
        (str(url), call)
        for (verb, url), calls in mock.requests.items()
        if verb == method
        for call in calls
    ]


def list_queries(mock: MockKooDrive) -> list[dict[str, str]]:
    """The query of every list request, oldest first."""
    return [
        dict(URL(url).query) for url, _ in requests_of(mock, "GET") if url.startswith(JOBS + "?")
    ]


# --- arguments checked before any request --------------------------------------------------

BAD_SPECS: dict[str, Callable[[], object]] = {
    "no-files": lambda: CopyJob([], container_id="c"),
    "empty-id": lambda: CopyJob(["a", ""], container_id="c"),
    "blank-id": lambda: MoveJob(["  "], container_id="c"),
    "id-not-text": lambda: CopyJob([5], container_id="c"),
    "bytes-ids": lambda: CopyJob(b"a", container_id="c"),
    "mapping-ids": lambda: CopyJob({"a": 1}, container_id="c"),
    "no-iterable": lambda: CopyJob(None, container_id="c"),
    "lone-surrogate": lambda: CopyJob(["\ud800"], container_id="c"),
    "empty-container": lambda: CopyJob(["a"], container_id=""),
    "container-not-text": lambda: PackageJob(["a"], container_id=5),
    "empty-target": lambda: MoveJob(["a"], container_id="c", target_container_id=""),
    "target-path-not-text": lambda: MoveJob(["a"], container_id="c", target_path=3),
    "delete-without-paths": lambda: DeleteJob(["a", "b"], container_id="c"),
    "delete-missing-a-path": lambda: DeleteJob(["a", "b"], container_id="c", paths={"a": "/a"}),
    "delete-paths-not-mapping": lambda: DeleteJob(["a"], container_id="c", paths=[("a", "/a")]),
    "delete-empty-path": lambda: DeleteJob(["a"], container_id="c", paths={"a": ""}),
    "delete-permanent-not-bool": lambda: DeleteJob(["a"], container_id="c", permanent="yes"),
    "restore-no-files": lambda: RestoreJob((), container_id="c"),
    "decompress-empty-archive": lambda: DecompressJob("", container_id="c"),
    "decompress-archive-list": lambda: DecompressJob(["a", "b"], container_id="c"),
    "view-and-extract": lambda: DecompressJob("a", container_id="c", view_only=True, extract=["x"]),
    "extract-empty-path": lambda: DecompressJob("a", container_id="c", extract=[""]),
    "empty-password": lambda: DecompressJob("a", container_id="c", password=""),
    "view-only-not-bool": lambda: DecompressJob("a", container_id="c", view_only=1),
    "empty-bin-container": lambda: EmptyRecycleBinJob(container_id=" "),
}


@pytest.mark.parametrize("name", list(BAD_SPECS))
def test_bad_job_arguments_are_refused_when_made(name: str) -> None:
    """Each job class refuses arguments that do not fit its type, with InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError):
        BAD_SPECS[name]()


def test_a_bad_password_is_never_quoted() -> None:
    """A password of the wrong type is refused without its value in the message."""
    with pytest.raises(InvalidArgumentError) as caught:
        DecompressJob("a", container_id="c", password=PASSWORD.encode())  # type: ignore[arg-type]
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda kd: kd.create_job("copy"),
        lambda kd: kd.create_job(None),
        lambda kd: kd.create_job(JobSpec()),
        lambda kd: kd.get_job(""),
        lambda kd: kd.get_job(5),
        lambda kd: kd.get_job("a/b"),
        lambda kd: kd.get_job(".."),
        lambda kd: kd.cancel_job("."),
        lambda kd: kd.cancel_job(" "),
        lambda kd: kd.cancel_job(None),
        lambda kd: kd.wait_many([JobRef("1"), 5]),
    ],
)
async def test_bad_calls_send_nothing(
    call: Callable[[KooDriveClient], Any], mock: MockKooDrive, client: KooDriveClient
) -> None:
    """create_job, get_job, cancel_job and wait_many check their arguments before any request."""
    with pytest.raises(InvalidArgumentError):
        await call(client)
    assert mock.requests == {}


@pytest.mark.parametrize(
    "call",
    [
        lambda kd: kd.list_jobs(job_type=8),
        lambda kd: kd.list_jobs(job_type=True),
        lambda kd: kd.list_jobs(job_type="copy"),
        lambda kd: kd.list_jobs(status=4),
        lambda kd: kd.list_jobs(status=-1),
        lambda kd: kd.list_jobs(page_size=0),
        lambda kd: kd.list_jobs(page_size=101),
        lambda kd: kd.list_jobs(page_size=True),
        lambda kd: kd.list_jobs(page_size=2.5),
        lambda kd: kd.wait_for_job(""),
        lambda kd: kd.wait_for_job("1", timeout=0),
        lambda kd: kd.wait_for_job("1", policy="fast"),
        lambda kd: kd.as_completed([JobRef("1"), ("share",)]),
    ],
)
async def test_bad_waits_and_listings_are_refused_at_the_call(
    call: Callable[[KooDriveClient], Any], mock: MockKooDrive, client: KooDriveClient
) -> None:
    """list_jobs and the waits raise when called, not when first iterated or awaited."""
    with pytest.raises(InvalidArgumentError):
        call(client)
    assert mock.requests == {}


@pytest.mark.parametrize("job_id", ["", " ", "a/b", ".", "..", "\ud800", 7, None])
def test_job_ref_refuses_what_cannot_be_a_path_segment(job_id: object) -> None:
    """A JobRef is a non-empty text id that stays one segment of the detail path."""
    with pytest.raises(InvalidArgumentError):
        JobRef(job_id)  # type: ignore[arg-type]


def test_job_ref_is_its_own_family() -> None:
    """A JobRef names a job: task_id is its id, and it never equals a TaskRef."""
    ref = JobRef("42")
    assert ref.task_id == ref.job_id == "42"
    assert ref == JobRef("42")
    assert hash(ref) == hash(JobRef("42"))
    assert ref != TaskRef("42", "42")
    assert len({ref, TaskRef("s", "42"), JobRef("42")}) == 2
    assert repr(ref) == "JobRef(job_id='42')"


# --- what is sent ---------------------------------------------------------------------------

BODIES: dict[str, tuple[JobSpec, dict[str, Any]]] = {
    "copy": (
        CopyJob(["a", "b"], container_id="c1", target_container_id="c2", target_path="/to"),
        {
            "taskType": 1,
            "actionType": 101,
            "dstContainerId": "c2",
            "taskInfo": {
                "srcContainerId": "c1",
                "fileInfo": [{"fileId": "a"}, {"fileId": "b"}],
                "newFilePath": "/to",
            },
        },
    ),
    "move-same-space": (
        MoveJob("a", container_id="c1"),
        {
            "taskType": 3,
            "actionType": 301,
            "dstContainerId": "c1",
            "taskInfo": {"srcContainerId": "c1", "fileInfo": [{"fileId": "a"}]},
        },
    ),
    "logical-delete": (
        DeleteJob(["a", "b"], container_id="c1", paths={"b": "/x/b", "a": "/x/a"}),
        {
            "taskType": 2,
            "actionType": 201,
            "dstContainerId": "c1",
            "taskInfo": {
                "srcContainerId": "c1",
                "fileInfo": [
                    {"fileId": "a", "filePath": "/x/a"},
                    {"fileId": "b", "filePath": "/x/b"},
                ],
            },
        },
    ),
    "permanent-delete": (
        DeleteJob(["a"], container_id="c1", permanent=True),
        {
            "taskType": 2,
            "actionType": 202,
            "dstContainerId": "c1",
            "taskInfo": {"srcContainerId": "c1", "fileInfo": [{"fileId": "a"}]},
        },
    ),
    "restore": (
        RestoreJob(["a"], container_id="c1"),
        {
            "taskType": 4,
            "dstContainerId": "c1",
            "taskInfo": {"srcContainerId": "c1", "fileInfo": [{"fileId": "a"}]},
        },
    ),
    "extract-some": (
        DecompressJob(
            "arc",
            container_id="c1",
            target_container_id="c2",
            target_path="/out",
            extract=["docs/a.txt", "b.bin"],
            password=PASSWORD,
        ),
        {
            "taskType": 5,
            "actionType": 503,
            "dstContainerId": "c2",
            "password": PASSWORD,
            "taskInfo": {
                "srcContainerId": "c1",
                "fileInfo": [{"fileId": "arc"}],
                "newFilePath": "/out",
                "uncompressFilePaths": ["docs/a.txt", "b.bin"],
            },
        },
    ),
    "view-archive": (
        DecompressJob("arc", container_id="c1", view_only=True),
        {
            "taskType": 5,
            "actionType": 501,
            "dstContainerId": "c1",
            "taskInfo": {"srcContainerId": "c1", "fileInfo": [{"fileId": "arc"}]},
        },
    ),
    "package": (
        PackageJob(["a", "b"], container_id="c1"),
        {
            "taskType": 6,
            "dstContainerId": "c1",
            "taskInfo": {"srcContainerId": "c1", "fileInfo": [{"fileId": "a"}, {"fileId": "b"}]},
        },
    ),
    "empty-recycle-bin": (
        EmptyRecycleBinJob(container_id="c1"),
        {
            "taskType": 7,
            "actionType": 701,
            "dstContainerId": "c1",
            "taskInfo": {"srcContainerId": "c1"},
        },
    ),
}


@pytest.mark.parametrize("name", list(BODIES))
async def test_create_sends_the_documented_body(
    name: str, mock: MockKooDrive, client: KooDriveClient
) -> None:
    """Each job class is posted to /jobs as the body its type documents; the id is returned."""
    spec, body = BODIES[name]
    mock.post(JOBS, payload={"code": 0, "msg": "success", "data": JOB_ID})
    assert await client.create_job(spec) == JOB_ID
    assert mock.bodies_to(JOBS) == [body]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"code": "0", "msg": "success", "data": JOB_ID}, JOB_ID),
        ({"code": 0, "data": 1309243162258308352}, JOB_ID),
        ({"code": 0, "data": {"jobId": JOB_ID}}, JOB_ID),
    ],
)
async def test_created_id_in_every_form(
    answer: dict[str, Any], expected: str, mock: MockKooDrive, client: KooDriveClient
) -> None:
    """The new id is read from data as a string, a number or an object."""
    mock.post(JOBS, payload=answer)
    assert await client.create_job(CopyJob("a", container_id="c")) == expected


@pytest.mark.parametrize("data", [None, "", "a/b", ".."])
async def test_an_unusable_created_id_is_a_protocol_error(
    data: object, mock: MockKooDrive, client: KooDriveClient
) -> None:
    """An answer without an id, or with one that cannot be queried, is a ProtocolError."""
    mock.post(JOBS, payload={"code": 0, "data": data})
    with pytest.raises(ProtocolError):
        await client.create_job(CopyJob("a", container_id="c"))


async def test_detail_is_a_get_on_the_encoded_id(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """get_job sends GET /koodrive/ose/v1/{id} without a body, the id as one encoded segment."""
    mock.get(job_url(JOB_ID), payload=job_detail(1, 40))
    mock.get(job_url("a%20b%3F%25"), payload=job_detail(1, 40, job_id="a b?%"))
    assert (await client.get_job(JOB_ID)).progress == 40
    assert (await client.get_job("a b?%")).job_id == "a b?%"
    (first_url, first), (second_url, _) = requests_of(mock, "GET")
    assert first_url == job_url(JOB_ID)
    assert second_url == job_url("a%20b%3F%25")
    assert first.kwargs["data"] is None
    assert first.kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert client.stats.polls == 2


async def test_cancel_posts_the_job_id(mock: MockKooDrive, client: KooDriveClient) -> None:
    """cancel_job posts {"jobId"} to /cancel and returns nothing."""
    mock.post(CANCEL, payload={"code": 0, "msg": "成功"})
    assert await client.cancel_job(JOB_ID) is None
    assert mock.bodies_to(CANCEL) == [{"jobId": JOB_ID}]


async def test_cancel_of_an_ended_job_reports_the_server_error(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """A refused cancel raises the service's error; it is not retried."""
    mock.post(CANCEL, status=400, payload={"code": "13000102", "msg": "job has ended (status 2)"})
    with pytest.raises(InvalidParameterError, match="has ended"):
        await client.cancel_job(JOB_ID)
    assert len(mock.requests_to(CANCEL)) == 1


# --- retries: repeat only what is safe to repeat -------------------------------------------


async def test_create_and_cancel_retry_only_when_nothing_was_done(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """A 429 is retried for create and cancel; a 500 is raised at once (it may have acted)."""
    mock.post(JOBS, status=429, payload={"error_code": "APIGW.0308", "error_msg": "throttled"})
    mock.post(JOBS, payload={"code": 0, "data": JOB_ID})
    assert await client.create_job(CopyJob("a", container_id="c")) == JOB_ID
    mock.post(JOBS, status=500, payload={"code": "500", "msg": "oops"})
    with pytest.raises(ServerError):
        await client.create_job(CopyJob("a", container_id="c"))
    assert len(mock.requests_to(JOBS)) == 3
    mock.post(CANCEL, status=429, payload={"code": "429", "msg": "slow down"})
    mock.post(CANCEL, payload={"code": 0})
    await client.cancel_job(JOB_ID)
    mock.post(CANCEL, status=503, payload={"code": "503", "msg": "busy"})
    with pytest.raises(ServerError):
        await client.cancel_job(JOB_ID)
    assert len(mock.requests_to(CANCEL)) == 3


async def test_reads_retry_transient_failures(mock: MockKooDrive, client: KooDriveClient) -> None:
    """get_job and a list page are idempotent: a 500 or a 429 is retried."""
    mock.get(job_url(JOB_ID), status=500, payload={"code": "500", "msg": "oops"})
    mock.get(job_url(JOB_ID), payload=job_detail(2, 100, result=1))
    mock.get(LIST, status=429, payload={"code": "429", "msg": "slow down"})
    mock.get(LIST, payload={"code": 0, "data": [job_info(1)]})
    assert (await client.get_job(JOB_ID)).status is TaskStatus.COMPLETED
    assert [len(page) async for page in client.list_jobs()] == [1]
    assert client.stats.retries == 2


# --- reading details ----------------------------------------------------------------------------


def test_a_detail_is_read_in_full() -> None:
    """Every documented field of a job's detail lands in its JobInfo."""
    payload = job_detail(
        2,
        100,
        result=2,
        job_type=5,
        files=[
            {"fileId": "arc", "status": "2", "srcContainerId": "c1"},
        ],
        entries=[
            {"name": "docs/", "type": 2, "fileSize": 0, "containerId": "c2", "fileId": "x0"},
            {"name": "docs/a.txt", "type": "1", "fileSize": "39", "code": "0", "updateAt": "1"},
        ],
    )
    info = parse_job_detail(payload, job_id=JOB_ID)
    assert isinstance(info, JobInfo)
    assert (info.job_type, info.action_type, info.task_type) == (
        JobType.DECOMPRESS,
        ActionType.EXTRACT_ALL,
        None,
    )
    assert (info.task_name, info.content_num, info.container_id, info.tenant_id) == (
        "copy 1 item",
        1,
        "c2",
        "tenant-1",
    )
    assert info.started_at is not None
    assert info.started_at.isoformat() == "2023-12-12T09:52:27"
    assert info.ended_at is not None
    assert [(f.file_id, f.status) for f in info.failed_files] == [("arc", FileStatus.FAILED)]
    assert info.uncompressed_files == (
        UncompressedFile("docs/", 2, 0, "c2", "x0"),
        UncompressedFile("docs/a.txt", 1, 39),
    )
    assert [entry.is_folder for entry in info.uncompressed_files] == [True, False]


@pytest.mark.parametrize(
    ("change", "check"),
    [
        # The share-task spellings are read too.
        (
            lambda p: p["data"]["jobInfo"].update(taskStatus=p["data"]["jobInfo"].pop("status")),
            lambda i: i.status is TaskStatus.PROCESSING,
        ),
        (
            lambda p: p["data"]["jobInfo"].update(beginTime="", startTime="20240101000000"),
            lambda i: i.started_at is not None and i.started_at.year == 2024,
        ),
        # Without the data envelope.
        (lambda p: p.update(p.pop("data")), lambda i: i.progress == 40),
        # An absent taskId is the id asked for; unknown fields are ignored.
        (lambda p: p["data"]["jobInfo"].pop("taskId"), lambda i: i.job_id == JOB_ID),
        (
            lambda p: p["data"]["jobInfo"].update(extra={"x": [1]}, shiny="new"),
            lambda i: i.progress == 40,
        ),
        (lambda p: p["data"].update(newField=1), lambda i: i.progress == 40),
        # taskInfos as one object; actionType 0 as none; numbers as strings.
        (
            lambda p: p["data"].update(taskInfos={"fileId": "f", "status": 1}),
            lambda i: [f.file_id for f in i.files] == ["f"],
        ),
        (lambda p: p["data"]["jobInfo"].update(actionType=0), lambda i: i.action_type is None),
        (
            lambda p: p["data"]["jobInfo"].update(contentNum="12", taskType="3", progress="40"),
            lambda i: (i.content_num, i.job_type) == (12, JobType.MOVE),
        ),
        (
            lambda p: p["data"].update(uncompressedFileList=None),
            lambda i: i.uncompressed_files == (),
        ),
    ],
)
def test_detail_variants_are_read(
    change: Callable[[dict[str, Any]], object], check: Callable[[JobInfo], bool]
) -> None:
    """Documented and harmless variants of a detail are read, not refused."""
    payload = job_detail(1, 40, job_id=JOB_ID)
    change(payload)
    assert check(parse_job_detail(payload, job_id=JOB_ID))


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p["data"]["jobInfo"].pop("status"),
        lambda p: p["data"]["jobInfo"].update(status="done"),
        lambda p: p["data"]["jobInfo"].update(status=True),
        lambda p: p["data"]["jobInfo"].update(taskType=9),
        lambda p: p["data"]["jobInfo"].update(actionType=999),
        lambda p: p["data"]["jobInfo"].update(beginTime="yesterday"),
        lambda p: p["data"]["jobInfo"].update(progress=[40]),
        lambda p: p["data"]["jobInfo"].update(taskId="999"),
        lambda p: p["data"].pop("jobInfo"),
        lambda p: p["data"].update(jobInfo=[]),
        lambda p: p["data"].update(taskInfos="all good"),
        lambda p: p["data"].update(uncompressedFileList=[{"type": 1}]),
        lambda p: p.update(data=[]),
    ],
)
def test_detail_that_breaks_the_api_is_a_protocol_error(
    change: Callable[[dict[str, Any]], object],
) -> None:
    """A missing or mistyped field, or another job's detail, is a ProtocolError."""
    payload = job_detail(1, 40, job_id=JOB_ID)
    change(payload)
    with pytest.raises(ProtocolError):
        parse_job_detail(payload, job_id=JOB_ID)


@pytest.mark.parametrize("code", [0, "0"])
async def test_success_code_as_number_or_text(
    code: object, mock: MockKooDrive, client: KooDriveClient
) -> None:
    """A detail with code 0 or "0" is a success; a non-zero code in a 200 is an error."""
    mock.get(job_url(JOB_ID), payload=job_detail(1, 10, code=code))
    mock.get(job_url(JOB_ID), payload={"code": 13000309, "msg": "no such job"})
    assert (await client.get_job(JOB_ID)).progress == 10
    with pytest.raises(NotFoundError, match="13000309"):
        await client.get_job(JOB_ID)


# --- listing ----------------------------------------------------------------------------------


def pages_of(jobs: list[dict[str, Any]]) -> Callable[..., CallbackResult]:
    """A list endpoint serving ``jobs`` by offset and limit, as the API pages."""

    def answer(url: Any, **kwargs: Any) -> CallbackResult:
        offset, limit = int(url.query["offset"]), int(url.query["limit"])
        return CallbackResult(payload={"code": 0, "data": jobs[offset : offset + limit]})

    return answer


async def test_list_sends_its_query_and_stops_at_a_short_page(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """offset grows by the page's length; type and status are sent when given; a short page ends it."""
    jobs = [job_info(2, 100, job_id=str(1000 + i), job_type=3) for i in range(5)]
    mock.get(LIST, callback=pages_of(jobs), repeat=True)
    pages = [
        [job.job_id for job in page]
        async for page in client.list_jobs(
            job_type=JobType.MOVE, status=TaskStatus.COMPLETED, page_size=2
        )
    ]
    assert pages == [["1000", "1001"], ["1002", "1003"], ["1004"]]
    assert list_queries(mock) == [
        {"offset": str(offset), "limit": "2", "type": "3", "status": "2"} for offset in (0, 2, 4)
    ]


async def test_list_without_filters_sends_only_offset_and_limit(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """No empty type= or status= is sent; an answer without data is an empty page."""
    mock.get(LIST, payload={"code": 0, "msg": "success"})
    assert [page async for page in client.list_jobs()] == []
    assert list_queries(mock) == [{"offset": "0", "limit": "100"}]


async def test_list_fetches_pages_only_as_they_are_read(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """Leaving the loop after the first page sends no further request."""
    jobs = [job_info(1, job_id=str(i)) for i in range(10)]
    mock.get(LIST, callback=pages_of(jobs), repeat=True)
    async for page in client.list_jobs(page_size=3):
        assert len(page) == 3
        break
    assert len(list_queries(mock)) == 1


async def test_a_server_ignoring_the_offset_is_not_paged_forever(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """The same full page twice is a ProtocolError, not an endless loop."""
    same = {"code": 0, "data": [job_info(1, job_id="1"), job_info(1, job_id="2")]}
    mock.get(LIST, payload=same, repeat=True)
    seen: list[list[JobInfo]] = []

    async def read_all() -> None:
        async for page in client.list_jobs(page_size=2):
            seen.append(page)  # noqa: PERF401 - the pages seen before the error are the point

    with pytest.raises(ProtocolError, match="previous page"):
        await read_all()
    assert len(seen) == 1
    assert len(list_queries(mock)) == 2


@pytest.mark.parametrize(
    "data",
    [
        {"jobs": []},
        "none",
        [job_info(1), "x"],
        [{**job_info(1), "taskId": ""}],
        [{**job_info(1), "status": None}],
    ],
)
async def test_a_list_that_breaks_the_api_is_a_protocol_error(
    data: object, mock: MockKooDrive, client: KooDriveClient
) -> None:
    """data that is not a list of jobs each with its id and status is a ProtocolError."""
    mock.get(LIST, payload={"code": 0, "data": data})
    with pytest.raises(ProtocolError):
        async for _ in client.list_jobs():
            pass


# --- waiting on jobs ----------------------------------------------------------------------------


async def test_job_waiter_awaits_to_the_job_info(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """await gives the final JobInfo after polling with GETs; its repr names the job."""
    mock.get(job_url(JOB_ID), payload=job_detail(0))
    mock.get(job_url(JOB_ID), payload=job_detail(1, 50))
    mock.get(job_url(JOB_ID), payload=job_detail(2, 100, result=1))
    waiter = client.wait_for_job(JOB_ID)
    assert repr(waiter) == f"<JobWaiter job_id='{JOB_ID}' not started>"
    assert waiter.job_id == JOB_ID
    info = await waiter
    assert isinstance(info, JobInfo)
    assert info.status is TaskStatus.COMPLETED
    assert repr(waiter) == f"<JobWaiter job_id='{JOB_ID}' completed>"
    assert len(requests_of(mock, "GET")) == 3
    assert await waiter.final_info() is info


@pytest.mark.parametrize(
    ("url", "insecure", "error"),
    [
        ("", True, ProtocolError),
        ("http://obs.example.com/a.zip?sig=SECRET", False, InsecureURLError),
        ("not a url", True, ProtocolError),
    ],
)
async def test_a_package_job_needs_a_good_url(
    url: str, insecure: bool, error: type[Exception], mock: MockKooDrive, clock: VirtualClock
) -> None:
    """A completed package job without a usable https URL ends as an error outcome."""
    mock.get(job_url(JOB_ID), payload=job_detail(2, 100, result=1, job_type=6, url=url))
    async with KooDriveClient(
        BASE, auth=BearerToken(TOKEN), clock=clock, policy=FAST, allow_insecure_urls=insecure
    ) as kd:
        outcome = await kd.wait_for_job(JOB_ID).outcome()
    assert isinstance(outcome.error, error)
    assert outcome.download_url is None
    assert "SECRET" not in str(outcome.error)


async def test_a_package_job_outcome_carries_its_url(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """A batch's outcome of a package job holds the checked URL, shown only in to_dict."""
    mock.get(job_url(JOB_ID), payload=job_detail(2, 100, result=1, job_type=6, url=PACKAGE_URL))
    outcomes = await client.wait_many([JobRef(JOB_ID)])
    outcome = outcomes[JobRef(JOB_ID)]
    assert isinstance(outcome, TaskOutcome)
    assert outcome.download_url == PACKAGE_URL
    assert outcome.to_dict() == {
        "task_id": JOB_ID,
        "outcome": "completed",
        "download_url": PACKAGE_URL,
    }
    assert "SIGNED-QUERY-SECRET" not in repr(outcome)


async def test_closing_the_client_ends_job_waits(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """close() ends a job wait and a batch of jobs with ClientClosedError."""
    mock.get(job_url(JOB_ID), payload=job_detail(1, 10), repeat=True)
    waiter = client.wait_for_job(JOB_ID)
    async for _ in waiter:
        break
    stream = client.as_completed([JobRef("77")])
    await client.close()
    with pytest.raises(ClientClosedError):
        await waiter
    outcomes = [outcome async for outcome in stream]
    assert [type(o.error) for o in outcomes] == [ClientClosedError]


# --- the password is a secret -------------------------------------------------------------------


async def test_the_password_never_shows(
    mock: MockKooDrive, client: KooDriveClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Not in the job's repr, nor in an error whose server message echoes it, nor in logs."""
    caplog.set_level(logging.DEBUG, logger="koodrive_tasks")
    spec = DecompressJob("arc", container_id="c", password=PASSWORD)
    assert PASSWORD not in repr(spec)
    assert PASSWORD not in repr(spec.to_request())
    mock.post(JOBS, status=400, payload={"code": "13000102", "msg": f"bad password {PASSWORD}"})
    with pytest.raises(InvalidParameterError) as caught:
        await client.create_job(spec)
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value)
    assert PASSWORD not in json.dumps(caught.value.to_dict())
    assert "<redacted>" in str(caught.value)
    assert PASSWORD not in caplog.text
    # ...while the request itself carried it.
    assert mock.bodies_to(JOBS)[0]["password"] == PASSWORD


async def test_throttled_create_of_a_decompression_is_retried(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """A 429 on create is retried with the same body, password included."""
    mock.post(JOBS, status=429, payload={"code": "429"}, headers={"Retry-After": "1"})
    mock.post(JOBS, payload={"code": 0, "data": JOB_ID})
    spec = DecompressJob("arc", container_id="c", password=PASSWORD)
    assert await client.create_job(spec) == JOB_ID
    assert [b["password"] for b in mock.bodies_to(JOBS)] == [PASSWORD, PASSWORD]
    assert client.stats.rate_limited == 1
