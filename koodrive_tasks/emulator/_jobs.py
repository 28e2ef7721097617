"""Batch jobs: the create body checked per job type, the list query, and one emulated job.

The rules follow ``notes/jobs-api.md``; where the reference is silent the emulator's
choice is named there and here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from .._models import FileStatus
from ._download import file_contents
from ._http import InvalidRequest, text_field
from ._scripts import TaskScript
from ._tasks import Lifecycle

COPY, DELETE, MOVE, RESTORE, DECOMPRESS, PACKAGE, EMPTY_RECYCLE_BIN = range(1, 8)
JOB_TYPES = range(1, 8)
ACTIONS: dict[int, tuple[int, ...]] = {
    COPY: (101,),
    DELETE: (201, 202),
    MOVE: (301,),
    RESTORE: (),
    DECOMPRESS: (501, 502, 503),
    PACKAGE: (),
    EMPTY_RECYCLE_BIN: (701,),
}
"""The ``actionType`` values each ``taskType`` takes (none for restore and package)."""
# Not documented: what the service does without an actionType. These are the emulator's.
DEFAULT_ACTIONS = {COPY: 101, DELETE: 201, MOVE: 301, DECOMPRESS: 502, EMPTY_RECYCLE_BIN: 701}
LOGICAL_DELETE, VIEW_ARCHIVE, EXTRACT_SOME = 201, 501, 503
MAX_FILES = 1000
_NAMES = {
    COPY: "copy",
    DELETE: "delete",
    MOVE: "move",
    RESTORE: "restore",
    DECOMPRESS: "decompress",
    PACKAGE: "package",
    EMPTY_RECYCLE_BIN: "empty recycle bin",
}
# What a full extraction (502) finds in any archive: a folder, a file in it, a file at the top.
_ARCHIVE_ENTRIES = ("docs/", "docs/readme.txt", "data.bin")
STATUS_RANGE = range(4)
MAX_LIMIT = 100


def _integer(value: object) -> int | None:
    """``value`` if it is a JSON integer (not a bool), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@attrs.frozen
class JobRequest:
    """A create body that passed the checks.

    Attributes:
        job_type: ``taskType``, 1 to 7.
        action_type: ``actionType``, defaulted per type; 0 for restore and package.
        src_container_id: The source space.
        dst_container_id: The target space.
        file_ids: The files (none when emptying the recycle bin).
        file_paths: Each file's ``filePath``, ``""`` when not given.
        new_file_path: ``newFilePath``, ``""`` when not given.
        uncompress_paths: Paths to extract (partial decompression).
    """

    job_type: int
    action_type: int
    src_container_id: str
    dst_container_id: str
    file_ids: tuple[str, ...] = ()
    file_paths: tuple[str, ...] = ()
    new_file_path: str = ""
    uncompress_paths: tuple[str, ...] = ()


def parse_create(payload: Mapping[str, Any]) -> JobRequest:
    """Check a ``POST /koodrive/ose/v1/jobs`` body against the rules of its job type.

    Raises:
        InvalidRequest: With code 13000102 and what is wrong (never echoing ``password``).
    """
    job_type = _integer(payload.get("taskType"))
    if job_type is None or job_type not in JOB_TYPES:
        raise InvalidRequest("taskType must be an integer from 1 to 7")
    action_type = _action(job_type, payload.get("actionType", None))
    dst = text_field(dict(payload), "dstContainerId")
    password = payload.get("password")
    if password is not None and not isinstance(password, str):
        raise InvalidRequest("password must be a string")
    info = payload.get("taskInfo")
    if not isinstance(info, dict):
        raise InvalidRequest("taskInfo must be an object")
    src = text_field(info, "srcContainerId")
    file_ids, file_paths = _files(job_type, action_type, info.get("fileInfo"))
    new_path = info.get("newFilePath")
    if new_path is not None and not isinstance(new_path, str):
        raise InvalidRequest("taskInfo.newFilePath must be a string")
    paths = info.get("uncompressFilePaths")
    if paths is not None and (
        not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths)
    ):
        raise InvalidRequest("taskInfo.uncompressFilePaths must be a list of non-empty strings")
    if action_type == EXTRACT_SOME and not paths:
        raise InvalidRequest("partial decompression (actionType 503) needs uncompressFilePaths")
    return JobRequest(
        job_type=job_type,
        action_type=action_type,
        src_container_id=src,
        dst_container_id=dst,
        file_ids=file_ids,
        file_paths=file_paths,
        new_file_path=new_path or "",
        uncompress_paths=tuple(paths or ()) if action_type == EXTRACT_SOME else (),
    )


def _action(job_type: int, value: object) -> int:
    allowed = ACTIONS[job_type]
    if value is None:
        return DEFAULT_ACTIONS.get(job_type, 0)
    action = _integer(value)
    if action is None or action not in allowed:
        expected = ", ".join(map(str, allowed)) if allowed else "none"
        raise InvalidRequest(
            f"actionType {value!r} does not apply to taskType {job_type}: {expected}"
        )
    return action


