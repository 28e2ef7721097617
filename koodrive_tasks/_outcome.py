"""How a wait ends: the judgement of a final state, the download URL check, the outcome value."""

from __future__ import annotations

import logging
from typing import Any, Literal

import attrs
from yarl import URL

from ._models import JobInfo, JobType, Ref, TaskInfo, TaskResultCode, TaskStatus, TaskType
from ._redact import redact_url
from .exceptions import (
    AuthenticationError,
    InsecureURLError,
    KooDriveError,
    ProtocolError,
    TaskCanceledError,
    TaskFailedError,
    WaitTimeoutError,
)

logger = logging.getLogger("koodrive_tasks")

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
        ref: The share task (:class:`TaskRef`) or batch job (:class:`JobRef`).
        info: The final (or, after an error, the last seen) state, if any.
        download_url: The package link of a completed package-download task.
        error: Why the wait failed (``TaskFailedError``, ``TaskCanceledError``,
            ``WaitTimeoutError``, …), or ``None`` on success.
    """

    ref: Ref
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


def judge(info: TaskInfo, *, warn_partial: bool) -> TaskInfo:
    """A completed task's (or job's) final state, or the error its end means.

    Args:
        info: The final observation of a task or job.
        warn_partial: Log a warning for a partially failed task (a lone wait: a batch's
            outcome already says so).

    Raises:
        TaskCanceledError: The task was canceled.
        TaskFailedError: The task completed and every file failed.
    """
    what = "job" if isinstance(info, JobInfo) else "task"
    if info.status is TaskStatus.CANCELED:
        raise TaskCanceledError(
            f"{what} {info.task_id} was canceled at {info.progress} %", info=info
        )
    if info.result_code is TaskResultCode.ALL_FAILED:
        where = "the job's details" if what == "job" else "the share"
        raise TaskFailedError(
            f"{what} {info.task_id} completed but every file failed"
            f"{f' ({len(info.failed_files)} of them)' if info.failed_files else ''}; "
            f"check the files' state in {where}",
            info=info,
        )
    if warn_partial and info.result_code is TaskResultCode.PARTIALLY_FAILED:
        failed = [f.file_id for f in info.failed_files]
        logger.warning(
            "%s %s completed with some files failed%s",
            what,
            info.task_id,
            f": {', '.join(failed[:20])}{' …' if len(failed) > 20 else ''}" if failed else "",
        )
    return info


def checked_download_url(info: TaskInfo, *, allow_insecure_urls: bool) -> str:
    """The ``downloadUrl`` of a completed task, checked.

    Raises:
        ProtocolError: It has none (a dump task has none), or it is not a valid absolute URL.
        InsecureURLError: It is not ``https`` and insecure URLs are not allowed.
    """
    url = info.download_url
    if not url:
        if isinstance(info, JobInfo):
            raise ProtocolError(
                f"job {info.task_id} completed without a downloadUrl; only package-download "
                "jobs have one: `await waiter` gives the final JobInfo of any job"
            )
        raise ProtocolError(
            f"task {info.task_id} completed without a downloadUrl; a dump task has none: "
            "use `await waiter.final_info()` for it"
        )
    try:
        parsed = URL(url)
        scheme, host = parsed.scheme, parsed.host
    except ValueError:
        scheme, host = "", None
    if scheme != "https" and not (scheme == "http" and allow_insecure_urls):
        raise InsecureURLError(
            f"task {info.task_id}: refusing downloadUrl {redact_url(url)}: it is not https "
            "(pass allow_insecure_urls=True to the client to accept http, e.g. an emulator)"
        )
    if not host or url != url.strip():
        raise ProtocolError(
            f"task {info.task_id}: the downloadUrl {redact_url(url)} is not a valid absolute URL"
        )
    return url


def outcome(
    ref: Ref,
    final: TaskInfo | None,
    error: KooDriveError | None,
    last: TaskInfo | None,
    *,
    allow_insecure_urls: bool,
) -> TaskOutcome:
    """The outcome of an ended wait: its final state judged, or its error."""
    try:
        if final is None:
            assert error is not None  # noqa: S101 - an ended wait has one of the two
            raise error
        info = judge(final, warn_partial=False)
        url = None
        if _has_package(info):
            url = checked_download_url(info, allow_insecure_urls=allow_insecure_urls)
        return TaskOutcome(ref, info, url)
    except KooDriveError as failure:
        seen: TaskInfo | None = getattr(failure, "info", None) or last
        return TaskOutcome(ref, seen, None, failure)


def _has_package(info: TaskInfo) -> bool:
    """Whether a completed task's outcome carries a download URL (checked, so required)."""
    if isinstance(info, JobInfo):
        # Only package jobs make one; without a job type, a URL decides.
        if info.job_type is not None:
            return info.job_type is JobType.PACKAGE_DOWNLOAD
        return bool(info.download_url)
    # A package task has a URL; a dump task none. Without a task type, a URL decides.
    return info.task_type is not TaskType.DUMP and (
        bool(info.download_url) or info.task_type is not None
    )
