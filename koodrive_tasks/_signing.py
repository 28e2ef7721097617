"""The KooDrive app-signature algorithm (HMAC-SHA256), as pure functions.

Shared by the client, which signs, and the emulator, which verifies: both follow
``shared/koodrive-api.md`` step by step, and the test suite pins the result to
vectors computed independently.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timezone
from urllib.parse import quote, unquote, unquote_plus

ALGORITHM = "HMAC-SHA256"
X_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
SIGNED_HEADERS = ("host", "x-date", "x-user-id")
# RFC 3986 unreserved characters stay as they are; everything else is %-encoded.
_UNRESERVED = "-_.~"


def format_x_date(moment: datetime) -> str:
    """Format an aware datetime as ``X-Date`` (UTC, ``YYYYMMDDTHHMMSSZ``)."""
    return moment.astimezone(timezone.utc).strftime(X_DATE_FORMAT)


def parse_x_date(value: str) -> datetime:
    """Parse an ``X-Date`` header into an aware UTC datetime.

    Raises:
        ValueError: If ``value`` is not in ``YYYYMMDDTHHMMSSZ`` form.
    """
    return datetime.strptime(value, X_DATE_FORMAT).replace(tzinfo=timezone.utc)


def _encode(text: str) -> str:
    return quote(text, safe=_UNRESERVED)


def canonical_uri(raw_path: str) -> str:
    """Each path segment URI-encoded, with a trailing ``/`` added when missing."""
    uri = "/".join(_encode(unquote(segment)) for segment in (raw_path or "/").split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(raw_query: str) -> str:
    """``name=value`` pairs, percent-encoded, sorted by name in byte order, joined by ``&``."""
    if not raw_query:
        return ""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        # The server decodes '+' as a space (form encoding), so the signature must too.
        pairs.append((_encode(unquote_plus(name)), _encode(unquote_plus(value))))
    pairs.sort(key=lambda pair: (pair[0].encode(), pair[1].encode()))
    return "&".join(f"{name}={value}" for name, value in pairs)


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    signed_headers: tuple[str, ...],
    body: bytes,
) -> str:
    """Build the CanonicalRequest string.

    Args:
        method: The HTTP method.
        raw_path: The request path as sent (percent-encoded).
        raw_query: The query string as sent, without ``?``.
        headers: Header values by lower-case name; must hold every signed header.
        signed_headers: Lower-case names of the headers to sign.
        body: The exact body bytes.

    Raises:
        KeyError: If a signed header is missing from ``headers``.
    """
    names = sorted(signed_headers)
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in names)
    return "\n".join(
        (
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(raw_query),
            canonical_headers,
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        )
    )


def string_to_sign(canonical: str) -> str:
    """``HMAC-SHA256`` newline hex(SHA256(CanonicalRequest))."""
    return f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def signature(app_secret: str, canonical: str) -> str:
    """Lower-case hex HMAC-SHA256 of the string to sign, keyed by the app secret."""
    return hmac.new(
        app_secret.encode(), string_to_sign(canonical).encode(), hashlib.sha256
    ).hexdigest()


def authorization_header(app_id: str, sig: str, signed_headers: tuple[str, ...]) -> str:
    """The ``Authorization`` header value for an app signature."""
    return f"{ALGORITHM} AppId={app_id},SignedHeaders={';'.join(sorted(signed_headers))},Signature={sig}"


def parse_authorization(value: str) -> dict[str, str] | None:
    """Split an app-signature ``Authorization`` value into its parts, or ``None``."""
    scheme, _, rest = value.partition(" ")
    if scheme != ALGORITHM:
        return None
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            return None
        parts[key] = val
    if not {"AppId", "SignedHeaders", "Signature"} <= parts.keys():
        return None
    return parts


def signatures_match(expected: str, given: str) -> bool:
    """Compare two signatures in constant time."""
    return hmac.compare_digest(expected.encode(), given.encode())
