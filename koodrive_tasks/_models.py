"""Value objects describing a KooDrive task: what the wire format is parsed into."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Union

import attrs

from ._redact import redact_url, secret_repr
from ._validate import is_text
from .exceptions import InvalidArgumentError


class TaskStatus(enum.IntEnum):
    """Life-cycle state of a task (``taskStatus``)."""

    PENDING = 0
    PROCESSING = 1
    COMPLETED = 2
    CANCELED = 3

    @property
    def is_terminal(self) -> bool:
        """Whether the task will not change any more."""
        return self in (TaskStatus.COMPLETED, TaskStatus.CANCELED)


class TaskResultCode(enum.IntEnum):
    """Outcome of a completed task (``taskResultCode``)."""

    ALL_SUCCEEDED = 1
    PARTIALLY_FAILED = 2
    ALL_FAILED = 3


class TaskType(enum.IntEnum):
    """Kind of share task (``taskType``)."""

    PACKAGE_DOWNLOAD = 1
    DUMP = 2


class FileStatus(enum.IntEnum):
    """Per-file result inside a task (``taskInfos[].status``, sent as a string)."""

    PENDING = 0
    SUCCEEDED = 1
    FAILED = 2


# Not slotted: a frozen slotted class sets each field through object.__setattr__, which
# made building the TaskInfo of every poll 1.6x dearer (15k vs 10k instructions,
# valgrind); a frozen dict class writes its __dict__ directly. ~100 bytes more each.
@attrs.frozen(slots=False)
class FileResult:
    """What happened to one file of a task.

    Attributes:
        file_id: The source file's id.
        status: Pending, succeeded or failed.
        new_file_id: The id of the copy made by a dump task, if any.
        src_container_id: The container the file came from, if reported.
    """

    file_id: str
    status: FileStatus
    new_file_id: str | None = None
    src_container_id: str | None = None


@attrs.frozen(slots=False)  # see FileResult
class TaskInfo:
    """A snapshot of one task, parsed from either documented response shape.

    Attributes:
        task_id: The task's id.
        status: Where the task is in its life cycle.
        progress: Percent done, 0 to 100.
        task_type: Package download or dump, if reported.
        result_code: The outcome once completed; ``None`` before (the wire's ``0``).
        content_result_code: The content's processing result (``resultCode``), undocumented.
        created_at: When the task was created (naive: the API states no time zone).
        started_at: When processing started, or ``None`` before then.
        ended_at: When the task ended, or ``None`` before then.
        download_url: The package link of a completed package-download task. A secret
            until used: its query string is never shown in ``repr``.
        user_id: The owner, if reported.
        files: Per-file results (shape B only; empty otherwise).
    """

    task_id: str
    status: TaskStatus
    progress: int = 0
    task_type: TaskType | None = None
    result_code: TaskResultCode | None = None
    content_result_code: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    download_url: str | None = attrs.field(default=None, repr=redact_url)
    user_id: str | None = None
    files: tuple[FileResult, ...] = ()

    @property
    def is_terminal(self) -> bool:
        """Whether the task has completed or been canceled."""
        return self.status.is_terminal

    @property
    def failed_files(self) -> tuple[FileResult, ...]:
        """The per-file results that report failure."""
        return tuple(f for f in self.files if f.status is FileStatus.FAILED)


@attrs.frozen
class ProgressUpdate:
    """One observed change of a task, as yielded by iterating a ``TaskWaiter``.

    Attributes:
        status: The task's status at this observation.
        progress: Percent done at this observation.
        info: The full snapshot.
    """

    status: TaskStatus
    progress: int
    info: TaskInfo

    @classmethod
    def of(cls, info: TaskInfo) -> ProgressUpdate:
        """Build the update describing ``info``."""
        return cls(status=info.status, progress=info.progress, info=info)

    def to_dict(self) -> dict[str, object]:
        """The update as JSON-ready data: ``task_id``, ``status`` (a word), ``progress``."""
        return {
            "task_id": self.info.task_id,
            "status": self.status.name.lower(),
            "progress": self.progress,
        }


@attrs.frozen
class TargetFolder:
    """Where a dump task saves files (``targetFileId``).

    Attributes:
        container_id: The destination space.
        file_id: The destination folder; ``"root"`` for the space's root folder.
    """

    container_id: str
    file_id: str = "root"


def _check_id(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"{name} must be a non-empty string, got {value!r}")
    if not is_text(value):
        raise InvalidArgumentError(f"{name} is not valid text (a lone surrogate)")


def _check_kdstoken(value: object) -> None:
    # Never quoted: it is a secret.
    if not isinstance(value, str):
        raise InvalidArgumentError(f"kdstoken must be a string, not {type(value).__name__}")
    if not is_text(value):
        raise InvalidArgumentError("kdstoken is not valid text (a lone surrogate)")


# Not slotted, for the reason given at FileResult: refs are built for every one-shot call.
@attrs.frozen(slots=False, cache_hash=True)
class TaskRef:
    """Which share task to wait for.

    Attributes:
        share_id: The share the task belongs to.
        task_id: The task's id.
        kdstoken: The share link's temporary token, if any (hidden in ``repr``; an
            empty one counts as none).

    Raises:
        InvalidArgumentError: If an id is not a non-empty string, or the kdstoken is not
            a string (it is never quoted).
    """

    share_id: str
    task_id: str
    kdstoken: str | None = attrs.field(default=None, repr=secret_repr)

    def __attrs_post_init__(self) -> None:
        # One check for the usual ids; the detailed ones only to say what is wrong.
        share_id, task_id, kdstoken = self.share_id, self.task_id, self.kdstoken
        if not (
            type(share_id) is str
            and type(task_id) is str
            and share_id.isascii()
            and task_id.isascii()
            and share_id.strip()
            and task_id.strip()
        ):
            _check_id("share_id", share_id)
            _check_id("task_id", task_id)
        if kdstoken is not None:
            if kdstoken == "":
                object.__setattr__(self, "kdstoken", None)  # an empty kdstoken is none
            else:
                _check_kdstoken(kdstoken)

    @classmethod
    def of(cls, value: TaskRef | tuple[str, str] | tuple[str, str, str | None]) -> TaskRef:
        """Accept a ``TaskRef`` or a ``(share_id, task_id[, kdstoken])`` tuple."""
        if isinstance(value, TaskRef):
            return value
        if isinstance(value, tuple) and len(value) in (2, 3):
            return cls(*value)
        raise InvalidArgumentError(
            f"expected a TaskRef or a (share_id, task_id) tuple, got {type(value).__name__}"
        )


TaskLike = Union[TaskRef, tuple[str, str], tuple[str, str, Union[str, None]]]  # noqa: UP007 - a runtime alias on 3.10
"""What names a task where many are given: a :class:`TaskRef` or a ``(share_id, task_id[, kdstoken])`` tuple."""
