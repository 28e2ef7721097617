"""sse_response: an aiohttp handler streaming a wait, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sse_support import Event, ScriptedTasks, parse, read_events

from koodrive_tasks import InvalidArgumentError, KooDriveClient
from koodrive_tasks.sse.aiohttp import sse_response
from koodrive_tasks.testing import VirtualClock

Handler = Callable[[web.Request], Any]


class Served:
    """An app on loopback whose events handler counts the requests it has finished."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.finished = 0
        self.finished_event = asyncio.Event()


@pytest.fixture
async def serve(client: KooDriveClient, clock: VirtualClock) -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def start(**options: Any) -> Served:
        async def events(request: web.Request) -> web.StreamResponse:
            waiter = client.wait_for_task("s1", request.match_info["task_id"], timeout=None)
            try:
                return await sse_response(request, waiter, clock=clock, **options)
            finally:
                served.finished += 1
                served.finished_event.set()

        app = web.Application()
        app.router.add_get("/events/{task_id}", events)
        # aiohttp's default, stated: the handler is NOT cancelled when the client leaves.
        runner = web.AppRunner(app, handler_cancellation=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        served = Served(f"http://127.0.0.1:{site.port}")
        return served

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_streams_the_events_with_the_right_headers_then_ends(
    serve: Callable[..., Any], tasks: ScriptedTasks
) -> None:
    """The answer is an uncached text/event-stream of progress and a result, then the response ends."""
    tasks.linear("t1", start=0, end=30)
    served = await serve(heartbeat=None, retry=1.5)
    async with aiohttp.ClientSession() as http, http.get(f"{served.url}/events/t1") as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "text/event-stream"
        assert "no-cache" in answer.headers["Cache-Control"]
        events = parse((await answer.read()).decode())
    assert events[0] == Event("retry", 1500)
    assert [e.name for e in events[1:]].count("progress") >= 5
    assert events[-1].name == "result"
    assert events[-1].json["outcome"] == "completed"


async def test_a_browser_that_leaves_ends_the_wait_without_handler_cancellation(
    serve: Callable[..., Any], tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """The client closing its connection ends the handler and the polls, with no write to notice it."""
    tasks.add("t1", (0, 1, 10))  # never ends: only the browser leaving stops it
    served = await serve(heartbeat=None, disconnect_check=0.02)
    async with aiohttp.ClientSession() as http:
        answer = await http.get(f"{served.url}/events/t1")
        first = await anext(read_events(answer))
        assert first.json["progress"] == 10
        answer.close()  # the browser tab is closed
    await asyncio.wait_for(served.finished_event.wait(), 2)  # real seconds, at most
    polls = tasks.polls["t1"]
    await clock.sleep(600)
    assert tasks.polls["t1"] == polls


async def test_a_reconnection_after_the_result_gets_204_and_costs_no_poll(
    serve: Callable[..., Any], tasks: ScriptedTasks
) -> None:
    """Last-Event-ID of a delivered result: 204 No Content (EventSource stops), nothing polled."""
    tasks.linear("t1", start=0, end=10)
    served = await serve(heartbeat=None)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{served.url}/events/t1") as answer:
            last = parse((await answer.read()).decode())[-1]
        polls = tasks.polls["t1"]
        headers = {"Last-Event-ID": str(last.id)}
        async with http.get(f"{served.url}/events/t1", headers=headers) as again:
            assert again.status == 204
    assert tasks.polls["t1"] == polls


async def test_a_reconnection_mid_task_resumes_without_duplicates(
    serve: Callable[..., Any], tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """A reconnecting client with Last-Event-ID gets only later events."""
    tasks.add("t1", (0, 1, 10), (100, 1, 50), (200, 2, 100))
    served = await serve(heartbeat=None)
    async with aiohttp.ClientSession() as http:
        answer = await http.get(f"{served.url}/events/t1")
        first = await anext(read_events(answer))
        answer.close()
        headers = {"Last-Event-ID": str(first.id)}
        async with http.get(f"{served.url}/events/t1", headers=headers) as again:
            events = parse((await again.read()).decode())
    assert [e.json.get("progress") for e in events if e.name == "progress"] == [50, 100]
    assert events[-1].name == "result"


async def test_heartbeats_reach_the_client(serve: Callable[..., Any], tasks: ScriptedTasks) -> None:
    """Keep-alive comments are written while the task is quiet."""
    tasks.add("t1", (0, 0, 0), (60, 2, 100))
    served = await serve(heartbeat=5)
    async with aiohttp.ClientSession() as http, http.get(f"{served.url}/events/t1") as answer:
        events = parse((await answer.read()).decode())
    assert sum(1 for e in events if e.name == ":") >= 10
    assert events[-1].name == "result"


async def test_a_bad_disconnect_check_is_refused(client: KooDriveClient) -> None:
    """disconnect_check must be a positive number of seconds."""
    request: Any = object()
    for bad in (0, -1, float("nan"), True):
        with pytest.raises(InvalidArgumentError):
            await sse_response(request, client.wait_for_task("s1", "t1"), disconnect_check=bad)
