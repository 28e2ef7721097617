"""Fakes shared by the tests: a KooDrive mocked with aioresponses and response-body builders."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from unittest import mock

from aiohttp import client_reqrep
from aioresponses import CallbackResult, aioresponses
from aioresponses import core as aioresponses_core

from koodrive_tasks import BearerToken, KooDriveClient, PollPolicy, TaskInfo
from koodrive_tasks.testing import VirtualClock

BASE = "https://kd.example.com"
DETAIL = f"{BASE}/koodrive/ose/v1/share/taskDetail"
CREATE = f"{BASE}/koodrive/ose/v1/share/tasks"
JOBS = f"{BASE}/koodrive/ose/v1/jobs"
CANCEL = f"{BASE}/koodrive/ose/v1/cancel"
TOKEN = "tok-SECRET-0123456789"
URL_QUERY = "X-Sig=SIGNED-QUERY-SECRET&Expires=1"
PACKAGE_URL = f"https://obs.example.com/pkg/a.zip?{URL_QUERY}"


class _NullStreamWriter:
    """What aiohttp >= 3.14 expects as `stream_writer` for a request already sent."""

    output_size = 0


class CompatClientResponse(client_reqrep.ClientResponse):
    """aioresponses 0.7.x builds responses without `stream_writer` (aioresponses#289)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _NullStreamWriter())
        super().__init__(*args, **kwargs)


class MockKooDrive(aioresponses):
    """aioresponses that works with aiohttp 3.14 and knows KooDrive's routes."""

    def __enter__(self) -> MockKooDrive:
        # aioresponses falls back to the module-level name for plain and callback responses.
        self._compat = mock.patch.object(aioresponses_core, "ClientResponse", CompatClientResponse)
        self._compat.start()
        super().__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        super().__exit__(*exc_info)
        self._compat.stop()

    def detail(self, *, status: int = 200, repeat: bool = False, **kwargs: Any) -> None:
        self.post(DETAIL, status=status, repeat=repeat, **kwargs)

    def requests_to(self, url: str) -> list[Any]:
        return [
            call for (method, u), calls in self.requests.items() if str(u) == url for call in calls
        ]

    def bodies_to(self, url: str) -> list[Any]:
        """The JSON bodies of the requests sent to ``url``, decoded, oldest first."""
        return [json.loads(call.kwargs["data"]) for call in self.requests_to(url)]


def job_url(job_id: str) -> str:
    """The detail URL of a job (the id as sent: percent-encoded)."""
    return f"{BASE}/koodrive/ose/v1/{job_id}"


def job_info(
    status: int,
    progress: int = 0,
    *,
    job_id: str = "1309243162258308352",
    job_type: int = 1,
    result: int = 0,
    url: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """One ``jobInfo`` object (a detail's, or an entry of the list)."""
    return {
        "taskId": job_id,
        "taskName": "copy 1 item",
        "userId": "u1",
        "taskType": job_type,
        "actionType": {1: 101, 2: 201, 3: 301, 5: 502, 7: 701}.get(job_type, 0),
        "status": status,
        "taskResultCode": result,
        "resultCode": 0,
        "progress": progress,
        "downloadUrl": url,
        "contentNum": 1,
        "containerId": "c2",
        "tenantId": "tenant-1",
        "beginTime": "20231212095227" if status else "",
        "endTime": "20231212095300" if status >= 2 else "",
        "createTime": "20231212095200",
        **extra,
    }


def job_detail(
    status: int,
    progress: int = 0,
    *,
    files: Any = None,
    entries: Any = None,
    code: object = 0,
    **info: Any,
) -> dict[str, Any]:
    """A job detail body: ``{"code", "msg", "data": {"jobInfo", "taskInfos"...}}``."""
    data: dict[str, Any] = {"jobInfo": job_info(status, progress, **info)}
    if files is not None:
        data["taskInfos"] = files
    if entries is not None:
        data["uncompressedFileList"] = entries
    return {"code": code, "msg": "success", "data": data}


def shape_a(
    status: int,
    progress: int = 0,
    *,
    result: int = 0,
    url: str = "",
    task_id: str = "t1",
    **extra: Any,
) -> dict[str, Any]:
    """A taskDetail body in the older documented shape."""
    return {
        "code": "0",
        "msg": "成功",
        "taskInfo": {
            "userId": "u1",
            "taskId": task_id,
            "taskType": 1,
            "taskStatus": status,
            "taskResultCode": result,
            "resultCode": 0,
            "createTime": "20261129101500",
            "startTime": "20261129101501" if status else "",
            "endTime": "20261129102000" if status >= 2 else "",
            "progress": progress,
            "downloadUrl": url,
            **extra,
        },
    }


def shape_b(
    status: int,
    progress: int = 0,
    *,
    result: int = 0,
    url: str = "",
    task_id: str = "t1",
    files: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    """A taskDetail body in the current documented shape."""
    body: dict[str, Any] = {
        "code": 0,
        "msg": "success",
        "jobInfo": {
            "userId": "u1",
            "taskId": task_id,
            "taskType": 1,
            "taskStatus": status,
            "taskResultCode": result,
            "resultCode": 0,
            "createTime": "20261129101500",
            "startTime": "",
            "endTime": "",
            "progress": progress,
            "downloadUrl": url,
            **extra,
        },
    }
    if files is not None:
        body["taskInfos"] = files
    return body


FAST = PollPolicy(
    initial_delay=1.0, factor=2.0, max_delay=8.0, jitter=0.0, timeout=600.0, progress_aware=False
)
"""Deterministic polling: 1, 2, 4, 8, 8 ... virtual seconds apart."""


def task_id_of(kwargs: Mapping[str, Any]) -> str:
    """The taskId a mocked taskDetail request asks for (from a callback's kwargs)."""
    return str(json.loads(kwargs["data"])["taskId"])


def finish_after(polls_before_done: int) -> Callable[..., CallbackResult]:
    """A taskDetail callback: each task runs for `polls_before_done` polls, then completes."""
    seen: dict[str, int] = {}

    def answer(url: object, **kwargs: Any) -> CallbackResult:
        task_id = task_id_of(kwargs)
        seen[task_id] = seen.get(task_id, 0) + 1
        if seen[task_id] > polls_before_done:
            return CallbackResult(
                payload=shape_b(2, 100, result=1, url=PACKAGE_URL, task_id=task_id)
            )
        return CallbackResult(payload=shape_a(1, 10 * seen[task_id], task_id=task_id))

    return answer


def one_shot_client(clock: VirtualClock | None = None, **settings: Any) -> KooDriveClient:
    """A client of the mocked KooDrive that tries each call once: one answer, one outcome."""
    return KooDriveClient(
        BASE,
        auth=BearerToken(TOKEN),
        clock=clock or VirtualClock(),
        policy=FAST,
        attempts=1,
        **settings,
    )


async def read_detail(
    mock: MockKooDrive,
    kd: KooDriveClient,
    payload: object,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    task_id: str = "t1",
) -> TaskInfo:
    """Serve ``payload`` (as JSON) once at taskDetail and read it with ``get_share_task``."""
    mock.detail(
        status=status, body=json.dumps(payload), content_type="application/json", headers=headers
    )
    return await kd.get_share_task("s1", task_id)


async def detail_via_client(
    payload: object,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    task_id: str = "t1",
) -> TaskInfo:
    """What a fresh one-shot client's ``get_share_task`` makes of one taskDetail answer."""
    with MockKooDrive() as mock:
        async with one_shot_client() as kd:
            return await read_detail(
                mock, kd, payload, status=status, headers=headers, task_id=task_id
            )
