"""The KooDrive wire format: the only module that reads raw JSON keys.

One cattrs converter turns either documented ``taskDetail`` shape into a
:class:`TaskInfo`, and a batch job's detail or list entry into a :class:`JobInfo`;
error bodies of every documented shape become the matching :class:`APIError`. The converter is strict about types (a list where a number
belongs is an error) and lenient where the API documents variants (codes and
ids as strings or integers, empty timestamps, ``taskInfos`` as object or list).
"""

from __future__ import annotations

import email.utils
import enum
import functools
import json
import math
import re
import zlib
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from sys import intern
from typing import Any, TypeVar

import cattrs
from cattrs.gen import make_dict_structure_fn, override
from yarl import URL

from . import exceptions as exc
from ._job_specs import JobRequest
from ._models import (
    ActionType,
    FileResult,
    FileStatus,
    JobInfo,
    JobType,
    TaskInfo,
    TaskResultCode,
    TaskStatus,
    TaskType,
    UncompressedFile,
)

_E = TypeVar("_E", bound=enum.IntEnum)

_DIGITS = re.compile(r"[+-]?\d{1,19}")

SHARE_TASKS_PATH = "/koodrive/ose/v1/share/tasks"
TASK_DETAIL_PATH = "/koodrive/ose/v1/share/taskDetail"
JOBS_PATH = "/koodrive/ose/v1/jobs"
"""``POST``: create a batch job; ``GET``: list them."""
CANCEL_JOB_PATH = "/koodrive/ose/v1/cancel"
_JOB_PATH_PREFIX = "/koodrive/ose/v1/"


def _strict_int(value: object, _: object = None) -> int:
    if type(value) is int:  # the common case first: this runs for every field of every poll
        return value
    if isinstance(value, bool):
        raise TypeError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value)
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def _strict_str(value: object, _: object = None) -> str:
    if type(value) is str or isinstance(value, str):
        return value
    # Some editions send numeric ids as JSON numbers.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _optional_str(value: object, _: object = None) -> str | None:
    return None if value in (None, "") else _strict_str(value)


def _optional_text(value: object, _: object = None) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _optional_int(value: object, _: object = None) -> int | None:
    return None if value in (None, "") else _strict_int(value)


def _timestamp(value: object, _: object = None) -> datetime | None:
    if isinstance(value, bool):
        raise TypeError("expected a timestamp, got a boolean")
    if value in (None, "", 0, "0"):
        return None
    return _parse_timestamp(_strict_str(value))


@functools.lru_cache(maxsize=4096)
def _parse_timestamp(text: str) -> datetime:
    # createTime and startTime repeat on every poll of a task: a cache hit costs a tenth
    # of the parse. datetimes are immutable, so sharing them is safe. Slicing is 5x
    # faster than strptime.
    if len(text) != 14 or not text.isascii() or not text.isdigit():
        raise ValueError("expected a 14-digit yyyyMMddHHmmss timestamp")
    return datetime(
        int(text[0:4]),
        int(text[4:6]),
        int(text[6:8]),
        int(text[8:10]),
        int(text[10:12]),
        int(text[12:14]),
    )


def _spellings(enum_type: type[_E], *, zero_is_none: bool = False) -> dict[object, _E | None]:
    """The wire's usual spellings of each member: 2 and "2".

    Only look a value up after checking that its type is exactly int or str: True and
    1.0 hash like 1 and would otherwise find a member.
    """
    known: dict[object, _E | None] = {}
    for member in enum_type:
        known[member.value] = known[str(member.value)] = member
    if zero_is_none:
        known[0] = known["0"] = None
    return known


def _enum_hook(enum_type: type[_E], *, zero_is_none: bool = False) -> Callable[..., _E | None]:
    known = _spellings(enum_type, zero_is_none=zero_is_none)

    def structure(value: object, _: object = None) -> _E | None:
        if type(value) in (int, str) and value in known:
            return known[value]
        if value in (None, ""):
            return None
        number = _strict_int(value)
        if zero_is_none and number == 0:
            return None
        try:
            return enum_type(number)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in enum_type)
            raise ValueError(
                f"unknown {enum_type.__name__} {number}; expected one of {allowed}"
            ) from None

    return structure


