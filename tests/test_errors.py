"""Error answers become typed errors carrying status, code and trace id, never a secret."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from datetime import timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
from kd_fakes import BASE, DETAIL, FAST, TOKEN, MockKooDrive, shape_a

from koodrive_tasks import (
    APIError,
    AuthenticationError,
    BearerToken,
    ClockSkewError,
    InvalidParameterError,
    KooDriveClient,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    ServerError,
)
from koodrive_tasks.testing import VirtualClock

KDSTOKEN = "kds-SHARE-SECRET-987"


@pytest.fixture
async def kd(clock: VirtualClock) -> AsyncIterator[KooDriveClient]:
    """A client that tries each call once, so every answer maps to exactly one error."""
    async with KooDriveClient(
        BASE, auth=BearerToken(TOKEN), clock=clock, policy=FAST, attempts=1
    ) as client:
        yield client


def sent_trace_id(mock: MockKooDrive, index: int = -1) -> str:
    return mock.requests_to(DETAIL)[index].kwargs["headers"]["X-Traceid"]


async def query_error(mock: MockKooDrive, kd: KooDriveClient, **response: Any) -> Any:
    mock.detail(**response)
    with pytest.raises(Exception) as info:  # noqa: PT011 - the type is checked by each caller
        await kd.get_share_task("s1", "t1", kdstoken=KDSTOKEN)
    return info.value


def assert_context(error: Any, mock: MockKooDrive, status: int, code: str | None) -> None:
    trace_id = sent_trace_id(mock)
    assert len(trace_id) == 58
    assert error.http_status == status
    assert error.code == code
    assert error.trace_id == trace_id
    assert trace_id in str(error)


# --- service codes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("13000102", InvalidParameterError),
        ("13000301", NotFoundError),
        ("13000309", NotFoundError),
        ("13000410", PermissionDeniedError),
        ("13000311", APIError),
        (13000102, InvalidParameterError),
        (13000309, NotFoundError),
    ],
)
async def test_service_codes_on_400(
    mock: MockKooDrive, kd: KooDriveClient, code: object, cls: type[APIError]
) -> None:
    """HTTP 400 with a service code (string or integer) maps to the typed APIError."""
    error = await query_error(mock, kd, status=400, payload={"code": code, "msg": "no good"})
    assert type(error) is cls
    assert error.message == "no good"
    assert_context(error, mock, 400, str(code))
    assert error.retryable is False


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("13000102", InvalidParameterError),
        ("13000410", PermissionDeniedError),
        (13000301, NotFoundError),
    ],
)
async def test_nested_error_shape(
    mock: MockKooDrive, kd: KooDriveClient, code: object, cls: type[APIError]
) -> None:
    """An error nested as {"error": {...}} is read like a flat one."""
    error = await query_error(
        mock, kd, status=400, payload={"error": {"code": code, "msg": "nested msg"}}
    )
    assert type(error) is cls
    assert error.message == "nested msg"
    assert_context(error, mock, 400, str(code))


@pytest.mark.parametrize(
    ("status", "cls"), [(403, PermissionDeniedError), (404, NotFoundError), (409, APIError)]
)
async def test_status_without_code(
    mock: MockKooDrive, kd: KooDriveClient, status: int, cls: type[APIError]
) -> None:
    """A 4xx without a service code maps by HTTP status."""
    error = await query_error(mock, kd, status=status, body="nope", content_type="text/plain")
    assert type(error) is cls
    assert_context(error, mock, status, None)


# --- gateway and auth ---------------------------------------------------------------------


async def test_gateway_shape_401(mock: MockKooDrive, kd: KooDriveClient) -> None:
    """The API gateway's 401 shape is an AuthenticationError with code and request_id."""
    error = await query_error(
        mock,
        kd,
        status=401,
        payload={
            "error_code": "APIGW.0303",
            "error_msg": "Incorrect app authentication information",
            "request_id": "req-77",
        },
    )
    assert type(error) is AuthenticationError
    assert error.request_id == "req-77"
    assert error.message == "Incorrect app authentication information"
    assert_context(error, mock, 401, "APIGW.0303")
    assert len(mock.requests_to(DETAIL)) == 1


