"""The app signature, checked against an implementation written here from koodrive-api.md alone.

What the emulator makes of signed headers (its gateway checks) is checked over real HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
from yarl import URL

from koodrive_tasks import AppSignature, InvalidArgumentError
from koodrive_tasks.emulator import Emulator
from koodrive_tasks.testing import VirtualClock

APP_ID = "app-123"
APP_SECRET = "s3cr3t-APP-KEY-0123456789"
USER_ID = "user-42"
NOW = datetime(2024, 9, 9, 3, 33, 25, tzinfo=timezone.utc)

# --- an independent implementation of the documented algorithm ------------------------------

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def _pct_encode(text: str) -> str:
    """Percent-encode every UTF-8 byte outside A-Z a-z 0-9 - _ . ~ (space -> %20)."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8"))


def _pct_decode(text: str, *, plus_is_space: bool = False) -> str:
    raw = text.encode("utf-8")
    if plus_is_space:
        raw = raw.replace(b"+", b" ")
    return re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw).decode(
        "utf-8"
    )


def ref_canonical_uri(path: str) -> str:
    segments = [_pct_encode(_pct_decode(s)) for s in (path or "/").split("/")]
    uri = "/".join(segments)
    return uri if uri.endswith("/") else uri + "/"


def ref_canonical_query(query: str) -> str:
    """Form-style query (as yarl writes it: '+' is a space), re-encoded with %20."""
    pairs = []
    for item in query.split("&"):
        if item == "":
            continue
        name, _, value = item.partition("=")
        pairs.append(
            (
                _pct_encode(_pct_decode(name, plus_is_space=True)),
                _pct_encode(_pct_decode(value, plus_is_space=True)),
            )
        )
    pairs.sort(key=lambda p: (p[0].encode("ascii"), p[1].encode("ascii")))
    return "&".join(f"{n}={v}" for n, v in pairs)


def ref_sign(
    method: str,
    url: str,
    body: bytes,
    now: datetime,
    *,
    secret: str = APP_SECRET,
    user_id: str = USER_ID,
) -> tuple[str, str]:
    """(X-Date, signature hex) for a request, per koodrive-api.md step by step."""
    utc = now.astimezone(timezone.utc)
    day = f"{utc.year:04d}{utc.month:02d}{utc.day:02d}"
    x_date = f"{day}T{utc.hour:02d}{utc.minute:02d}{utc.second:02d}Z"
    return x_date, ref_signature(method, url, body, x_date, secret=secret, user_id=user_id)


def ref_signature(
    method: str,
    url: str,
    body: bytes,
    x_date: str,
    *,
    secret: str = APP_SECRET,
    user_id: str = USER_ID,
) -> str:
    """The signature hex of a request carrying this X-Date value, whatever its form."""
    m = re.fullmatch(r"https?://([^/?#]+)([^?#]*)(?:\?([^#]*))?", url)
    assert m is not None
    host, path, query = m.group(1), m.group(2), m.group(3) or ""
    if host.endswith(":443") and url.startswith("https:"):
        host = host[: -len(":443")]
    headers = {"x-user-id": user_id, "host": host, "x-date": x_date}
    names = sorted(headers)
    canonical_headers = "".join(f"{n}:{headers[n].strip()}\n" for n in names)
    canonical = (
        f"{method.upper()}\n{ref_canonical_uri(path)}\n{ref_canonical_query(query)}\n"
        f"{canonical_headers}\n{';'.join(names)}\n{hashlib.sha256(body).hexdigest()}"
    )
    to_sign = "HMAC-SHA256\n" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return hmac.new(secret.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def x_date_moment(value: str) -> datetime:
    """The instant an X-Date (YYYYMMDDTHHMMSSZ, UTC) names."""
    m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z", value)
    assert m is not None, value
    year, month, day, hour, minute, second = (int(part) for part in m.groups())
    return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)


def authorization_parts(value: str) -> dict[str, str]:
    """``HMAC-SHA256 AppId=..,SignedHeaders=..,Signature=..`` split into its named parts."""
    scheme, _, rest = value.partition(" ")
    assert scheme == "HMAC-SHA256", value
    return dict(item.split("=", 1) for item in rest.split(","))


def verify_signed_headers(
    headers: dict[str, str], method: str, url: str, body: bytes, now: datetime
) -> None:
    """Assert that ``headers`` sign this request at ``now`` (shared with test_auth)."""
    x_date, sig = ref_sign(method, url, body, now)
    assert headers["X-Date"] == x_date
    assert headers["X-User-Id"] == USER_ID
    assert headers["Authorization"] == (
        f"HMAC-SHA256 AppId={APP_ID},SignedHeaders=host;x-date;x-user-id,Signature={sig}"
    )