def _required(hook: Callable[..., _E | None]) -> Callable[..., _E]:
    def structure(value: object, type_: object = None) -> _E:
        result = hook(value, type_)
        if result is None:
            raise ValueError("a value is required")
        return result

    return structure


def _progress(value: object, _: object = None) -> int:
    if value in (None, ""):
        return 0
    # Out-of-range values have been seen from proxies rounding; a percentage is a percentage.
    return min(100, max(0, _strict_int(value)))


def _files(value: object, _: object = None) -> tuple[FileResult, ...]:
    if value is None:
        return ()
    # Documented as "TaskInfo object" under a plural name: accept one object or a list.
    items = [value] if isinstance(value, Mapping) else value
    if not isinstance(items, list):
        raise TypeError(f"expected an object or a list, got {type(value).__name__}")
    return tuple(converter.structure(item, FileResult) for item in items)


def _entries(value: object, _: object = None) -> tuple[UncompressedFile, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, Mapping) else value
    if not isinstance(items, list):
        raise TypeError(f"expected an object or a list, got {type(value).__name__}")
    return tuple(converter.structure(item, UncompressedFile) for item in items)


def _task_fields(conv: cattrs.Converter) -> dict[str, Any]:
    """The overrides of the fields every task snapshot has (share task and job alike)."""
    return {
        "task_id": override(rename="taskId", struct_hook=_strict_str),
        "status": override(rename="taskStatus", struct_hook=_required(_enum_hook(TaskStatus))),
        "progress": override(struct_hook=_progress),
        "task_type": override(rename="taskType", struct_hook=_enum_hook(TaskType)),
        "result_code": override(
            rename="taskResultCode", struct_hook=_enum_hook(TaskResultCode, zero_is_none=True)
        ),
        "content_result_code": override(rename="resultCode", struct_hook=_optional_int),
        "created_at": override(rename="createTime", struct_hook=_timestamp),
        "started_at": override(rename="startTime", struct_hook=_timestamp),
        "ended_at": override(rename="endTime", struct_hook=_timestamp),
        "download_url": override(rename="downloadUrl", struct_hook=_optional_text),
        "user_id": override(rename="userId", struct_hook=_optional_str),
        "files": override(rename="taskInfos", struct_hook=_files),
    }


def _build_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(
        FileResult,
        make_dict_structure_fn(
            FileResult,
            conv,
            file_id=override(rename="fileId", struct_hook=_strict_str),
            status=override(struct_hook=_required(_enum_hook(FileStatus))),
            new_file_id=override(rename="newFileId", struct_hook=_optional_str),
            src_container_id=override(rename="srcContainerId", struct_hook=_optional_str),
        ),
    )
    conv.register_structure_hook(
        TaskInfo, make_dict_structure_fn(TaskInfo, conv, **_task_fields(conv))
    )
    conv.register_structure_hook(
        UncompressedFile,
        make_dict_structure_fn(
            UncompressedFile,
            conv,
            name=override(struct_hook=_strict_str),
            # Integer in one edition, "1"/"2" in another: both read as a number.
            entry_type=override(rename="type", struct_hook=_optional_int),
            size=override(rename="fileSize", struct_hook=_optional_int),
            container_id=override(rename="containerId", struct_hook=_optional_str),
            file_id=override(rename="fileId", struct_hook=_optional_str),
        ),
    )
    # A job says `status` and `beginTime` where a share task says `taskStatus` and
    # `startTime`; its `taskType` numbers job types (JobType), so TaskInfo.task_type
    # stays None. `_job_fields` fills in the other spelling when only one is present.
    job_fields = {
        **_task_fields(conv),
        "status": override(rename="status", struct_hook=_required(_enum_hook(TaskStatus))),
        "task_type": override(omit=True),
        "started_at": override(rename="beginTime", struct_hook=_timestamp),
        "job_type": override(rename="taskType", struct_hook=_enum_hook(JobType)),
        "action_type": override(
            rename="actionType", struct_hook=_enum_hook(ActionType, zero_is_none=True)
        ),
        "task_name": override(rename="taskName", struct_hook=_optional_str),
        "content_num": override(rename="contentNum", struct_hook=_optional_int),
        "container_id": override(rename="containerId", struct_hook=_optional_str),
        "tenant_id": override(rename="tenantId", struct_hook=_optional_str),
        "uncompressed_files": override(rename="uncompressedFileList", struct_hook=_entries),
    }
    conv.register_structure_hook(JobInfo, make_dict_structure_fn(JobInfo, conv, **job_fields))
    return conv


