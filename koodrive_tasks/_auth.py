"""The two KooDrive authentication schemes."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from yarl import URL

from . import _signing
from ._validate import has_control_character, is_text
from .exceptions import CredentialProviderError, InvalidArgumentError

TokenProvider = Callable[[], Awaitable[str]]


class Auth(Protocol):
    """What the client needs from an authentication scheme."""

    clock_sensitive: bool
    """Whether the server checks the request time (then a 401 may mean clock skew)."""

    async def headers(
        self, method: str, url: URL, body: bytes, now: Callable[[], datetime]
    ) -> dict[str, str]:
        """Headers that authenticate this exact request; called for every attempt.

        ``now`` reads the client's clock: a scheme that signs the time calls it (reading
        the wall clock is a measurable share of a poll's CPU for the others).
        """
        ...

    async def refresh(self, rejected: dict[str, str]) -> bool:
        """React to a 401 of a request sent with ``rejected`` headers; True to retry once."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in logs or errors."""
        ...


class BearerToken:
    """``Authorization: Bearer {access_token}``.

    Args:
        token: The access token, or an async callable returning a fresh one. A provider
            is called on first use and again once after a 401; the rejected request is
            then retried once. Concurrent 401s share one refresh.

    Raises:
        InvalidArgumentError: If ``token`` is empty or neither a string nor a callable.
    """

    clock_sensitive = False

    def __init__(self, token: str | TokenProvider) -> None:
        if isinstance(token, str):
            _check_token(token)
            self._token: str | None = token
            self._provider: TokenProvider | None = None
        elif callable(token):
            self._token = None
            self._provider = token
        else:
            raise InvalidArgumentError(
                f"token must be a string or an async callable, got {type(token).__name__}"
            )
        # asyncio.Lock binds to the loop it is first contended in: one per loop, so that a
        # token shared by clients of successive asyncio.run() calls still works.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._seen: list[str] = [] if self._token is None else [self._token]
        self._header: dict[str, str] = {}  # callers merge it into their own headers
        self._header_token: str | None = None

    def __repr__(self) -> str:
        if self._provider is None:
            return "BearerToken(<redacted>)"
        return f"BearerToken(provider={self._provider_name})"

    def _lock(self) -> asyncio.Lock:
        """The running event loop's lock around fetching a token."""
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    @property
    def _provider_name(self) -> str:
        return getattr(self._provider, "__qualname__", type(self._provider).__name__)

    async def _fetch(self) -> str:
        """A fresh token from the provider, or a :class:`CredentialProviderError`.

        The provider runs as a task of its own, so that its own ``CancelledError`` (it
        may await a shared refresh that someone else cancelled) is told apart from a
        cancellation of this request: the first is the provider's failure, the second
        is propagated (and the provider cancelled with it).
        """
        assert self._provider is not None  # noqa: S101 - only called with a provider
        name = self._provider_name
        failed_early: str | None = None
        try:
            call = asyncio.ensure_future(self._provider())
        except Exception as error:  # noqa: BLE001 - any failure of the provider is its own
            # A plain function (it returned a str, or raised): the provider's failure too,
            # raised below without its context, whose message may hold a secret.
            failed_early = type(error).__name__
        if failed_early is not None:
            raise CredentialProviderError(
                f"the token provider {name} failed ({failed_early}) before it could be "
                "awaited: a provider must be an async callable returning the token",
                provider=name,
            )
        try:
            await asyncio.wait((call,))
        except BaseException:
            call.cancel()
            raise
        if call.cancelled():
            raise CredentialProviderError(
                f"the token provider {name} was cancelled without being asked to "
                "(did it await a task someone else cancelled?)",
                provider=name,
            )
        failure = call.exception()
        if failure is not None:
            # The provider's message is not quoted: it may hold a client secret.
            raise CredentialProviderError(
                f"the token provider {name} failed ({type(failure).__name__})", provider=name
            ) from None
        token = call.result()
        if not isinstance(token, str):
            raise InvalidArgumentError(f"the token provider {name} returned a non-string token")
        _check_token(token, f"the token provider {name} returned a token that ")
        self._seen.append(token)
        del self._seen[:-4]  # remember the last few for redaction, not every token ever
        return token

    async def headers(
        self, method: str, url: URL, body: bytes, now: Callable[[], datetime]
    ) -> dict[str, str]:
        """The bearer header, fetching a token from the provider on first use."""
        token = self._token
        if token is None:
            async with self._lock():
                if self._token is None:
                    self._token = await self._fetch()
                token = self._token
        if self._header_token != token:  # made once per token, not per request
            self._header = {"Authorization": f"Bearer {token}"}
            self._header_token = token
        return self._header

    async def refresh(self, rejected: dict[str, str]) -> bool:
        """Fetch a new token unless another request already did; False without a provider."""
        if self._provider is None:
            return False
        async with self._lock():
            if rejected.get("Authorization") == f"Bearer {self._token}":
                self._token = await self._fetch()
        return True

    def secrets(self) -> tuple[str, ...]:
        """The tokens in use."""
        return tuple(self._seen)


