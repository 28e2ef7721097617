"""The size cap applies to decoded bytes, for every content coding, while the loop stays free.

A server in its own process (``bomb_server.py``, so that tracemalloc here counts only
the client) answers, by the share id asked for, with decompression bombs in each coding the client accepts (gzip,
x-gzip, zlib deflate, raw deflate, multi-member gzip, chunked or with a length), a body
of empty gzip members (work without output), and codings it never asked for. Each must
end quickly as ``MalformedResponseError``, with the client's memory peak at most
``MEMORY_FACTOR`` times the cap and the event loop never held up for more than
``MAX_LAG``; a wait against it still ends at its deadline. Valid answers in every
accepted coding are read, up to exactly the cap.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from rel_support import SHARE, TOKEN, LagMonitor

from koodrive_tasks import (
    BearerToken,
    KooDriveClient,
    MalformedResponseError,
    TaskStatus,
    WaitTimeoutError,
)

CAP = 1 << 20  # the client's default max_response_bytes
MEMORY_FACTOR = 4
MAX_LAG = 0.1  # asyncio's own threshold for a slow callback
MAX_SECONDS = 0.5
DEADLINE = 0.5
SLACK = 0.5

BOMBS = [
    "gzip-bomb",
    "x-gzip-bomb",
    "deflate-bomb",
    "raw-deflate-bomb",
    "multi-member-bomb",
    "empty-members",
    "gzip-over-cap",
]
NOT_ASKED_FOR = ["br", "zstd", "gzip, gzip"]
VALID = [
    "gzip-ok",
    "x-gzip-ok",
    "deflate-ok",
    "raw-deflate-ok",
    "multi-member-ok",
    "identity-ok",
    "gzip-at-cap",
]


@pytest.fixture(scope="module")
def bomb_url() -> Iterator[str]:
    """The URL of a bomb server in a child process, for the whole module."""
    server = subprocess.Popen(  # noqa: S603 - our own script
        [sys.executable, str(Path(__file__).with_name("bomb_server.py")), str(CAP)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        assert server.stdin is not None
        assert server.stdout is not None
        server.stdin.close()  # the server exits when its stdin closes
        server.wait(10)
        server.stdout.close()


def client(url: str, **options: object) -> KooDriveClient:
    return KooDriveClient(
        url, auth=BearerToken(TOKEN), allow_insecure_urls=True, max_response_bytes=CAP, **options
    )


async def fetch_measured(kd: KooDriveClient, variant: str) -> tuple[object, float, int, float]:
    """(result or error, seconds, traced memory peak, worst loop lag) of one query."""
    async with LagMonitor() as lag:
        tracemalloc.start()
        tracemalloc.reset_peak()
        started = time.perf_counter()
        try:
            result: object = await kd.get_share_task(variant, "t1")
        except Exception as error:
            result = error
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, seconds, peak, lag.worst


@pytest.mark.parametrize("variant", BOMBS)
async def test_a_decompression_bomb_is_refused_quickly_with_bounded_memory(
    bomb_url: str, variant: str
) -> None:
    """A bomb ends within 0.5 s as MalformedResponseError "exceeds", memory <= 4x cap, lag < 0.1 s."""
    async with client(bomb_url, attempts=1) as kd:
        await kd.get_share_task("gzip-ok", "t1")  # the connection is open before measuring
        result, seconds, peak, lag = await fetch_measured(kd, variant)
    assert isinstance(result, MalformedResponseError), repr(result)
    if variant != "empty-members":  # decodes to nothing: refused as damaged, not as large
        assert f"exceeds {CAP} bytes" in str(result)
    assert seconds < MAX_SECONDS, f"{seconds:.3f} s"
    assert peak <= MEMORY_FACTOR * CAP, f"peak {peak / CAP:.2f}x the cap"
    assert lag < MAX_LAG, f"the loop was held up {lag * 1000:.0f} ms"


@pytest.mark.parametrize("variant", BOMBS)
async def test_a_decompression_bomb_cannot_hold_a_wait_past_its_deadline(
    bomb_url: str, variant: str
) -> None:
    """A wait answered only with bombs retries them and ends at its deadline, loop lag < 0.1 s."""
    async with client(bomb_url, request_timeout=60.0) as kd, LagMonitor() as lag:
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError) as caught:
            await kd.wait_for_task(variant, "t1", timeout=DEADLINE)
        seconds = time.monotonic() - started
        polls = kd.stats.polls
    assert DEADLINE - 0.05 <= seconds < DEADLINE + SLACK, seconds
    assert isinstance(caught.value.last_error, MalformedResponseError)
    assert polls >= 1
    assert lag.worst < MAX_LAG, f"the loop was held up {lag.worst * 1000:.0f} ms"


@pytest.mark.parametrize("variant", NOT_ASKED_FOR)
async def test_a_coding_not_asked_for_is_a_malformed_response(bomb_url: str, variant: str) -> None:
    """br, zstd or stacked codings (never in Accept-Encoding) end as MalformedResponseError at once."""
    async with client(bomb_url, attempts=1) as kd:
        result, seconds, _, lag = await fetch_measured(kd, variant)
    assert isinstance(result, MalformedResponseError), repr(result)
    assert "not asked for" in str(result)
    assert seconds < MAX_SECONDS
    assert lag < MAX_LAG


@pytest.mark.parametrize("variant", VALID)
async def test_every_accepted_coding_is_read_up_to_exactly_the_cap(
    bomb_url: str, variant: str
) -> None:
    """A valid answer in gzip, x-gzip, deflate (zlib or raw), multi-member gzip or identity is read."""
    async with client(bomb_url, attempts=1) as kd:
        info = await kd.get_share_task(variant, "t1")
    assert info.status is TaskStatus.PROCESSING
    assert info.progress == 5


async def test_the_client_asks_only_for_the_codings_it_decodes_under_the_cap() -> None:
    """Accept-Encoding names gzip and deflate only: a server honouring it never sends br or zstd."""
    seen: list[str] = []

    async def record(request: object) -> object:
        from aiohttp import web

        assert isinstance(request, web.Request)
        seen.append(request.headers.get("Accept-Encoding", ""))
        return web.json_response({"code": "0", "taskInfo": {"taskId": "t1", "taskStatus": 1}})

    from rel_support import WebServer

    async with WebServer(record) as server, client(server.url) as kd:
        await kd.get_share_task(SHARE, "t1")
    codings = {c.strip() for c in seen[0].split(",")}
    assert codings == {"gzip", "deflate"}, seen


async def test_bombs_keep_the_loop_free_for_other_waits(bomb_url: str) -> None:
    """Ten concurrent waits fed bombs: a heartbeat never lags 0.1 s, every wait ends at its deadline."""
    async with client(bomb_url, request_timeout=60.0) as kd, LagMonitor() as lag:
        started = time.monotonic()
        results = await asyncio.gather(
            *(kd.wait_for_task(BOMBS[i % len(BOMBS)], "t1", timeout=DEADLINE) for i in range(10)),
            return_exceptions=True,
        )
        seconds = time.monotonic() - started
    assert all(isinstance(r, WaitTimeoutError) for r in results), results
    assert seconds < DEADLINE + SLACK
    assert lag.worst < MAX_LAG, f"the loop was held up {lag.worst * 1000:.0f} ms"
