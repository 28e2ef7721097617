"""EventStream: a wait or a batch as Server-Sent Events (virtual time, mocked KooDrive)."""

from __future__ import annotations

import asyncio

import pytest
from sse_support import Event, ScriptedTasks, events_of

from koodrive_tasks import InvalidArgumentError, KooDriveClient
from koodrive_tasks.sse import EventStream, format_comment, format_event, format_retry
from koodrive_tasks.testing import VirtualClock


async def collect(stream: EventStream, clock: VirtualClock) -> list[tuple[float, Event]]:
    """Every event of the stream with the virtual time it was produced at."""
    timed = []
    async with stream:
        async for chunk in stream:
            timed.extend((clock.monotonic(), event) for event in events_of([chunk]))
    return timed


async def drain(stream: EventStream, into: list[bytes]) -> None:
    """Read the stream into ``into``, keeping what arrived if cancelled."""
    async for chunk in stream:
        into.append(chunk)  # noqa: PERF401 - a comprehension would lose it on cancellation


def names(timed: list[tuple[float, Event]]) -> list[str]:
    return [event.name for _, event in timed]


# --- the wire format ------------------------------------------------------------------


def test_format_event_writes_type_id_json_data_and_a_blank_line() -> None:
    """An event is its type, its id, its data as one line of compact JSON, then a blank line."""
    chunk = format_event("progress", {"a": "é", "b": [1, 2]}, event_id="k1.x")
    assert chunk == 'event: progress\nid: k1.x\ndata: {"a":"é","b":[1,2]}\n\n'.encode()


def test_format_event_keeps_line_breaks_inside_json_strings_escaped() -> None:
    """A line break inside the data cannot end the event early: JSON escapes it."""
    [event] = events_of([format_event("x", {"text": "one\ntwo\rthree"})])
    assert event.data == {"text": "one\ntwo\rthree"}


@pytest.mark.parametrize(
    ("event", "event_id"), [("a\nb", None), ("progress", "1\r2"), ("progress", "a\0b")]
)
def test_format_event_refuses_a_type_or_id_that_is_not_one_line(
    event: str, event_id: str | None
) -> None:
    """A type or id with a line break (or an id with NUL) would corrupt the stream: refused."""
    with pytest.raises(InvalidArgumentError):
        format_event(event, {}, event_id=event_id)


def test_format_event_refuses_data_that_is_not_json() -> None:
    """Data that JSON cannot encode is an InvalidArgumentError, not a TypeError."""
    with pytest.raises(InvalidArgumentError):
        format_event("x", {"n": float("nan")})
    with pytest.raises(InvalidArgumentError):
        format_event("x", object())


def test_format_retry_and_comment() -> None:
    """retry: is in milliseconds; a comment is a colon line; bad values are refused."""
    assert format_retry(2.5) == b"retry: 2500\n\n"
    assert format_comment() == b": keep-alive\n\n"
    for bad in (-1, float("inf"), float("nan"), True):
        with pytest.raises(InvalidArgumentError):
            format_retry(bad)


# --- one wait -------------------------------------------------------------------------


