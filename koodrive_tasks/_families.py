"""Task families: how one family's task detail is requested and read.

A poll stream is the same for every family; the family says which request to send
for a task and how to read the answer into a :class:`TaskInfo`.
"""

from __future__ import annotations

import functools

from . import _wire
from ._models import TaskInfo, TaskRef
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


def detail_request(ref: TaskRef) -> Request[TaskInfo]:
    """The detail request of ``ref``'s family."""
    return share_task_detail(ref)
