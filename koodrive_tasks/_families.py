"""Task families: how one family's task detail is requested and read.

A poll stream is the same for every family; the family says which request to send
for a task and how to read the answer into a :class:`TaskInfo`. Two families exist:
share tasks (:class:`TaskRef`, ``POST /share/taskDetail``) and batch jobs
(:class:`JobRef`, ``GET /koodrive/ose/v1/{job_id}``, read into a :class:`JobInfo`).
"""

from __future__ import annotations

from typing import cast

from . import _wire
from ._learning import TaskKind
from ._models import JobInfo, JobRef, Ref, TaskInfo, TaskRef
from ._transport import Request


def share_task_detail(ref: TaskRef) -> Request[TaskInfo]:
    """``POST /share/taskDetail`` for a share task, encoded once."""
    body: dict[str, object] = {"taskId": ref.task_id, "shareId": ref.share_id}
    if ref.kdstoken is not None:
        body["kdstoken"] = ref.kdstoken
    return Request(
        "POST",
        _wire.TASK_DETAIL_PATH,
        "query task",
        _read_task_detail,
        ref.task_id,
        body=_wire.encode_body(body),
        secrets=(ref.kdstoken,) if ref.kdstoken else (),
        poll=True,
    )


def job_detail(ref: JobRef) -> Request[JobInfo]:
    """``GET /koodrive/ose/v1/{job_id}`` for a batch job (no body; signed over the path)."""
    return Request(
        "GET", _wire.job_path(ref.job_id), "query job", _read_job_detail, ref.job_id, poll=True
    )


# Module functions rather than a partial per request: a poll stream keeps its request
# for as long as it polls, and the subject it reads is the request's own.
def _read_task_detail(payload: object, task_id: str) -> TaskInfo:
    return _wire.parse_task_detail(payload, task_id=task_id)


def _read_job_detail(payload: object, job_id: str) -> JobInfo:
    return _wire.parse_job_detail(payload, job_id=job_id)


def detail_request(ref: Ref) -> Request[TaskInfo]:
    """The detail request of ``ref``'s family."""
    if isinstance(ref, JobRef):
        # A JobInfo is a TaskInfo, and a Request is only ever read: the narrower
        # result type is safe where a TaskInfo is expected.
        return cast("Request[TaskInfo]", job_detail(ref))
    return share_task_detail(ref)


def task_kind(info: TaskInfo) -> TaskKind:
    """What a task's duration is learned by: its family, type and size (file count)."""
    if isinstance(info, JobInfo):
        job_type = 0 if info.job_type is None else int(info.job_type)
        return TaskKind("job", job_type, info.content_num or len(info.files))
    return TaskKind("share", 0 if info.task_type is None else int(info.task_type), len(info.files))