async def test_a_wait_streams_rising_progress_then_its_result(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """Progress events rise from pending to completed, then one result with the URL; then the end."""
    tasks.linear("t1", start=2, end=40)
    timed = await collect(EventStream(client.wait_for_task("s1", "t1"), heartbeat=None), clock)
    events = [event for _, event in timed]
    assert names(timed)[-1] == "result"
    progress = [e.json for e in events if e.name == "progress"]
    assert progress[0] == {"task_id": "t1", "status": "pending", "progress": 0}
    assert progress[-1] == {"task_id": "t1", "status": "completed", "progress": 100}
    order = {"pending": 0, "processing": 1, "completed": 2}
    steps = [(order[p["status"]], p["progress"]) for p in progress]
    assert steps == sorted(steps)
    assert len(set(steps)) == len(steps)
    result = events[-1].json
    assert result["outcome"] == "completed"
    assert result["download_url"].startswith("https://obs.example.com/")
    assert all(e.id for e in events), "every progress and result event carries an id"
    assert len({e.id for e in events}) == len(events)


async def test_the_retry_hint_comes_first(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """retry= is sent before any event, in milliseconds."""
    tasks.linear("t1", start=0, end=5)
    timed = await collect(EventStream(client.wait_for_task("s1", "t1"), retry=2), clock)
    assert timed[0][1] == Event("retry", 2000)


async def test_heartbeats_fill_every_silence_at_the_set_interval(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """A keep-alive comment follows every `heartbeat` seconds without an event, and only then."""
    tasks.add("t1", (0, 0, 0), (30, 1, 50), (60, 2, 100))
    stream = EventStream(client.wait_for_task("s1", "t1"), heartbeat=3, clock=clock)
    timed = await collect(stream, clock)
    last = None
    for at, event in timed:
        if event.name == ":":
            assert event.data == "keep-alive"
            assert last is not None
            assert at == pytest.approx(last + 3)
        last = at
    # Polls at 0, 1, 3, 7, 15, 23, 31 (FAST policy): 30 s of silence = 10 comments.
    first_change = next(at for at, e in timed if e.name == "progress" and e.json["progress"] == 50)
    assert first_change == pytest.approx(31)
    assert sum(1 for at, e in timed if e.name == ":" and at < first_change) == 10


async def test_no_heartbeat_when_none(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """heartbeat=None sends no comment, however long the silence."""
    tasks.add("t1", (0, 0, 0), (300, 2, 100))
    timed = await collect(EventStream(client.wait_for_task("s1", "t1"), heartbeat=None), clock)
    assert ":" not in names(timed)


async def test_progress_that_goes_back_is_not_shown(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """An observation below one already sent (a server's progress going back) is skipped."""
    tasks.add("t1", (0, 1, 50), (2, 1, 40), (5, 1, 60), (9, 2, 100))
    timed = await collect(EventStream(client.wait_for_task("s1", "t1"), heartbeat=None), clock)
    shown = [e.json["progress"] for _, e in timed if e.name == "progress"]
    assert shown == [50, 60, 100]


@pytest.mark.parametrize(
    ("result", "outcome"), [(2, "partially_failed"), (3, "failed")], ids=["partial", "all-failed"]
)
async def test_the_result_event_carries_any_outcome(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock, result: int, outcome: str
) -> None:
    """A task that failed ends with a result event too: its outcome word, and its error if any."""
    tasks.add("t1", (0, 1, 10), (3, 2, 100), result=result)
    timed = await collect(EventStream(client.wait_for_task("s1", "t1"), heartbeat=None), clock)
    data = timed[-1][1].json
    assert timed[-1][1].name == "result"
    assert data["outcome"] == outcome
    assert ("download_url" in data) is (outcome == "partially_failed")
    if outcome == "failed":
        assert data["error"]["type"] == "TaskFailedError"


async def test_a_timed_out_wait_ends_with_a_timeout_result(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """A wait whose deadline passes gives a result event with outcome timeout."""
    tasks.add("t1", (0, 1, 10))
    waiter = client.wait_for_task("s1", "t1", timeout=20)
    timed = await collect(EventStream(waiter, heartbeat=None), clock)
    assert timed[-1][1].json["outcome"] == "timeout"
    assert timed[-1][1].json["error"]["type"] == "WaitTimeoutError"


# --- reconnection ---------------------------------------------------------------------


async def test_a_reconnection_resumes_after_the_last_event_seen(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """Given a Last-Event-ID, a new stream sends only what comes after it: no duplicate, no step back."""
    tasks.linear("t1", start=0, end=40)
    first = await collect(EventStream(client.wait_for_task("s1", "t1"), heartbeat=None), clock)
    progress = [e for _, e in first if e.name == "progress"]
    seen = progress[2]  # the browser got this far, then its connection broke

    again = EventStream(client.wait_for_task("s1", "t1"), last_event_id=seen.id, heartbeat=None)
    resumed = [e for _, e in await collect(again, clock)]
    # The task ended meanwhile: only its end is new.
    assert [(e.name, e.json.get("status")) for e in resumed] == [
        ("progress", "completed"),
        ("result", None),
    ]
    assert resumed[-1].json == first[-1][1].json


async def test_a_reconnection_mid_task_skips_the_current_state_if_already_seen(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """Reconnecting while the task runs: the first poll repeats what the browser saw; it is not sent."""
    tasks.add("t1", (0, 1, 30), (50, 1, 60), (100, 2, 100))
    stream = EventStream(client.wait_for_task("s1", "t1"), heartbeat=None)
    first = await stream.__anext__()
    await stream.aclose()  # the connection broke after one event
    [seen] = events_of([first])

    again = EventStream(client.wait_for_task("s1", "t1"), last_event_id=seen.id, heartbeat=None)
    resumed = [e for _, e in await collect(again, clock)]
    assert [e.json.get("progress") for e in resumed if e.name == "progress"] == [60, 100]
    assert resumed[-1].name == "result"


async def test_after_the_result_a_reconnection_finds_nothing_to_send(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """The result's id marks the stream finished: nothing is sent and nothing is polled."""
    tasks.linear("t1", start=0, end=10)
    first = await collect(EventStream(client.wait_for_task("s1", "t1"), heartbeat=None), clock)
    polls = tasks.polls["t1"]
    again = EventStream(
        client.wait_for_task("s1", "t1"), last_event_id=first[-1][1].id, heartbeat=None
    )
    assert again.finished
    assert await collect(again, clock) == []
    assert tasks.polls["t1"] == polls


@pytest.mark.parametrize(
    "last_event_id", ["", "42", "k1.", "k1.!!!!", "k1.AAAA", "k1.AAAAAAAAAA", "x" * 70_000]
)
async def test_an_id_not_made_here_is_ignored(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock, last_event_id: str
) -> None:
    """A foreign, damaged or huge Last-Event-ID starts the stream from the beginning, without error."""
    tasks.linear("t1", start=0, end=10)
    stream = EventStream(
        client.wait_for_task("s1", "t1"), last_event_id=last_event_id, heartbeat=None
    )
    assert not stream.finished
    timed = await collect(stream, clock)
    assert timed[0][1].json["progress"] == 0
    assert timed[-1][1].name == "result"


async def test_an_id_of_another_task_does_not_skip_anything(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """Ids name their tasks: the id of another task's stream resumes nothing here."""
    tasks.linear("t1", start=0, end=100)
    tasks.linear("t2", start=0, end=10)
    other = await collect(EventStream(client.wait_for_task("s1", "t2"), heartbeat=None), clock)
    stream = EventStream(
        client.wait_for_task("s1", "t1"), last_event_id=other[-1][1].id, heartbeat=None
    )
    assert not stream.finished
    assert len([e for _, e in await collect(stream, clock) if e.name == "progress"]) > 5


# --- leaving and closing --------------------------------------------------------------


async def test_closing_the_stream_stops_the_polls(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """aclose() mid-wait (the browser left) ends the wait: no poll follows."""
    tasks.add("t1", (0, 1, 10), (1000, 2, 100))
    stream = EventStream(client.wait_for_task("s1", "t1"), heartbeat=5, clock=clock)
    reader = asyncio.ensure_future(stream.__anext__())
    await reader
    waiting = asyncio.ensure_future(stream.__anext__())  # now waiting for the next change
    await clock.sleep(2)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await stream.aclose()
    polls = tasks.polls["t1"]
    await clock.sleep(500)
    assert tasks.polls["t1"] == polls


async def test_closing_the_client_ends_the_stream_with_an_error_event(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """Closing the client (a server shutting down) ends the stream with an error event without id."""
    tasks.add("t1", (0, 1, 10), (1000, 2, 100))
    stream = EventStream(client.wait_for_task("s1", "t1"), heartbeat=None)
    chunks: list[bytes] = []
    reader = asyncio.ensure_future(drain(stream, chunks))
    await clock.sleep(5)
    await client.close()
    await asyncio.wait_for(reader, 5)
    last = events_of(chunks)[-1]
    assert last.name == "error"
    assert last.id is None
    assert last.json["type"] == "ClientClosedError"


async def test_closing_the_client_ends_a_wait_stream_with_a_final_event(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """Closing the client ends a wait's stream at once, with a final event naming the closed client."""
    tasks.add("t1", (0, 1, 10), (1000, 2, 100))
    stream = EventStream(client.wait_for_task("s1", "t1"), heartbeat=None)
    chunks: list[bytes] = []
    reader = asyncio.ensure_future(drain(stream, chunks))
    await clock.sleep(5)
    await client.close()
    await asyncio.wait_for(reader, 5)
    last = events_of(chunks)[-1]
    assert last.name == "error"
    assert last.json["type"] == "ClientClosedError"
    assert "closed" in last.json["message"]


# --- batches --------------------------------------------------------------------------


async def test_a_batch_streams_every_task_and_each_result_as_its_task_ends(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """watch_many: progress of every task; each result follows its task's end at once."""
    tasks.linear("fast", start=0, end=10)
    tasks.linear("slow", start=0, end=200)
    batch = client.watch_many([("s1", "fast"), ("s1", "slow")])
    timed = await collect(EventStream(batch, heartbeat=None), clock)
    results = {e.json["task_id"]: at for at, e in timed if e.name == "result"}
    ends = {
        e.json["task_id"]: at
        for at, e in timed
        if e.name == "progress" and e.json["status"] == "completed"
    }
    assert set(results) == {"fast", "slow"}
    assert results["fast"] == ends["fast"] < ends["slow"]
    fast_index = next(i for i, (_, e) in enumerate(timed) if e.name == "result")
    assert timed[fast_index - 1][1].json == {
        "task_id": "fast",
        "status": "completed",
        "progress": 100,
    }
    assert names(timed)[-1] == "result"


async def test_as_completed_streams_results_only(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """as_completed: one result per task, in the order they end, and no progress."""
    tasks.linear("a", start=0, end=30)
    tasks.linear("b", start=0, end=10)
    batch = client.as_completed([("s1", "a"), ("s1", "b")])
    timed = await collect(EventStream(batch, heartbeat=None), clock)
    assert [(e.name, e.json["task_id"]) for _, e in timed] == [("result", "b"), ("result", "a")]


async def test_a_batch_reconnection_skips_what_each_task_has_shown(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """A batch's ids hold every task's position: a resumed batch repeats no event of any task."""
    tasks.linear("a", start=0, end=10)
    tasks.add("b", (0, 1, 20), (10_000, 2, 100))
    batch = client.watch_many([("s1", "a"), ("s1", "b")])
    stream = EventStream(batch, heartbeat=None)
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
        if b"event: result" in chunk:
            break  # a's result arrived, then the connection broke
    await stream.aclose()
    seen = events_of(chunks)

    again = EventStream(
        client.watch_many([("s1", "a"), ("s1", "b")]), last_event_id=seen[-1].id, heartbeat=None
    )
    assert not again.finished
    resumed: list[bytes] = []
    reader = asyncio.ensure_future(drain(again, resumed))
    await clock.sleep(100)
    tasks.add("b", (0, 1, 20), (clock.monotonic() + 1, 1, 70))  # now b moves on
    await clock.sleep(100)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    await again.aclose()
    # a has ended and b had not changed: the only news is b's step to 70 %.
    assert [(e.name, e.json) for e in events_of(resumed)] == [
        ("progress", {"task_id": "b", "status": "processing", "progress": 70})
    ]


async def test_closing_the_client_ends_a_batch_stream_with_an_error_event(
    client: KooDriveClient, tasks: ScriptedTasks, clock: VirtualClock
) -> None:
    """Closing the client ends a batch's stream with one error event (today the batch hangs)."""
    tasks.add("a", (0, 1, 10), (1000, 2, 100))
    tasks.add("b", (0, 1, 10), (1000, 2, 100))
    stream = EventStream(client.watch_many([("s1", "a"), ("s1", "b")]), heartbeat=None)
    chunks: list[bytes] = []
    reader = asyncio.ensure_future(drain(stream, chunks))
    await clock.sleep(5)
    await client.close()
    try:
        await asyncio.wait_for(reader, 0.5)  # real seconds: today the batch never ends
    finally:
        await stream.aclose()
    events = events_of(chunks)
    assert [e.name for e in events].count("error") == 1
    assert events[-1].name == "error"
    assert events[-1].json["type"] == "ClientClosedError"


# --- arguments ------------------------------------------------------------------------


async def test_bad_arguments_are_refused(client: KooDriveClient) -> None:
    """A source that is not a wait or a batch, or a bad heartbeat, is an InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match="TaskWaiter"):
        EventStream(["s1", "t1"])  # type: ignore[arg-type]
    for heartbeat in (0, -1, float("inf"), "5", True):
        with pytest.raises(InvalidArgumentError):
            EventStream(client.wait_for_task("s1", "t1"), heartbeat=heartbeat)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        EventStream(client.wait_for_task("s1", "t1"), last_event_id=5)  # type: ignore[arg-type]


async def test_resume_after_must_come_before_the_stream_starts(
    client: KooDriveClient, tasks: ScriptedTasks
) -> None:
    """resume_after() once events have flowed would be a lie: refused."""
    tasks.linear("t1", start=0, end=10)
    async with EventStream(client.wait_for_task("s1", "t1"), heartbeat=None) as stream:
        await stream.__anext__()
        with pytest.raises(InvalidArgumentError):
            stream.resume_after("k1.AAAAAAAAAA")