def _files(
    job_type: int, action_type: int, value: object
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if job_type == EMPTY_RECYCLE_BIN and value in (None, []):
        return (), ()
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_FILES:
        raise InvalidRequest(f"taskInfo.fileInfo must be a list of 1 to {MAX_FILES} objects")
    if job_type == DECOMPRESS and len(value) != 1:
        raise InvalidRequest("decompression takes exactly one archive in taskInfo.fileInfo")
    ids, paths = [], []
    for item in value:
        if not isinstance(item, dict):
            raise InvalidRequest("each taskInfo.fileInfo entry must be an object")
        ids.append(text_field(item, "fileId"))
        paths.append(text_field(item, "filePath", required=action_type == LOGICAL_DELETE))
    return tuple(ids), tuple(paths)


@attrs.frozen
class ListQuery:
    """``GET /koodrive/ose/v1/jobs`` parameters that passed the checks.

    Attributes:
        job_type: Only jobs of this type, or ``None`` for all.
        status: Only jobs in this status, or ``None`` for all.
        offset: How many matching jobs to skip.
        limit: How many to return at most, 1 to 100.
    """

    job_type: int | None
    status: int | None
    offset: int
    limit: int


def parse_list_query(query: Mapping[str, str]) -> ListQuery:
    """Check the list's query: ``type`` and ``status`` optional, ``offset`` and ``limit`` required.

    Raises:
        InvalidRequest: On a missing, non-integer or out-of-range parameter.
    """
    job_type = _query_int(query, "type", JOB_TYPES)
    status = _query_int(query, "status", STATUS_RANGE)
    offset = _query_int(query, "offset", None)
    limit = _query_int(query, "limit", range(1, MAX_LIMIT + 1))
    if offset is None or limit is None:
        raise InvalidRequest("offset and limit are required")
    return ListQuery(job_type, status, offset, limit)


def _query_int(query: Mapping[str, str], name: str, allowed: range | None) -> int | None:
    """The parameter as an integer in ``allowed`` (``None``: any >= 0); ``None`` if absent.

    An empty value counts as absent, as Java services read ``type=`` (the reference
    service's parameters are typed Integer; that reading is the emulator's guess).
    """
    text = query.get(name)
    if not text:
        return None
    if not (text.isascii() and text.removeprefix("-").isdigit()):
        raise InvalidRequest(f"{name} must be an integer, not {text!r}")
    value = int(text)
    if allowed is None and value < 0:
        raise InvalidRequest(f"{name} must be >= 0")
    if allowed is not None and value not in allowed:
        raise InvalidRequest(f"{name} must be from {allowed.start} to {allowed.stop - 1}")
    return value


class Job(Lifecycle):
    """One batch job: its request, and what it reports as its life cycle unfolds."""

    __slots__ = (
        "action_type",
        "dst_container_id",
        "file_paths",
        "job_type",
        "new_file_path",
        "src_container_id",
        "task_name",
        "uncompress_paths",
    )

    def __init__(
        self,
        *,
        task_id: str,
        user_id: str,
        request: JobRequest,
        script: TaskScript,
        created_at: float,
        created_wall: datetime,
    ) -> None:
        super().__init__(
            task_id=task_id,
            user_id=user_id,
            file_ids=request.file_ids,
            script=script,
            created_at=created_at,
            created_wall=created_wall,
        )
        self.job_type = request.job_type
        self.action_type = request.action_type
        self.src_container_id = request.src_container_id
        self.dst_container_id = request.dst_container_id
        self.file_paths = request.file_paths
        self.new_file_path = request.new_file_path
        self.uncompress_paths = request.uncompress_paths
        count = len(request.file_ids)
        name = _NAMES[request.job_type]
        self.task_name = f"{name} {count} item{'s' if count != 1 else ''}" if count else name

    @property
    def is_package(self) -> bool:
        """Whether this is a package-download job."""
        return self.job_type == PACKAGE

    @property
    def package_name(self) -> str:
        """The zip's name: the reference has no name field for package jobs."""
        return f"package-{self.task_id}.zip"

    def new_file_id(self, file_id: str) -> str | None:
        """The id a succeeded file has afterwards (``newFileId``).

        Returns:
            A new id for a copy, the file's own for a move or restore, else ``None``.
        """
        if self.job_type == COPY:
            return f"{file_id}-copy-{self.task_id[-8:]}"
        if self.job_type in (MOVE, RESTORE):
            return file_id
        return None

    def uncompressed_entries(self, completed: bool) -> list[dict[str, object]]:
        """``uncompressedFileList``: what the archive held.

        Returns:
            The entries once a decompression completed and its archive succeeded;
            empty before, and for other jobs.
        """
        if self.job_type != DECOMPRESS or not completed:
            return []
        if FileStatus.SUCCEEDED not in self.final_statuses():
            return []
        names = self.uncompress_paths or _ARCHIVE_ENTRIES
        entries: list[dict[str, object]] = []
        for index, name in enumerate(names):
            folder = name.endswith("/")
            entry: dict[str, object] = {
                "name": name,
                "type": 2 if folder else 1,  # 1 content, 2 directory
                "fileSize": 0 if folder else len(file_contents(name)),
            }
            if self.action_type != VIEW_ARCHIVE:  # viewing extracts nothing
                entry["containerId"] = self.dst_container_id
                entry["fileId"] = f"{self.task_id[-8:]}-x{index}"
            entries.append(entry)
        return entries
