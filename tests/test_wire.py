"""The wire format, read through the client: both taskDetail shapes, strict types, lenient variants.

Every answer is served by the mocked KooDrive and read with ``get_share_task`` (or
``create_share_task``); request bodies are checked as the mock received them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kd_fakes import (
    CREATE,
    DETAIL,
    PACKAGE_URL,
    URL_QUERY,
    MockKooDrive,
    detail_via_client,
    one_shot_client,
    read_detail,
    shape_a,
    shape_b,
)

from koodrive_tasks import (
    APIError,
    FileResult,
    FileStatus,
    InvalidArgumentError,
    KooDriveClient,
    KooDriveError,
    ProtocolError,
    TargetFolder,
    TaskInfo,
    TaskResultCode,
    TaskStatus,
    TaskType,
)

SHAPES = [pytest.param(shape_a, id="shape-A"), pytest.param(shape_b, id="shape-B")]
# Property tests reuse one client (and one mock) for all their examples.
ONE_CLIENT_PER_TEST = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
async def kd() -> AsyncIterator[KooDriveClient]:
    """A client that tries each call once, so every answer gives exactly one outcome."""
    async with one_shot_client() as client:
        yield client


def envelope(body: dict[str, Any]) -> dict[str, Any]:
    """The task-fields object of either shape."""
    return body["taskInfo"] if "taskInfo" in body else body["jobInfo"]


# --- both shapes -------------------------------------------------------------------------


async def test_shape_a_parses_every_field() -> None:
    """Shape A (string code, taskInfo) fills every TaskInfo attribute."""
    info = await detail_via_client(shape_a(2, 100, result=1, url=PACKAGE_URL))
    assert info == TaskInfo(
        task_id="t1",
        status=TaskStatus.COMPLETED,
        progress=100,
        task_type=TaskType.PACKAGE_DOWNLOAD,
        result_code=TaskResultCode.ALL_SUCCEEDED,
        content_result_code=0,
        created_at=datetime(2026, 11, 29, 10, 15, 0),
        started_at=datetime(2026, 11, 29, 10, 15, 1),
        ended_at=datetime(2026, 11, 29, 10, 20, 0),
        download_url=PACKAGE_URL,
        user_id="u1",
        files=(),
    )
    assert info.is_terminal


async def test_shape_b_parses_job_info_and_file_list() -> None:
    """Shape B (int code, jobInfo) with taskInfos as a list gives per-file results."""
    files = [
        {"fileId": "f1", "status": "1", "newFileId": "n1", "srcContainerId": "c1"},
        {"fileId": "f2", "status": "2"},
        {"fileId": "f3", "status": "0", "newFileId": "", "srcContainerId": None},
    ]
    info = await detail_via_client(shape_b(1, 70, files=files))
    assert info.status is TaskStatus.PROCESSING
    assert info.progress == 70
    assert info.files == (
        FileResult("f1", FileStatus.SUCCEEDED, "n1", "c1"),
        FileResult("f2", FileStatus.FAILED),
        FileResult("f3", FileStatus.PENDING, None, None),
    )
    assert info.failed_files == (FileResult("f2", FileStatus.FAILED),)
    assert info.started_at is None
    assert info.ended_at is None


async def test_shape_b_task_infos_as_single_object() -> None:
    """taskInfos documented as one object under a plural name is accepted as a one-item tuple."""
    info = await detail_via_client(shape_b(2, 100, result=2, files={"fileId": "f9", "status": "2"}))
    assert info.files == (FileResult("f9", FileStatus.FAILED),)
    assert info.result_code is TaskResultCode.PARTIALLY_FAILED


async def test_shape_b_task_infos_empty_list_and_null() -> None:
    """An empty taskInfos list or null gives no files."""
    assert (await detail_via_client(shape_b(1, files=[]))).files == ()
    body = shape_b(1)
    body["taskInfos"] = None
    assert (await detail_via_client(body)).files == ()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (0, TaskStatus.PENDING),
        (1, TaskStatus.PROCESSING),
        (2, TaskStatus.COMPLETED),
        (3, TaskStatus.CANCELED),
    ],
)
async def test_every_task_status(shape: Any, wire: int, expected: TaskStatus) -> None:
    """taskStatus 0-3 map to the four TaskStatus members in both shapes."""
    assert (await detail_via_client(shape(wire))).status is expected


@pytest.mark.parametrize("wire", ["0", "1", "2", "3"])
async def test_task_status_as_string(wire: str) -> None:
    """taskStatus sent as a digit string is accepted like the integer."""
    body = shape_b(0)
    body["jobInfo"]["taskStatus"] = wire
    assert (await detail_via_client(body)).status == int(wire)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (0, None),
        ("0", None),
        (1, TaskResultCode.ALL_SUCCEEDED),
        (2, TaskResultCode.PARTIALLY_FAILED),
        (3, TaskResultCode.ALL_FAILED),
        ("3", TaskResultCode.ALL_FAILED),
    ],
)
async def test_every_task_result_code(
    shape: Any, wire: object, expected: TaskResultCode | None
) -> None:
    """taskResultCode 1-3 map to TaskResultCode and 0 means 'no result yet' (None)."""
    body = shape(2, 100)
    envelope(body)["taskResultCode"] = wire
    assert (await detail_via_client(body)).result_code is expected


async def test_result_code_absent_is_none() -> None:
    """An absent taskResultCode is None."""
    body = shape_a(1)
    del body["taskInfo"]["taskResultCode"]
    assert (await detail_via_client(body)).result_code is None


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("0", FileStatus.PENDING),
        ("1", FileStatus.SUCCEEDED),
        ("2", FileStatus.FAILED),
        (1, FileStatus.SUCCEEDED),
    ],
)
async def test_per_file_status_strings(wire: object, expected: FileStatus) -> None:
    """Per-file status strings "0"/"1"/"2" (and the integer form) map to FileStatus."""
    info = await detail_via_client(shape_b(1, files=[{"fileId": "f", "status": wire}]))
    assert info.files[0].status is expected


@pytest.mark.parametrize("wire", ["3", "-1", "", None, "one", True, 1.0, [1]])
async def test_per_file_status_invalid(wire: object) -> None:
    """A per-file status outside "0"-"2", missing or of the wrong type is a ProtocolError."""
    with pytest.raises(ProtocolError):
        await detail_via_client(shape_b(1, files=[{"fileId": "f", "status": wire}]))


async def test_per_file_missing_file_id() -> None:
    """A per-file result without fileId is a ProtocolError."""
    with pytest.raises(ProtocolError):
        await detail_via_client(shape_b(1, files=[{"status": "1"}]))


@pytest.mark.parametrize("files", ["f1", 5, [["f1", "1"]], ["f1"], [None]])
async def test_task_infos_wrong_type(files: object) -> None:
    """taskInfos that is neither an object nor a list of objects is a ProtocolError."""
    with pytest.raises(ProtocolError):
        await detail_via_client(shape_b(1, files=files))


async def test_numeric_ids_become_strings() -> None:
    """Ids sent as JSON numbers (some editions) become strings."""
    body = shape_b(1, task_id="123", files=[{"fileId": 77, "status": "1", "newFileId": 78}])
    body["jobInfo"]["taskId"] = 123
    body["jobInfo"]["userId"] = 9
    info = await detail_via_client(body, task_id="123")
    assert info.task_id == "123"
    assert info.user_id == "9"
    assert info.files[0].file_id == "77"
    assert info.files[0].new_file_id == "78"


# --- timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["createTime", "startTime", "endTime"])
async def test_timestamp_is_naive_datetime(field: str) -> None:
    """A 14-digit yyyyMMddHHmmss timestamp becomes a naive datetime (no zone is documented)."""
    body = shape_a(2)
    body["taskInfo"][field] = "20240909033325"
    info = await detail_via_client(body)
    attr = {"createTime": "created_at", "startTime": "started_at", "endTime": "ended_at"}[field]
    value = getattr(info, attr)
    assert value == datetime(2024, 9, 9, 3, 33, 25)
    assert value.tzinfo is None


@pytest.mark.parametrize("field", ["createTime", "startTime", "endTime"])
@pytest.mark.parametrize("value", ["", None, "absent"])
async def test_timestamp_empty_or_absent_is_none(field: str, value: object) -> None:
    """An empty, null or absent timestamp is None."""
    body = shape_a(2)
    if value == "absent":
        del body["taskInfo"][field]
    else:
        body["taskInfo"][field] = value
    info = await detail_via_client(body)
    attr = {"createTime": "created_at", "startTime": "started_at", "endTime": "ended_at"}[field]
    assert getattr(info, attr) is None


@pytest.mark.parametrize(
    "value",
    [
        "2026112910150",  # 13 digits
        "202611291015000",  # 15 digits
        "20261329101500",  # month 13
        "20261129251500",  # hour 25
        "2026-11-29 10:1",  # 14 characters, not digits
        "2026112910150x",
        [2026],
        {"t": 1},
        1.5,
        True,
    ],
)
async def test_malformed_timestamp_is_protocol_error(value: object) -> None:
    """A timestamp that is not 14 valid digits is a ProtocolError."""
    body = shape_a(2)
    body["taskInfo"]["createTime"] = value
    with pytest.raises(ProtocolError):
        await detail_via_client(body)


async def test_boolean_false_timestamp_is_protocol_error() -> None:
    """A boolean false timestamp is a type error, not an absent timestamp."""
    body = shape_a(2)
    body["taskInfo"]["endTime"] = False
    with pytest.raises(ProtocolError):
        await detail_via_client(body)


# --- leniency and strictness ------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
async def test_unknown_extra_fields_ignored(shape: Any) -> None:
    """Unknown fields at every level are ignored, not rejected."""
    body = shape(1, 40, newField={"x": [1, 2]}, anotherOne=None)
    body["unknownTop"] = [1, {"a": 2}]
    body.setdefault("taskInfos", [{"fileId": "f", "status": "1", "extra": True}])
    info = await detail_via_client(body)
    assert info.progress == 40


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("progress", [70]),
        ("progress", 70.0),
        ("progress", 70.5),
        ("progress", "70%"),
        ("progress", True),
        ("progress", {"value": 70}),
        ("taskStatus", True),
        ("taskStatus", False),
        ("taskStatus", 1.0),
        ("taskStatus", [1]),
        ("taskStatus", "processing"),
        ("taskStatus", None),
        ("taskStatus", ""),
        ("taskId", {"id": "t1"}),
        ("taskId", ["t1"]),
        ("taskId", True),
        ("taskId", 1.5),
        ("taskType", "zip"),
        ("taskType", True),
        ("taskResultCode", [0]),
        ("taskResultCode", 1.0),
        ("resultCode", {"c": 0}),
        ("resultCode", 1.5),
        ("resultCode", True),
        ("downloadUrl", ["https://x"]),
        ("downloadUrl", True),
        ("userId", {"u": 1}),
    ],
)
async def test_wrong_types_rejected(field: str, value: object) -> None:
    """A value of the wrong type in a task field is a ProtocolError."""
    body = shape_a(1, 10)
    body["taskInfo"][field] = value
    with pytest.raises(ProtocolError):
        await detail_via_client(body)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("taskStatus", 4),
        ("taskStatus", -1),
        ("taskStatus", "9"),
        ("taskType", 3),
        ("taskType", 0),
        ("taskResultCode", 4),
        ("taskResultCode", -1),
    ],
)
async def test_unknown_enum_values_rejected(field: str, value: object) -> None:
    """An enumerated field with a value outside its documented set is a ProtocolError."""
    body = shape_b(1)
    body["jobInfo"][field] = value
    with pytest.raises(ProtocolError, match="does not match the API"):
        await detail_via_client(body)


async def test_missing_task_status_rejected() -> None:
    """A task without taskStatus (and without batch `status`) is a ProtocolError."""
    body = shape_a(1)
    del body["taskInfo"]["taskStatus"]
    with pytest.raises(ProtocolError):
        await detail_via_client(body)


@pytest.mark.parametrize(
    ("wire", "expected"), [(-5, 0), (0, 0), (70, 70), ("70", 70), (150, 100), (None, 0), ("", 0)]
)
async def test_progress_values(wire: object, expected: int) -> None:
    """progress is an integer percent (string digits accepted), clamped to 0-100; empty means 0."""
    body = shape_a(1)
    body["taskInfo"]["progress"] = wire
    assert (await detail_via_client(body)).progress == expected


async def test_progress_absent_is_zero() -> None:
    """An absent progress reads as 0."""
    body = shape_a(0)
    del body["taskInfo"]["progress"]
    assert (await detail_via_client(body)).progress == 0


# --- identity and envelope --------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
async def test_missing_task_id_filled_from_asked_id(shape: Any) -> None:
    """A body without taskId describes the task that was asked for."""
    body = shape(1)
    del envelope(body)["taskId"]
    assert (await detail_via_client(body, task_id="asked-42")).task_id == "asked-42"


@pytest.mark.parametrize("shape", SHAPES)
async def test_other_task_id_rejected(shape: Any) -> None:
    """A body describing another task is a ProtocolError naming the asked id, not echoing the other."""
    with pytest.raises(ProtocolError, match=r"'t1'.*another task") as caught:
        await detail_via_client(shape(1, task_id="t2"))
    assert "t2" not in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        {"code": "0", "msg": "ok"},
        {"code": 0, "taskInfos": []},
        {"code": "0", "taskInfo": None},
        {"code": "0", "taskInfo": "t1"},
        {"code": "0", "jobInfo": [1, 2]},
        {"code": "0", "data": {"taskInfos": []}},
        {"code": "0", "data": "job-1"},
        {},
    ],
)
async def test_neither_task_info_nor_job_info(body: dict[str, Any]) -> None:
    """A body without a taskInfo/jobInfo object is a ProtocolError."""
    with pytest.raises(ProtocolError):
        await detail_via_client(body)


@pytest.mark.parametrize("payload", [None, [], [shape_a(1)], "text", 3, 1.5, True])
async def test_non_object_payload(payload: object) -> None:
    """A payload that is not a JSON object is a ProtocolError."""
    with pytest.raises(ProtocolError):
        await detail_via_client(payload)


def batch_body(**job: Any) -> dict[str, Any]:
    fields = {
        "taskId": "t1",
        "taskName": "pkg",
        "userId": "u1",
        "taskType": 1,
        "actionType": 0,
        "status": 1,
        "taskResultCode": 0,
        "resultCode": 0,
        "progress": 30,
        "downloadUrl": "",
        "contentNum": 3,
        "containerId": "c",
        "tenantId": "x",
        "beginTime": "20261129101501",
    }
    fields.update(job)
    return {
        "code": "0",
        "msg": "success",
        "data": {
            "jobInfo": fields,
            "taskInfos": [{"fileId": "f1", "status": "1"}],
            "uncompressedFileList": [],
        },
    }


@pytest.mark.parametrize(
    ("wire", "expected"),
    [(0, TaskStatus.PENDING), (2, TaskStatus.COMPLETED), (3, TaskStatus.CANCELED)],
)
async def test_batch_job_family_uses_status(wire: int, expected: TaskStatus) -> None:
    """The batch-job family (data.jobInfo with `status`) parses, with data.taskInfos as files."""
    info = await detail_via_client(batch_body(status=wire))
    assert info.status is expected
    assert info.progress == 30
    assert info.files == (FileResult("f1", FileStatus.SUCCEEDED),)


async def test_task_status_wins_over_status() -> None:
    """When both taskStatus and status are present, taskStatus is used."""
    body = shape_a(1)
    body["taskInfo"]["status"] = 3
    assert (await detail_via_client(body)).status is TaskStatus.PROCESSING


@pytest.mark.parametrize("task_type", [3, 5, 6, 7])
async def test_batch_job_task_types_accepted(task_type: int) -> None:
    """A batch job of any documented type (1-7) parses."""
    info = await detail_via_client(batch_body(taskType=task_type))
    assert info.status is TaskStatus.PROCESSING


# --- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
async def test_repr_hides_download_url_query(shape: Any) -> None:
    """repr(TaskInfo) shows the download URL's host and path but never its query."""
    info = await detail_via_client(shape(2, 100, result=1, url=PACKAGE_URL))
    assert info.download_url == PACKAGE_URL
    for text in (repr(info), str(info)):
        assert "SIGNED-QUERY-SECRET" not in text
        assert URL_QUERY not in text
        assert "obs.example.com/pkg/a.zip" in text


