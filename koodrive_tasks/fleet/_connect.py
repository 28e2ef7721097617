"""Connecting to Redis: a client with a blocking pool from a URL, and a safe description.

The only module of the package that imports redis-py, and only when given a URL: a
caller that passes its own client (redis-py's or valkey-py's) needs neither.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..exceptions import InvalidArgumentError


def client_from_url(url: str, *, max_connections: int, connect_timeout: float) -> tuple[Any, Any]:
    """A ``redis.asyncio.Redis`` over a ``BlockingConnectionPool`` for ``url``.

    redis-py's default async pool raises "Too many connections" when all are taken;
    the blocking pool makes a caller wait for one instead (the coordinator bounds every
    call, the wait included). No ``socket_timeout``: see ``_bounded``. A failed command
    is tried once more on a fresh connection (the pooled one may predate a restart).

    Returns:
        The client and its pool (the coordinator closes both).

    Raises:
        InvalidArgumentError: If redis-py is not installed or the URL is not one it
            understands (the message never quotes the URL: it may hold a password).
    """
    try:
        from redis.asyncio import BlockingConnectionPool, Redis  # noqa: PLC0415 (optional extra)
        from redis.asyncio.retry import Retry  # noqa: PLC0415
        from redis.backoff import NoBackoff  # noqa: PLC0415
    except ImportError as error:
        raise InvalidArgumentError(
            "fleet mode needs redis-py: pip install 'koodrive-tasks[redis]' "
            "(or pass a valkey-py client instead of a URL)"
        ) from error
    try:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=None,
            socket_timeout=None,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 1),
        )
    except ValueError as error:
        raise InvalidArgumentError(
            f"not a Redis URL that redis-py understands ({describe_url(url)})"
        ) from error
    return Redis(connection_pool=pool), pool


def describe_url(url: str) -> str:
    """``url`` without its user, password and query: ``redis://host:6379/0``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an unreadable URL"
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def describe_client(client: Any) -> str:
    """Where a caller's client connects, from its pool's settings, without credentials."""
    kwargs: dict[str, Any] = (
        getattr(getattr(client, "connection_pool", None), "connection_kwargs", None) or {}
    )
    name = type(client).__name__
    if "path" in kwargs:
        return f"{name} unix://{kwargs['path']}"
    if "host" in kwargs:
        return f"{name} {kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    return name
