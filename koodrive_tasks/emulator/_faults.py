"""Faults the emulator can inject instead of (or before) a normal answer.

Each :class:`Fault` is a value; :func:`render_fault` turns one into an HTTP response.
Two kinds are not responses and are carried out by the request handler: ``DROP``
closes the connection without answering, ``SLOW`` waits (real seconds) and then
answers normally.
"""

from __future__ import annotations

import enum
import json
import math
import random
import uuid
from collections.abc import Iterable

import attrs
from aiohttp import web

SERVICE_MESSAGES = {
    "13000102": "Parameter check failed",
    "13000309": "The resource does not exist",
    "13000311": "Insufficient space",
}
"""The ``msg`` of each service code the emulator answers with."""

# What the Huawei Cloud API gateway answers for each condition. APIGW.0301/0303/0308 are
# in the KooDrive reference; 0202/0203 follow the gateway's published code list.
GATEWAY_CODES = {502: "APIGW.0202", 503: "APIGW.0202", 504: "APIGW.0203"}
GATEWAY_MESSAGES = {
    502: "Bad gateway: backend unavailable",
    503: "Backend unavailable",
    504: "Backend timeout",
}
_HTML_TITLES = {502: "502 Bad Gateway", 503: "503 Service Unavailable", 504: "504 Gateway Time-out"}


class FaultKind(enum.Enum):
    """The kinds of fault; ``value`` is the key used in :attr:`EmulatorStats.faults`."""

    THROTTLE = "throttle"
    SERVER_ERROR = "server_error"
    GATEWAY_HTML = "gateway_html"
    GATEWAY_JSON = "gateway_json"
    DROP = "drop"
    SLOW = "slow"
    MALFORMED_JSON = "malformed_json"
    TRUNCATED_JSON = "truncated_json"
    ERROR_CODE = "error_code"


@attrs.frozen
class Fault:
    """One injected fault. Build it with the class methods rather than directly.

    Attributes:
        kind: What goes wrong.
        status: The HTTP status (gateway faults and ``ERROR_CODE``).
        retry_after_s: The ``Retry-After`` of a throttle, or ``None`` to send none.
            A fractional value is sent as a decimal (not standard HTTP, but it keeps
            tests fast).
        delay_s: Real seconds a ``SLOW`` fault waits before answering normally.
        code: The service code of an ``ERROR_CODE`` fault.

    """

    kind: FaultKind
    status: int = 0
    retry_after_s: float | None = None
    delay_s: float = 0.0
    code: str = ""

    @classmethod
    def throttle(cls, retry_after_s: float | None = 1) -> Fault:
        """HTTP 429 in the gateway shape (APIGW.0308), with ``Retry-After``."""
        return cls(FaultKind.THROTTLE, status=429, retry_after_s=retry_after_s)

    @classmethod
    def server_error(cls) -> Fault:
        """HTTP 500 with a JSON service error body."""
        return cls(FaultKind.SERVER_ERROR, status=500)

    @classmethod
    def gateway(cls, status: int = 503, *, html: bool = True) -> Fault:
        """HTTP 502, 503 or 504 from the gateway, with an HTML or a JSON body.

        Raises:
            ValueError: If ``status`` is not 502, 503 or 504.

        """
        if status not in GATEWAY_CODES:
            raise ValueError(f"a gateway fault is 502, 503 or 504, not {status}")
        kind = FaultKind.GATEWAY_HTML if html else FaultKind.GATEWAY_JSON
        return cls(kind, status=status)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without answering."""
        return cls(FaultKind.DROP)

    @classmethod
    def slow(cls, delay_s: float = 0.2) -> Fault:
        """Wait ``delay_s`` real seconds, then answer normally."""
        return cls(FaultKind.SLOW, delay_s=delay_s)

    @classmethod
    def malformed_json(cls) -> Fault:
        """HTTP 200, ``application/json``, but not JSON."""
        return cls(FaultKind.MALFORMED_JSON, status=200)

    @classmethod
    def truncated_json(cls) -> Fault:
        """HTTP 200 with the normal body cut in half."""
        return cls(FaultKind.TRUNCATED_JSON, status=200)

    @classmethod
    def error_code(cls, code: str = "13000102", *, status: int = 200) -> Fault:
        """Answer with a service error body (``code``/``msg``), by default under HTTP 200."""
        return cls(FaultKind.ERROR_CODE, status=status, code=code)


def _fault_tuple(faults: Iterable[Fault]) -> tuple[Fault, ...]:
    return tuple(faults)


TRANSIENT_FAULTS: tuple[Fault, ...] = (
    Fault.throttle(),
    Fault.server_error(),
    Fault.gateway(502),
    Fault.gateway(503),
    Fault.gateway(504),
    Fault.gateway(503, html=False),
    Fault.drop(),
    Fault.slow(),
    Fault.malformed_json(),
    Fault.truncated_json(),
)
"""Faults a client should ride out by retrying: 429, 5xx, dropped connections, slow
answers, malformed and truncated JSON."""

PERMANENT_FAULTS: tuple[Fault, ...] = (
    Fault.error_code("13000102"),
    Fault.error_code("13000309", status=400),
)
"""Service errors (non-zero ``code``) that end a wait: a retry gets the same answer."""

DEFAULT_FAULT_MIX: tuple[Fault, ...] = TRANSIENT_FAULTS
"""The mix of a :class:`FaultPlan` unless given: transient faults only. Add
:data:`PERMANENT_FAULTS` (``mix=TRANSIENT_FAULTS + PERMANENT_FAULTS``) to see service
errors too."""


@attrs.frozen
class FaultPlan:
    """Random faults for the whole emulator.

    Attributes:
        rate: Probability, 0 to 1, that a request gets a fault.
        mix: The faults to choose from, uniformly (repeat one to weight it); transient
            ones only by default (:data:`DEFAULT_FAULT_MIX`).
        on_create: Whether requests that change state (creates, job cancels) get faults
            too; reads (share-task and job details, job lists) always can.

    """

    rate: float = attrs.field(
        default=0.0, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )
    mix: tuple[Fault, ...] = attrs.field(default=DEFAULT_FAULT_MIX, converter=_fault_tuple)
    on_create: bool = False

    def pick(self, rng: random.Random) -> Fault | None:
        """Draw whether this request fails, and how.

        Returns:
            A fault, or ``None`` for a normal answer.

        """
        if self.rate <= 0 or not self.mix or rng.random() >= self.rate:
            return None
        return rng.choice(self.mix)


def request_id() -> str:
    """Make a fresh gateway request id."""
    return uuid.uuid4().hex


def json_response(
    status: int, body: dict[str, object], headers: dict[str, str] | None = None
) -> web.Response:
    """Build a JSON response; ``json.dumps`` of a small dict is the cheapest encoder here."""
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
        content_type="application/json",
        headers=headers,
    )


def gateway_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """Build an error in the API gateway's shape (``error_code``, ``error_msg``, ``request_id``)."""
    body: dict[str, object] = {"error_code": code, "error_msg": message, "request_id": request_id()}
    return json_response(status, body, headers)