converter = _build_converter()


# --- the fast path ------------------------------------------------------------------------
# Every poll parses one answer, and the converter (a hook call and a try block per field,
# then ``TaskInfo(**res)``) was the client's largest own cost per poll. The common answer,
# with values of exactly the types the API documents, is built here directly instead; any
# other value makes the fast path give up (return ``None``) and the converter decides,
# with its validation and its error messages. A property test (through
# ``koodrive_tasks.testing.parse_task_detail``) checks that both agree on every input.

_MISSING: Any = object()
# The types an enum value may have on the fast path: True and 1.0 hash like 1, but differ.
_NONE_TYPE = type(None)
_ENUM_KEY = frozenset({int, str})
_ENUM_KEY_OR_NONE = frozenset({int, str, _NONE_TYPE})
_TASK_STATUS = _spellings(TaskStatus)
_FILE_STATUS = _spellings(FileStatus)
# Optional fields: absent or null is None, as the converter has it.
_TASK_TYPE = {**_spellings(TaskType), None: None}
_RESULT_CODE = {**_spellings(TaskResultCode, zero_is_none=True), None: None}


def _fast_time(value: object) -> datetime | None:
    """A ``yyyyMMddHHmmss`` string as the converter reads it, or ``_MISSING``."""
    if value is None or value in ("", "0"):
        return None
    if type(value) is not str:
        return _MISSING  # type: ignore[no-any-return]  # 0, numbers: the converter decides
    try:
        return _parse_timestamp(value)
    except ValueError:
        return _MISSING  # type: ignore[no-any-return]


def _fast_files(value: list[Any]) -> tuple[FileResult, ...] | None:
    """``taskInfos`` as a list of well-formed file objects, or ``None``."""
    files = []
    for item in value:
        if type(item) is not dict:
            return None
        get = item.get
        file_id, status = get("fileId"), get("status")
        new_file_id, container_id = get("newFileId"), get("srcContainerId")
        if not (
            type(file_id) is str
            and type(status) in _ENUM_KEY
            and status in _FILE_STATUS
            and type(new_file_id) in (str, _NONE_TYPE)
            and type(container_id) in (str, _NONE_TYPE)
        ):
            return None
        files.append(
            FileResult(
                file_id,
                _FILE_STATUS[status],  # type: ignore[arg-type]
                new_file_id or None,
                intern(container_id) if container_id else None,  # a few spaces, many files
            )
        )
    return tuple(files)


