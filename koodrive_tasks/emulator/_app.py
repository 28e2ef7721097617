"""The ``aiohttp.web`` application: routes, validation and response bodies.

Bodies are built here from the task state, independently of the client's wire
converter, so the two check each other.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from .._models import FileStatus, TaskStatus, TaskType
from ._auth import Authenticator, Caller
from ._download import DownloadSigner, build_zip
from ._faults import SERVICE_MESSAGES, Fault, FaultKind, json_response, render_fault
from ._service import TaskService
from ._tasks import Task

CREATE_PATH = "/koodrive/ose/v1/share/tasks"
DETAIL_PATH = "/koodrive/ose/v1/share/taskDetail"
DOWNLOAD_PATH = "/download/{name}"
STATS_PATH = "/_emulator/stats"
MAX_FILE_IDS = 1000

_FILE_STATUS_TEXT = {status: str(status.value) for status in FileStatus}


class _Invalid(Exception):  # noqa: N818  (a control-flow signal, not an error type)
    """A request body failed validation; carries the service code and message."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def service_error(code: str, detail: str = "", status: int = 400) -> web.Response:
    """Build a service error body: ``{"code": "...", "msg": "..."}``."""
    message = SERVICE_MESSAGES.get(code, "Error")
    return json_response(
        status, {"code": code, "msg": f"{message}: {detail}" if detail else message}
    )