class AppSignature:
    """Server-to-server HMAC-SHA256 app signature, re-signed for every attempt.

    Args:
        app_id: The application id.
        app_secret: The application secret (never shown in reprs or errors).
        user_id: The KooDrive user the application acts for (``X-User-Id``).

    Raises:
        InvalidArgumentError: If any argument is empty.
    """

    clock_sensitive = True

    def __init__(self, app_id: str, app_secret: str, user_id: str) -> None:
        for name, value in (("app_id", app_id), ("app_secret", app_secret), ("user_id", user_id)):
            if not isinstance(value, str) or not value.strip():
                raise InvalidArgumentError(f"{name} must be a non-empty string")
            if not is_text(value):
                # Never quoted: it may be the secret.
                raise InvalidArgumentError(f"{name} is not valid text (a lone surrogate)")
            if name != "app_secret" and has_control_character(value):
                raise InvalidArgumentError(
                    f"{name} holds a control character (a trailing newline from a file?): "
                    "no HTTP header can carry it"
                )
        self.app_id = app_id
        self.user_id = user_id
        self._secret = app_secret

    def __repr__(self) -> str:
        return (
            f"AppSignature(app_id={self.app_id!r}, app_secret=<redacted>, user_id={self.user_id!r})"
        )

    def sign(self, method: str, url: URL, body: bytes, now: datetime) -> dict[str, str]:
        """The headers that sign this request at ``now`` (pure; see ``_signing``)."""
        host = url.host_port_subcomponent or ""
        signed = {"host": host, "x-date": _signing.format_x_date(now), "x-user-id": self.user_id}
        canonical = _signing.canonical_request(
            method, url.raw_path, url.raw_query_string, signed, _signing.SIGNED_HEADERS, body
        )
        sig = _signing.signature(self._secret, canonical)
        return {
            "Host": host,
            "X-Date": signed["x-date"],
            "X-User-Id": self.user_id,
            "Authorization": _signing.authorization_header(
                self.app_id, sig, _signing.SIGNED_HEADERS
            ),
        }

    async def headers(
        self, method: str, url: URL, body: bytes, now: Callable[[], datetime]
    ) -> dict[str, str]:
        """Sign the request with a fresh ``X-Date``."""
        return self.sign(method, url, body, now())

    async def refresh(self, rejected: dict[str, str]) -> bool:
        """A rejected signature is not fixed by signing again."""
        return False

    def secrets(self) -> tuple[str, ...]:
        """The app secret."""
        return (self._secret,)


def _check_token(token: str, prefix: str = "the access token ") -> None:
    """Refuse a token no HTTP header can carry, without quoting it."""
    if not token.strip():
        raise InvalidArgumentError(f"{prefix}is empty")
    if has_control_character(token):
        raise InvalidArgumentError(
            f"{prefix}holds a control character (a trailing newline from a file?): "
            "no HTTP header can carry it"
        )
    if not is_text(token):
        raise InvalidArgumentError(f"{prefix}is not valid text (a lone surrogate)")