def _retry_after(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def render_fault(fault: Fault, normal_body: bytes) -> web.Response:  # noqa: PLR0911  (one branch per kind)
    """Build the response a fault stands for.

    Args:
        fault: Any fault but ``DROP`` and ``SLOW``, which are not responses.
        normal_body: The body the request would have had, for ``TRUNCATED_JSON``.

    Returns:
        The response to send.

    Raises:
        ValueError: For ``DROP`` or ``SLOW``.

    """
    kind = fault.kind
    if kind is FaultKind.THROTTLE:
        headers = (
            {}
            if fault.retry_after_s is None
            else {"Retry-After": _retry_after(fault.retry_after_s)}
        )
        return gateway_error(
            429, "APIGW.0308", "The throttling threshold has been reached", headers
        )
    if kind is FaultKind.SERVER_ERROR:
        return json_response(500, {"code": "13000001", "msg": "Internal server error"})
    if kind is FaultKind.GATEWAY_HTML:
        title = _HTML_TITLES[fault.status]
        html = (
            f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
        )
        return web.Response(status=fault.status, text=html, content_type="text/html")
    if kind is FaultKind.GATEWAY_JSON:
        return gateway_error(
            fault.status, GATEWAY_CODES[fault.status], GATEWAY_MESSAGES[fault.status]
        )
    if kind is FaultKind.MALFORMED_JSON:
        return web.Response(
            status=200, body=b"{'code': 0, msg: success,}", content_type="application/json"
        )
    if kind is FaultKind.TRUNCATED_JSON:
        cut = normal_body[: max(1, math.floor(len(normal_body) / 2))]
        return web.Response(status=200, body=cut, content_type="application/json")
    if kind is FaultKind.ERROR_CODE:
        message = SERVICE_MESSAGES.get(fault.code, "Error")
        return json_response(fault.status, {"code": fault.code, "msg": message})
    raise ValueError(f"{kind.value} is carried out by the handler, not rendered")