@pytest.mark.parametrize(
    "message",
    [
        "Incorrect app authentication information: X-Date is expired or in the future",
        "timestamp out of range",
        "check your clock",
    ],
)
async def test_401_skew_wording_is_clock_skew(
    mock: MockKooDrive, kd: KooDriveClient, message: str
) -> None:
    """A 401 whose message speaks of X-Date, timestamp or clock is a ClockSkewError."""
    error = await query_error(
        mock,
        kd,
        status=401,
        payload={"error_code": "APIGW.0303", "error_msg": message, "request_id": "r"},
    )
    assert type(error) is ClockSkewError
    assert isinstance(error, AuthenticationError)
    assert "NTP" in str(error)
    assert_context(error, mock, 401, "APIGW.0303")


async def test_gateway_throttling_code_on_429(mock: MockKooDrive, kd: KooDriveClient) -> None:
    """The gateway's throttling answer (429, APIGW.0308) is a RateLimitedError with retry_after."""
    error = await query_error(
        mock,
        kd,
        status=429,
        headers={"Retry-After": "7"},
        payload={
            "error_code": "APIGW.0308",
            "error_msg": "The throttling threshold has been reached",
            "request_id": "r",
        },
    )
    assert type(error) is RateLimitedError
    assert error.retry_after == 7


# --- throttling and server errors ---------------------------------------------------------


async def test_429_retry_after_seconds(mock: MockKooDrive, kd: KooDriveClient) -> None:
    """429 with Retry-After seconds is a RateLimitedError whose retry_after is those seconds."""
    error = await query_error(
        mock, kd, status=429, headers={"Retry-After": "12"}, payload={"code": "x", "msg": "slow"}
    )
    assert type(error) is RateLimitedError
    assert error.retry_after == 12.0
    assert error.retryable is True
    assert "12 s" in str(error)
    assert_context(error, mock, 429, "x")


async def test_429_retry_after_http_date(
    mock: MockKooDrive, kd: KooDriveClient, clock: VirtualClock
) -> None:
    """429 with an HTTP-date Retry-After is measured against the client's clock."""
    when = format_datetime(clock.now() + timedelta(seconds=90), usegmt=True)
    error = await query_error(mock, kd, status=429, headers={"Retry-After": when}, body="")
    assert type(error) is RateLimitedError
    assert error.retry_after == 90.0


async def test_429_without_retry_after(mock: MockKooDrive, kd: KooDriveClient) -> None:
    """429 without Retry-After has retry_after None."""
    error = await query_error(mock, kd, status=429, body="")
    assert type(error) is RateLimitedError
    assert error.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_html_is_server_error(
    mock: MockKooDrive, kd: KooDriveClient, status: int
) -> None:
    """5xx with an HTML body is a retryable ServerError."""
    error = await query_error(
        mock,
        kd,
        status=status,
        body="<html><body><h1>Bad Gateway</h1></body></html>",
        content_type="text/html",
    )
    assert type(error) is ServerError
    assert error.retryable is True
    assert_context(error, mock, status, None)


async def test_500_with_json_code(mock: MockKooDrive, kd: KooDriveClient) -> None:
    """A 500 with a JSON service code is still a ServerError, keeping the code."""
    error = await query_error(mock, kd, status=500, payload={"code": "13000102", "msg": "boom"})
    assert type(error) is ServerError
    assert_context(error, mock, 500, "13000102")


# --- HTTP 200 that is not a success -------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("13000102", InvalidParameterError),
        (13000309, NotFoundError),
        ("13000410", PermissionDeniedError),
        (13000311, APIError),
        ("1", APIError),
    ],
)
async def test_200_with_nonzero_code(
    mock: MockKooDrive, kd: KooDriveClient, code: object, cls: type[APIError]
) -> None:
    """HTTP 200 with a non-zero code is the API error for that code, not a task state."""
    body = shape_a(2, 100)
    body["code"] = code
    error = await query_error(mock, kd, status=200, payload=body)
    assert type(error) is cls
    assert_context(error, mock, 200, str(code))


@pytest.mark.parametrize("body", ["<html>ok</html>", "{truncated", "", "\xff\xfe"])
async def test_200_non_json_is_malformed(mock: MockKooDrive, kd: KooDriveClient, body: str) -> None:
    """HTTP 200 with a body that is not JSON is a retryable MalformedResponseError."""
    error = await query_error(mock, kd, status=200, body=body, content_type="text/html")
    assert type(error) is MalformedResponseError
    assert error.retryable is True
    assert error.http_status == 200
    assert error.trace_id == sent_trace_id(mock)