async def test_repr_hides_user_info_and_fragment() -> None:
    """repr(TaskInfo) also drops user info and fragment of the download URL."""
    url = "https://user:pa55word@obs.example.com:8443/a.zip?sig=S3CRET#frag-S3CRET"
    info = await detail_via_client(shape_a(2, 100, result=1, url=url))
    text = repr(info)
    assert "pa55word" not in text
    assert "S3CRET" not in text
    assert "obs.example.com:8443/a.zip" in text


# --- success codes and created ids -------------------------------------------------------

ABSENT = object()


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        (0, True),
        ("0", True),
        (None, True),
        (ABSENT, True),
        (False, False),
        (1, False),
        ("13000102", False),
        ("", False),
    ],
)
async def test_success_code(code: object, ok: bool) -> None:
    """Only 0, "0" or an absent (or null) code mean success; a boolean is not 0."""
    body = shape_a(1)
    if code is ABSENT:
        del body["code"]
    else:
        body["code"] = code
    if ok:
        assert (await detail_via_client(body)).status is TaskStatus.PROCESSING
    else:
        with pytest.raises(APIError) as caught:
            await detail_via_client(body)
        assert caught.value.http_status == 200


async def create_package(kd: KooDriveClient) -> str:
    return await kd.create_share_task("s1", ["f1"], container_id="c1", zip_name="a.zip")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"code": 0, "taskId": "t9"}, "t9"),
        ({"code": "0", "taskId": 99}, "99"),
        ({"code": "0", "data": {"taskId": "t8"}}, "t8"),
        ({"code": "0", "data": {"jobId": "j1"}}, "j1"),
        ({"code": "0", "data": "j2"}, "j2"),
    ],
)
async def test_created_task_id(
    mock: MockKooDrive, kd: KooDriveClient, payload: object, expected: str
) -> None:
    """The created task id is read from taskId, data.taskId, data.jobId or data."""
    mock.post(CREATE, body=json.dumps(payload), content_type="application/json")
    assert await create_package(kd) == expected


