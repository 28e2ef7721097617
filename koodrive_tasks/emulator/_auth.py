"""Credential checks: bearer tokens and app signatures, answered like the API gateway.

The emulator never logs the ``Authorization`` header or any other credential.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from aiohttp import web

from .. import _signing
from ._clock import TimeSource
from ._faults import gateway_error

X_DATE_SKEW_MESSAGE = "Incorrect app authentication information: X-Date is expired or in the future"
BAD_SIGNATURE_MESSAGE = "Incorrect app authentication information: verify signature failed"


@attrs.frozen
class AppCredential:
    """An app allowed to sign requests.

    Attributes:
        app_secret: The HMAC key.
        user_id: The user the app was issued for (informational: a signed request acts
            for whoever its ``X-User-Id`` names).

    """

    app_secret: str = attrs.field(repr=False)
    user_id: str


@attrs.frozen
class Caller:
    """Who a request authenticated as.

    Attributes:
        user_id: The KooDrive user the request acts for.

    """

    user_id: str


class Authenticator:
    """Checks each request's credentials.

    Args:
        tokens: Accepted bearer tokens, each mapped to its user id.
        apps: Accepted app ids, each mapped to its credential.
        clock: The time source: monotonic for token expiry, wall time for ``X-Date`` checks.
        max_skew_s: How far ``X-Date`` may lie from now, either way.
        token_ttl_s: Idle seconds after which a token expires (each use extends it,
            as the real service does), or ``None`` for never.

    """

    def __init__(
        self,
        tokens: Mapping[str, str],
        apps: Mapping[str, AppCredential],
        *,
        clock: TimeSource,
        max_skew_s: float = 900.0,
        token_ttl_s: float | None = None,
    ) -> None:
        self.tokens = dict(tokens)
        self.apps = dict(apps)
        self._clock = clock
        self._max_skew_s = max_skew_s
        self._token_ttl_s = token_ttl_s
        self._last_used: dict[str, float] = {}

    def check(self, request: web.Request, body: bytes) -> Caller | web.Response:
        """Authenticate ``request``.

        Args:
            request: The incoming request.
            body: Its exact body bytes (they are signed).

        Returns:
            The caller, or the 401 response to send.

        """
        value = request.headers.get("Authorization", "")
        if value.startswith("Bearer "):
            return self._check_token(value[len("Bearer ") :].strip())
        if value.startswith(_signing.ALGORITHM + " "):
            return self._check_signature(request, value, body)
        return gateway_error(
            401,
            "APIGW.0301",
            "Incorrect IAM authentication information: Authorization header missing or unsupported",
        )

    def _check_token(self, token: str) -> Caller | web.Response:
        user_id = self.tokens.get(token)
        if user_id is None:
            return gateway_error(
                401, "APIGW.0301", "Incorrect IAM authentication information: token invalid"
            )
        if self._token_ttl_s is not None:
            now = self._clock.monotonic()
            last = self._last_used.get(token)
            if last is not None and now - last > self._token_ttl_s:
                return gateway_error(
                    401, "APIGW.0301", "Incorrect IAM authentication information: token expired"
                )
            self._last_used[token] = now
        return Caller(user_id)

    def _check_signature(  # noqa: PLR0911  (one answer per gateway check)
        self, request: web.Request, value: str, body: bytes
    ) -> Caller | web.Response:
        parts = _signing.parse_authorization(value)
        if parts is None:
            return gateway_error(
                401,
                "APIGW.0303",
                "Incorrect app authentication information: malformed Authorization",
            )
        credential = self.apps.get(parts["AppId"])
        if credential is None:
            return gateway_error(
                401, "APIGW.0303", "Incorrect app authentication information: app not found"
            )
        signed = tuple(name.strip().lower() for name in parts["SignedHeaders"].split(";"))
        user_id = request.headers.get("X-User-Id", "")
        x_date = request.headers.get("X-Date", "")
        if "x-date" not in signed or "x-user-id" not in signed or not user_id:
            return gateway_error(401, "APIGW.0303", BAD_SIGNATURE_MESSAGE)
        try:
            sent_at = _signing.parse_x_date(x_date)
        except ValueError:
            return gateway_error(
                401, "APIGW.0303", "Incorrect app authentication information: X-Date is invalid"
            )
        if abs((self._clock.now() - sent_at).total_seconds()) > self._max_skew_s:
            return gateway_error(401, "APIGW.0303", X_DATE_SKEW_MESSAGE)
        headers = {name: request.headers[name] for name in signed if name in request.headers}
        if len(headers) != len(signed):
            return gateway_error(401, "APIGW.0303", BAD_SIGNATURE_MESSAGE)
        raw_path, _, raw_query = request.raw_path.partition("?")
        canonical = _signing.canonical_request(
            request.method, raw_path, raw_query, headers, signed, body
        )
        expected = _signing.signature(credential.app_secret, canonical)
        if not _signing.signatures_match(expected, parts["Signature"]):
            return gateway_error(401, "APIGW.0303", BAD_SIGNATURE_MESSAGE)
        return Caller(user_id)