def _load(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise _Invalid("13000102", "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise _Invalid("13000102", "the body is not a JSON object")
    return payload


def _text(payload: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = payload.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value:
        raise _Invalid("13000102", f"{name} must be a non-empty string")
    return value


class EmulatorApp:
    """Request handlers bound to one emulator's state.

    Args:
        service: The tasks, scripts, faults and counters.
        auth: The credential checker.
        signer: Signs package links.
        download_ttl_s: How long a package link stays valid.

    """

    def __init__(
        self,
        service: TaskService,
        auth: Authenticator,
        signer: DownloadSigner,
        download_ttl_s: float,
    ) -> None:
        self.service = service
        self.auth = auth
        self.signer = signer
        self.download_ttl_s = download_ttl_s
        self._date_second = -1
        self._date_text = ""

    def build(self) -> web.Application:
        """Build the application with its routes."""
        app = web.Application()
        app.router.add_post(CREATE_PATH, self.create)
        app.router.add_post(DETAIL_PATH, self.detail)
        app.router.add_get(DOWNLOAD_PATH, self.download)
        app.router.add_get(STATS_PATH, self.stats)
        app.on_response_prepare.append(self._stamp_date)
        return app

    async def _stamp_date(self, _: web.Request, response: web.StreamResponse) -> None:
        # A server's Date header shows its own clock; clients compare it with theirs to
        # detect skew, so it follows the injected wall clock, not the real one.
        now = self.service.clock.now()
        second = int(now.timestamp())
        if second != self._date_second:
            moment = datetime.fromtimestamp(second, timezone.utc)
            self._date_second, self._date_text = second, format_datetime(moment, usegmt=True)
        response.headers["Date"] = self._date_text

    def _authenticate(self, request: web.Request, body: bytes) -> Caller | web.Response:
        result = self.auth.check(request, body)
        if isinstance(result, web.Response):
            self.service.stats.auth_failures += 1
        return result

    async def _apply(self, request: web.Request, fault: Fault | None) -> web.Response | None:
        """Carry out the fault's side of a request; a response if it replaces the answer."""
        if fault is None:
            return None
        self.service.stats.faults[fault.kind.value] += 1
        if fault.kind is FaultKind.DROP:
            if request.transport is not None:
                request.transport.close()
            # Nothing reaches the client: the transport is closed.
            return web.Response(status=204)
        if fault.kind is FaultKind.SLOW:
            await asyncio.sleep(fault.delay_s)
        return None

    async def create(self, request: web.Request) -> web.Response:
        """``POST /koodrive/ose/v1/share/tasks``."""
        service = self.service
        service.stats.requests["create"] += 1
        body = await request.read()
        caller = self._authenticate(request, body)
        if isinstance(caller, web.Response):
            return caller
        fault = service.create_fault()
        dropped = await self._apply(request, fault)
        if dropped is not None:
            return dropped
        if fault is not None and fault.kind is not FaultKind.SLOW:
            # The fault stands in for the service: no task is created.
            body_bytes = json.dumps(
                {"code": 0, "msg": "success", "taskId": service.new_task_id()}
            ).encode()
            return render_fault(fault, body_bytes)
        try:
            fields = self._validate_create(_load(body))
        except _Invalid as invalid:
            return service_error(invalid.code, invalid.detail)
        task = service.create(user_id=caller.user_id, **fields)
        if task is None:
            return service_error("13000311", f"at most {service.store.max_tasks} tasks may be held")
        shape = task.script.shape or service.shape
        return json_response(
            200,
            {
                "code": "0" if shape == "A" else 0,
                "msg": "success",
                "taskId": task.task_id,
                "traceId": _trace_id(request),
            },
        )

    @staticmethod
    def _validate_create(payload: dict[str, Any]) -> dict[str, Any]:
        task_type = payload.get("taskType")
        if isinstance(task_type, bool) or task_type not in (1, 2):
            raise _Invalid("13000102", "taskType must be 1 or 2")
        fields: dict[str, Any] = {
            "task_type": TaskType(task_type),
            "share_id": _text(payload, "shareId"),
            "container_id": _text(payload, "containerId"),
        }
        _text(payload, "kdstoken", required=False)
        file_ids = payload.get("fileIds")
        if (
            not isinstance(file_ids, list)
            or not 1 <= len(file_ids) <= MAX_FILE_IDS
            or not all(isinstance(f, str) and f for f in file_ids)
        ):
            raise _Invalid(
                "13000102", f"fileIds must be a list of 1 to {MAX_FILE_IDS} non-empty strings"
            )
        fields["file_ids"] = tuple(file_ids)
        if task_type == TaskType.PACKAGE_DOWNLOAD:
            fields["zip_name"] = _text(payload, "zipName")
        else:
            target = payload.get("targetFileId")
            if not isinstance(target, dict):
                raise _Invalid("13000102", "targetFileId must be an object")
            fields["target"] = (_text(target, "fileId"), _text(target, "containerId"))
        return fields

    async def detail(self, request: web.Request) -> web.Response:
        """``POST /koodrive/ose/v1/share/taskDetail``."""
        service = self.service
        service.stats.requests["detail"] += 1
        body = await request.read()
        caller = self._authenticate(request, body)
        if isinstance(caller, web.Response):
            return caller
        task: Task | None = None
        try:
            payload = _load(body)
            task_id = _text(payload, "taskId")
            share_id = _text(payload, "shareId")
            _text(payload, "kdstoken", required=False)
            task = service.lookup(task_id)
        except _Invalid as invalid:
            task_id = share_id = ""
            invalid_response: web.Response | None = service_error(invalid.code, invalid.detail)
        else:
            invalid_response = None
        fault = service.detail_fault(task)
        dropped = await self._apply(request, fault)
        if dropped is not None:
            return dropped
        if invalid_response is not None:
            response = invalid_response
        elif task is None or task.share_id != share_id or task.user_id != caller.user_id:
            # A share mismatch or another user's task reads as "does not exist", as it should.
            response = service_error("13000309", f"no task {task_id} in this share")
        else:
            response = json_response(200, self._detail_body(request, task))
        if fault is not None and fault.kind not in (FaultKind.SLOW, FaultKind.DROP):
            return render_fault(fault, response.body if isinstance(response.body, bytes) else b"")
        return response

    def _detail_body(self, request: web.Request, task: Task) -> dict[str, Any]:
        service = self.service
        snap = task.snapshot(service.clock.monotonic())
        script = task.script
        download_url = ""
        if (
            snap.status is TaskStatus.COMPLETED
            and task.task_type is TaskType.PACKAGE_DOWNLOAD
            and FileStatus.SUCCEEDED in task.final_statuses()
        ):
            expires = int(service.clock.now().timestamp() + self.download_ttl_s)
            download_url = self.signer.url(
                f"{request.scheme}://{request.host}", task.task_id, expires
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
            return {"code": "0", "msg": "success", "traceId": _trace_id(request), "taskInfo": info}
        results = self._file_results(task, task.file_statuses(snap))
        as_object = (script.file_results or service.file_results) == "object"
        return {
            "code": 0,
            "msg": "success",
            "traceId": _trace_id(request),
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
                "status": _FILE_STATUS_TEXT[status],
                "srcContainerId": task.container_id,
            }
            if dump and status is FileStatus.SUCCEEDED:
                item["newFileId"] = f"{file_id}-copy-{task.task_id[:8]}"
            results.append(item)
        return results

    async def download(self, request: web.Request) -> web.Response:
        """``GET /download/{task_id}.zip?expires=..&sig=..``: the package of a task."""
        service = self.service
        service.stats.requests["download"] += 1
        name = request.match_info["name"]
        if not name.endswith(".zip"):
            return _storage_error(404, "NoSuchKey", "The specified key does not exist.")
        task_id = name[: -len(".zip")]
        expires = request.query.get("expires", "")
        sig = request.query.get("sig", "")
        if not expires.isdigit() or not self.signer.verify(task_id, expires, sig):
            return _storage_error(
                403, "SignatureDoesNotMatch", "The request signature does not match."
            )
        if int(expires) < service.clock.now().timestamp():
            return _storage_error(403, "AccessDenied", "Request has expired.")
        task = service.lookup(task_id)
        if (
            task is None
            or task.snapshot(service.clock.monotonic()).status is not TaskStatus.COMPLETED
        ):
            return _storage_error(404, "NoSuchKey", "The specified key does not exist.")
        files = task.succeeded_file_ids()
        if task.task_type is not TaskType.PACKAGE_DOWNLOAD or not files:
            return _storage_error(404, "NoSuchKey", "The specified key does not exist.")
        return web.Response(
            body=build_zip(files),
            content_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{task.zip_name}"'},
        )

    async def stats(self, _: web.Request) -> web.Response:
        """``GET /_emulator/stats``: the counters as JSON (emulator only, not authenticated).

        Not counted in :attr:`EmulatorStats.requests`, so watching a soak does not change it.
        """
        body = self.service.stats.to_dict()
        body["tasks_held"] = len(self.service.store)
        return json_response(200, body)


def _trace_id(request: web.Request) -> str:
    # Echo the caller's trace id, as the service does; else make a 58-character one.
    return request.headers.get("X-Traceid") or secrets.token_hex(29)


def _storage_error(status: int, code: str, message: str) -> web.Response:
    # The object store answers in XML, not in the API's JSON.
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return web.Response(status=status, text=xml, content_type="application/xml")