async def test_200_invalid_utf8_is_malformed(mock: MockKooDrive, kd: KooDriveClient) -> None:
    """HTTP 200 with bytes that are not UTF-8 is a MalformedResponseError."""
    error = await query_error(mock, kd, status=200, body=b'{"code": "\xff"}')
    assert type(error) is MalformedResponseError


@pytest.mark.parametrize("body", ["[]", "[1, 2]", "null", "3", '"text"'])
async def test_200_json_not_object_is_protocol_error(
    mock: MockKooDrive, kd: KooDriveClient, body: str
) -> None:
    """HTTP 200 with JSON that is not an object is a (non-retryable) ProtocolError."""
    error = await query_error(mock, kd, status=200, body=body)
    assert type(error) is ProtocolError
    assert error.retryable is False
    assert error.http_status == 200
    assert error.trace_id == sent_trace_id(mock)


async def test_unparseable_detail_carries_trace_id(mock: MockKooDrive, kd: KooDriveClient) -> None:
    """A ProtocolError from a 200 body of the wrong shape carries the request's trace id."""
    error = await query_error(mock, kd, status=200, payload={"code": 0, "msg": "no task here"})
    assert type(error) is ProtocolError
    assert error.trace_id == sent_trace_id(mock)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_is_protocol_error_not_followed(
    mock: MockKooDrive, kd: KooDriveClient, status: int
) -> None:
    """A 3xx is a ProtocolError and the redirect is not followed (credentials stay home)."""
    evil = "https://evil.example.net/steal"
    mock.post(evil, payload=shape_a(2), repeat=True)
    error = await query_error(mock, kd, status=status, headers={"Location": evil}, body="")
    assert type(error) is ProtocolError
    assert error.http_status == status
    assert error.trace_id == sent_trace_id(mock)
    assert "evil.example.net" in str(error)
    assert mock.requests_to(evil) == []
    assert len(mock.requests_to(DETAIL)) == 1
    assert mock.requests_to(DETAIL)[0].kwargs["allow_redirects"] is False


async def test_oversize_content_length(mock: MockKooDrive, clock: VirtualClock) -> None:
    """A Content-Length above max_response_bytes is a MalformedResponseError."""
    async with KooDriveClient(
        BASE, auth=BearerToken(TOKEN), clock=clock, attempts=1, max_response_bytes=2048
    ) as kd:
        body = shape_a(1)
        error = await query_error(
            mock, kd, status=200, payload=body, headers={"Content-Length": "2049"}
        )
    assert type(error) is MalformedResponseError
    assert "2048" in str(error)
    assert error.http_status == 200
    assert error.trace_id == sent_trace_id(mock)


async def test_oversize_streamed_body(mock: MockKooDrive, clock: VirtualClock) -> None:
    """A body longer than max_response_bytes without Content-Length is refused too."""
    async with KooDriveClient(
        BASE, auth=BearerToken(TOKEN), clock=clock, attempts=1, max_response_bytes=2048
    ) as kd:
        body = shape_a(1, padding="x" * 5000)
        error = await query_error(mock, kd, status=200, payload=body)
    assert type(error) is MalformedResponseError


async def test_body_at_the_cap_is_read(mock: MockKooDrive, clock: VirtualClock) -> None:
    """A body of exactly max_response_bytes is accepted."""
    async with KooDriveClient(
        BASE, auth=BearerToken(TOKEN), clock=clock, attempts=1, max_response_bytes=2048
    ) as kd:
        body = shape_a(1)
        raw = json.dumps(body)
        body["taskInfo"]["pad"] = "x" * (2048 - len(raw) - len(', "pad": ""'))
        assert len(json.dumps(body)) == 2048
        mock.detail(payload=body)
        info = await kd.get_share_task("s1", "t1")
    assert info.progress == 0


# --- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 429, 500, 200])
async def test_echoed_secrets_are_redacted(
    mock: MockKooDrive, kd: KooDriveClient, status: int
) -> None:
    """A server message echoing the bearer token or the kdstoken is redacted everywhere."""
    echo = f"bad request: Authorization=Bearer {TOKEN} kdstoken={KDSTOKEN}"
    payload: dict[str, Any] = {"code": "13000102", "msg": echo}
    error = await query_error(mock, kd, status=status, payload=payload)
    assert isinstance(error, APIError)
    for text in (str(error), repr(error), error.message or "", repr(error.args)):
        assert TOKEN not in text
        assert KDSTOKEN not in text
    assert "<redacted>" in str(error)


