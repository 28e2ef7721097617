"""What every route of the emulator shares: body parsing, error bodies, credentials and faults."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from aiohttp import web

from ._auth import Authenticator, Caller
from ._faults import SERVICE_MESSAGES, Fault, FaultKind, json_response, render_fault
from ._scripts import Shape
from ._stats import EmulatorStats

PARAMETER_CHECK_FAILED = "13000102"
RESOURCE_NOT_FOUND = "13000309"
INSUFFICIENT_SPACE = "13000311"


class InvalidRequest(Exception):  # noqa: N818  (a control-flow signal, not an error type)
    """A request failed validation; carries the service code and the detail for ``msg``."""

    def __init__(self, detail: str, code: str = PARAMETER_CHECK_FAILED) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def service_error(code: str, detail: str = "", status: int = 400) -> web.Response:
    """Build a service error body: ``{"code": "...", "msg": "..."}``."""
    message = SERVICE_MESSAGES.get(code, "Error")
    return json_response(
        status, {"code": code, "msg": f"{message}: {detail}" if detail else message}
    )


def success_code(shape: Shape) -> int | str:
    """``code`` of a success: ``"0"`` in shape A, ``0`` in shape B (both are documented)."""
    return "0" if shape == "A" else 0


def load_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON object body.

    Raises:
        InvalidRequest: If the body is not JSON, or not an object.
    """
    try:
        payload = json.loads(body)
    except ValueError:
        raise InvalidRequest("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("the body is not a JSON object")
    return payload


def text_field(payload: dict[str, Any], name: str, *, required: bool = True) -> str:
    """A non-empty string field; ``""`` when absent and not ``required``.

    Raises:
        InvalidRequest: If it is missing (and required), empty or not a string.
    """
    value = payload.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} must be a non-empty string")
    return value


def trace_id(request: web.Request) -> str:
    """Echo the caller's trace id, as the service does; else make a 58-character one."""
    return request.headers.get("X-Traceid") or secrets.token_hex(29)


class Gate:
    """Credentials and injected faults, the same for every route.

    Args:
        auth: The credential checker.
        stats: Where auth failures and faults are counted.
    """

    def __init__(self, auth: Authenticator, stats: EmulatorStats) -> None:
        self._auth = auth
        self._stats = stats

    def authenticate(self, request: web.Request, body: bytes) -> Caller | web.Response:
        """The caller, or the 401 to send (counted as an auth failure)."""
        result = self._auth.check(request, body)
        if isinstance(result, web.Response):
            self._stats.auth_failures += 1
        return result

    async def carry_out(self, request: web.Request, fault: Fault | None) -> web.Response | None:
        """Count ``fault`` and do its side of the request: drop the connection, or wait.

        Returns:
            A response that must be returned as is (the connection is already closed),
            or ``None`` to go on.
        """
        if fault is None:
            return None
        self._stats.faults[fault.kind.value] += 1
        if fault.kind is FaultKind.DROP:
            if request.transport is not None:
                request.transport.close()
            # Nothing reaches the client: the transport is closed.
            return web.Response(status=204)
        if fault.kind is FaultKind.SLOW:
            await asyncio.sleep(fault.delay_s)
        return None

    @staticmethod
    def stands_in(fault: Fault | None) -> bool:
        """Whether ``fault`` replaces the service's answer (all kinds but drop and slow)."""
        return fault is not None and fault.kind not in (FaultKind.SLOW, FaultKind.DROP)

    @staticmethod
    def render(fault: Fault, response: web.Response) -> web.Response:
        """The fault's answer in place of ``response`` (whose body a truncation cuts)."""
        return render_fault(fault, response.body if isinstance(response.body, bytes) else b"")
