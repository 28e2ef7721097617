"""How a wait ended, as a value: a batch's per-task result, and its JSON form."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from ._models import TaskInfo, TaskRef, TaskResultCode
from .exceptions import (
    AuthenticationError,
    KooDriveError,
    TaskCanceledError,
    TaskFailedError,
    WaitTimeoutError,
)

OutcomeKind = Literal[
    "completed", "partially_failed", "failed", "canceled", "timeout", "auth_error", "error"
]
# The first class an error is an instance of names its kind; anything else is "error".
_ERROR_KINDS: tuple[tuple[type[KooDriveError], OutcomeKind], ...] = (
    (TaskFailedError, "failed"),
    (TaskCanceledError, "canceled"),
    (WaitTimeoutError, "timeout"),
    (AuthenticationError, "auth_error"),
)


@attrs.frozen
class TaskOutcome:
    """How one task of a batch ended.

    Attributes:
        ref: The task.
        info: The final (or, after an error, the last seen) state, if any.
        download_url: The package link of a completed package-download task.
        error: Why the wait failed (``TaskFailedError``, ``TaskCanceledError``,
            ``WaitTimeoutError``, …), or ``None`` on success.
    """

    ref: TaskRef
    info: TaskInfo | None
    download_url: str | None = attrs.field(
        default=None, repr=lambda url: "<redacted>" if url else "None"
    )
    error: KooDriveError | None = None

    @property
    def ok(self) -> bool:
        """Whether the task completed with at least one file succeeded."""
        return self.error is None

    @property
    def kind(self) -> OutcomeKind:
        """One word for the outcome.

        ``completed``, ``partially_failed`` (a URL and some failed files), ``failed``
        (every file failed), ``canceled``, ``timeout`` (the deadline or the stall
        limit passed), ``auth_error``, or ``error`` (anything else).
        """
        error = self.error
        if error is None:
            partial = (
                self.info is not None and self.info.result_code is TaskResultCode.PARTIALLY_FAILED
            )
            return "partially_failed" if partial else "completed"
        for cls, kind in _ERROR_KINDS:
            if isinstance(error, cls):
                return kind
        return "error"

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON-ready data (the CLI's result lines, server-sent events).

        ``task_id`` and ``outcome`` (:attr:`kind`) always; ``download_url`` when there
        is one, ``failed_files`` when some failed, ``error`` (the error's
        :meth:`~koodrive_tasks.KooDriveError.to_dict`) when the wait failed. The
        download URL is the result itself, so it is included whole; nothing else
        secret is (no kdstoken).
        """
        data: dict[str, Any] = {"task_id": self.ref.task_id, "outcome": self.kind}
        if self.download_url:
            data["download_url"] = self.download_url
        failed = [f.file_id for f in self.info.failed_files] if self.info is not None else []
        if failed:
            data["failed_files"] = failed
        if self.error is not None:
            data["error"] = self.error.to_dict()
        return data
