"""KooDriveClient's one-shot calls: bodies, headers, retries, validation, session ownership."""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
from collections import namedtuple
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from kd_fakes import BASE, CREATE, DETAIL, FAST, TOKEN, MockKooDrive, shape_a, shape_b

from koodrive_tasks import (
    BearerToken,
    ClientClosedError,
    ConnectError,
    InvalidArgumentError,
    KooDriveClient,
    KooDriveError,
    MalformedResponseError,
    ProtocolError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    TargetFolder,
    TaskStatus,
    TaskType,
    TransportError,
)
from koodrive_tasks.testing import VirtualClock


def sent(mock: MockKooDrive, url: str) -> list[dict[str, Any]]:
    return [json.loads(call.kwargs["data"]) for call in mock.requests_to(url)]


def sent_headers(mock: MockKooDrive, url: str) -> list[Any]:
    return [call.kwargs["headers"] for call in mock.requests_to(url)]


def connector_error() -> aiohttp.ClientConnectorError:
    key = namedtuple("ConnectionKey", "host port is_ssl ssl proxy proxy_auth proxy_headers_hash")(
        "kd.example.com", 443, True, True, None, None, None
    )
    return aiohttp.ClientConnectorError(key, OSError(111, "Connection refused"))


# --- get_share_task ---------------------------------------------------------------------


async def test_get_share_task_happy_path(mock: MockKooDrive, client: KooDriveClient) -> None:
    """The detail request posts {taskId, shareId} as JSON and returns the parsed task."""
    mock.detail(payload=shape_b(1, 70))
    info = await client.get_share_task("s1", "t1")
    assert info.status is TaskStatus.PROCESSING
    assert info.progress == 70
    assert sent(mock, DETAIL) == [{"taskId": "t1", "shareId": "s1"}]
    headers = sent_headers(mock, DETAIL)[0]
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert "language" not in headers
    assert "X-Hw-Agentname" not in headers
    assert len(headers["X-Traceid"]) == 58
    assert mock.requests_to(DETAIL)[0].kwargs["allow_redirects"] is False


async def test_get_share_task_with_kdstoken(mock: MockKooDrive, client: KooDriveClient) -> None:
    """kdstoken is sent in the body only when given."""
    mock.detail(payload=shape_a(1))
    await client.get_share_task("s1", "t1", kdstoken="kds-xyz")
    assert sent(mock, DETAIL) == [{"taskId": "t1", "shareId": "s1", "kdstoken": "kds-xyz"}]


async def test_language_and_agent_headers(mock: MockKooDrive, clock: VirtualClock) -> None:
    """language and X-Hw-Agentname are sent when configured."""
    mock.detail(payload=shape_a(1))
    async with KooDriveClient(
        BASE, auth=BearerToken(TOKEN), clock=clock, language="zh-CN", agent_name="carrier-x"
    ) as kd:
        await kd.get_share_task("s1", "t1")
    headers = sent_headers(mock, DETAIL)[0]
    assert headers["language"] == "zh-CN"
    assert headers["X-Hw-Agentname"] == "carrier-x"


async def test_base_path_prefix_kept(mock: MockKooDrive, clock: VirtualClock) -> None:
    """A base URL with a path prefix (and trailing slash) is kept in front of the API path."""
    url = "https://kd.example.com/gw/koodrive/ose/v1/share/taskDetail"
    mock.post(url, payload=shape_a(1))
    async with KooDriveClient(f"{BASE}/gw/", auth=BearerToken(TOKEN), clock=clock) as kd:
        await kd.get_share_task("s1", "t1")
    assert len(mock.requests_to(url)) == 1


async def test_body_is_utf8_json(mock: MockKooDrive, client: KooDriveClient) -> None:
    """Non-ASCII ids are sent as UTF-8 JSON, not as \\u escapes."""
    mock.detail(payload=shape_a(1, task_id="任务"))
    await client.get_share_task("共享", "任务")
    raw = mock.requests_to(DETAIL)[0].kwargs["data"]
    assert "共享".encode() in raw


