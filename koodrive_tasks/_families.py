"""Task families: how one family's task detail is requested and read.

A poll stream is the same for every family; the family says which request to send
for a task and how to read the answer into a :class:`TaskInfo`. Two families exist:
share tasks (:class:`TaskRef`, ``POST /share/taskDetail``) and batch jobs
(:class:`JobRef`, ``GET /koodrive/ose/v1/{job_id}``, read into a :class:`JobInfo`).
"""

from __future__ import annotations

import functools
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
        f"query task {ref.task_id}",
        functools.partial(_wire.parse_task_detail, task_id=ref.task_id),
        body=_wire.encode_body(body),
        secrets=(ref.kdstoken,) if ref.kdstoken else (),
        poll=True,
    )


def job_detail(ref: JobRef) -> Request[JobInfo]:
    """``GET /koodrive/ose/v1/{job_id}`` for a batch job (no body; signed over the path)."""
    return Request(
        "GET",
        _wire.job_path(ref.job_id),
        f"query job {ref.job_id}",
        functools.partial(_wire.parse_job_detail, job_id=ref.job_id),
        poll=True,
    )


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
