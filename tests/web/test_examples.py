"""The example apps over real HTTP on loopback: page, export, progress, download, fan-out."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from app_support import APPS, running_app
from sse_support import Event, parse

from koodrive_tasks.emulator import TaskScript

pytestmark = pytest.mark.parametrize("name", APPS)


def progress_of(events: list[Event]) -> list[int]:
    return [e.json["progress"] for e in events if e.name == "progress"]


async def test_the_page_is_served(name: str) -> None:
    """GET / serves the shared page, which follows the task with an EventSource."""
    async with running_app(name) as app, aiohttp.ClientSession() as http:
        async with http.get(f"{app.url}/") as answer:
            assert answer.status == 200
            assert answer.content_type == "text/html"
            page = await answer.text()
    assert "new EventSource(" in page
    assert 'id="download"' in page


async def test_an_export_streams_rising_progress_to_a_working_download_link(name: str) -> None:
    """POST /exports, then the events: progress rises to 100 % and the result's link downloads the zip."""
    async with running_app(name) as app, aiohttp.ClientSession() as http:
        task_id = await app.start_export(http)
        events = await app.events(http, task_id)
        result = events[-1]
        async with http.get(result.json["download_url"]) as download:
            assert download.status == 200
            body = await download.read()
    assert events[0] == Event("retry", 2000)
    progress = progress_of(events)
    assert len(progress) >= 4
    assert progress == sorted(progress)
    assert progress[-1] == 100
    assert result.name == "result"
    assert result.json["outcome"] == "completed"
    assert result.json["task_id"] == task_id
    assert body.startswith(b"PK")  # a zip


async def test_fifty_clients_on_one_task_cost_the_polls_of_one(name: str) -> None:
    """Fifty browsers following one task cost the server the same polls as one browser."""
    async with running_app(name) as app, aiohttp.ClientSession() as http:
        alone, crowded = await app.start_export(http), await app.start_export(http)
        started = time.monotonic()
        followers = [app.events(http, alone)] + [app.events(http, crowded) for _ in range(50)]
        streams = await asyncio.gather(*followers)
        elapsed = time.monotonic() - started
        polls = app.emulator.stats.polls
    assert all(s[-1].json["outcome"] == "completed" for s in streams)
    assert all(progress_of(s)[-1] == 100 for s in streams)
    assert polls[crowded] == polls[alone], (polls[alone], polls[crowded])
    assert elapsed < 10


async def test_closing_the_client_first_ends_open_streams_before_the_drain(name: str) -> None:
    """The shutdown recipe: every open stream gets a final event and the server stops at once."""
    async with running_app(name) as app, aiohttp.ClientSession() as http:
        app.emulator.queue_script(TaskScript(pending_s=0, duration_s=600))
        task_id = await app.start_export(http)
        answer = await http.get(f"{app.url}/exports/{task_id}/events")
        chunks = answer.content
        assert (await chunks.readline()).startswith(b"retry:")
        started = time.monotonic()
        if name == "aiohttp_app":
            stopping = asyncio.ensure_future(app.server.cleanup())
        else:
            app.server.should_exit = True
            stopping = None
        text = (await asyncio.wait_for(answer.read(), 5)).decode()
        if stopping is not None:
            await asyncio.wait_for(stopping, 5)
    assert time.monotonic() - started < 5  # aiohttp would wait 60 s, uvicorn for ever
    last = parse(text)[-1]
    assert last.name == "error"
    assert last.json["type"] == "ClientClosedError"
