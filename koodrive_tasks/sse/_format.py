"""The Server-Sent Events wire format: events, comments and the reconnection delay."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ..exceptions import InvalidArgumentError

HEADERS: dict[str, str] = {
    # The spec mandates UTF-8; a charset parameter would only be ignored.
    "Content-Type": "text/event-stream",
    # A cached or transformed event stream is a broken one.
    "Cache-Control": "no-cache, no-transform",
    # nginx buffers proxied answers by default, which would hold events back.
    "X-Accel-Buffering": "no",
}
"""Response headers an event stream needs (proxies included)."""

# The spec's line terminators: CRLF, lone LF, lone CR (not the other Unicode breaks).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _single_line(value: str, what: str) -> str:
    if not isinstance(value, str) or _LINE_BREAK.search(value) or "\0" in value:
        raise InvalidArgumentError(f"an event's {what} must be one line of text without NUL")
    return value


def format_event(event: str, data: Any, *, event_id: str | None = None) -> bytes:
    """One event: ``event:``, optional ``id:``, the data as JSON, a blank line.

    Args:
        event: The event type the browser listens for (``source.addEventListener``).
        data: JSON-ready data; it is sent as compact JSON.
        event_id: The ``id:`` field, which the browser sends back as ``Last-Event-ID``
            when it reconnects; ``None`` leaves the browser's last id unchanged.

    Returns:
        The event, UTF-8 encoded.

    Raises:
        InvalidArgumentError: If ``event`` or ``event_id`` is not a single line, or
            ``data`` cannot be encoded as JSON.
    """
    lines = [f"event: {_single_line(event, 'type')}"]
    if event_id is not None:
        lines.append(f"id: {_single_line(event_id, 'id')}")
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(f"an event's data must be JSON-ready: {error}") from None
    # json.dumps escapes line breaks inside strings; splitting is for any that remain
    # outside them (there are none in compact JSON), as the format requires.
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(text))
    return ("\n".join(lines) + "\n\n").encode()


def format_comment(text: str = "keep-alive") -> bytes:
    """A comment line (``: text``): ignored by browsers, it keeps idle connections open.

    Raises:
        InvalidArgumentError: If ``text`` is not a single line.
    """
    return f": {_single_line(text, 'comment')}\n\n".encode()


def format_retry(seconds: float) -> bytes:
    """The ``retry:`` field: how long the browser waits before reconnecting.

    Raises:
        InvalidArgumentError: If ``seconds`` is negative, infinite or not a number.
    """
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not 0 <= seconds < math.inf
    ):
        raise InvalidArgumentError(f"retry must be a number of seconds >= 0, not {seconds!r}")
    return f"retry: {round(seconds * 1000)}\n\n".encode()