async def test_echoed_secret_in_gateway_message_redacted(
    mock: MockKooDrive, kd: KooDriveClient
) -> None:
    """A gateway error_msg echoing the token is redacted too."""
    error = await query_error(
        mock,
        kd,
        status=401,
        payload={
            "error_code": "APIGW.0301",
            "error_msg": f"token {TOKEN} expired",
            "request_id": "r",
        },
    )
    assert TOKEN not in str(error)
    assert TOKEN not in repr(error)


async def test_echoed_secret_in_wrong_task_id_redacted(
    mock: MockKooDrive, kd: KooDriveClient
) -> None:
    """A ProtocolError quoting a server-sent id that echoes the kdstoken is redacted."""
    error = await query_error(mock, kd, status=200, payload=shape_a(1, task_id=KDSTOKEN))
    assert type(error) is ProtocolError
    assert KDSTOKEN not in str(error)


# --- odd error bodies -------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "x",
        {"code": True},
        {"code": 1.5, "msg": ["a"]},
        {"error": "flat"},
        {"error": {"code": None}},
    ],
)
async def test_odd_error_bodies_still_give_an_api_error(
    mock: MockKooDrive, kd: KooDriveClient, payload: object
) -> None:
    """An error answer of any JSON shape is an APIError; values of odd types are ignored."""
    error = await query_error(
        mock, kd, status=400, body=json.dumps(payload), content_type="application/json"
    )
    assert type(error) is APIError
    assert error.message is None or isinstance(error.message, str)
    assert_context(error, mock, 400, None)  # no code of a usable type in any of them


async def test_server_message_truncated(mock: MockKooDrive, kd: KooDriveClient) -> None:
    """A huge server message is cut to 500 characters."""
    error = await query_error(mock, kd, status=400, payload={"code": "1", "msg": "m" * 10_000})
    assert error.message == "m" * 500


# --- Retry-After ------------------------------------------------------------------------


async def retry_after_of(mock: MockKooDrive, kd: KooDriveClient, value: str | None) -> Any:
    """The retry_after of the RateLimitedError a 429 with this Retry-After header gives."""
    headers = {} if value is None else {"Retry-After": value}
    error = await query_error(mock, kd, status=429, headers=headers, body="")
    assert type(error) is RateLimitedError
    return error.retry_after


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("-3", 0.0),
        ("-0.5", 0.0),
        ("1e2", 100.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("inf", None),
        ("-inf", None),
        ("Infinity", None),
        ("nan", None),
        ("NaN", None),
        ("Sun, 99 Foo 2026 99:99:99 GMT", None),
    ],
)
async def test_retry_after_values(
    mock: MockKooDrive, kd: KooDriveClient, value: str | None, expected: float | None
) -> None:
    """Retry-After seconds (fractional, negative clamped to 0); garbage, inf and nan give None."""
    result = await retry_after_of(mock, kd, value)
    assert result == expected
    assert result is None or math.isfinite(result)


async def test_retry_after_http_date_future(
    mock: MockKooDrive, kd: KooDriveClient, clock: VirtualClock
) -> None:
    """An HTTP-date Retry-After in the future is the seconds until then."""
    when = format_datetime(clock.now() + timedelta(minutes=2), usegmt=True)
    assert await retry_after_of(mock, kd, when) == 120.0


async def test_retry_after_http_date_past(
    mock: MockKooDrive, kd: KooDriveClient, clock: VirtualClock
) -> None:
    """An HTTP-date Retry-After in the past is 0."""
    when = format_datetime(clock.now() - timedelta(hours=1), usegmt=True)
    assert await retry_after_of(mock, kd, when) == 0.0


async def test_retry_after_http_date_other_zone(
    mock: MockKooDrive, kd: KooDriveClient, clock: VirtualClock
) -> None:
    """An HTTP date with a numeric zone offset is converted correctly."""
    moment = clock.now() + timedelta(seconds=30)
    when = format_datetime(moment.astimezone(timezone(timedelta(hours=8))))
    assert "+0800" in when
    assert await retry_after_of(mock, kd, when) == 30.0