@pytest.mark.parametrize(
    "payload",
    [
        {"code": 0},
        {"taskId": ""},
        {"taskId": None},
        {"taskId": True},
        {"taskId": 1.5},
        {"taskId": ["t"]},
        {"data": {}},
        [],
        None,
        "t1",
    ],
)
async def test_created_task_id_missing(
    mock: MockKooDrive, kd: KooDriveClient, payload: object
) -> None:
    """A create answer without a usable task id is a ProtocolError."""
    mock.post(CREATE, body=json.dumps(payload), content_type="application/json")
    with pytest.raises(ProtocolError):
        await create_package(kd)


# --- request bodies -----------------------------------------------------------------------

# Describes whichever task was asked for (no taskId: the asked id is filled in).
ANY_TASK = {"code": 0, "jobInfo": {"taskStatus": 1}}


async def test_request_bodies(mock: MockKooDrive, kd: KooDriveClient) -> None:
    """The request bodies carry the documented keys, kdstoken only when given."""
    mock.detail(payload=ANY_TASK, repeat=True)
    mock.post(CREATE, payload={"code": 0, "taskId": "n1"})
    await kd.get_share_task("s", "t")
    await kd.get_share_task("s", "t", kdstoken="k")
    await kd.create_share_task(
        "s", ["a"], container_id="c", task_type=TaskType.DUMP, target=TargetFolder("c2", "root")
    )
    assert mock.bodies_to(DETAIL) == [
        {"taskId": "t", "shareId": "s"},
        {"taskId": "t", "shareId": "s", "kdstoken": "k"},
    ]
    assert mock.bodies_to(CREATE) == [
        {
            "taskType": 2,
            "containerId": "c",
            "fileIds": ["a"],
            "shareId": "s",
            "targetFileId": {"containerId": "c2", "fileId": "root"},
        }
    ]


