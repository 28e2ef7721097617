"""Emulated tasks and their state at a given moment, computed from their scripts.

:class:`Lifecycle` holds what share tasks (:class:`Task`) and batch jobs (``_jobs.Job``)
share: status, progress and per-file results as pure functions of the clock.
"""

from __future__ import annotations

import math
import zlib
from datetime import datetime, timedelta, timezone

import attrs

from .._models import FileStatus, TaskResultCode, TaskStatus, TaskType
from ._scripts import Outcome, TaskScript, make_warp, processing_progress

TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"


@attrs.frozen
class TaskSnapshot:
    """A task's state at one moment.

    Attributes:
        status: Where the task is in its life cycle.
        progress: Integer percent done.
        result_code: The outcome once completed, else ``None`` (``0`` on the wire).
        started: Whether processing has started.
        ended_after_s: Seconds from creation to the end, once ended, else ``None``.

    """

    status: TaskStatus
    progress: int
    result_code: TaskResultCode | None
    started: bool
    ended_after_s: float | None


class Lifecycle:
    """What share tasks and batch jobs share: a script, a clock origin and per-file results.

    Everything that changes is derived from the clock; mutable only through :meth:`cancel`.
    Slotted, since 10,000 of them must be cheap.
    """

    __slots__ = (
        "_final_statuses",
        "canceled_after_s",
        "created_at",
        "created_wall",
        "file_ids",
        "script",
        "task_id",
        "user_id",
        "warp",
    )

    def __init__(
        self,
        *,
        task_id: str,
        user_id: str,
        file_ids: tuple[str, ...],
        script: TaskScript,
        created_at: float,
        created_wall: datetime,
    ) -> None:
        self.task_id = task_id
        self.user_id = user_id
        self.file_ids = file_ids
        self.script = script
        self.created_at = created_at
        self.created_wall = created_wall
        self.canceled_after_s = script.cancel_after_s
        seed = script.noise_seed if script.noise_seed is not None else zlib.crc32(task_id.encode())
        self.warp = make_warp(seed) if script.noise > 0 else None
        self._final_statuses: tuple[FileStatus, ...] | None = None

    @property
    def is_package(self) -> bool:
        """Whether the task makes a zip of its files (a package download)."""
        return False

    @property
    def package_name(self) -> str:
        """The zip's file name, for packages."""
        return f"{self.task_id}.zip"

    @property
    def ends_after_s(self) -> float:
        """Seconds from creation to the end: completion, or an earlier cancel."""
        end = self.script.end_s
        cancel = self.canceled_after_s
        return cancel if cancel is not None and cancel < end else end

    def cancel(self, now: float) -> bool:
        """Cancel the task at ``now`` if it has not ended.

        Returns:
            Whether the task was canceled (``False`` if it had already ended).

        """
        elapsed = max(now - self.created_at, 0.0)
        if elapsed >= self.ends_after_s:
            return False
        self.canceled_after_s = elapsed
        return True

    def snapshot(self, now: float) -> TaskSnapshot:
        """Compute the task's state at monotonic time ``now``."""
        script = self.script
        elapsed = now - self.created_at
        end = self.ends_after_s
        canceled = end < script.end_s
        if elapsed >= end:
            if canceled:
                progress = self._progress_at(end)
                return TaskSnapshot(
                    TaskStatus.CANCELED, progress, None, end > script.pending_s, end
                )
            return TaskSnapshot(
                TaskStatus.COMPLETED, 100, TaskResultCode(self._result().value), True, end
            )
        if elapsed < script.pending_s:
            return TaskSnapshot(TaskStatus.PENDING, 0, None, False, None)
        return TaskSnapshot(TaskStatus.PROCESSING, self._progress_at(elapsed), None, True, None)

    def _progress_at(self, elapsed: float) -> int:
        if elapsed <= self.script.pending_s:
            return 0
        return processing_progress(self.script, self.warp, elapsed - self.script.pending_s)

    def _result(self) -> Outcome:
        # Derived from the files, so the code always agrees with the per-file results.
        statuses = self.final_statuses()
        if not statuses:  # a job without files (emptying the recycle bin) ends as scripted
            return self.script.outcome
        failed = statuses.count(FileStatus.FAILED)
        if failed == 0:
            return Outcome.ALL_SUCCEEDED
        return Outcome.ALL_FAILED if failed == len(statuses) else Outcome.PARTIALLY_FAILED

    def final_statuses(self) -> tuple[FileStatus, ...]:
        """Each file's status once processed, in ``file_ids`` order."""
        if self._final_statuses is None:
            self._final_statuses = self._compute_final_statuses()
        return self._final_statuses

    def _compute_final_statuses(self) -> tuple[FileStatus, ...]:
        ok, failed = FileStatus.SUCCEEDED, FileStatus.FAILED
        outcome = self.script.outcome
        count = len(self.file_ids)
        if outcome is Outcome.ALL_SUCCEEDED:
            return (ok,) * count
        if outcome is Outcome.ALL_FAILED:
            return (failed,) * count
        chosen = self.script.failed_file_ids
        if chosen is not None:
            return tuple(failed if f in chosen else ok for f in self.file_ids)
        # Every other file fails, counted from the last: at least one failure always,
        # and at least one success whenever there are two files or more.
        return tuple(failed if (count - 1 - i) % 2 == 0 else ok for i in range(count))

    def file_statuses(self, snap: TaskSnapshot) -> list[FileStatus]:
        """Each file's status in ``snap``: files finish in order as progress rises."""
        final = self.final_statuses()
        if snap.status is TaskStatus.COMPLETED:
            return list(final)
        done = math.floor(snap.progress * len(final) / 100)
        return list(final[:done]) + [FileStatus.PENDING] * (len(final) - done)

    def succeeded_file_ids(self) -> list[str]:
        """List the files that succeed (meaningful once the task has completed)."""
        return [
            f
            for f, s in zip(self.file_ids, self.final_statuses(), strict=True)
            if s is FileStatus.SUCCEEDED
        ]

    def timestamp(self, after_s: float) -> str:
        """Format the wall time ``after_s`` seconds after creation as ``yyyyMMddHHmmss`` (UTC)."""
        return (self.created_wall + timedelta(seconds=after_s)).strftime(TIMESTAMP_FORMAT)


