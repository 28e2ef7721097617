"""The wire format: both taskDetail shapes, strict types, lenient documented variants."""

from __future__ import annotations

import contextlib
import copy
import enum
import json
from datetime import datetime
from typing import Any
from unittest import mock

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kd_fakes import PACKAGE_URL, URL_QUERY, shape_a, shape_b

from koodrive_tasks import (
    FileResult,
    FileStatus,
    InvalidArgumentError,
    ProtocolError,
    TaskInfo,
    TaskResultCode,
    TaskStatus,
    TaskType,
    _wire,
)
from koodrive_tasks._wire import (
    encode_body,
    is_success_code,
    parse_created_task_id,
    parse_task_detail,
    share_task_body,
    task_detail_body,
    task_detail_json,
)

SHAPES = [pytest.param(shape_a, id="shape-A"), pytest.param(shape_b, id="shape-B")]


def envelope(body: dict[str, Any]) -> dict[str, Any]:
    """The task-fields object of either shape."""
    return body["taskInfo"] if "taskInfo" in body else body["jobInfo"]


# --- both shapes -------------------------------------------------------------------------


def test_shape_a_parses_every_field() -> None:
    """Shape A (string code, taskInfo) fills every TaskInfo attribute."""
    info = parse_task_detail(shape_a(2, 100, result=1, url=PACKAGE_URL), task_id="t1")
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


def test_shape_b_parses_job_info_and_file_list() -> None:
    """Shape B (int code, jobInfo) with taskInfos as a list gives per-file results."""
    files = [
        {"fileId": "f1", "status": "1", "newFileId": "n1", "srcContainerId": "c1"},
        {"fileId": "f2", "status": "2"},
        {"fileId": "f3", "status": "0", "newFileId": "", "srcContainerId": None},
    ]
    info = parse_task_detail(shape_b(1, 70, files=files), task_id="t1")
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


def test_shape_b_task_infos_as_single_object() -> None:
    """taskInfos documented as one object under a plural name is accepted as a one-item tuple."""
    info = parse_task_detail(
        shape_b(2, 100, result=2, files={"fileId": "f9", "status": "2"}), task_id="t1"
    )
    assert info.files == (FileResult("f9", FileStatus.FAILED),)
    assert info.result_code is TaskResultCode.PARTIALLY_FAILED


def test_shape_b_task_infos_empty_list_and_null() -> None:
    """An empty taskInfos list or null gives no files."""
    assert parse_task_detail(shape_b(1, files=[]), task_id="t1").files == ()
    body = shape_b(1)
    body["taskInfos"] = None
    assert parse_task_detail(body, task_id="t1").files == ()


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
def test_every_task_status(shape: Any, wire: int, expected: TaskStatus) -> None:
    """taskStatus 0-3 map to the four TaskStatus members in both shapes."""
    assert parse_task_detail(shape(wire), task_id="t1").status is expected


@pytest.mark.parametrize("wire", ["0", "1", "2", "3"])
def test_task_status_as_string(wire: str) -> None:
    """taskStatus sent as a digit string is accepted like the integer."""
    body = shape_b(0)
    body["jobInfo"]["taskStatus"] = wire
    assert parse_task_detail(body, task_id="t1").status == int(wire)


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
def test_every_task_result_code(shape: Any, wire: object, expected: TaskResultCode | None) -> None:
    """taskResultCode 1-3 map to TaskResultCode and 0 means 'no result yet' (None)."""
    body = shape(2, 100)
    envelope(body)["taskResultCode"] = wire
    assert parse_task_detail(body, task_id="t1").result_code is expected


def test_result_code_absent_is_none() -> None:
    """An absent taskResultCode is None."""
    body = shape_a(1)
    del body["taskInfo"]["taskResultCode"]
    assert parse_task_detail(body, task_id="t1").result_code is None


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("0", FileStatus.PENDING),
        ("1", FileStatus.SUCCEEDED),
        ("2", FileStatus.FAILED),
        (1, FileStatus.SUCCEEDED),
    ],
)
def test_per_file_status_strings(wire: object, expected: FileStatus) -> None:
    """Per-file status strings "0"/"1"/"2" (and the integer form) map to FileStatus."""
    info = parse_task_detail(shape_b(1, files=[{"fileId": "f", "status": wire}]), task_id="t1")
    assert info.files[0].status is expected


