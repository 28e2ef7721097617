"""Any header value a server sends yields a value or a typed error, never anything else.

``Retry-After``, ``Date``, ``Content-Length``, ``Content-Type``, ``Location`` and
``Content-Encoding`` are each set to arbitrary text (Hypothesis) on answers that make
the client read them: a 429 or 503 (``Retry-After``), a 401 to an app signature
(``Date``, read for clock skew), a 200 (``Content-Length``, ``Content-Encoding``), a
body that is not JSON (``Content-Type``, quoted in the error) and a redirect
(``Location``, whose host is named). Through aioresponses (any text) and through a raw
loopback server (any bytes, decoded as aiohttp decodes them: lone surrogates included),
``get_share_task`` returns a ``TaskInfo`` or raises a ``KooDriveError``, a wait ends
with one, and what the error shows of the header is printable.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kd_fakes import BASE, MockKooDrive, shape_a
from rel_support import APP_ID, APP_SECRET, SHARE, TOKEN, USER_ID, RawServer

from koodrive_tasks import (
    AppSignature,
    BearerToken,
    KooDriveClient,
    KooDriveError,
    PollPolicy,
    RateLimitedError,
    TaskInfo,
    WaitTimeoutError,
)
from koodrive_tasks.testing import VirtualClock

HEADERS = ["Retry-After", "Date", "Content-Length", "Content-Type", "Location", "Content-Encoding"]
# The answer that makes the client read each header.
ANSWERS = {
    "Retry-After": [429, 503],
    "Date": [401],
    "Content-Length": [200],
    "Content-Type": [200, 502],
    "Location": [301, 302, 307],
    "Content-Encoding": [200],
}
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Foo"]

http_dates = st.builds(
    "{}, {:02d} {} {} {:02d}:{:02d}:{:02d} {}".format,
    st.sampled_from(["Mon", "Sun", "Xyz"]),
    st.integers(-5, 99),
    st.sampled_from(MONTHS),
    st.one_of(st.integers(0, 10_000), st.integers(-(10**12), 10**12)),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 99),
    st.one_of(
        st.sampled_from(["GMT", "UTC", "EST", "Z", ""]),
        st.integers(-999_999, 999_999).map(lambda z: f"{z:+05d}"),
    ),
)
numbers = st.one_of(
    st.integers().map(str),
    st.floats().map(repr),
    st.sampled_from(
        ["1e309", "-1e309", "nan", "-nan", "inf", "-0", "0x10", "1_000", "٣", " 5 ", "+5"]
    ),
    st.integers(0, 10**400).map(str),
)
header_text = st.one_of(st.text(max_size=80), http_dates, numbers)

ODD_VALUES = [
    "Mon, 01 Jan 9999 23:59:59 -9999",
    "Mon, 01 Jan 0001 00:00:00 +9999",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Sat, 01 Jan 0000 00:00:00 GMT",
    "99999999999999999999999999",
    "1e400",
    "nan",
    "https://[::1",
    "http://user:pw@例え.テスト:99999/",
    "gzip, gzip",
    "x-gzip",
    "",
]

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def body_for(status: int, header: str) -> bytes:
    if status == 200 and header == "Content-Type":
        return b"<html>not json</html>"
    if status == 200:
        return json.dumps(shape_a(1, 5)).encode()
    if status >= 300 and status < 400:
        return b""
    return json.dumps({"error_code": "APIGW.0301", "error_msg": "no", "request_id": "r"}).encode()


def check_outcome(result: object, header: str) -> None:
    """A TaskInfo, or a KooDriveError whose message and values are sane."""
    if isinstance(result, TaskInfo):
        return
    assert isinstance(result, KooDriveError), f"{type(result).__name__}: {result}"
    text = str(result)
    assert all(c.isprintable() for c in text), repr(text)
    if isinstance(result, RateLimitedError) and result.retry_after is not None:
        assert 0 <= result.retry_after < float("inf")


async def call_once(kd: KooDriveClient) -> object:
    try:
        return await kd.get_share_task(SHARE, "t1")
    except Exception as error:
        return error


def internal_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "internal error" in r.getMessage()]


@SETTINGS
@given(header=st.sampled_from(HEADERS), value=header_text, data=st.data())
@example(header="Retry-After", value="Mon, 01 Jan 9999 23:59:59 -9999", data=None)
@example(header="Date", value="Mon, 01 Jan 0001 00:00:00 +9999", data=None)
@example(header="Content-Length", value="abc", data=None)
@example(header="Content-Length", value="1e3", data=None)
@example(header="Location", value="https://[::1", data=None)
async def test_any_header_text_through_the_client_is_a_value_or_a_typed_error(
    header: str, value: str, data: st.DataObject | None, caplog: pytest.LogCaptureFixture
) -> None:
    """aioresponses: any text in any of the six headers, one-shot and wait, ends typed."""
    statuses = ANSWERS[header]
    status = data.draw(st.sampled_from(statuses)) if data is not None else statuses[0]
    caplog.clear()
    app = header == "Date"  # only an app signature reads the Date header (clock skew)
    auth = AppSignature(APP_ID, APP_SECRET, USER_ID) if app else BearerToken(TOKEN)
    clock = VirtualClock()
    with MockKooDrive() as mock:
        mock.detail(
            status=status, body=body_for(status, header), headers={header: value}, repeat=True
        )
        async with KooDriveClient(
            BASE, auth=auth, clock=clock, attempts=1, policy=PollPolicy(timeout=30.0)
        ) as kd:
            check_outcome(await call_once(kd), header)
            try:
                result: object = await asyncio.wait_for(
                    kd.wait_for_task(SHARE, "t1").final_info(), 10
                )
            except Exception as error:
                result = error
    assert isinstance(result, (TaskInfo, KooDriveError)), repr(result)
    if isinstance(result, WaitTimeoutError):
        assert result.last_error is None or isinstance(result.last_error, KooDriveError)
    check_outcome(result, header)
    assert not internal_errors(caplog)


class OneAnswer(RawServer):
    """Answers every request with one status and one raw header line, then closes."""

    def __init__(self, status: int, header: bytes, value: bytes, body: bytes) -> None:
        super().__init__()
        self.head = (
            b"HTTP/1.1 %d X\r\n%s: %s\r\n" % (status, header, value)
            + (b"" if header == b"Content-Length" else b"Content-Length: %d\r\n" % len(body))
            + b"Connection: close\r\n\r\n"
        )
        self.body = body

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(self.head + self.body)
        await writer.drain()


raw_values = st.one_of(
    st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b),
    header_text.map(lambda t: t.encode("utf-8", "surrogatepass")).filter(
        lambda b: b"\r" not in b and b"\n" not in b
    ),
)


@SETTINGS
@given(header=st.sampled_from(HEADERS), value=raw_values, data=st.data())
@example(header="Retry-After", value=b"\xff\xfe 5", data=None)
@example(header="Content-Type", value=b"text/\xed\xa0\x80html", data=None)
@example(header="Location", value=b"https://\xffhost/", data=None)
async def test_any_header_bytes_from_a_real_server_are_a_value_or_a_typed_error(
    header: str, value: bytes, data: st.DataObject | None, caplog: pytest.LogCaptureFixture
) -> None:
    """A raw loopback server: any bytes in any of the six headers end in a value or a typed error."""
    statuses = ANSWERS[header]
    status = data.draw(st.sampled_from(statuses)) if data is not None else statuses[0]
    caplog.clear()
    app = header == "Date"
    auth = AppSignature(APP_ID, APP_SECRET, USER_ID) if app else BearerToken(TOKEN)
    async with OneAnswer(status, header.encode(), value, body_for(status, header)) as server:
        async with KooDriveClient(
            server.url, auth=auth, allow_insecure_urls=True, attempts=1, request_timeout=5.0
        ) as kd:
            check_outcome(await call_once(kd), header)
    assert not internal_errors(caplog)
    logging.getLogger("koodrive_tasks").debug("example done")