def compact(value: object) -> bytes:
    """``value`` as compact UTF-8 JSON, non-ASCII characters kept: the documented encoding."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


async def invalid_argument_message(call: Any) -> str:
    try:
        await call()
    except InvalidArgumentError as error:
        return str(error)
    raise AssertionError("no InvalidArgumentError")


def text_with_surrogates(min_size: int) -> st.SearchStrategy[str]:
    """Any text, now and then with a lone surrogate in it (st.text() never makes one)."""
    char = st.integers(0, 15).flatmap(
        lambda n: st.sampled_from(["\ud800", "\udc00", "\udfff"]) if n == 0 else st.characters()
    )
    return st.lists(char, min_size=min_size, max_size=8).map("".join)


@settings(ONE_CLIENT_PER_TEST, max_examples=200)
@given(
    text_with_surrogates(min_size=1),
    text_with_surrogates(min_size=1),
    st.none() | text_with_surrogates(min_size=0),
)
async def test_request_bodies_are_what_json_dumps_gives(
    mock: MockKooDrive, kd: KooDriveClient, share_id: str, task_id: str, kdstoken: str | None
) -> None:
    """Bodies are compact UTF-8 JSON; a lone surrogate is an error quoting nothing, sending nothing."""

    async def poll(s: str = "s1", t: str = "t1", k: str | None = None) -> TaskInfo:
        return await kd.get_share_task(s, t, kdstoken=k)

    async def create(s: str = "s1", f: str = "f1", k: str | None = None) -> str:
        return await kd.create_share_task(s, [f], container_id="c1", zip_name="p.zip", kdstoken=k)

    # What a lone surrogate in each field is told: the same whatever the text around it.
    bad = "x\ud800"
    poll_messages = {
        await invalid_argument_message(lambda: poll(s=bad)),
        await invalid_argument_message(lambda: poll(t=bad)),
        await invalid_argument_message(lambda: poll(k=bad)),
    }
    create_messages = {
        await invalid_argument_message(lambda: create(s=bad)),
        await invalid_argument_message(lambda: create(f=bad)),
        await invalid_argument_message(lambda: create(k=bad)),
    }
    assert all("lone surrogate" in m for m in poll_messages | create_messages)
    sent = len(mock.requests_to(DETAIL)), len(mock.requests_to(CREATE))

    blank = not share_id.strip() or not task_id.strip()
    lone_surrogate = not all(is_utf8(text) for text in (share_id, task_id, kdstoken or ""))
    if blank:
        with pytest.raises(InvalidArgumentError):
            await poll(share_id, task_id, kdstoken)
        with pytest.raises(InvalidArgumentError):
            await create(share_id, task_id, kdstoken)
    elif lone_surrogate:
        assert await invalid_argument_message(lambda: poll(share_id, task_id, kdstoken)) in (
            poll_messages
        )
        assert await invalid_argument_message(lambda: create(share_id, task_id, kdstoken)) in (
            create_messages
        )
    else:
        mock.detail(payload=ANY_TASK)
        mock.post(CREATE, payload={"code": 0, "taskId": "n1"})
        await poll(share_id, task_id, kdstoken)
        await create(share_id, task_id, kdstoken)
        token = {"kdstoken": kdstoken} if kdstoken else {}  # an empty kdstoken is none
        poll_body = mock.requests_to(DETAIL)[-1].kwargs["data"]
        assert poll_body == compact({"taskId": task_id, "shareId": share_id, **token})
        create_body = mock.requests_to(CREATE)[-1].kwargs["data"]
        assert create_body == compact(json.loads(create_body))
        assert json.loads(create_body) == {
            "taskType": 1,
            "containerId": "c1",
            "fileIds": [task_id],
            "zipName": "p.zip",
            "shareId": share_id,
            **token,
        }
        sent = sent[0] + 1, sent[1] + 1
    assert (len(mock.requests_to(DETAIL)), len(mock.requests_to(CREATE))) == sent


# --- property tests -----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
KEYS = [
    "taskId",
    "taskStatus",
    "status",
    "taskType",
    "taskResultCode",
    "resultCode",
    "progress",
    "createTime",
    "startTime",
    "endTime",
    "downloadUrl",
    "userId",
    "taskInfos",
]


async def outcome_of(
    mock: MockKooDrive, kd: KooDriveClient, payload: object
) -> TaskInfo | KooDriveError:
    """What get_share_task makes of ``payload``: a TaskInfo or our error (others propagate)."""
    try:
        return await read_detail(mock, kd, payload)
    except KooDriveError as error:
        return error


def assert_parsed_or_protocol_error(outcome: object) -> None:
    if isinstance(outcome, ProtocolError):
        return
    assert isinstance(outcome, TaskInfo), repr(outcome)
    assert outcome.task_id == "t1"
    assert 0 <= outcome.progress <= 100


def code_reads_as(payload: object) -> str:
    """A body's code: "success" (absent, null, 0, "0"), "error" (any other int or string), "odd"."""
    code = payload.get("code") if isinstance(payload, dict) else None
    if code is None:
        return "success"
    if type(code) in (int, str):
        return "success" if code in (0, "0") else "error"
    return "odd"  # a float, a boolean, a list, an object: either reading is acceptable here