@pytest.mark.parametrize("wire", ["3", "-1", "", None, "one", True, 1.0, [1]])
def test_per_file_status_invalid(wire: object) -> None:
    """A per-file status outside "0"-"2", missing or of the wrong type is a ProtocolError."""
    with pytest.raises(ProtocolError):
        parse_task_detail(shape_b(1, files=[{"fileId": "f", "status": wire}]), task_id="t1")


def test_per_file_missing_file_id() -> None:
    """A per-file result without fileId is a ProtocolError."""
    with pytest.raises(ProtocolError):
        parse_task_detail(shape_b(1, files=[{"status": "1"}]), task_id="t1")


@pytest.mark.parametrize("files", ["f1", 5, [["f1", "1"]], ["f1"], [None]])
def test_task_infos_wrong_type(files: object) -> None:
    """taskInfos that is neither an object nor a list of objects is a ProtocolError."""
    with pytest.raises(ProtocolError):
        parse_task_detail(shape_b(1, files=files), task_id="t1")


def test_numeric_ids_become_strings() -> None:
    """Ids sent as JSON numbers (some editions) become strings."""
    body = shape_b(1, task_id="123", files=[{"fileId": 77, "status": "1", "newFileId": 78}])
    body["jobInfo"]["taskId"] = 123
    body["jobInfo"]["userId"] = 9
    info = parse_task_detail(body, task_id="123")
    assert info.task_id == "123"
    assert info.user_id == "9"
    assert info.files[0].file_id == "77"
    assert info.files[0].new_file_id == "78"


# --- timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["createTime", "startTime", "endTime"])
def test_timestamp_is_naive_datetime(field: str) -> None:
    """A 14-digit yyyyMMddHHmmss timestamp becomes a naive datetime (no zone is documented)."""
    body = shape_a(2)
    body["taskInfo"][field] = "20240909033325"
    info = parse_task_detail(body, task_id="t1")
    attr = {"createTime": "created_at", "startTime": "started_at", "endTime": "ended_at"}[field]
    value = getattr(info, attr)
    assert value == datetime(2024, 9, 9, 3, 33, 25)
    assert value.tzinfo is None


@pytest.mark.parametrize("field", ["createTime", "startTime", "endTime"])
@pytest.mark.parametrize("value", ["", None, "absent"])
def test_timestamp_empty_or_absent_is_none(field: str, value: object) -> None:
    """An empty, null or absent timestamp is None."""
    body = shape_a(2)
    if value == "absent":
        del body["taskInfo"][field]
    else:
        body["taskInfo"][field] = value
    info = parse_task_detail(body, task_id="t1")
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
def test_malformed_timestamp_is_protocol_error(value: object) -> None:
    """A timestamp that is not 14 valid digits is a ProtocolError."""
    body = shape_a(2)
    body["taskInfo"]["createTime"] = value
    with pytest.raises(ProtocolError):
        parse_task_detail(body, task_id="t1")


def test_boolean_false_timestamp_is_protocol_error() -> None:
    """A boolean false timestamp is a type error, not an absent timestamp."""
    body = shape_a(2)
    body["taskInfo"]["endTime"] = False
    with pytest.raises(ProtocolError):
        parse_task_detail(body, task_id="t1")


# --- leniency and strictness ------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_unknown_extra_fields_ignored(shape: Any) -> None:
    """Unknown fields at every level are ignored, not rejected."""
    body = shape(1, 40, newField={"x": [1, 2]}, anotherOne=None)
    body["unknownTop"] = [1, {"a": 2}]
    body.setdefault("taskInfos", [{"fileId": "f", "status": "1", "extra": True}])
    info = parse_task_detail(body, task_id="t1")
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
def test_wrong_types_rejected(field: str, value: object) -> None:
    """A value of the wrong type in a task field is a ProtocolError."""
    body = shape_a(1, 10)
    body["taskInfo"][field] = value
    with pytest.raises(ProtocolError):
        parse_task_detail(body, task_id="t1")


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
def test_unknown_enum_values_rejected(field: str, value: object) -> None:
    """An enumerated field with a value outside its documented set is a ProtocolError."""
    body = shape_b(1)
    body["jobInfo"][field] = value
    with pytest.raises(ProtocolError, match="does not match the API"):
        parse_task_detail(body, task_id="t1")