def signer() -> AppSignature:
    return AppSignature(APP_ID, APP_SECRET, USER_ID)


# --- the reference implementation itself -----------------------------------------------------


def test_reference_canonicalisation() -> None:
    """The test's own canonicalisation follows the documented rules on a hand-made example."""
    assert ref_canonical_uri("/a b/c") == "/a%20b/c/"
    assert ref_canonical_uri("/x/") == "/x/"
    assert ref_canonical_uri("") == "/"
    assert ref_canonical_query("b=2&a=1&c") == "a=1&b=2&c="
    assert ref_canonical_query("q=x+y") == "q=x%20y"
    assert ref_canonical_query("") == ""


# --- the library against the reference -----------------------------------------------------

REQUESTS = [
    (
        "POST",
        "https://kd.example.com/koodrive/ose/v1/share/taskDetail",
        b'{"taskId":"t1","shareId":"s1"}',
    ),
    ("POST", "https://kd.example.com/koodrive/ose/v1/share/tasks/", b"{}"),
    ("post", "https://kd.example.com/", b""),
    ("GET", "https://kd.example.com", b""),
    ("GET", "https://kd.example.com/koodrive/ose/v1/jobs?type=6&status=1&offset=0&limit=100", b""),
    ("GET", "https://kd.example.com/koodrive/ose/v1/jobs?limit=10&a=1&Z=2&_x=3", b""),
    ("GET", "https://kd.example.com/p?flag&b=&a=1", b""),
    ("GET", "https://kd.example.com/a%20b/c%2Bd/%E4%B8%AD%E6%96%87", b""),
    ("GET", "https://kd.example.com/a%20b/c%2Bd/%E4%B8%AD%E6%96%87/", b""),
    ("GET", "https://kd.example.com/p?name=%E4%B8%AD&tilde=a~b&star=a%2Ab", b""),
    (
        "POST",
        "https://kd.example.com:8443/koodrive/ose/v1/share/taskDetail",
        '{"zipName":"报告 2024.zip"}'.encode(),
    ),
    ("POST", "https://kd.example.com:443/koodrive/ose/v1/share/taskDetail", b"{}"),
]


@pytest.mark.parametrize(("method", "url", "body"), REQUESTS)
def test_sign_matches_independent_implementation(method: str, url: str, body: bytes) -> None:
    """AppSignature.sign produces exactly the documented headers and signature."""
    headers = signer().sign(method, URL(url, encoded=True), body, NOW)
    verify_signed_headers(headers, method, url, body, NOW)
    assert headers["Host"] == URL(url).host_port_subcomponent


def test_sign_with_yarl_encoded_url() -> None:
    """A URL built by yarl from decoded text signs like its encoded form."""
    plain = URL("https://kd.example.com/dir name/中文").with_query({"b": "2", "a": "中"})
    headers = signer().sign("GET", plain, b"", NOW)
    verify_signed_headers(headers, "GET", str(plain), b"", NOW)


def test_sign_space_in_query_is_percent_20() -> None:
    """A space in a query value is canonicalised as %20, as the API documents."""
    url = URL("https://kd.example.com/koodrive/ose/v1/jobs").with_query({"name": "a b"})
    assert url.raw_query_string == "name=a+b"  # how yarl (and so aiohttp) sends it
    headers = signer().sign("GET", url, b"", NOW)
    verify_signed_headers(headers, "GET", str(url), b"", NOW)


def test_sign_space_in_path_is_percent_20() -> None:
    """A space in a path segment is canonicalised as %20."""
    url = URL("https://kd.example.com/a b/")
    headers = signer().sign("GET", url, b"", NOW)
    verify_signed_headers(headers, "GET", "https://kd.example.com/a%20b/", b"", NOW)


def test_signature_changes_with_every_input() -> None:
    """Method, path, query, body, time, user and secret each change the signature."""
    base = ("POST", URL("https://kd.example.com/p?a=1"), b"{}", NOW)
    sig = signer().sign(*base)["Authorization"]
    variants = [
        signer().sign("PUT", *base[1:]),
        signer().sign("POST", URL("https://kd.example.com/q?a=1"), b"{}", NOW),
        signer().sign("POST", URL("https://kd.example.com/p?a=2"), b"{}", NOW),
        signer().sign("POST", base[1], b"{ }", NOW),
        signer().sign("POST", base[1], b"{}", NOW + timedelta(seconds=1)),
        AppSignature(APP_ID, APP_SECRET, "other-user").sign(*base),
        AppSignature(APP_ID, APP_SECRET + "x", USER_ID).sign(*base),
        signer().sign("POST", URL("https://other.example.com/p?a=1"), b"{}", NOW),
    ]
    assert all(v["Authorization"] != sig for v in variants)


