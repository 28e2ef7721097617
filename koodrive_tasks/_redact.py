"""Keep secrets out of reprs, logs and error messages."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

REDACTED = "<redacted>"


def redact_url(url: object) -> str:
    """Return ``url`` without its query, fragment and user info, safe to log.

    A signed download URL carries its credentials in the query string; the scheme,
    host and path say enough to recognise it.
    """
    if url is None:
        return "None"
    text = str(url)
    try:
        parts = urlsplit(text)
        netloc = parts.hostname or ""
        if parts.port is not None:
            netloc = f"{netloc}:{parts.port}"
    except ValueError:
        return repr(REDACTED)
    query = REDACTED if parts.query else ""
    return repr(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


def secret_repr(value: object) -> str:
    """Repr for an attrs field holding a credential."""
    return repr(REDACTED) if value else repr(value)