class Task(Lifecycle):
    """A share task (package download or dump into a drive)."""

    __slots__ = ("container_id", "share_id", "target", "task_type", "zip_name")

    def __init__(
        self,
        *,
        task_id: str,
        task_type: TaskType,
        share_id: str,
        container_id: str,
        user_id: str,
        file_ids: tuple[str, ...],
        script: TaskScript,
        created_at: float,
        created_wall: datetime,
        zip_name: str = "",
        target: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(
            task_id=task_id,
            user_id=user_id,
            file_ids=file_ids,
            script=script,
            created_at=created_at,
            created_wall=created_wall,
        )
        self.task_type = task_type
        self.share_id = share_id
        self.container_id = container_id
        self.zip_name = zip_name
        self.target = target

    @property
    def is_package(self) -> bool:
        """Whether this is a package-download task."""
        return self.task_type is TaskType.PACKAGE_DOWNLOAD

    @property
    def package_name(self) -> str:
        """The zip's name as the create request gave it."""
        return self.zip_name


def replay(
    script: TaskScript,
    *,
    task_id: str = "t-1",
    file_ids: tuple[str, ...] = ("file-1",),
    task_type: TaskType = TaskType.PACKAGE_DOWNLOAD,
) -> Task:
    """A task following ``script`` from time 0, outside any emulator.

    ``replay(script).snapshot(seconds)`` is what an emulator would report that many
    seconds after creating the task: for simulations and benchmarks of polling, with
    no network and no clock. Noise is seeded by ``script.noise_seed``, else by ``task_id``.
    """
    return Task(
        task_id=task_id,
        task_type=task_type,
        share_id="share-1",
        container_id="container-1",
        user_id="user-1",
        file_ids=file_ids,
        script=script,
        created_at=0.0,
        created_wall=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