def test_fixed_vector() -> None:
    """A fixed request signs to a pinned signature (computed once by the independent code)."""
    url = "https://kd.example.com/koodrive/ose/v1/share/taskDetail"
    body = b'{"taskId":"t1","shareId":"s1"}'
    headers = signer().sign("POST", URL(url), body, NOW)
    expected = "2972a9d88ff0af434720874ccc62791c2f82b564c036751b2c24cfed91c220b3"
    assert ref_sign("POST", url, body, NOW)[1] == expected
    assert headers["Authorization"].endswith(f",Signature={expected}")
    assert headers["X-Date"] == "20240909T033325Z"


def test_fixed_vector_with_query_and_unicode() -> None:
    """A second pinned vector: unsorted query, valueless parameter, non-ASCII body, port."""
    url = "https://kd.example.com:8443/koodrive/ose/v1/jobs?status=1&a&type=6"
    body = '{"zipName":"报告.zip"}'.encode()
    headers = signer().sign("POST", URL(url), body, NOW)
    expected = "432160af11b050e4e7ae47d67bf519f03de322b8800b706148269c391df554c8"
    assert ref_sign("POST", url, body, NOW)[1] == expected
    assert headers["Authorization"].endswith(f",Signature={expected}")


# --- X-Date and the Authorization header -----------------------------------------------------


def test_x_date_is_utc_from_other_zone() -> None:
    """X-Date is YYYYMMDDTHHMMSSZ in UTC, whatever the zone of the datetime given."""
    beijing = timezone(timedelta(hours=8))
    moment = datetime(2024, 9, 10, 1, 2, 3, tzinfo=beijing)  # 2024-09-09 17:02:03 UTC
    headers = signer().sign("POST", URL("https://kd.example.com/"), b"", moment)
    assert headers["X-Date"] == "20240909T170203Z"
    assert x_date_moment(headers["X-Date"]) == moment
    west = timezone(timedelta(hours=-5, minutes=-30))
    headers = signer().sign(
        "POST", URL("https://kd.example.com/"), b"", datetime(2024, 12, 31, 20, 0, 0, tzinfo=west)
    )
    assert headers["X-Date"] == "20250101T013000Z"


def test_x_date_drops_microseconds() -> None:
    """X-Date has second precision."""
    headers = signer().sign(
        "POST", URL("https://kd.example.com/"), b"", NOW.replace(microsecond=999_999)
    )
    assert headers["X-Date"] == "20240909T033325Z"


def test_authorization_header_format() -> None:
    """Authorization is exactly HMAC-SHA256 AppId=..,SignedHeaders=..,Signature=<64 hex>."""
    headers = signer().sign("POST", URL("https://kd.example.com/x"), b"{}", NOW)
    assert re.fullmatch(
        r"HMAC-SHA256 AppId=app-123,SignedHeaders=host;x-date;x-user-id,Signature=[0-9a-f]{64}",
        headers["Authorization"],
    )
    assert set(headers) == {"Host", "X-Date", "X-User-Id", "Authorization"}
    assert APP_SECRET not in str(headers)


def test_authorization_parts() -> None:
    """The Authorization value names the app, the signed headers and the request's signature."""
    headers = signer().sign("POST", URL("https://kd.example.com/x"), b"{}", NOW)
    parts = authorization_parts(headers["Authorization"])
    assert parts == {
        "AppId": APP_ID,
        "SignedHeaders": "host;x-date;x-user-id",
        "Signature": ref_sign("POST", "https://kd.example.com/x", b"{}", NOW)[1],
    }


# --- the emulator's gateway checks, over real HTTP ---------------------------------------------

DETAIL_PATH = "/koodrive/ose/v1/share/taskDetail"


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    clock = VirtualClock(wall_start=NOW, autojump=False)  # the gateway's clock stands at NOW
    async with Emulator(app_id=APP_ID, app_secret=APP_SECRET, user_id=USER_ID, clock=clock) as emu:
        yield emu


