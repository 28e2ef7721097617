"""Share-task routes: ``POST /koodrive/ose/v1/share/tasks`` and ``.../share/taskDetail``.

Bodies are built here from the task state, independently of the client's wire
converter, so the two check each other.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .._models import FileStatus, TaskType
from ._download import PackageLinks
from ._faults import json_response, render_fault
from ._http import (
    INSUFFICIENT_SPACE,
    RESOURCE_NOT_FOUND,
    Gate,
    InvalidRequest,
    load_object,
    service_error,
    success_code,
    text_field,
    trace_id,
)
from ._service import TaskService
from ._tasks import Task

CREATE_PATH = "/koodrive/ose/v1/share/tasks"
DETAIL_PATH = "/koodrive/ose/v1/share/taskDetail"
MAX_FILE_IDS = 1000

FILE_STATUS_TEXT = {status: str(status.value) for status in FileStatus}
"""Per-file ``status`` on the wire: a string, ``"0"``, ``"1"`` or ``"2"``."""


class ShareRoutes:
    """Handlers of the share-task routes.

    Args:
        service: The tasks, scripts, faults and counters.
        gate: Credentials and faults.
        links: Makes package links.
    """

    def __init__(self, service: TaskService, gate: Gate, links: PackageLinks) -> None:
        self.service = service
        self.gate = gate
        self.links = links

    def register(self, app: web.Application) -> None:
        """Add the routes to ``app``."""
        app.router.add_post(CREATE_PATH, self.create)
        app.router.add_post(DETAIL_PATH, self.detail)

    async def create(self, request: web.Request) -> web.Response:
        """``POST /koodrive/ose/v1/share/tasks``."""
        service = self.service
        service.stats.requests["create"] += 1
        body = await request.read()
        caller = self.gate.authenticate(request, body)
        if isinstance(caller, web.Response):
            return caller
        fault = service.create_fault()
        dropped = await self.gate.carry_out(request, fault)
        if dropped is not None:
            return dropped
        if fault is not None and Gate.stands_in(fault):
            # The fault stands in for the service: no task is created.
            body_bytes = json.dumps(
                {"code": 0, "msg": "success", "taskId": service.new_task_id()}
            ).encode()
            return render_fault(fault, body_bytes)
        try:
            fields = self._validate_create(load_object(body))
        except InvalidRequest as invalid:
            return service_error(invalid.code, invalid.detail)
        task = service.create(user_id=caller.user_id, **fields)
        if task is None:
            return service_error(
                INSUFFICIENT_SPACE, f"at most {service.store.max_tasks} tasks may be held"
            )
        return json_response(
            200,
            {
                "code": success_code(task.script.shape or service.shape),
                "msg": "success",
                "taskId": task.task_id,
                "traceId": trace_id(request),
            },
        )

    @staticmethod
    def _validate_create(payload: dict[str, Any]) -> dict[str, Any]:
        task_type = payload.get("taskType")
        if isinstance(task_type, bool) or task_type not in (1, 2):
            raise InvalidRequest("taskType must be 1 or 2")
        fields: dict[str, Any] = {
            "task_type": TaskType(task_type),
            "share_id": text_field(payload, "shareId"),
            "container_id": text_field(payload, "containerId"),
        }
        text_field(payload, "kdstoken", required=False)
        file_ids = payload.get("fileIds")
        if (
            not isinstance(file_ids, list)
            or not 1 <= len(file_ids) <= MAX_FILE_IDS
            or not all(isinstance(f, str) and f for f in file_ids)
        ):
            raise InvalidRequest(f"fileIds must be a list of 1 to {MAX_FILE_IDS} non-empty strings")
        fields["file_ids"] = tuple(file_ids)
        if task_type == TaskType.PACKAGE_DOWNLOAD:
            fields["zip_name"] = text_field(payload, "zipName")
        else:
            target = payload.get("targetFileId")
            if not isinstance(target, dict):
                raise InvalidRequest("targetFileId must be an object")
            fields["target"] = (text_field(target, "fileId"), text_field(target, "containerId"))
        return fields

    async def detail(self, request: web.Request) -> web.Response:
        """``POST /koodrive/ose/v1/share/taskDetail``."""
        service = self.service
        service.stats.requests["detail"] += 1
        body = await request.read()
        caller = self.gate.authenticate(request, body)
        if isinstance(caller, web.Response):
            return caller
        task: Task | None = None
        try:
            payload = load_object(body)
            task_id = text_field(payload, "taskId")
            share_id = text_field(payload, "shareId")
            text_field(payload, "kdstoken", required=False)
            found = service.lookup(task_id)
            task = found if isinstance(found, Task) else None  # a job id is no share task
        except InvalidRequest as invalid:
            task_id = share_id = ""
            invalid_response: web.Response | None = service_error(invalid.code, invalid.detail)
        else:
            invalid_response = None
        fault = service.detail_fault(task)
        dropped = await self.gate.carry_out(request, fault)
        if dropped is not None:
            return dropped
        if invalid_response is not None:
            response = invalid_response
        elif task is None or task.share_id != share_id or task.user_id != caller.user_id:
            # A share mismatch or another user's task reads as "does not exist", as it should.
            response = service_error(RESOURCE_NOT_FOUND, f"no task {task_id} in this share")
        else:
            response = json_response(200, self._detail_body(request, task))
        if fault is not None and Gate.stands_in(fault):
            return Gate.render(fault, response)
        return response

    def _detail_body(self, request: web.Request, task: Task) -> dict[str, Any]:
        service = self.service
        snap = task.snapshot(service.clock.monotonic())
        script = task.script
        download_url = self.links.link(
            f"{request.scheme}://{request.host}", task, snap, service.clock.now()
        )
        info = {
            "userId": task.user_id,
            "taskId": task.task_id,
            "taskType": task.task_type.value,
            "taskStatus": snap.status.value,
            "taskResultCode": snap.result_code.value if snap.result_code is not None else 0,
            "resultCode": script.result_code if snap.ended_after_s is not None else 0,
            "createTime": task.timestamp(0),
            "startTime": task.timestamp(script.pending_s) if snap.started else "",
            "endTime": task.timestamp(snap.ended_after_s) if snap.ended_after_s is not None else "",
            "progress": snap.progress,
            "downloadUrl": download_url,
            # Not in the reference: clients must ignore fields they do not know.
            "extra": {"emulator": "koodrive_tasks"},
        }
        if (script.shape or service.shape) == "A":
            return {"code": "0", "msg": "success", "traceId": trace_id(request), "taskInfo": info}
        results = self._file_results(task, task.file_statuses(snap))
        as_object = (script.file_results or service.file_results) == "object"
        return {
            "code": 0,
            "msg": "success",
            "traceId": trace_id(request),
            "jobInfo": info,
            "taskInfos": results[0] if as_object else results,
        }

    @staticmethod
    def _file_results(task: Task, statuses: list[FileStatus]) -> list[dict[str, str]]:
        results = []
        dump = task.task_type is TaskType.DUMP
        for file_id, status in zip(task.file_ids, statuses, strict=True):
            item = {
                "fileId": file_id,
                "status": FILE_STATUS_TEXT[status],
                "srcContainerId": task.container_id,
            }
            if dump and status is FileStatus.SUCCEEDED:
                item["newFileId"] = f"{file_id}-copy-{task.task_id[:8]}"
            results.append(item)
        return results
