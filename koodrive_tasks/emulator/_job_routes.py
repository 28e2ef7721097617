"""Batch-job routes: create, detail, list and cancel (``/koodrive/ose/v1/jobs`` and kin).

``GET /koodrive/ose/v1/jobs`` is registered before ``GET /koodrive/ose/v1/{job_id}``:
aiohttp tries routes in order, so the list is never read as the job "jobs".
Bodies are built here from the job state, independently of the client's wire converter.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .._models import FileStatus, TaskStatus
from ._download import PackageLinks
from ._faults import json_response, render_fault
from ._http import (
    INSUFFICIENT_SPACE,
    PARAMETER_CHECK_FAILED,
    RESOURCE_NOT_FOUND,
    Gate,
    InvalidRequest,
    load_object,
    service_error,
    success_code,
    text_field,
)
from ._jobs import DECOMPRESS, Job, parse_create, parse_list_query
from ._service import TaskService
from ._share_routes import FILE_STATUS_TEXT

JOBS_PATH = "/koodrive/ose/v1/jobs"
JOB_PATH = "/koodrive/ose/v1/{job_id}"
CANCEL_PATH = "/koodrive/ose/v1/cancel"
TENANT_ID = "tenant-emulator"


class JobRoutes:
    """Handlers of the batch-job routes.

    Args:
        service: The jobs, scripts, faults and counters.
        gate: Credentials and faults.
        links: Makes package links.
    """

    def __init__(self, service: TaskService, gate: Gate, links: PackageLinks) -> None:
        self.service = service
        self.gate = gate
        self.links = links

    def register(self, app: web.Application) -> None:
        """Add the routes to ``app``, the list before the detail (see the module docstring)."""
        app.router.add_post(JOBS_PATH, self.create)
        app.router.add_get(JOBS_PATH, self.list)
        app.router.add_post(CANCEL_PATH, self.cancel)
        app.router.add_get(JOB_PATH, self.detail)

    def _code(self, job: Job | None = None) -> int | str:
        shape = job.script.shape if job is not None else None
        return success_code(shape or self.service.shape)

    async def create(self, request: web.Request) -> web.Response:
        """``POST /koodrive/ose/v1/jobs``: check the body per job type, create the job."""
        service = self.service
        service.stats.requests["job_create"] += 1
        body = await request.read()
        caller = self.gate.authenticate(request, body)
        if isinstance(caller, web.Response):
            return caller
        fault = service.create_fault()
        dropped = await self.gate.carry_out(request, fault)
        if dropped is not None:
            return dropped
        if fault is not None and Gate.stands_in(fault):
            # The fault stands in for the service: no job is created.
            normal = {"code": self._code(), "msg": "success", "data": service.new_job_id()}
            return render_fault(fault, json.dumps(normal).encode())
        try:
            job_request = parse_create(load_object(body))
        except InvalidRequest as invalid:
            return service_error(invalid.code, invalid.detail)
        job = service.create_job(user_id=caller.user_id, request=job_request)
        if job is None:
            return service_error(
                INSUFFICIENT_SPACE, f"at most {service.store.max_tasks} tasks may be held"
            )
        return json_response(200, {"code": self._code(job), "msg": "success", "data": job.task_id})

    def _owned_job(self, job_id: str, user_id: str) -> Job | None:
        found = self.service.lookup(job_id)
        # Another user's job, or a share task's id, reads as "does not exist".
        return found if isinstance(found, Job) and found.user_id == user_id else None

    async def detail(self, request: web.Request) -> web.Response:
        """``GET /koodrive/ose/v1/{job_id}``."""
        service = self.service
        service.stats.requests["job_detail"] += 1
        body = await request.read()
        caller = self.gate.authenticate(request, body)
        if isinstance(caller, web.Response):
            return caller
        job_id = request.match_info["job_id"]
        found = service.lookup(job_id)
        job = found if isinstance(found, Job) else None
        fault = service.detail_fault(job)
        dropped = await self.gate.carry_out(request, fault)
        if dropped is not None:
            return dropped
        if job is None or job.user_id != caller.user_id:
            response = service_error(RESOURCE_NOT_FOUND, f"no job {job_id}")
        else:
            response = json_response(200, self._detail_body(request, job))
        if fault is not None and Gate.stands_in(fault):
            return Gate.render(fault, response)
        return response

    async def list(self, request: web.Request) -> web.Response:
        """``GET /koodrive/ose/v1/jobs?type=&status=&offset=&limit=``: newest first."""
        service = self.service
        service.stats.requests["job_list"] += 1
        body = await request.read()
        caller = self.gate.authenticate(request, body)
        if isinstance(caller, web.Response):
            return caller
        fault = service.read_fault()
        dropped = await self.gate.carry_out(request, fault)
        if dropped is not None:
            return dropped
        try:
            query = parse_list_query(request.query)
        except InvalidRequest as invalid:
            response = service_error(invalid.code, invalid.detail)
        else:
            now = service.clock.monotonic()
            matching = [
                job
                for job in service.jobs_of(caller.user_id)
                if query.job_type in (None, job.job_type)
                and query.status in (None, job.snapshot(now).status.value)
            ]
            page = matching[query.offset : query.offset + query.limit]
            data = [self._job_info(request, job) for job in page]
            response = json_response(200, {"code": self._code(), "msg": "success", "data": data})
        if fault is not None and Gate.stands_in(fault):
            return Gate.render(fault, response)
        return response

    async def cancel(self, request: web.Request) -> web.Response:
        """``POST /koodrive/ose/v1/cancel``: effective while the job is pending or processing."""
        service = self.service
        service.stats.requests["job_cancel"] += 1
        body = await request.read()
        caller = self.gate.authenticate(request, body)
        if isinstance(caller, web.Response):
            return caller
        fault = service.write_fault()
        dropped = await self.gate.carry_out(request, fault)
        if dropped is not None:
            return dropped
        if fault is not None and Gate.stands_in(fault):
            # The fault stands in for the service: nothing is canceled.
            return render_fault(
                fault, json.dumps({"code": self._code(), "msg": "success"}).encode()
            )
        return self._cancel(body, caller.user_id)

    def _cancel(self, body: bytes, user_id: str) -> web.Response:
        service = self.service
        try:
            job_id = text_field(load_object(body), "jobId")
        except InvalidRequest as invalid:
            return service_error(invalid.code, invalid.detail)
        job = self._owned_job(job_id, user_id)
        if job is None:
            return service_error(RESOURCE_NOT_FOUND, f"no job {job_id}")
        if not service.cancel(job.task_id):
            # The reference says only that a cancel is effective in status 0 or 1.
            status = job.snapshot(service.clock.monotonic()).status
            return service_error(
                PARAMETER_CHECK_FAILED,
                f"job {job_id} has ended (status {status.value}) and cannot be canceled",
            )
        return json_response(200, {"code": self._code(job), "msg": "success"})

    def _job_info(self, request: web.Request, job: Job) -> dict[str, Any]:
        """``jobInfo`` of the detail, and one entry of the list."""
        service = self.service
        snap = job.snapshot(service.clock.monotonic())
        script = job.script
        return {
            "taskId": job.task_id,
            "taskName": job.task_name,
            "userId": job.user_id,
            "taskType": job.job_type,
            "actionType": job.action_type,
            "status": snap.status.value,
            "taskResultCode": snap.result_code.value if snap.result_code is not None else 0,
            "resultCode": script.result_code if snap.ended_after_s is not None else 0,
            "progress": snap.progress,
            "downloadUrl": self.links.link(
                f"{request.scheme}://{request.host}", job, snap, service.clock.now()
            ),
            "contentNum": len(job.file_ids),
            "containerId": job.dst_container_id,
            "tenantId": TENANT_ID,
            "beginTime": job.timestamp(script.pending_s) if snap.started else "",
            "endTime": job.timestamp(snap.ended_after_s) if snap.ended_after_s is not None else "",
            "createTime": job.timestamp(0),
            # Not in the reference: clients must ignore fields they do not know.
            "extra": {"emulator": "koodrive_tasks"},
        }

    def _detail_body(self, request: web.Request, job: Job) -> dict[str, Any]:
        snap = job.snapshot(self.service.clock.monotonic())
        results = []
        for file_id, status in zip(job.file_ids, job.file_statuses(snap), strict=True):
            item = {
                "fileId": file_id,
                "status": FILE_STATUS_TEXT[status],
                "srcContainerId": job.src_container_id,
            }
            new_id = job.new_file_id(file_id) if status is FileStatus.SUCCEEDED else None
            if new_id is not None:
                item["newFileId"] = new_id
            results.append(item)
        data: dict[str, Any] = {"jobInfo": self._job_info(request, job), "taskInfos": results}
        if job.job_type == DECOMPRESS:
            data["uncompressedFileList"] = job.uncompressed_entries(
                snap.status is TaskStatus.COMPLETED
            )
        return {"code": self._code(job), "msg": "success", "data": data}
