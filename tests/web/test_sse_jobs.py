"""EventStream over batch jobs: a job's wait, and jobs beside share tasks, as Server-Sent Events."""

from __future__ import annotations

from sse_support import Event, events_of

from koodrive_tasks import (
    BearerToken,
    CopyJob,
    JobRef,
    KooDriveClient,
    PackageJob,
    PollPolicy,
    TaskRef,
)
from koodrive_tasks.emulator import Emulator, TaskScript
from koodrive_tasks.sse import EventStream
from koodrive_tasks.testing import VirtualClock

POLICY = PollPolicy(initial_delay=1, factor=1.5, max_delay=20, timeout=3600)


async def events(stream: EventStream) -> list[Event]:
    async with stream:
        return events_of([chunk async for chunk in stream])


async def test_a_job_wait_streams_progress_then_its_result(clock: VirtualClock) -> None:
    """A package job's stream rises from pending to completed, then gives its URL as the result."""
    async with Emulator(clock=clock, script=TaskScript(pending_s=5, duration_s=60)) as emu:
        async with KooDriveClient(
            emu.url,
            auth=BearerToken(emu.token),
            clock=clock,
            policy=POLICY,
            allow_insecure_urls=True,
        ) as kd:
            job_id = await kd.create_job(PackageJob(["a"], container_id="c1"))
            seen = await events(EventStream(kd.wait_for_job(job_id), heartbeat=None))
        base = emu.url
    progress = [e.json for e in seen if e.name == "progress"]
    assert progress[0] == {"task_id": job_id, "status": "pending", "progress": 0}
    assert progress[-1] == {"task_id": job_id, "status": "completed", "progress": 100}
    assert seen[-1].name == "result"
    assert seen[-1].json["outcome"] == "completed"
    assert seen[-1].json["download_url"].startswith(base)


async def test_jobs_and_tasks_keep_their_own_positions_across_reconnections(
    clock: VirtualClock,
) -> None:
    """A job and a share task in one stream keep separate positions: a reconnection resumes both."""
    async with Emulator(clock=clock, script=TaskScript(pending_s=0, duration_s=30)) as emu:
        task_id = emu.add_task(TaskScript(pending_s=0, duration_s=90))
        async with KooDriveClient(
            emu.url,
            auth=BearerToken(emu.token),
            clock=clock,
            policy=POLICY,
            allow_insecure_urls=True,
        ) as kd:
            job_id = await kd.create_job(CopyJob("a", container_id="c1"))
            refs = [JobRef(job_id), TaskRef("share-1", task_id)]
            first = await events(EventStream(kd.watch_many(refs), heartbeat=None))
            job_done = next(e for e in first if e.name == "result" and e.json["task_id"] == job_id)
            again = await events(
                EventStream(kd.watch_many(refs), last_event_id=job_done.id, heartbeat=None)
            )
    results = [e.json["task_id"] for e in first if e.name == "result"]
    assert results == [job_id, task_id]
    # Resumed after the job's result: the job is not shown again, the task's end is.
    assert {e.json["task_id"] for e in again if e.name in ("progress", "result")} == {task_id}
    assert [e.json["task_id"] for e in again if e.name == "result"] == [task_id]
    assert job_done.id is not None
