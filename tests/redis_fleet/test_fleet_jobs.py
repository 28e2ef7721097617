"""Batch jobs in fleet mode: clients of one coordinator namespace share a job's polls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from koodrive_tasks import CopyJob, JobInfo, JobType, KooDriveClient
from koodrive_tasks.emulator import Emulator, TaskScript


async def test_two_clients_share_a_jobs_polls_and_its_fields(
    emu: Emulator, make_client: Callable[..., KooDriveClient]
) -> None:
    """Both waits get the final JobInfo with the job's fields; the job is polled about as by one."""
    job_id = emu.add_job(TaskScript(pending_s=0, duration_s=2.0), file_ids=["a", "b"])
    async with make_client() as a, make_client() as b:
        infos = await asyncio.gather(a.wait_for_job(job_id), b.wait_for_job(job_id))
    polls = emu.stats.polls[job_id]
    alone = emu.add_job(TaskScript(pending_s=0, duration_s=2.0), file_ids=["a", "b"])
    before = emu.stats.detail_polls
    async with make_client() as c:
        await c.wait_for_job(alone)
    single = emu.stats.detail_polls - before
    assert polls <= single * 1.3 + 2, (polls, single)
    for info in infos:
        assert isinstance(info, JobInfo)
        assert (info.job_type, info.content_num, len(info.files)) == (JobType.COPY, 2, 2)
        assert info.task_type is None


async def test_a_late_joiner_hears_a_job_it_does_not_poll(
    emu: Emulator, make_client: Callable[..., KooDriveClient]
) -> None:
    """A second client joining a job the first one polls gets a JobInfo without polling."""
    async with make_client() as a, make_client() as b:
        job_id = emu.add_job(TaskScript(pending_s=0, duration_s=20.0))
        first = a.wait_for_job(job_id)
        async for update in first:
            if update.progress >= 5:
                break
        seen = update.progress
        polls_before = emu.stats.polls[job_id]
        late = b.wait_for_job(job_id)
        # At once what the holder stored with its last claim (one poll old while nobody
        # else listened), then what it saw last, a round trip later.
        update = await asyncio.wait_for(late.__anext__(), 0.5)
        while update.progress < seen:
            update = await asyncio.wait_for(late.__anext__(), 0.5)
        assert isinstance(update.info, JobInfo)
        assert update.info.job_type is JobType.COPY
        assert emu.stats.polls[job_id] - polls_before <= 2
        created = await b.create_job(CopyJob("x", container_id="c"))
        assert (await b.get_job(created)).job_id == created
