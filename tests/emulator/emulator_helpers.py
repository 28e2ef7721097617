"""Helpers for the emulator tests: request bodies, an HTTP helper, app-signature headers."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import aiohttp
from yarl import URL

from koodrive_tasks import AppSignature
from koodrive_tasks.emulator import Emulator

CREATE = "/koodrive/ose/v1/share/tasks"
DETAIL = "/koodrive/ose/v1/share/taskDetail"
JOBS = "/koodrive/ose/v1/jobs"
CANCEL = "/koodrive/ose/v1/cancel"


def create_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "taskType": 1,
        "containerId": "container-1",
        "fileIds": ["f1", "f2", "f3"],
        "zipName": "a.zip",
        "shareId": "share-1",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def job_body(job_type: int = 1, **overrides: Any) -> dict[str, Any]:
    """A valid create body for a job of ``job_type`` (a copy by default); ``None`` drops a key."""
    body: dict[str, Any] = {
        "taskType": job_type,
        "dstContainerId": "dst-1",
        "taskInfo": {
            "srcContainerId": "src-1",
            "fileInfo": [{"fileId": f, "filePath": f"/{f}"} for f in ("f1", "f2", "f3", "f4")],
            "newFilePath": "/target",
        },
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


class Api:
    """Small helpers that talk to an emulator over real HTTP."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    @staticmethod
    def bearer(emu: Emulator) -> dict[str, str]:
        return {"Authorization": f"Bearer {emu.token}"}

    async def post(
        self, emu: Emulator, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with self.http.post(
            emu.url + path,
            data=data,
            headers=headers if headers is not None else self.bearer(emu),
        ) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def create(self, emu: Emulator, **overrides: Any) -> str:
        status, body = await self.post(emu, CREATE, create_body(**overrides))
        assert status == 200, body
        task_id = body["taskId"]
        assert isinstance(task_id, str)
        return task_id

    async def detail(
        self, emu: Emulator, task_id: str, share_id: str = "share-1"
    ) -> tuple[int, Any]:
        return await self.post(emu, DETAIL, {"taskId": task_id, "shareId": share_id})

    async def info(self, emu: Emulator, task_id: str, share_id: str = "share-1") -> dict[str, Any]:
        status, body = await self.detail(emu, task_id, share_id)
        assert status == 200, body
        info = body.get("jobInfo") or body.get("taskInfo")
        assert isinstance(info, dict)
        return info

    async def get(
        self, emu: Emulator, path: str, query: str = "", headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        url = emu.url + path + (f"?{query}" if query else "")
        async with self.http.get(
            URL(url, encoded=True), headers=headers if headers is not None else self.bearer(emu)
        ) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def create_job(self, emu: Emulator, body: dict[str, Any] | None = None) -> str:
        status, answer = await self.post(emu, JOBS, body if body is not None else job_body())
        assert status == 200, answer
        job_id = answer["data"]
        assert isinstance(job_id, str)
        return job_id

    async def job(self, emu: Emulator, job_id: str) -> dict[str, Any]:
        """The ``data`` of a job's detail (asserting HTTP 200 and a zero code)."""
        status, body = await self.get(emu, f"/koodrive/ose/v1/{job_id}")
        assert status == 200, body
        assert body["code"] in (0, "0")
        data = body["data"]
        assert isinstance(data, dict)
        return data

    async def list_jobs(self, emu: Emulator, query: str = "offset=0&limit=100") -> tuple[int, Any]:
        return await self.get(emu, JOBS, query)

    async def cancel_job(self, emu: Emulator, job_id: str) -> tuple[int, Any]:
        return await self.post(emu, CANCEL, {"jobId": job_id})


def signed_headers(
    emu: Emulator,
    path: str,
    body: bytes,
    *,
    method: str = "POST",
    query: str = "",
    x_date: datetime | None = None,
    secret: str | None = None,
    app_id: str | None = None,
) -> dict[str, str]:
    """App-signature headers for a request to the emulator, signed by the public AppSignature."""
    url = URL(emu.url + path + (f"?{query}" if query else ""), encoded=True)
    auth = AppSignature(app_id or emu.app_id, secret or emu.app_secret, emu.user_id)
    headers = auth.sign(method, url, body, x_date or datetime.now(timezone.utc))
    headers["Content-Type"] = "application/json"
    return headers