def _fast_task_info(
    fields: dict[str, Any], raw_files: object = _MISSING, default_id: str | None = None
) -> TaskInfo | None:
    """``fields`` as a ``TaskInfo`` if every value is of the common kind, else ``None``.

    Whenever it returns a ``TaskInfo``, it is the one ``converter.structure(fields,
    TaskInfo)`` returns. Written out field by field, without a helper call per field:
    this runs for every poll. ``raw_files`` (else ``fields["taskInfos"]``) and
    ``default_id`` (for an absent or empty ``taskId``) spare the caller a copy of ``fields``.
    """
    get = fields.get
    task_id, status, progress = get("taskId"), get("taskStatus"), get("progress", 0)
    if default_id is not None and (task_id == default_id or task_id in (None, "")):
        task_id = default_id  # the caller's string: a stream keeps one copy of its id
    task_type, result_code = get("taskType"), get("taskResultCode")
    content_result_code, download_url, user_id = (
        get("resultCode"),
        get("downloadUrl"),
        get("userId"),
    )
    if not (
        type(task_id) is str
        and type(status) in _ENUM_KEY
        and status in _TASK_STATUS
        and type(progress) is int
        and 0 <= progress <= 100
        and type(task_type) in _ENUM_KEY_OR_NONE
        and task_type in _TASK_TYPE
        and type(result_code) in _ENUM_KEY_OR_NONE
        and result_code in _RESULT_CODE
        and type(content_result_code) in (int, _NONE_TYPE)
        and type(download_url) in (str, _NONE_TYPE)
        and type(user_id) in (str, _NONE_TYPE)
    ):
        return None
    created_at = _fast_time(get("createTime"))
    started_at = _fast_time(get("startTime"))
    ended_at = _fast_time(get("endTime"))
    if raw_files is _MISSING:
        raw_files = get("taskInfos")
    if raw_files is None:
        files: tuple[FileResult, ...] | None = ()
    elif type(raw_files) is list:
        files = _fast_files(raw_files)
    else:
        return None  # one object instead of a list: the converter's case
    if files is None or created_at is _MISSING or started_at is _MISSING or ended_at is _MISSING:
        return None
    # Positional, in TaskInfo's field order (the equivalence tests would catch a change).
    return TaskInfo(
        task_id,
        _TASK_STATUS[status],  # type: ignore[arg-type]
        progress,
        _TASK_TYPE[task_type],
        _RESULT_CODE[result_code],
        content_result_code,
        created_at,
        started_at,
        ended_at,
        download_url or None,
        intern(user_id) if user_id else None,  # one user's: one string for all tasks
        files,
    )


def _describe(error: Exception) -> str:
    if isinstance(error, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(error, path="$"))
    return str(error)


def is_success_code(code: object) -> bool:
    """Whether a body's ``code`` means success (``0`` or ``"0"``; absent counts as success)."""
    return code is None or (not isinstance(code, bool) and code in (0, "0"))


def parse_task_detail(payload: object, *, task_id: str, shortcut: bool = True) -> TaskInfo:
    """Parse a successful ``taskDetail`` body of either documented shape.

    Args:
        payload: The decoded JSON body.
        task_id: The id that was asked for; filled in when the body omits it.
        shortcut: Build the usual answer directly (see ``_fast_task_info``); False
            sends everything through the converter (property tests compare the two).

    Raises:
        ProtocolError: If the body has neither shape, a value has the wrong type,
            or it describes another task.
    """
    # `type(...) is dict` first: a decoded answer is one, and the ABC check costs more.
    if type(payload) is not dict and not isinstance(payload, Mapping):
        raise exc.ProtocolError(f"expected a JSON object, got {type(payload).__name__}")
    info = _shortcut(payload, task_id) if shortcut else None
    if info is None:
        info = _converted(payload, task_id)
    if info.task_id != task_id:
        # The other id is not quoted: this layer cannot tell an echoed secret from an id.
        raise exc.ProtocolError(f"asked for task {task_id!r}, the answer describes another task")
    return info


def _shortcut(payload: Mapping[str, Any], task_id: str) -> TaskInfo | None:
    """The usual answer (either shape) built without the converter, or ``None``."""
    envelope = payload.get("taskInfo")
    if envelope is None:
        envelope = payload.get("jobInfo")
    if type(envelope) is not dict or "taskStatus" not in envelope:
        return None
    raw_files = payload["taskInfos"] if "taskInfos" in payload else envelope.get("taskInfos")
    return _fast_task_info(envelope, raw_files, task_id)  # uncopied


def _converted(payload: Mapping[str, Any], task_id: str) -> TaskInfo:
    """Any answer through the full converter: its value, or the ProtocolError saying why not."""
    envelope = payload.get("taskInfo")
    if envelope is None:
        envelope = payload.get("jobInfo")
        data = payload.get("data")
        if envelope is None and isinstance(data, Mapping):  # the batch-job family nests once more
            payload, envelope = data, data.get("jobInfo")
            if isinstance(envelope, Mapping):
                # Batch jobs number their types 1-7 (copy, delete, …): not share-task types.
                envelope = {k: v for k, v in envelope.items() if k != "taskType"}
                if "startTime" not in envelope and "beginTime" in envelope:
                    envelope["startTime"] = envelope["beginTime"]
    if type(envelope) is not dict and not isinstance(envelope, Mapping):
        raise exc.ProtocolError(
            "task detail has neither 'taskInfo' (older shape) nor 'jobInfo' (current shape)"
        )
    fields: dict[str, Any] = dict(envelope)
    if fields.get("taskId") in (None, ""):
        fields["taskId"] = task_id
    if "taskStatus" not in fields and "status" in fields:  # batch jobs say `status`
        fields["taskStatus"] = fields["status"]
    if "taskInfos" in payload:
        fields["taskInfos"] = payload["taskInfos"]
    return _structure_task_info(fields)


