"""The parser's fast path builds exactly what the cattrs converter builds (pending a decision).

The client reads the usual answer through a shortcut and everything else through its
validating converter; ``koodrive_tasks.testing`` reads an answer either way, and
these properties pin that both agree on every input.
"""

from __future__ import annotations

import copy
import enum
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kd_fakes import PACKAGE_URL, shape_a, shape_b

from koodrive_tasks import ProtocolError
from koodrive_tasks.testing import parse_task_detail, takes_shortcut


def envelope(body: dict[str, Any]) -> dict[str, Any]:
    """The task-fields object of either shape."""
    return body["taskInfo"] if "taskInfo" in body else body["jobInfo"]


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
    """The answer read with and without the shortcut (result or error)."""
    results: list[object] = []
    for shortcut in (True, False):
        try:
            results.append(
                parse_task_detail(copy.deepcopy(payload), task_id=task_id, shortcut=shortcut)
            )
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
    """Whatever the fields, the shortcut and the converter give the identical result or error."""
    assert_same_outcome({"code": 0, "jobInfo": fields})


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
    """Well-formed answers of both shapes take the shortcut, and match what the converter builds."""
    assert takes_shortcut(body, task_id="t1")
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
    assert not takes_shortcut(body, task_id="t1")
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
    """Per-file results of any unusual form go to the converter too."""
    body = shape_b(1, 40, files=files)
    assert not takes_shortcut(body, task_id="t1")
    assert_same_outcome(body)