def test_missing_task_status_rejected() -> None:
    """A task without taskStatus (and without batch `status`) is a ProtocolError."""
    body = shape_a(1)
    del body["taskInfo"]["taskStatus"]
    with pytest.raises(ProtocolError):
        parse_task_detail(body, task_id="t1")


@pytest.mark.parametrize(
    ("wire", "expected"), [(-5, 0), (0, 0), (70, 70), ("70", 70), (150, 100), (None, 0), ("", 0)]
)
def test_progress_values(wire: object, expected: int) -> None:
    """progress is an integer percent (string digits accepted), clamped to 0-100; empty means 0."""
    body = shape_a(1)
    body["taskInfo"]["progress"] = wire
    assert parse_task_detail(body, task_id="t1").progress == expected


def test_progress_absent_is_zero() -> None:
    """An absent progress reads as 0."""
    body = shape_a(0)
    del body["taskInfo"]["progress"]
    assert parse_task_detail(body, task_id="t1").progress == 0


# --- identity and envelope --------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_missing_task_id_filled_from_asked_id(shape: Any) -> None:
    """A body without taskId describes the task that was asked for."""
    body = shape(1)
    del envelope(body)["taskId"]
    assert parse_task_detail(body, task_id="asked-42").task_id == "asked-42"


@pytest.mark.parametrize("shape", SHAPES)
def test_other_task_id_rejected(shape: Any) -> None:
    """A body describing another task is a ProtocolError naming the asked id, not echoing the other."""
    with pytest.raises(ProtocolError, match=r"'t1'.*another task") as caught:
        parse_task_detail(shape(1, task_id="t2"), task_id="t1")
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
def test_neither_task_info_nor_job_info(body: dict[str, Any]) -> None:
    """A body without a taskInfo/jobInfo object is a ProtocolError."""
    with pytest.raises(ProtocolError):
        parse_task_detail(body, task_id="t1")


@pytest.mark.parametrize("payload", [None, [], [shape_a(1)], "text", 3, 1.5, True])
def test_non_object_payload(payload: object) -> None:
    """A payload that is not a JSON object is a ProtocolError."""
    with pytest.raises(ProtocolError):
        parse_task_detail(payload, task_id="t1")


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
def test_batch_job_family_uses_status(wire: int, expected: TaskStatus) -> None:
    """The batch-job family (data.jobInfo with `status`) parses, with data.taskInfos as files."""
    info = parse_task_detail(batch_body(status=wire), task_id="t1")
    assert info.status is expected
    assert info.progress == 30
    assert info.files == (FileResult("f1", FileStatus.SUCCEEDED),)


def test_task_status_wins_over_status() -> None:
    """When both taskStatus and status are present, taskStatus is used."""
    body = shape_a(1)
    body["taskInfo"]["status"] = 3
    assert parse_task_detail(body, task_id="t1").status is TaskStatus.PROCESSING


@pytest.mark.parametrize("task_type", [3, 5, 6, 7])
def test_batch_job_task_types_accepted(task_type: int) -> None:
    """A batch job of any documented type (1-7) parses."""
    info = parse_task_detail(batch_body(taskType=task_type), task_id="t1")
    assert info.status is TaskStatus.PROCESSING


# --- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_repr_hides_download_url_query(shape: Any) -> None:
    """repr(TaskInfo) shows the download URL's host and path but never its query."""
    info = parse_task_detail(shape(2, 100, result=1, url=PACKAGE_URL), task_id="t1")
    assert info.download_url == PACKAGE_URL
    for text in (repr(info), str(info)):
        assert "SIGNED-QUERY-SECRET" not in text
        assert URL_QUERY not in text
        assert "obs.example.com/pkg/a.zip" in text


def test_repr_hides_user_info_and_fragment() -> None:
    """repr(TaskInfo) also drops user info and fragment of the download URL."""
    url = "https://user:pa55word@obs.example.com:8443/a.zip?sig=S3CRET#frag-S3CRET"
    info = parse_task_detail(shape_a(2, 100, result=1, url=url), task_id="t1")
    text = repr(info)
    assert "pa55word" not in text
    assert "S3CRET" not in text
    assert "obs.example.com:8443/a.zip" in text