def takes_shortcut(payload: object, *, task_id: str) -> bool:
    """Whether :func:`parse_task_detail` builds this answer without the converter."""
    return isinstance(payload, Mapping) and _shortcut(payload, task_id) is not None


def _structure_task_info(fields: dict[str, Any]) -> TaskInfo:
    """The full, validated conversion; every unusual answer ends up here."""
    try:
        return converter.structure(fields, TaskInfo)
    except Exception as error:  # noqa: BLE001 - cattrs raises several types; all mean "wrong shape"
        raise exc.ProtocolError(f"task detail does not match the API: {_describe(error)}") from None


# --- batch jobs ----------------------------------------------------------------------------


def job_path(job_id: str) -> str:
    """The detail path of a job (``JobRef`` keeps ``/`` out of the id; the transport encodes it)."""
    return _JOB_PATH_PREFIX + job_id


def _job_fields(entry: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A ``jobInfo`` object (plus ``extra`` keys) with either spelling of status and start."""
    fields: dict[str, Any] = {**entry, **(extra or {})}
    if "status" not in fields and "taskStatus" in fields:
        fields["status"] = fields["taskStatus"]
    if fields.get("beginTime") in (None, "") and fields.get("startTime") not in (None, ""):
        fields["beginTime"] = fields["startTime"]
    return fields


def _structure_job(fields: dict[str, Any], what: str) -> JobInfo:
    try:
        return converter.structure(fields, JobInfo)
    except Exception as error:  # noqa: BLE001 - cattrs raises several types; all mean "wrong shape"
        raise exc.ProtocolError(f"{what} does not match the API: {_describe(error)}") from None


def parse_job_detail(payload: object, *, job_id: str) -> JobInfo:
    """Parse a successful ``GET /koodrive/ose/v1/{job_id}`` body.

    ``data.jobInfo`` holds the job, ``data.taskInfos`` its files and
    ``data.uncompressedFileList`` a decompression's entries. The same keys without the
    ``data`` envelope are read too.

    Args:
        payload: The decoded JSON body.
        job_id: The id that was asked for; filled in when the body omits it.

    Raises:
        ProtocolError: If the body holds no job, a value has the wrong type, or it
            describes another job.
    """
    if not isinstance(payload, Mapping):
        raise exc.ProtocolError(f"expected a JSON object, got {type(payload).__name__}")
    data = payload.get("data")
    holder: Mapping[str, Any] = data if isinstance(data, Mapping) else payload
    entry = holder.get("jobInfo")
    if not isinstance(entry, Mapping):
        raise exc.ProtocolError("job detail has no 'data.jobInfo' object")
    extra = {key: holder[key] for key in ("taskInfos", "uncompressedFileList") if key in holder}
    fields = _job_fields(entry, extra)
    if fields.get("taskId") in (None, ""):
        fields["taskId"] = job_id
    info = _structure_job(fields, "job detail")
    if info.task_id != job_id:
        raise exc.ProtocolError(f"asked for job {job_id!r}, the answer describes another job")
    return info


def parse_job_list(payload: object) -> list[JobInfo]:
    """Parse a successful ``GET /koodrive/ose/v1/jobs`` body: ``data`` is a list of jobs.

    A body without ``data`` (or with ``null``) is an empty page.

    Raises:
        ProtocolError: If ``data`` is not a list of job objects each with its id.
    """
    data = payload.get("data") if isinstance(payload, Mapping) else None
    if data is None:
        return []
    if not isinstance(data, list):
        raise exc.ProtocolError(f"job list: 'data' is not a list but {type(data).__name__}")
    jobs = []
    for index, entry in enumerate(data):
        if not isinstance(entry, Mapping):
            raise exc.ProtocolError(f"job list: entry {index} is not an object")
        if entry.get("taskId") in (None, ""):
            raise exc.ProtocolError(f"job list: entry {index} has no taskId")
        jobs.append(_structure_job(_job_fields(entry), f"job list entry {index}"))
    return jobs


def job_list_query(
    *, offset: int, limit: int, job_type: JobType | None, status: TaskStatus | None
) -> tuple[tuple[str, str], ...]:
    """The query of one page of ``GET /koodrive/ose/v1/jobs`` (no empty parameter sent)."""
    query = [("offset", str(offset)), ("limit", str(limit))]
    if job_type is not None:
        query.append(("type", str(int(job_type))))
    if status is not None:
        query.append(("status", str(int(status))))
    return tuple(query)


def job_body(request: JobRequest) -> dict[str, object]:
    """The JSON body of ``POST /koodrive/ose/v1/jobs``."""
    info: dict[str, object] = {"srcContainerId": request.container_id}
    if request.files:
        info["fileInfo"] = [
            {"fileId": file_id} if path is None else {"fileId": file_id, "filePath": path}
            for file_id, path in request.files
        ]
    if request.new_file_path is not None:
        info["newFilePath"] = request.new_file_path
    if request.extract_paths:
        info["uncompressFilePaths"] = list(request.extract_paths)
    body: dict[str, object] = {
        "taskType": int(request.job_type),
        "dstContainerId": request.target_container_id,
        "taskInfo": info,
    }
    if request.action_type is not None:
        body["actionType"] = int(request.action_type)
    if request.password is not None:
        body["password"] = request.password
    return body


def cancel_job_body(job_id: str) -> dict[str, object]:
    """The JSON body of ``POST /koodrive/ose/v1/cancel``."""
    return {"jobId": job_id}


def parse_acknowledgement(payload: object) -> None:
    """A success that carries nothing to read (a cancel): the transport checked ``code``."""


def parse_created_task_id(payload: object) -> str:
    """Parse a successful create-task body into the new task's id.

    Raises:
        ProtocolError: If no task id is present.
    """
    if isinstance(payload, Mapping):
        for key in ("taskId", "data"):
            value = payload.get(key)
            if isinstance(value, Mapping):
                value = value.get("taskId") or value.get("jobId")
            if value not in (None, "") and not isinstance(value, (bool, Mapping, list, float)):
                return str(value)
    raise exc.ProtocolError("create-task answer holds no task id")


def share_task_body(
    *,
    task_type: TaskType,
    share_id: str,
    container_id: str,
    file_ids: tuple[str, ...],
    zip_name: str | None,
    target: tuple[str, str] | None,
    kdstoken: str | None,
) -> dict[str, object]:
    """The JSON body of ``POST /share/tasks``."""
    body: dict[str, object] = {
        "taskType": int(task_type),
        "containerId": container_id,
        "fileIds": list(file_ids),
        "shareId": share_id,
    }
    if zip_name is not None:
        body["zipName"] = zip_name
    if target is not None:
        body["targetFileId"] = {"containerId": target[0], "fileId": target[1]}
    if kdstoken is not None:
        body["kdstoken"] = kdstoken
    return body


def task_detail_body(share_id: str, task_id: str, kdstoken: str | None) -> dict[str, object]:
    """The JSON body of ``POST /share/taskDetail``."""
    body: dict[str, object] = {"taskId": task_id, "shareId": share_id}
    if kdstoken is not None:
        body["kdstoken"] = kdstoken
    return body


# json.dumps builds a new JSONEncoder on every call when given separators; one is enough.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode_body(body: Mapping[str, object]) -> bytes:
    """``body`` as compact UTF-8 JSON, non-ASCII characters kept as they are.

    Raises:
        InvalidArgumentError: A string holds a lone surrogate (no UTF-8 for it).
    """
    return _utf8(_ENCODER.encode(body))


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        # The text may hold a kdstoken: say what is wrong, not where.
        raise exc.InvalidArgumentError(
            "a request value is not valid text: it holds a lone surrogate (\\ud800-\\udfff), "
            "which has no UTF-8 encoding"
        ) from None


# --- errors -----------------------------------------------------------------------------

_CODE_ERRORS: dict[str, type[exc.APIError]] = {
    "13000102": exc.InvalidParameterError,
    "13000301": exc.NotFoundError,
    "13000309": exc.NotFoundError,
    "13000410": exc.PermissionDeniedError,
}
_HINTS: dict[type[exc.APIError], str] = {
    exc.AuthenticationError: "check the access token or the app id, secret and user id",
    exc.ClockSkewError: "the request's X-Date was rejected: synchronise this machine's clock (NTP)",
    exc.PermissionDeniedError: "these credentials have no access to this share or space",
    exc.NotFoundError: "check the ids (share and task, or job); ended tasks may have been purged",
    exc.InvalidParameterError: "check the request's arguments",
    exc.RateLimitedError: "the server throttles this client: slow down",
    exc.ServerError: "the server failed: retry later",
}
_GATEWAY_AUTH = frozenset({"0301", "0302", "0303", "0304", "0305", "0307"})
_SKEW_WORDS = ("x-date", "timestamp", "clock", "time skew", "expired date")


def _error_parts(
    payload: object, redact: Callable[[str], str]
) -> tuple[str | None, str | None, str | None]:
    """(code, message, request id) from any documented error body; never raises.

    Every part is redacted before it is cut to length: a server may echo a secret in
    any of them, and a cut first could leave part of one behind.
    """
    if not isinstance(payload, Mapping):
        return None, None, None
    nested = payload.get("error")
    if isinstance(nested, Mapping):
        payload = {**payload, **nested}
    code = payload.get("code", payload.get("error_code"))
    message = payload.get("msg", payload.get("error_msg", payload.get("message")))
    request_id = payload.get("request_id")

    def text(value: object) -> str | None:
        if isinstance(value, bool) or value is None:
            return None
        return redact(str(value))[:500] if isinstance(value, (str, int)) else None

    return text(code), text(message), text(request_id)


def _gateway_number(code: str | None) -> str | None:
    """``"0303"`` from ``"APIGW.0303"`` or ``"APIG.0303"``."""
    prefix, dot, number = (code or "").partition(".")
    return number if dot and prefix in ("APIGW", "APIG") else None


def _error_class(status: int, code: str | None, message: str | None) -> type[exc.APIError]:  # noqa: PLR0911 - one rule per line reads best
    gateway = _gateway_number(code)
    # APIGW.0308 is throttling, inside the 03xx range the gateway otherwise uses for auth.
    if status == 429 or gateway == "0308":
        return exc.RateLimitedError
    if status == 401 or (gateway in _GATEWAY_AUTH and status != 403):
        lowered = (message or "").lower()
        if any(word in lowered for word in _SKEW_WORDS):
            return exc.ClockSkewError
        return exc.AuthenticationError
    if status >= 500:
        return exc.ServerError
    if code in _CODE_ERRORS:
        return _CODE_ERRORS[code]
    if status == 403:
        return exc.PermissionDeniedError
    if status == 404:
        return exc.NotFoundError
    return exc.APIError


def api_error(
    status: int,
    payload: object,
    *,
    trace_id: str | None,
    retry_after: float | None = None,
    operation: str = "request",
    redact: Callable[[str], str] = str,
) -> exc.APIError:
    """Build the typed error for an error answer.

    Args:
        status: The HTTP status (200 for a success status whose ``code`` is non-zero).
        payload: The decoded JSON body, or ``None`` when it was not JSON.
        trace_id: The request's ``X-Traceid``.
        retry_after: Seconds from a ``Retry-After`` header, if any.
        operation: What was attempted, for the message.
        redact: Removes secrets a server may echo back in its message.
    """
    code, server_message, request_id = _error_parts(payload, redact)
    cls = _error_class(status, code, server_message)
    details = ", ".join(
        part
        for part in (f"HTTP {status}", code and f"code {code}", trace_id and f"trace id {trace_id}")
        if part
    )
    message = f"{operation} failed ({details})"
    if server_message:
        message += f": {server_message}"
    hint = _HINTS.get(cls)
    if cls is exc.RateLimitedError and retry_after is not None:
        hint = f"{hint}; the server asked for {retry_after:g} s"
    if hint:
        message += f". {hint}"
    kwargs: dict[str, Any] = {
        "http_status": status,
        "code": code,
        "server_message": server_message,
        "trace_id": trace_id,
        "request_id": request_id,
    }
    if cls is exc.RateLimitedError:
        return exc.RateLimitedError(message, retry_after=retry_after, **kwargs)
    return cls(message, **kwargs)


# --- headers --------------------------------------------------------------------------------
# Each reads any string a server may send and yields a value or None: never an exception.


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or ``None``."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        moment = parse_http_date(value)
        if moment is None:
            return None
        try:
            seconds = (moment - now).total_seconds()
        except OverflowError:  # a date at the ends of the calendar
            return None
    if math.isnan(seconds):
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP date (``Retry-After``, ``Date``) as an aware datetime, or ``None``."""
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def content_type(headers: Mapping[str, str]) -> str:
    """The ``Content-Type`` for a message: its media type, at most 60 printable characters."""
    value = headers.get("Content-Type")
    if not value:
        return "no content type"
    media = value.split(";", 1)[0].strip()
    return "".join(c for c in media[:60] if c.isprintable()) or "no content type"


def redirect_host(location: str | None) -> str | None:
    """The host a ``Location`` header points to, if it names one."""
    if not location:
        return None
    try:
        host = URL(location).host
    except (TypeError, ValueError):
        return None
    return "".join(c for c in (host or "")[:100] if c.isprintable()) or None


def decode_json(raw: bytes) -> tuple[object, bool]:
    """``(payload, True)`` for a body that is JSON, else ``(None, False)``."""
    try:
        # json.loads(bytes) first sniffs the encoding; a UTF-8 object (every real
        # answer) skips that. The same decoding json.loads would pick, errors included.
        if raw[:1] == b"{" and raw[1:2] != b"\x00":
            return json.loads(raw.decode("utf-8", "surrogatepass")), True
        return (json.loads(raw), True) if raw else (None, False)
    except (ValueError, RecursionError):
        return None, False


# A real answer is one gzip member; concatenated files make a few. Each member costs a
# fresh inflater and a copy of the input left after it (zlib's unused_data), so a body
# of tens of thousands of empty members, decoding to nothing, held the event loop for
# seconds (quadratic copying) while the size cap never saw a byte: more is damage.
_MAX_GZIP_MEMBERS = 64


def decompress_capped(
    data: bytes,
    coding: str,
    cap: int,
    too_large: Callable[[], Exception],
    damaged: Callable[[], Exception],
) -> bytes:
    """``data`` decoded from gzip or deflate, refused as soon as it grows past ``cap``.

    Never inflates more than ``cap`` + one step: a decompression bomb costs what its
    first ``cap`` bytes cost, however far it would expand. A gzip body of more than
    ``_MAX_GZIP_MEMBERS`` members is refused as damaged.
    """
    if coding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif data[:1] and data[0] & 0x0F == 8:  # deflate as RFC 1950 says: a zlib stream
        wbits = zlib.MAX_WBITS
    else:  # raw deflate, as some servers send it
        wbits = -zlib.MAX_WBITS
    out: list[bytes] = []
    size = 0
    pending = data
    members = 0
    try:
        while pending:
            members += 1
            if members > _MAX_GZIP_MEMBERS:
                raise damaged()
            inflater = zlib.decompressobj(wbits)
            while pending:
                chunk = inflater.decompress(pending, cap + 1 - size)
                size += len(chunk)
                if size > cap:
                    raise too_large()
                out.append(chunk)
                pending = inflater.unconsumed_tail
                if not chunk and pending:
                    raise damaged()  # no progress: not a stream we can read
            if not inflater.eof:
                raise damaged()  # truncated
            pending = inflater.unused_data  # gzip may hold several members
            if pending and wbits != 16 + zlib.MAX_WBITS:
                raise damaged()  # trailing garbage after a deflate stream
    except zlib.error:
        raise damaged() from None
    return b"".join(out)
