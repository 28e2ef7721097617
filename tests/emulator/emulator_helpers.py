"""Helpers for the emulator tests: request bodies, an HTTP helper, app-signature headers."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import aiohttp

from koodrive_tasks import _signing
from koodrive_tasks.emulator import Emulator

CREATE = "/koodrive/ose/v1/share/tasks"
DETAIL = "/koodrive/ose/v1/share/taskDetail"


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


def signed_headers(
    emu: Emulator,
    path: str,
    body: bytes,
    *,
    query: str = "",
    x_date: datetime | None = None,
    secret: str | None = None,
    app_id: str | None = None,
) -> dict[str, str]:
    """App-signature headers for a POST to the emulator, built with ``_signing``."""
    host = emu.url.removeprefix("http://")
    headers = {
        "host": host,
        "x-date": _signing.format_x_date(x_date or datetime.now(timezone.utc)),
        "x-user-id": emu.user_id,
    }
    canonical = _signing.canonical_request(
        "POST", path, query, headers, _signing.SIGNED_HEADERS, body
    )
    sig = _signing.signature(secret or emu.app_secret, canonical)
    return {
        "Host": host,
        "X-Date": headers["x-date"],
        "X-User-Id": headers["x-user-id"],
        "Content-Type": "application/json",
        "Authorization": _signing.authorization_header(
            app_id or emu.app_id, sig, _signing.SIGNED_HEADERS
        ),
    }
