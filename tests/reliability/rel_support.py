"""Shared values and helpers of the reliability suites: known secrets, leak checks, servers."""

from __future__ import annotations

import asyncio
import gc
import re
import warnings
from collections.abc import Iterable
from typing import Any

from koodrive_tasks import AppSignature, BearerToken, KooDriveClient, PollPolicy
from koodrive_tasks.emulator import Emulator
from koodrive_tasks.testing import VirtualClock

# Known secret values: every suite uses these, and the autouse guard in conftest.py
# fails a test whose logs or exceptions show any of them.
TOKEN = "tok-RELIABILITY-SECRET-4f1c9a2b7d"
APP_ID = "app-reliability"
APP_SECRET = "appsecret-RELIABILITY-9e8d7c6b5a"
USER_ID = "user-reliability"
KDSTOKEN = "kds-RELIABILITY-SECRET-31415926"
SIGNED_QUERY = "X-Amz-Signature=SIGNEDQUERY0123456789abcdef&X-Amz-Expires=300"
PACKAGE_URL = f"https://obs.example.com/pkg/a.zip?{SIGNED_QUERY}"
SECRETS: tuple[str, ...] = (TOKEN, APP_SECRET, KDSTOKEN, SIGNED_QUERY, "SIGNEDQUERY0123456789")

# The emulator signs package links as `...?expires=N&sig=<64 hex>`: the `sig` is the secret.
SIGNED_URL_PATTERN = re.compile(r"sig=[0-9a-f]{16,}")

SHARE = "share-1"


def leaks_in(text: str, extra: Iterable[str] = ()) -> list[str]:
    """Every known secret (or signed-URL query) that occurs in ``text``."""
    found = [value for value in (*SECRETS, *extra) if value and value in text]
    found += SIGNED_URL_PATTERN.findall(text)
    return found


def emulator(clock: VirtualClock | None = None, **options: Any) -> Emulator:
    """An emulator accepting the known token and app secret, on ``clock`` if given."""
    options.setdefault("token", TOKEN)
    options.setdefault("app_id", APP_ID)
    options.setdefault("app_secret", APP_SECRET)
    options.setdefault("user_id", USER_ID)
    if clock is not None:
        options.setdefault("clock", clock)
    return Emulator(**options)


def client_for(
    emu: Emulator, clock: VirtualClock | None = None, *, app: bool = False, **options: Any
) -> KooDriveClient:
    """A client for ``emu`` with the known credentials (bearer token, or app signature)."""
    auth = AppSignature(APP_ID, APP_SECRET, USER_ID) if app else BearerToken(TOKEN)
    options.setdefault("allow_insecure_urls", True)
    if clock is not None:
        options.setdefault("clock", clock)
    return KooDriveClient(emu.url, auth=auth, **options)


QUICK = PollPolicy.backoff(
    initial_delay=1.0,
    factor=1.5,
    max_delay=20.0,
    jitter=0.1,
    timeout=3600.0,
    retry_initial_delay=0.5,
    retry_max_delay=10.0,
)
"""A polling policy for virtual-time tests: plain backoff with shorter ceilings."""


def other_tasks() -> set[asyncio.Task[Any]]:
    """The asyncio tasks alive besides the current one."""
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}


async def settle(rounds: int = 5) -> None:
    """Let callbacks scheduled by closing sockets and cancelled tasks run."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def collect_resource_warnings() -> list[str]:
    """Run the garbage collector; return every ResourceWarning it raised (unclosed sockets)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


class LoopErrors:
    """Collects what the event loop's exception handler receives (never-retrieved errors...)."""

    def __init__(self) -> None:
        self.contexts: list[dict[str, Any]] = []
        self._previous: Any = None

    def __enter__(self) -> LoopErrors:
        loop = asyncio.get_running_loop()
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(lambda _loop, context: self.contexts.append(context))
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.get_running_loop().set_exception_handler(self._previous)

    def messages(self) -> list[str]:
        """One line per context."""
        return [f"{c.get('message')}: {c.get('exception')!r}" for c in self.contexts]


class RawServer:
    """A raw asyncio server on loopback for misbehaving-server tests.

    Subclasses implement :meth:`serve`; this class starts, tracks and stops the
    connection handlers so that no task outlives the test.
    """

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[None]] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await self.serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Any:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"


DETAIL_PATH = "/koodrive/ose/v1/share/taskDetail"


class WebServer:
    """An ``aiohttp.web`` server on loopback answering every route with ``handler``.

    ``async with WebServer(handler) as server:`` then point a client at ``server.url``.
    """

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self._runner: Any = None
        self.url = ""

    async def __aenter__(self) -> WebServer:
        from aiohttp import web

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._runner.cleanup()


class LagMonitor:
    """Measures how long the event loop went without running a 1 ms ticker (its lag).

    ``async with LagMonitor() as lag: ...`` then ``lag.worst`` is the longest delay, in
    seconds, past the ticker's due time while the block ran.
    """

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.worst = max(self.worst, loop.time() - due)

    async def __aenter__(self) -> LagMonitor:
        self._task = asyncio.ensure_future(self._tick())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