# --- small helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        (0, True),
        ("0", True),
        (None, True),
        (False, False),
        (1, False),
        ("13000102", False),
        ("", False),
    ],
)
def test_is_success_code(code: object, ok: bool) -> None:
    """Only 0, "0" or an absent code mean success; a boolean is not 0."""
    assert is_success_code(code) is ok


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
def test_parse_created_task_id(payload: object, expected: str) -> None:
    """The created task id is read from taskId, data.taskId, data.jobId or data."""
    assert parse_created_task_id(payload) == expected


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
def test_parse_created_task_id_rejects(payload: object) -> None:
    """A create answer without a usable task id is a ProtocolError."""
    with pytest.raises(ProtocolError):
        parse_created_task_id(payload)


def test_request_bodies() -> None:
    """The request bodies carry the documented keys, kdstoken only when given."""
    assert task_detail_body("s", "t", None) == {"taskId": "t", "shareId": "s"}
    assert task_detail_body("s", "t", "k") == {"taskId": "t", "shareId": "s", "kdstoken": "k"}
    assert share_task_body(
        task_type=TaskType.DUMP,
        share_id="s",
        container_id="c",
        file_ids=("a",),
        zip_name=None,
        target=("c2", "root"),
        kdstoken=None,
    ) == {
        "taskType": 2,
        "containerId": "c",
        "fileIds": ["a"],
        "shareId": "s",
        "targetFileId": {"containerId": "c2", "fileId": "root"},
    }


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


def parses_or_protocol_error(payload: object, task_id: str = "t1") -> None:
    try:
        info = parse_task_detail(payload, task_id=task_id)
    except ProtocolError:
        return
    assert isinstance(info, TaskInfo)
    assert info.task_id == task_id
    assert 0 <= info.progress <= 100


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_property_arbitrary_json(payload: object) -> None:
    """Any JSON value gives a TaskInfo or a ProtocolError, never another exception."""
    parses_or_protocol_error(payload)


@settings(max_examples=300)
@given(
    st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6),
    st.sampled_from(["taskInfo", "jobInfo", "data"]),
)
def test_property_arbitrary_envelopes(fields: dict[str, Any], where: str) -> None:
    """Known keys with arbitrary values, in any envelope, parse or give a ProtocolError."""
    body: dict[str, Any] = {"code": 0}
    if where == "data":
        body["data"] = {"jobInfo": fields}
    else:
        body[where] = fields
    parses_or_protocol_error(body)


@settings(max_examples=500)
@given(
    st.sampled_from([shape_a, shape_b]),
    st.sampled_from([*KEYS, "fileId", "fileStatus"]),
    json_values,
)
def test_property_arbitrary_value_in_each_field(shape: Any, field: str, value: object) -> None:
    """An arbitrary value in any one field of a valid body parses or is a ProtocolError."""
    body = (
        copy.deepcopy(
            shape(2, 100, result=1, url=PACKAGE_URL, files=[{"fileId": "f", "status": "1"}])
        )
        if shape is shape_b
        else copy.deepcopy(shape(2, 100, result=1, url=PACKAGE_URL))
    )
    if field == "fileId":
        body["taskInfos"] = [{"fileId": value, "status": "1"}]
    elif field == "fileStatus":
        body["taskInfos"] = [{"fileId": "f", "status": value}]
    elif field == "taskInfos":
        body["taskInfos"] = value
    else:
        envelope(body)[field] = value
    parses_or_protocol_error(body)


@given(
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=0, max_value=100),
)
def test_property_valid_bodies_round_trip(status: int, result: int, progress: int) -> None:
    """Every valid status/result/progress combination parses to the same values in both shapes."""
    for shape in (shape_a, shape_b):
        info = parse_task_detail(shape(status, progress, result=result), task_id="t1")
        assert info.status == status
        assert info.progress == progress
        assert info.result_code == (None if result == 0 else result)


# --- the fast path and the converter agree ------------------------------------------------
# parse_task_detail builds the common answer without cattrs (_wire._fast_task_info) and
# leaves everything else to the converter. These tests hold the two to the same result.

ODD_VALUES = st.sampled_from(
    [
        None,
        "",
        0,
        "0",
        1,
        "1",
        2,
        "2",
        3,
        "3",
        4,
        "-1",
        -1,
        50,
        100,
        101,
        True,
        False,
        1.0,
        0.0,
        " 1",
        "\uff11",  # a full-width digit: str.isdigit() says yes, the API says no
        "x",
        [],
        {},
        "20261129101500",
        "20261301101500",
        "2026112910150",
        "\uff120261129101500",
        20261129101500,
        "https://obs.example.com/a.zip?X-Sig=1",
    ]
)
FIELD_VALUES = ODD_VALUES | json_values
FILE_ITEMS = st.dictionaries(
    st.sampled_from(["fileId", "status", "newFileId", "srcContainerId"]), FIELD_VALUES, max_size=4
)
TASK_INFOS = st.none() | st.lists(FILE_ITEMS, max_size=3) | FILE_ITEMS | FIELD_VALUES
TASK_FIELDS = [k for k in KEYS if k not in ("status", "taskInfos")]