CODES = st.sampled_from([0, "0", None, 1, "1", "13000102", "", False, 0.0]) | json_values
# Objects with the envelope's own keys too, so that codes and envelopes come up.
json_answers = json_values | st.fixed_dictionaries(
    {},
    optional={
        "code": CODES,
        "msg": json_values,
        "taskInfo": json_values,
        "jobInfo": json_values,
        "data": json_values,
        "taskInfos": json_values,
    },
)


@settings(ONE_CLIENT_PER_TEST, max_examples=300)
@given(payload=json_answers)
async def test_property_arbitrary_json(
    mock: MockKooDrive, kd: KooDriveClient, payload: object
) -> None:
    """Any JSON answer gives a TaskInfo or a ProtocolError, or the API error its code names."""
    outcome = await outcome_of(mock, kd, payload)
    reading = code_reads_as(payload)
    if reading == "error" or (reading == "odd" and isinstance(outcome, APIError)):
        assert isinstance(outcome, APIError), repr(outcome)
        assert outcome.http_status == 200
    else:
        assert_parsed_or_protocol_error(outcome)


@settings(ONE_CLIENT_PER_TEST, max_examples=300)
@given(
    fields=st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6),
    where=st.sampled_from(["taskInfo", "jobInfo", "data"]),
)
async def test_property_arbitrary_envelopes(
    mock: MockKooDrive, kd: KooDriveClient, fields: dict[str, Any], where: str
) -> None:
    """Known keys with arbitrary values, in any envelope, parse or give a ProtocolError."""
    body: dict[str, Any] = {"code": 0}
    if where == "data":
        body["data"] = {"jobInfo": fields}
    else:
        body[where] = fields
    assert_parsed_or_protocol_error(await outcome_of(mock, kd, body))


