"""Value objects describing KooDrive share tasks and batch jobs: what the wire format is parsed into."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Union

import attrs

from ._redact import redact_url, secret_repr
from ._validate import is_text, require_text
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


class JobType(enum.IntEnum):
    """Kind of batch job (the job's ``taskType``)."""

    COPY = 1
    DELETE = 2
    MOVE = 3
    RESTORE = 4
    """Restore files from the recycle bin."""
    DECOMPRESS = 5
    """Cloud decompression of one archive."""
    PACKAGE_DOWNLOAD = 6
    EMPTY_RECYCLE_BIN = 7
    """Available to allow-listed users only, as the reference says."""


class ActionType(enum.IntEnum):
    """What exactly a batch job does (``actionType``); each belongs to one :class:`JobType`."""

    COPY = 101
    """Copy (and save) files: ``JobType.COPY``."""
    LOGICAL_DELETE = 201
    """Move files to the recycle bin: ``JobType.DELETE``."""
    PERMANENT_DELETE = 202
    """Delete files for good: ``JobType.DELETE``."""
    MOVE = 301
    """``JobType.MOVE``."""
    VIEW_ARCHIVE = 501
    """List an archive's entries without extracting: ``JobType.DECOMPRESS``."""
    EXTRACT_ALL = 502
    """``JobType.DECOMPRESS``."""
    EXTRACT_SOME = 503
    """Extract the given paths only: ``JobType.DECOMPRESS``."""
    EMPTY_RECYCLE_BIN = 701
    """``JobType.EMPTY_RECYCLE_BIN``."""


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


@attrs.frozen(slots=False)  # see FileResult
class UncompressedFile:
    """One entry of an archive a decompression job read (``uncompressedFileList``).

    Attributes:
        name: The entry's full path inside the archive.
        entry_type: ``1`` a file, ``2`` a folder (the reference's numbers; editions send
            them as numbers or strings), or ``None`` if not reported.
        size: Size in bytes, if reported.
        container_id: The space the entry was extracted into (not for ``VIEW_ARCHIVE``).
        file_id: The id of the extracted file (not for ``VIEW_ARCHIVE``).
    """

    name: str
    entry_type: int | None = None
    size: int | None = None
    container_id: str | None = None
    file_id: str | None = None

    @property
    def is_folder(self) -> bool:
        """Whether the entry is a folder."""
        return self.entry_type == 2


@attrs.frozen(slots=False)  # see FileResult
class JobInfo(TaskInfo):
    """A snapshot of one batch job: a :class:`TaskInfo` with the job's own fields.

    The job's ``status`` is :attr:`status`, its ``beginTime`` :attr:`started_at`, its
    ``taskInfos`` :attr:`files`; :attr:`task_type` (the share-task type) is always
    ``None``: the job's type is :attr:`job_type`.

    Attributes:
        job_type: Copy, delete, move, ..., if reported.
        action_type: What exactly the job does, if reported.
        task_name: The name the service gave the job, if any.
        content_num: How many files the job was given, if reported.
        container_id: The job's target space, if reported.
        tenant_id: The tenant, if reported.
        uncompressed_files: A decompression job's archive entries (empty before it
            completes, and for other jobs).
    """

    job_type: JobType | None = None
    action_type: ActionType | None = None
    task_name: str | None = None
    content_num: int | None = None
    container_id: str | None = None
    tenant_id: str | None = None
    uncompressed_files: tuple[UncompressedFile, ...] = ()

    @property
    def job_id(self) -> str:
        """The job's id (also :attr:`task_id`)."""
        return self.task_id


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


def _check_kdstoken(value: object) -> None:
    # Never quoted: it is a secret.
    if not isinstance(value, str):
        raise InvalidArgumentError(f"kdstoken must be a string, not {type(value).__name__}")
    if not is_text(value):
        raise InvalidArgumentError("kdstoken is not valid text (a lone surrogate)")


# Slotted: a wait keeps its ref for as long as it runs, and a hundred thousand of them
# may run at once (a one-shot get_share_task builds none when its request is kept).
@attrs.frozen(weakref_slot=False)
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
            require_text("share_id", share_id)
            require_text("task_id", task_id)
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


@attrs.frozen(weakref_slot=False)  # slotted: see TaskRef
class JobRef:
    """Which batch job to wait for.

    Attributes:
        job_id: The job's id (``taskId`` in its details).

    Raises:
        InvalidArgumentError: If the id is not a non-empty string, or cannot be one
            segment of the detail path (``/``, ``.``, ``..``).
    """

    job_id: str

    def __attrs_post_init__(self) -> None:
        job_id = self.job_id
        if not (type(job_id) is str and job_id.isascii() and job_id.isdigit()):  # the usual id
            require_text("job_id", job_id)
            # The id is a segment of GET /koodrive/ose/v1/{job_id}: it must stay one.
            if "/" in job_id or job_id in (".", ".."):
                raise InvalidArgumentError(
                    f"job_id {job_id!r} cannot be a segment of the request path ('/', '.', '..')"
                )

    @property
    def task_id(self) -> str:
        """The job's id, under the name code generic over tasks and jobs reads."""
        return self.job_id


Ref = Union[TaskRef, JobRef]  # noqa: UP007 - a runtime alias on 3.10
"""A share task or a batch job: what waits, batches and checkpoints are keyed by."""


def ref_of(value: object) -> Ref:
    """Accept a :class:`TaskRef`, a :class:`JobRef` or a ``(share_id, task_id[, kdstoken])`` tuple.

    Raises:
        InvalidArgumentError: For anything else, or a tuple that is not a valid ``TaskRef``.
    """
    if isinstance(value, (TaskRef, JobRef)):
        return value
    if isinstance(value, tuple) and len(value) in (2, 3):
        return TaskRef(*value)
    raise InvalidArgumentError(
        f"expected a TaskRef, a JobRef or a (share_id, task_id) tuple, got {type(value).__name__}"
    )


TaskLike = Union[TaskRef, JobRef, tuple[str, str], tuple[str, str, Union[str, None]]]  # noqa: UP007 - a runtime alias on 3.10
"""What names a task where many are given: a :class:`TaskRef`, a :class:`JobRef` or a
``(share_id, task_id[, kdstoken])`` tuple."""
