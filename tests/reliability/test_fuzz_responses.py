"""Parser fuzzing through the real client: any answer is a TaskInfo or a KooDriveError.

Hypothesis feeds ``get_share_task`` (real ``KooDriveClient``, network replaced by
aioresponses as in the ``mock`` fixture) arbitrary JSON, near-valid bodies with wrong
field types and huge numbers, truncated bodies, wrong content types and every HTTP
status from 100 to 599. Oversized answers are checked against a raw loopback server,
which shows whether the client stopped reading.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kd_fakes import BASE, MockKooDrive, shape_a, shape_b
from rel_support import KDSTOKEN, PACKAGE_URL, TOKEN, RawServer

from koodrive_tasks import (
    BearerToken,
    KooDriveClient,
    KooDriveError,
    MalformedResponseError,
    TaskInfo,
)
from koodrive_tasks.testing import VirtualClock

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
HUGE = ("10" + "0" * 400, "1e999", "-1e999", "9" * 5000, "1E400", "-0", "NaN", "Infinity")
"""Number literals that overflow floats, exceed int-parsing limits, or are not JSON."""

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
FIELDS = (
    "code", "taskId", "taskType", "taskStatus", "taskResultCode", "resultCode",
    "createTime", "startTime", "endTime", "progress", "downloadUrl", "userId",
)  # fmt: skip
CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "text/html",
    "text/plain",
    "application/octet-stream",
    "application/xml",
)


async def query(status: int, body: bytes, content_type: str, headers: dict[str, str]) -> object:
    """One ``get_share_task`` through the real client against a mocked answer."""
    with MockKooDrive() as mock:
        mock.detail(status=status, body=body, content_type=content_type, headers=headers)
        async with KooDriveClient(
            BASE, auth=BearerToken(TOKEN), attempts=1, clock=VirtualClock()
        ) as kd:
            try:
                result: object = await kd.get_share_task("share-1", "t1", kdstoken=KDSTOKEN)
            except KooDriveError as error:
                result = error
        assert mock.requests, "the mocked answer was never reached"
    return result


def check(result: object) -> None:
    assert isinstance(result, (TaskInfo, KooDriveError)), f"{type(result).__name__}: {result!r}"


def near_valid(field_values: dict[str, Any], shape: str) -> dict[str, Any]:
    body = shape_a(2, 100, result=1, url=PACKAGE_URL) if shape == "A" else shape_b(1, 40)
    envelope = body["taskInfo"] if shape == "A" else body["jobInfo"]
    for name, value in field_values.items():
        if name == "code":
            body["code"] = value
        else:
            envelope[name] = value
    return body


async def test_fuzz_harness_reaches_the_parser() -> None:
    """The harness itself: a valid body parses, so the fuzz tests exercise the parser."""
    body = json.dumps(shape_a(2, 100, result=1, url=PACKAGE_URL)).encode()
    info = await query(200, body, "application/json", {})
    assert isinstance(info, TaskInfo)
    assert info.download_url == PACKAGE_URL


@FUZZ
@given(
    value=json_values,
    status=st.integers(min_value=100, max_value=599),
    content_type=st.sampled_from(CONTENT_TYPES),
)
async def test_arbitrary_json_any_status(value: object, status: int, content_type: str) -> None:
    """Any JSON value under any status and content type gives a TaskInfo or a KooDriveError."""
    check(await query(status, json.dumps(value).encode(), content_type, {}))


@FUZZ
@given(
    field_values=st.dictionaries(
        st.sampled_from(FIELDS), json_values | st.sampled_from([10**400, -(10**40)]), max_size=4
    ),
    shape=st.sampled_from("AB"),
    files=st.none() | json_values,
)
async def test_wrong_field_types(field_values: dict[str, Any], shape: str, files: object) -> None:
    """A documented shape with fields of the wrong type (or huge ints) never escapes untyped."""
    body = near_valid(field_values, shape)
    if files is not None:
        body["taskInfos"] = files
    check(await query(200, json.dumps(body).encode(), "application/json", {}))


@FUZZ
@given(
    field=st.sampled_from(FIELDS),
    literal=st.sampled_from(HUGE),
    shape=st.sampled_from("AB"),
)
async def test_huge_number_literals(field: str, literal: str, shape: str) -> None:
    """10**400, 1e999, 5000-digit ints and NaN/Infinity in any field stay typed."""
    body = json.dumps(near_valid({field: "__HUGE__"}, shape)).replace('"__HUGE__"', literal)
    check(await query(200, body.encode(), "application/json", {}))


@FUZZ
@given(
    cut=st.floats(min_value=0.0, max_value=0.999),
    shape=st.sampled_from("AB"),
    status=st.sampled_from([200, 200, 400, 429, 500]),
)
async def test_truncated_bodies(cut: float, shape: str, status: int) -> None:
    """A body cut anywhere gives a KooDriveError (never a TaskInfo built from half a body)."""
    full = json.dumps(near_valid({}, shape)).encode()
    body = full[: int(len(full) * cut)]
    result = await query(status, body, "application/json", {"Retry-After": "1"})
    assert isinstance(result, KooDriveError), repr(result)


@FUZZ
@given(
    body=st.binary(max_size=300),
    status=st.integers(min_value=100, max_value=599),
    retry_after=st.none() | st.text(max_size=20) | st.sampled_from(HUGE),
)
async def test_arbitrary_bytes_and_retry_after(
    body: bytes, status: int, retry_after: str | None
) -> None:
    """Arbitrary bytes with any status and any Retry-After header stay typed."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    check(await query(status, body, "application/json", headers))


