"""EventStreamResponse: the Starlette adapter, called as an ASGI app."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sse_support import ScriptedTasks, events_of

from koodrive_tasks import KooDriveClient
from koodrive_tasks.sse.starlette import EventStreamResponse
from koodrive_tasks.testing import VirtualClock


def scope(**headers: str) -> dict[str, Any]:
    raw = [(k.lower().replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "asgi": {"spec_version": "2.3"}, "headers": raw}


class Channel:
    """The server side of one ASGI call: records what is sent, says when the client leaves."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self.on_body: Any = None

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and self.on_body is not None:
            self.on_body(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.sent[0]["headers"]}

    @property
    def body(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]


async def test_streams_the_events_and_ends_the_body(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """Status 200, an event-stream content type, the events, then a last empty body message."""
    tasks.linear("t1", start=0, end=20)
    channel = Channel()
    response = EventStreamResponse(client.wait_for_task("s1", "t1"), heartbeat=None, retry=3)
    await response(scope(), channel.receive, channel.send)
    assert channel.status == 200
    assert channel.headers["content-type"] == "text/event-stream"
    assert channel.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    events = events_of(channel.body)
    assert events[0].data == 3000
    assert events[-1].name == "result"


async def test_http_disconnect_ends_the_wait(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """When the server reports http.disconnect, the response returns and the polls stop."""
    tasks.add("t1", (0, 1, 10))
    channel = Channel()
    channel.on_body = lambda message: channel.gone.set()  # leaves after the first event
    response = EventStreamResponse(client.wait_for_task("s1", "t1", timeout=None), heartbeat=None)
    await asyncio.wait_for(response(scope(), channel.receive, channel.send), 2)
    polls = tasks.polls["t1"]
    await clock.sleep(600)
    assert tasks.polls["t1"] == polls
    assert channel.sent[-1].get("more_body") is True  # nobody to finish the body for


async def test_reads_last_event_id_from_the_request(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """The Last-Event-ID header resumes; after the result it gets 204 and nothing is polled."""
    tasks.linear("t1", start=0, end=10)
    first = Channel()
    await EventStreamResponse(client.wait_for_task("s1", "t1"), heartbeat=None)(
        scope(), first.receive, first.send
    )
    last = events_of(first.body)[-1]
    polls = tasks.polls["t1"]
    again = Channel()
    await EventStreamResponse(client.wait_for_task("s1", "t1"), heartbeat=None)(
        scope(last_event_id=str(last.id)), again.receive, again.send
    )
    assert again.status == 204
    assert tasks.polls["t1"] == polls


async def test_a_send_failing_with_oserror_means_the_client_left(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """ASGI 2.4 servers raise OSError from send() once the client is gone: the response just ends."""
    tasks.add("t1", (0, 1, 10), (5, 1, 20))
    channel = Channel()

    def fail(message: dict[str, Any]) -> None:
        if len(channel.body) > 1:
            raise OSError("client gone")

    channel.on_body = fail
    response = EventStreamResponse(client.wait_for_task("s1", "t1", timeout=None), heartbeat=None)
    await response(scope(), channel.receive, channel.send)
    polls = tasks.polls["t1"]
    await clock.sleep(600)
    assert tasks.polls["t1"] == polls


async def test_a_bug_in_sending_is_not_swallowed(
    client: KooDriveClient, tasks: ScriptedTasks
) -> None:
    """An error other than the client leaving propagates to the server."""
    tasks.linear("t1", start=0, end=10)
    channel = Channel()

    def fail(message: dict[str, Any]) -> None:
        raise RuntimeError("bug")

    channel.on_body = fail
    response = EventStreamResponse(client.wait_for_task("s1", "t1"), heartbeat=None)
    with pytest.raises(RuntimeError, match="bug"):
        await response(scope(), channel.receive, channel.send)