def structured(fields: dict[str, Any]) -> TaskInfo | Exception:
    """What the converter alone makes of ``fields``."""
    try:
        return _wire.converter.structure(dict(fields), TaskInfo)
    except Exception as error:  # any failure is compared as "failed"
        return error


def assert_identical(fast: object, full: object) -> None:
    """Equal, field by field, with the same types and the very same enum members."""
    assert type(fast) is type(full)
    assert attrs.has(type(fast))
    for field in attrs.fields(type(fast)):
        mine, theirs = getattr(fast, field.name), getattr(full, field.name)
        if isinstance(mine, tuple):
            assert type(theirs) is tuple, field.name
            for a, b in zip(mine, theirs, strict=True):
                assert_identical(a, b)
        else:
            assert type(mine) is type(theirs), field.name
            assert mine == theirs, field.name
            if isinstance(mine, enum.Enum):
                assert mine is theirs, field.name


def parse_both(payload: object, task_id: str = "t1") -> tuple[object, object]:
    """parse_task_detail as it is, and with the fast path switched off (result or error)."""
    results: list[object] = []
    for fast in (True, False):
        with contextlib.ExitStack() as stack:
            if not fast:
                stack.enter_context(mock.patch.object(_wire, "_fast_task_info", return_value=None))
            try:
                results.append(parse_task_detail(copy.deepcopy(payload), task_id=task_id))
            except ProtocolError as error:
                results.append(error)
    return results[0], results[1]


def assert_same_outcome(payload: object, task_id: str = "t1") -> None:
    fast, full = parse_both(payload, task_id)
    if isinstance(full, ProtocolError):
        assert type(fast) is type(full)
        assert str(fast) == str(full)
    else:
        assert_identical(fast, full)


@settings(max_examples=300)
@given(
    st.fixed_dictionaries(
        {"taskId": st.text(max_size=5) | st.integers() | ODD_VALUES},
        optional={
            **{key: FIELD_VALUES for key in TASK_FIELDS if key != "taskId"},
            "taskInfos": TASK_INFOS,
        },
    )
)
def test_fast_path_builds_what_the_converter_builds(fields: dict[str, Any]) -> None:
    """Whenever the fast path accepts fields, the converter returns the identical TaskInfo."""
    fast = _wire._fast_task_info(fields)
    if fast is not None:
        assert_identical(fast, structured(fields))


@settings(max_examples=300)
@given(
    st.sampled_from([shape_a, shape_b]),
    st.sampled_from([*TASK_FIELDS, "fileId", "fileStatus", "newFileId", "srcContainerId"]),
    FIELD_VALUES,
)
def test_parse_outcome_same_with_and_without_fast_path(
    shape: Any, field: str, value: object
) -> None:
    """One odd value anywhere: the same TaskInfo, or the same ProtocolError message."""
    body = (
        shape(1, 40, files=[{"fileId": "f", "status": "1"}]) if shape is shape_b else shape(1, 40)
    )
    if field in ("fileId", "fileStatus", "newFileId", "srcContainerId"):
        item = {"fileId": "f", "status": "1"}
        item["status" if field == "fileStatus" else field] = value
        body["taskInfos"] = [item]
    else:
        envelope(body)[field] = value
    assert_same_outcome(body)


COMMON_ANSWERS = [
    pytest.param(
        shape(status, progress, result=result, url=url), id=f"{shape.__name__}-{status}-{result}"
    )
    for shape in (shape_a, shape_b)
    for status, progress, result, url in [
        (0, 0, 0, ""),
        (1, 50, 0, ""),
        (2, 100, 1, PACKAGE_URL),
        (2, 100, 2, PACKAGE_URL),
        (2, 100, 3, ""),
        (3, 10, 0, ""),
    ]
] + [
    pytest.param(
        shape_b(
            2,
            100,
            result=2,
            files=[
                {"fileId": "f1", "status": "1", "newFileId": "n1", "srcContainerId": "c1"},
                {"fileId": "f2", "status": "2", "newFileId": "", "srcContainerId": "c1"},
                {"fileId": "f3", "status": 0},
            ],
        ),
        id="shape_b-files",
    ),
    pytest.param(shape_b(1, 5, files=[]), id="shape_b-no-files"),
    pytest.param(
        shape_a(1, 5, taskType="2", taskResultCode="0", taskStatus="1"), id="string-enums"
    ),
    pytest.param({"taskInfo": {"taskStatus": 1}}, id="minimal-fills-task-id"),
    pytest.param({"jobInfo": {"taskId": "t1", "taskStatus": 0, "extra": [1, {}]}}, id="extra-keys"),
]