@pytest.mark.parametrize(
    ("share", "task"), [("", "t1"), ("s1", ""), ("  ", "t1"), (None, "t1"), ("s1", 5)]
)
async def test_get_share_task_invalid_ids(
    mock: MockKooDrive, client: KooDriveClient, share: Any, task: Any
) -> None:
    """Empty or non-string ids are InvalidArgumentErrors, with no request sent."""
    with pytest.raises(InvalidArgumentError):
        await client.get_share_task(share, task)
    assert mock.requests_to(DETAIL) == []


async def test_500_then_200_is_retried(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """A transient 500 is retried after a (virtual) backoff sleep and the result returned."""
    mock.detail(status=500, body="")
    mock.detail(payload=shape_a(2, 100, result=1))
    info = await client.get_share_task("s1", "t1")
    assert info.status is TaskStatus.COMPLETED
    assert len(mock.requests_to(DETAIL)) == 2
    assert clock.sleeps == 1


async def test_503_exhausts_attempts(mock: MockKooDrive, clock: VirtualClock) -> None:
    """Four 503s with attempts=4 give ServerError after exactly four tries, distinct trace ids."""
    mock.detail(status=503, body="<html>unavailable</html>", content_type="text/html", repeat=True)
    async with KooDriveClient(BASE, auth=BearerToken(TOKEN), clock=clock, attempts=4) as kd:
        with pytest.raises(ServerError) as info:
            await kd.get_share_task("s1", "t1")
    calls = mock.requests_to(DETAIL)
    assert len(calls) == 4
    traces = [c.kwargs["headers"]["X-Traceid"] for c in calls]
    assert len(set(traces)) == 4
    assert all(len(t) == 58 for t in traces)
    assert info.value.trace_id == traces[-1]
    assert clock.sleeps == 3


@pytest.mark.parametrize("attempts", [1, 2, 7])
async def test_attempts_setting(mock: MockKooDrive, clock: VirtualClock, attempts: int) -> None:
    """get_share_task tries exactly `attempts` times."""
    mock.detail(status=502, body="", repeat=True)
    async with KooDriveClient(BASE, auth=BearerToken(TOKEN), clock=clock, attempts=attempts) as kd:
        with pytest.raises(ServerError):
            await kd.get_share_task("s1", "t1")
    assert len(mock.requests_to(DETAIL)) == attempts


async def test_400_not_retried(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """A 400 is raised at once, without a retry or a sleep."""
    mock.detail(status=400, payload={"code": "13000102", "msg": "bad"}, repeat=True)
    with pytest.raises(KooDriveError):
        await client.get_share_task("s1", "t1")
    assert len(mock.requests_to(DETAIL)) == 1
    assert clock.sleeps == 0


async def test_429_retry_after_honoured(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """A 429's Retry-After sets the (virtual) sleep before the retry, stretched by at most 20 %."""
    mock.detail(status=429, headers={"Retry-After": "10"}, body="")
    mock.detail(payload=shape_a(1))
    await client.get_share_task("s1", "t1")
    assert 10.0 <= clock.monotonic() <= 12.0


async def test_connection_error_is_transport_error(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """A connection error is a TransportError carrying the trace id, after all attempts."""
    mock.detail(exception=aiohttp.ClientConnectionError("reset"), repeat=True)
    with pytest.raises(TransportError) as info:
        await client.get_share_task("s1", "t1")
    calls = mock.requests_to(DETAIL)
    assert len(calls) == 4
    assert info.value.trace_id == calls[-1].kwargs["headers"]["X-Traceid"]
    assert info.value.retryable is True


async def test_connection_error_then_success(mock: MockKooDrive, client: KooDriveClient) -> None:
    """A transient connection error is retried."""
    mock.detail(exception=aiohttp.ServerDisconnectedError())
    mock.detail(payload=shape_a(1))
    assert (await client.get_share_task("s1", "t1")).status is TaskStatus.PROCESSING


async def test_connector_error_is_connect_error(mock: MockKooDrive, client: KooDriveClient) -> None:
    """A refused connection is a ConnectError (a TransportError)."""
    mock.detail(exception=connector_error(), repeat=True)
    with pytest.raises(ConnectError):
        await client.get_share_task("s1", "t1")


async def test_timeout_is_request_timeout_error(mock: MockKooDrive, client: KooDriveClient) -> None:
    """asyncio.TimeoutError is a RequestTimeoutError, which is also a TimeoutError."""
    mock.detail(exception=asyncio.TimeoutError(), repeat=True)
    with pytest.raises(RequestTimeoutError) as info:
        await client.get_share_task("s1", "t1")
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, TransportError)
    assert len(mock.requests_to(DETAIL)) == 4


async def test_aiohttp_server_timeout_is_request_timeout(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """aiohttp's read timeout is a RequestTimeoutError too."""
    mock.detail(exception=aiohttp.ServerTimeoutError("read"), repeat=True)
    with pytest.raises(RequestTimeoutError):
        await client.get_share_task("s1", "t1")


# --- create_share_task --------------------------------------------------------------------


async def test_create_package_download(mock: MockKooDrive, client: KooDriveClient) -> None:
    """A package-download task posts taskType 1 with containerId, fileIds, zipName, shareId."""
    mock.post(CREATE, payload={"code": 0, "msg": "success", "taskId": "new-1"})
    task_id = await client.create_share_task(
        "s1", ["f1", "f2"], container_id="c1", zip_name="a.zip"
    )
    assert task_id == "new-1"
    assert sent(mock, CREATE) == [
        {
            "taskType": 1,
            "containerId": "c1",
            "fileIds": ["f1", "f2"],
            "zipName": "a.zip",
            "shareId": "s1",
        }
    ]
    assert sent_headers(mock, CREATE)[0]["Content-Type"] == "application/json"


async def test_create_dump(mock: MockKooDrive, client: KooDriveClient) -> None:
    """A dump task posts taskType 2, targetFileId {fileId, containerId} and the kdstoken."""
    mock.post(CREATE, payload={"code": "0", "msg": "成功", "taskId": 777})
    task_id = await client.create_share_task(
        "s1",
        ("f1",),
        container_id="c1",
        task_type=TaskType.DUMP,
        target=TargetFolder("mine"),
        kdstoken="kds-1",
    )
    assert task_id == "777"
    assert sent(mock, CREATE) == [
        {
            "taskType": 2,
            "containerId": "c1",
            "fileIds": ["f1"],
            "shareId": "s1",
            "targetFileId": {"fileId": "root", "containerId": "mine"},
            "kdstoken": "kds-1",
        }
    ]


async def test_create_accepts_generator_and_int_task_type(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """file_ids may be any iterable and task_type a plain int."""
    mock.post(CREATE, payload={"code": 0, "taskId": "n"})
    await client.create_share_task(
        "s1",
        (f"f{i}" for i in range(1000)),
        container_id="c1",
        task_type=2,  # type: ignore[arg-type]
        target=TargetFolder("c2", "folder-9"),
    )
    body = sent(mock, CREATE)[0]
    assert len(body["fileIds"]) == 1000
    assert body["taskType"] == 2
    assert body["targetFileId"] == {"fileId": "folder-9", "containerId": "c2"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"file_ids": []},
        {"file_ids": [f"f{i}" for i in range(1001)]},
        {"file_ids": ["f1", 2]},
        {"file_ids": ["f1", None]},
        {"file_ids": ["f1", ""]},
        {"zip_name": None},
        {"zip_name": ""},
        {"target": TargetFolder("c2")},
        {"task_type": TaskType.DUMP, "zip_name": None},
        {"task_type": TaskType.DUMP, "zip_name": "a.zip", "target": TargetFolder("c2")},
        {"task_type": TaskType.DUMP, "zip_name": "", "target": TargetFolder("c2")},
        {"container_id": ""},
        {"share_id": ""},
        {"share_id": None},
    ],
)
async def test_create_validation_before_any_request(
    mock: MockKooDrive, client: KooDriveClient, kwargs: dict[str, Any]
) -> None:
    """Invalid create arguments are InvalidArgumentErrors and no request is sent."""
    args: dict[str, Any] = {
        "share_id": "s1",
        "file_ids": ["f1"],
        "container_id": "c1",
        "zip_name": "a.zip",
    }
    args.update(kwargs)
    share_id = args.pop("share_id")
    file_ids = args.pop("file_ids")
    with pytest.raises(InvalidArgumentError):
        await client.create_share_task(share_id, file_ids, **args)
    assert mock.requests == {}


@pytest.mark.parametrize("task_type", [3, 0, "zip"])
async def test_create_unknown_task_type(
    mock: MockKooDrive, client: KooDriveClient, task_type: Any
) -> None:
    """An unknown task type is an InvalidArgumentError before any request."""
    with pytest.raises(InvalidArgumentError):
        await client.create_share_task(
            "s1", ["f1"], container_id="c1", task_type=task_type, zip_name="a.zip"
        )
    assert mock.requests == {}


async def test_create_503_not_retried(mock: MockKooDrive, client: KooDriveClient) -> None:
    """A 503 on create is raised after one request: the task may have been created."""
    mock.post(CREATE, status=503, body="", repeat=True)
    with pytest.raises(ServerError):
        await client.create_share_task("s1", ["f1"], container_id="c1", zip_name="a.zip")
    assert len(mock.requests_to(CREATE)) == 1


@pytest.mark.parametrize("exception", [aiohttp.ServerDisconnectedError(), asyncio.TimeoutError()])
async def test_create_ambiguous_transport_error_not_retried(
    mock: MockKooDrive, client: KooDriveClient, exception: Exception
) -> None:
    """A dropped connection or timeout on create is not retried (the server may have acted)."""
    mock.post(CREATE, exception=exception, repeat=True)
    with pytest.raises(TransportError):
        await client.create_share_task("s1", ["f1"], container_id="c1", zip_name="a.zip")
    assert len(mock.requests_to(CREATE)) == 1


async def test_create_429_retried(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """A 429 on create is retried (the server did nothing) after its Retry-After."""
    mock.post(CREATE, status=429, headers={"Retry-After": "3"}, body="")
    mock.post(CREATE, payload={"code": 0, "taskId": "new-2"})
    assert (
        await client.create_share_task("s1", ["f1"], container_id="c1", zip_name="a.zip") == "new-2"
    )
    calls = mock.requests_to(CREATE)
    assert len(calls) == 2
    assert calls[0].kwargs["data"] == calls[1].kwargs["data"]
    assert calls[0].kwargs["headers"]["X-Traceid"] != calls[1].kwargs["headers"]["X-Traceid"]
    assert 3.0 <= clock.monotonic() <= 3.6


async def test_create_429_exhausts_attempts(mock: MockKooDrive, client: KooDriveClient) -> None:
    """Persistent 429s on create give RateLimitedError after `attempts` tries."""
    mock.post(CREATE, status=429, body="", repeat=True)
    with pytest.raises(RateLimitedError):
        await client.create_share_task("s1", ["f1"], container_id="c1", zip_name="a.zip")
    assert len(mock.requests_to(CREATE)) == 4


async def test_create_connect_error_retried(mock: MockKooDrive, client: KooDriveClient) -> None:
    """A refused connection on create is retried (nothing reached the server)."""
    mock.post(CREATE, exception=connector_error())
    mock.post(CREATE, payload={"code": 0, "taskId": "new-3"})
    assert (
        await client.create_share_task("s1", ["f1"], container_id="c1", zip_name="a.zip") == "new-3"
    )


async def test_create_answer_without_id(mock: MockKooDrive, client: KooDriveClient) -> None:
    """A create answer without a task id is a ProtocolError, sent once."""
    mock.post(CREATE, payload={"code": 0, "msg": "success"}, repeat=True)
    with pytest.raises(ProtocolError):
        await client.create_share_task("s1", ["f1"], container_id="c1", zip_name="a.zip")
    assert len(mock.requests_to(CREATE)) == 1


# --- session ownership --------------------------------------------------------------------


async def test_injected_session_not_closed(mock: MockKooDrive, clock: VirtualClock) -> None:
    """A caller's session is used and stays open after the client exits."""
    mock.detail(payload=shape_a(1))
    async with aiohttp.ClientSession() as session:
        async with KooDriveClient(
            BASE, auth=BearerToken(TOKEN), session=session, clock=clock
        ) as kd:
            await kd.get_share_task("s1", "t1")
        assert not session.closed
    assert session.closed


async def unclosed_session_warnings(run: Callable[[], Awaitable[object]]) -> list[str]:
    """The "Unclosed client session" warnings raised while ``run()`` and a collection run."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await run()
        gc.collect()
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, ResourceWarning) and "Unclosed client session" in str(w.message)
    ]


async def test_own_session_closed(clock: VirtualClock) -> None:
    """Without an injected session the client creates one and closes it on exit."""

    async def drop_an_open_session() -> None:
        aiohttp.ClientSession()

    async def use_and_close_a_client() -> None:
        # A mock of its own: the mock keeps every request's session until it is dropped.
        with MockKooDrive() as mock:
            mock.detail(payload=shape_a(1))
            kd = KooDriveClient(BASE, auth=BearerToken(TOKEN), clock=clock)
            async with kd:
                await kd.get_share_task("s1", "t1")
            with pytest.raises(ClientClosedError):
                await kd.get_share_task("s1", "t1")
            assert len(mock.requests_to(DETAIL)) == 1

    # The check itself works: an aiohttp session dropped unclosed is reported.
    assert await unclosed_session_warnings(drop_an_open_session)
    assert await unclosed_session_warnings(use_and_close_a_client) == []


async def test_closed_client_refuses_calls(clock: VirtualClock) -> None:
    """A closed client raises a KooDriveError instead of sending."""
    kd = KooDriveClient(BASE, auth=BearerToken(TOKEN), clock=clock)
    await kd.close()
    with pytest.raises(KooDriveError):
        await kd.get_share_task("s1", "t1")


# --- base URL and settings ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://kd.example.com",
        "https://user:pass@kd.example.com",
        "https://token@kd.example.com",
        "https://kd.example.com/?a=1",
        "ftp://kd.example.com",
        "kd.example.com",
        "/relative/path",
        "",
        "https://",
    ],
)
def test_base_url_rejected(url: str) -> None:
    """Non-https, credential- or query-carrying, or relative base URLs are InvalidArgumentErrors."""
    with pytest.raises(InvalidArgumentError):
        KooDriveClient(url, auth=BearerToken(TOKEN))


def test_base_url_credentials_not_echoed() -> None:
    """The error for a base URL with credentials does not repeat them."""
    with pytest.raises(InvalidArgumentError) as info:
        KooDriveClient("https://user:hunter2@kd.example.com", auth=BearerToken(TOKEN))
    assert "hunter2" not in str(info.value)


async def test_http_allowed_when_insecure_urls_allowed(
    mock: MockKooDrive, clock: VirtualClock
) -> None:
    """http is accepted with allow_insecure_urls=True (a local emulator)."""
    url = "http://127.0.0.1:8080/koodrive/ose/v1/share/taskDetail"
    mock.post(url, payload=shape_a(1))
    async with KooDriveClient(
        "http://127.0.0.1:8080", auth=BearerToken(TOKEN), clock=clock, allow_insecure_urls=True
    ) as kd:
        await kd.get_share_task("s1", "t1")
    assert len(mock.requests_to(url)) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"request_timeout": 0},
        {"request_timeout": -1},
        {"request_timeout": float("nan")},
        {"attempts": 0},
        {"max_response_bytes": 10},
    ],
)
def test_invalid_settings_rejected(kwargs: dict[str, Any]) -> None:
    """Invalid client settings are InvalidArgumentErrors."""
    with pytest.raises(InvalidArgumentError):
        KooDriveClient(BASE, auth=BearerToken(TOKEN), **kwargs)


async def test_fresh_trace_id_per_request(mock: MockKooDrive, client: KooDriveClient) -> None:
    """Every request gets a fresh 58-character X-Traceid."""
    mock.detail(payload=shape_a(1), repeat=True)
    for _ in range(5):
        await client.get_share_task("s1", "t1")
    traces = [h["X-Traceid"] for h in sent_headers(mock, DETAIL)]
    assert len(set(traces)) == 5
    assert all(len(t) == 58 and t.isascii() and t.isalnum() for t in traces)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"])
async def test_answer_decoded_like_json_loads(
    mock: MockKooDrive, client: KooDriveClient, encoding: str
) -> None:
    """The UTF-8 shortcut in decoding changes nothing: a BOM or UTF-16/32 still parses."""
    mock.detail(body=json.dumps(shape_b(1, 70, userId="ü")).encode(encoding))
    info = await client.get_share_task("s1", "t1")
    assert info.progress == 70
    assert info.user_id == "ü"


async def test_invalid_utf8_answer_is_malformed(mock: MockKooDrive, client: KooDriveClient) -> None:
    """Bytes that are not UTF-8 are a MalformedResponseError, as json.loads would have it."""
    mock.detail(
        body=b'{"code":0,"jobInfo":{"taskId":"t1","taskStatus":1,"userId":"\xff"}}', repeat=True
    )
    with pytest.raises(MalformedResponseError, match="not JSON"):
        await client.get_share_task("s1", "t1")


async def test_poll_body_bytes_match_the_general_encoding(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """get_share_task sends its pre-encoded body: the very bytes json.dumps gives."""
    mock.detail(payload=shape_a(1, task_id='t"1\\'), repeat=True)
    await client.get_share_task("s\u00e9\n", 't"1\\', kdstoken="k\u2028")
    raw = mock.requests_to(DETAIL)[0].kwargs["data"]
    body = {"taskId": 't"1\\', "shareId": "s\u00e9\n", "kdstoken": "k\u2028"}
    assert raw == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


async def test_repr_shows_base_url(clock: VirtualClock) -> None:
    """The client's repr names its base URL and hides the token."""
    kd = KooDriveClient(f"{BASE}/gw", auth=BearerToken(TOKEN), clock=clock, policy=FAST)
    assert "kd.example.com/gw" in repr(kd)
    assert TOKEN not in repr(kd)
    await kd.close()


async def test_text_with_a_lone_surrogate_is_an_invalid_argument(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """A lone surrogate has no UTF-8: a typed error before any request, never UnicodeEncodeError."""
    with pytest.raises(InvalidArgumentError, match="lone surrogate"):
        await client.get_share_task("s1", "t\udc00")
    with pytest.raises(InvalidArgumentError, match="lone surrogate"):
        client.wait_for_task("s\ud800", "t1")
    with pytest.raises(InvalidArgumentError, match="lone surrogate") as caught:
        await client.get_share_task("s1", "t1", kdstoken="kds-\udfff-secret")
    assert "kds-" not in str(caught.value)
    with pytest.raises(InvalidArgumentError, match="lone surrogate"):
        await client.create_share_task("s1", ["f\ud800"], container_id="c1", zip_name="a.zip")
    assert not mock.requests


async def test_repeated_queries_send_each_its_own_ids_and_kdstoken(
    mock: MockKooDrive, client: KooDriveClient
) -> None:
    """get_share_task keeps the requests it built: a kept one never stands in for another."""
    mock.detail(payload=shape_a(1), repeat=True)
    mock.detail(payload=shape_a(1, task_id="t2"), repeat=True)
    calls = [
        ("s1", "t1", None),
        ("s1", "t1", "kds-a"),
        ("s1", "t1", "kds-b"),
        ("s2", "t1", "kds-a"),
    ]
    for share_id, task_id, kdstoken in calls * 2:
        await client.get_share_task(share_id, task_id, kdstoken=kdstoken)
    await client.get_share_task("s1", "t1", kdstoken="")  # empty: no kdstoken, as None
    expected = [
        {"taskId": t, "shareId": s, **({"kdstoken": k} if k else {})} for s, t, k in calls * 2
    ]
    assert sent(mock, DETAIL) == [*expected, {"taskId": "t1", "shareId": "s1"}]


@pytest.mark.parametrize("kdstoken", [["kds"], {"k": "v"}, 5, b"kds"])
async def test_a_kdstoken_of_another_type_is_an_invalid_argument(
    mock: MockKooDrive, client: KooDriveClient, kdstoken: Any
) -> None:
    """Unhashable or not, a kdstoken that is not a string is refused before any request."""
    for _ in range(2):  # refused again: nothing was kept the first time
        with pytest.raises(InvalidArgumentError, match="kdstoken must be a string"):
            await client.get_share_task("s1", "t1", kdstoken=kdstoken)
    assert not mock.requests