@settings(ONE_CLIENT_PER_TEST, max_examples=500)
@given(
    shape=st.sampled_from([shape_a, shape_b]),
    field=st.sampled_from([*KEYS, "fileId", "fileStatus"]),
    value=json_values,
)
async def test_property_arbitrary_value_in_each_field(
    mock: MockKooDrive, kd: KooDriveClient, shape: Any, field: str, value: object
) -> None:
    """An arbitrary value in any one field of a valid body parses or is a ProtocolError."""
    body = (
        shape(2, 100, result=1, url=PACKAGE_URL, files=[{"fileId": "f", "status": "1"}])
        if shape is shape_b
        else shape(2, 100, result=1, url=PACKAGE_URL)
    )
    if field == "fileId":
        body["taskInfos"] = [{"fileId": value, "status": "1"}]
    elif field == "fileStatus":
        body["taskInfos"] = [{"fileId": "f", "status": value}]
    elif field == "taskInfos":
        body["taskInfos"] = value
    else:
        envelope(body)[field] = value
    assert_parsed_or_protocol_error(await outcome_of(mock, kd, body))


@ONE_CLIENT_PER_TEST
@given(
    status=st.integers(min_value=0, max_value=3),
    result=st.integers(min_value=0, max_value=3),
    progress=st.integers(min_value=0, max_value=100),
)
async def test_property_valid_bodies_round_trip(
    mock: MockKooDrive, kd: KooDriveClient, status: int, result: int, progress: int
) -> None:
    """Every valid status/result/progress combination parses to the same values in both shapes."""
    for shape in (shape_a, shape_b):
        info = await read_detail(mock, kd, shape(status, progress, result=result))
        assert info.status == status
        assert info.progress == progress
        assert info.result_code == (None if result == 0 else result)