@pytest.mark.parametrize("body", COMMON_ANSWERS)
def test_common_answers_take_the_fast_path(body: dict[str, Any]) -> None:
    """Well-formed answers of both shapes never reach the converter, and match what it builds."""
    with mock.patch.object(_wire, "_structure_task_info", side_effect=AssertionError("slow path")):
        parse_task_detail(copy.deepcopy(body), task_id="t1")
    assert_same_outcome(body)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("taskId", 123),  # numeric ids: the converter turns them into strings
        ("taskStatus", "x"),
        ("taskStatus", True),
        ("taskStatus", 1.0),
        ("taskStatus", None),
        ("taskStatus", 9),
        ("progress", 150),  # clamped by the converter
        ("progress", -5),
        ("progress", None),
        ("progress", "70"),
        ("progress", False),
        ("taskType", ""),
        ("taskType", 7),
        ("taskResultCode", True),
        ("resultCode", ""),
        ("resultCode", "12"),
        ("resultCode", True),
        ("createTime", 0),
        ("createTime", 20261129101500),
        ("createTime", "2026-11-29"),
        ("createTime", "20261399101500"),
        ("downloadUrl", 5),
        ("userId", 42),
        ("userId", ["u"]),
    ],
)
def test_unusual_values_take_the_full_path(field: str, value: object) -> None:
    """Anything but the common types goes to the converter: its value or its error."""
    body = shape_b(1, 40)
    envelope(body)[field] = value
    fields = dict(envelope(body))
    assert _wire._fast_task_info(fields) is None
    assert_same_outcome(body)


@pytest.mark.parametrize(
    "files",
    [
        {"fileId": "f", "status": "1"},  # one object instead of a list
        [{"fileId": 7, "status": "1"}],
        [{"fileId": "f", "status": True}],
        [{"fileId": "f"}],
        [{"status": "1"}],
        [{"fileId": "f", "status": "1", "newFileId": 9}],
        [["f", "1"]],
        "f",
    ],
)
def test_unusual_files_take_the_full_path(files: object) -> None:
    body = shape_b(1, 40, files=files)
    fields = {**envelope(body), "taskInfos": files}
    assert _wire._fast_task_info(fields) is None
    assert_same_outcome(body)


def _message_of(call: Any) -> str:
    try:
        call()
    except InvalidArgumentError as error:
        return str(error)
    raise AssertionError("no InvalidArgumentError")


# Text with lone surrogates among other characters: st.text() never makes them.
ANY_TEXT = st.lists(
    st.characters() | st.sampled_from(["\ud800", "\udc00", "\udfff"]), max_size=8
).map("".join)


@given(ANY_TEXT, ANY_TEXT, st.none() | ANY_TEXT)
def test_task_detail_json_is_what_json_dumps_gives(
    share_id: str, task_id: str, kdstoken: str | None
) -> None:
    """The hand-built poll body is byte for byte the general encoding of the same dict."""
    body = task_detail_body(share_id, task_id, kdstoken)
    try:
        expected: bytes | type[Exception] = json.dumps(
            body, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except UnicodeEncodeError:  # a lone surrogate cannot be UTF-8
        expected = UnicodeEncodeError
    if expected is UnicodeEncodeError:  # a typed error, which does not quote the value
        with pytest.raises(InvalidArgumentError, match="lone surrogate") as caught:
            task_detail_json(share_id, task_id, kdstoken)
        assert str(caught.value) == _message_of(lambda: encode_body({"x": "\ud800"}))  # no value
        with pytest.raises(InvalidArgumentError, match="lone surrogate"):
            encode_body(body)
    else:
        assert task_detail_json(share_id, task_id, kdstoken) == expected
        assert encode_body(body) == expected