class SignedDetail:
    """A taskDetail request for a task the emulator holds, signed at NOW."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.task_id = emu.add_task(share_id="share-1")
        self.url = emu.url + DETAIL_PATH
        self.body = json.dumps({"taskId": self.task_id, "shareId": "share-1"}).encode()
        self.headers = signer().sign("POST", URL(self.url), self.body, NOW)

    async def send(self, **replaced: str) -> tuple[int, Any]:
        """Send it with some headers replaced: (HTTP status, decoded answer)."""
        headers = {**self.headers, **replaced}
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.url, data=self.body, headers=headers) as response,
        ):
            return response.status, await response.json(content_type=None)

    async def assert_accepted(self, **replaced: str) -> None:
        status, answer = await self.send(**replaced)
        assert status == 200, answer
        assert answer["jobInfo"]["taskId"] == self.task_id

    async def assert_refused(self, **replaced: str) -> str:
        """Assert a gateway 401 (APIGW.03xx); return its message."""
        status, answer = await self.send(**replaced)
        assert status == 401, answer
        assert answer["error_code"].startswith("APIGW.030"), answer
        return str(answer["error_msg"])


async def test_emulator_accepts_the_signed_request(emulator: Emulator) -> None:
    """The emulator splits the Authorization value and verifies it: a signed request passes."""
    await SignedDetail(emulator).assert_accepted()


@pytest.mark.parametrize(
    "template",
    [
        "",
        "garbage",
        "Bearer tok",
        "HMAC-SHA256",
        "HMAC-SHA256 ",
        "hmac-sha256 AppId={app},SignedHeaders={signed},Signature={sig}",
        "SDK-HMAC-SHA256 AppId={app},SignedHeaders={signed},Signature={sig}",
        "HMAC-SHA256 AppId={app},SignedHeaders={signed}",
        "HMAC-SHA256 AppId={app},Signature={sig}",
        "HMAC-SHA256 AppId={app},SignedHeaders={signed},Signature",
        "HMAC-SHA256 AppId={app};SignedHeaders={signed};Signature={sig}",
    ],
)
async def test_emulator_refuses_an_incomplete_authorization(
    emulator: Emulator, template: str
) -> None:
    """An Authorization value that is not a complete app signature is refused, valid parts or not."""
    request = SignedDetail(emulator)
    parts = authorization_parts(request.headers["Authorization"])
    value = template.format(app=APP_ID, signed=parts["SignedHeaders"], sig=parts["Signature"])
    await request.assert_accepted()
    await request.assert_refused(Authorization=value)


@pytest.mark.parametrize(
    "x_date", ["2024-09-09T03:33:25Z", "20240909033325", "20240909T033325", ""]
)
async def test_emulator_accepts_only_the_x_date_form(emulator: Emulator, x_date: str) -> None:
    """An X-Date not in YYYYMMDDTHHMMSSZ form is refused, even when the signature covers it."""
    request = SignedDetail(emulator)
    sig = ref_signature("POST", request.url, request.body, x_date)
    authorization = (
        f"HMAC-SHA256 AppId={APP_ID},SignedHeaders=host;x-date;x-user-id,Signature={sig}"
    )
    await request.assert_accepted()
    message = await request.assert_refused(**{"X-Date": x_date, "Authorization": authorization})
    assert "X-Date" in message


# --- AppSignature as a value ------------------------------------------------------------------


def test_repr_hides_secret() -> None:
    """repr(AppSignature) shows app and user ids but never the secret."""
    text = repr(signer())
    assert APP_SECRET not in text
    assert APP_ID in text
    assert USER_ID in text


@pytest.mark.parametrize(
    ("app_id", "secret", "user"),
    [
        ("", APP_SECRET, USER_ID),
        (APP_ID, "", USER_ID),
        (APP_ID, APP_SECRET, " "),
        (None, APP_SECRET, USER_ID),
    ],
)
def test_empty_arguments_rejected(app_id: object, secret: object, user: object) -> None:
    """Empty or non-string app id, secret or user id are InvalidArgumentErrors."""
    with pytest.raises(InvalidArgumentError):
        AppSignature(app_id, secret, user)  # type: ignore[arg-type]


def test_secret_not_in_error_message() -> None:
    """The validation error for a blank user id does not echo the secret."""
    with pytest.raises(InvalidArgumentError) as info:
        AppSignature(APP_ID, APP_SECRET, "")
    assert APP_SECRET not in str(info.value)


async def test_headers_and_secrets_protocol() -> None:
    """headers() signs like sign(); refresh() declines; secrets() names the app secret."""
    auth = signer()
    url = URL("https://kd.example.com/x")
    assert await auth.headers("POST", url, b"{}", lambda: NOW) == auth.sign("POST", url, b"{}", NOW)
    assert await auth.refresh({}) is False
    assert auth.secrets() == (APP_SECRET,)
    assert auth.clock_sensitive is True