@FUZZ
@given(depth=st.integers(min_value=900, max_value=5000), where=st.sampled_from(["top", "field"]))
async def test_deeply_nested_json(depth: int, where: str) -> None:
    """JSON nested thousands deep (parser recursion limits) gives a typed error or a TaskInfo."""
    nested = "[" * depth + "]" * depth
    body = (
        nested
        if where == "top"
        else json.dumps(near_valid({"progress": "__N__"}, "B")).replace('"__N__"', nested)
    )
    check(await query(200, body.encode(), "application/json", {}))


# --- the response size cap, against a raw server that shows how much was read ----------


class Flood(RawServer):
    """A raw HTTP server answering every request 200 with an endless body.

    With ``content_length`` it announces that many bytes; without, it streams chunked
    data until the client hangs up. ``sent`` counts the body bytes written.
    """

    def __init__(self, *, content_length: int | None) -> None:
        super().__init__()
        self.content_length = content_length
        self.sent = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        length = (
            f"Content-Length: {self.content_length}"
            if self.content_length is not None
            else "Transfer-Encoding: chunked"
        )
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}\r\n\r\n".encode()
        )
        chunk = b'{"pad": "' + b"x" * 65_000
        while True:
            data = (
                chunk if self.content_length is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk)
            )
            writer.write(data)
            await writer.drain()
            self.sent += len(chunk)
            await asyncio.sleep(0.001)


@pytest.fixture(params=[50 * 2**20, None], ids=["content-length", "chunked"])
async def flood(request: pytest.FixtureRequest) -> AsyncIterator[Flood]:
    async with Flood(content_length=request.param) as server:
        yield server


async def test_oversized_answer_refused_without_reading_it(flood: Flood) -> None:
    """An answer beyond max_response_bytes raises MalformedResponseError after at most ~cap bytes."""
    cap = 64 * 1024
    started = time.monotonic()
    async with KooDriveClient(
        flood.url,
        auth=BearerToken(TOKEN),
        allow_insecure_urls=True,
        attempts=1,
        max_response_bytes=cap,
        request_timeout=10.0,
    ) as kd:
        with pytest.raises(MalformedResponseError, match="exceeds") as caught:
            await kd.get_share_task("share-1", "t1")
    assert time.monotonic() - started < 5.0
    # The client stopped at the cap (plus socket buffers), nowhere near the 50 MiB offered.
    assert flood.sent < 8 * 2**20, flood.sent
    assert caught.value.http_status == 200
