"""Batch jobs through the client against the real emulator on loopback, on one virtual clock.

Every job type end to end, both auth schemes and both response codes, package
downloads, decompression, faults, deadlines, cancelling the wait versus cancelling
the job, list paging, and jobs mixed with share tasks in batches and checkpoints.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator
from datetime import datetime

import aiohttp
import attrs
import pytest

from koodrive_tasks import (
    ActionType,
    AppSignature,
    BearerToken,
    CopyJob,
    DecompressJob,
    DeleteJob,
    EmptyRecycleBinJob,
    FileStatus,
    InvalidParameterError,
    JobInfo,
    JobRef,
    JobSpec,
    JobType,
    JobWaiter,
    KooDriveClient,
    MoveJob,
    NotFoundError,
    PackageJob,
    PollPolicy,
    ProtocolError,
    RestoreJob,
    ServerError,
    TaskCanceledError,
    TaskFailedError,
    TaskRef,
    TaskResultCode,
    TaskStalledError,
    TaskStatus,
    WaitTimeoutError,
)
from koodrive_tasks.emulator import Emulator, Fault, FaultPlan, Outcome, Stall, TaskScript
from koodrive_tasks.testing import VirtualClock

POLICY = PollPolicy(initial_delay=1, factor=1.5, max_delay=20, timeout=3600)
STEADY = TaskScript(pending_s=10, duration_s=100)


@pytest.fixture
async def emu(clock: VirtualClock) -> AsyncIterator[Emulator]:
    async with Emulator(clock=clock, seed=3, script=STEADY) as emulator:
        yield emulator


def connect(emu: Emulator, clock: VirtualClock, **kwargs: object) -> KooDriveClient:
    options: dict[str, object] = {
        "auth": BearerToken(emu.token),
        "clock": clock,
        "policy": POLICY,
        "allow_insecure_urls": True,
    }
    options.update(kwargs)
    return KooDriveClient(emu.url, **options)  # type: ignore[arg-type]


def signed(emu: Emulator) -> AppSignature:
    return AppSignature(emu.app_id, emu.app_secret, emu.user_id)


# --- every job type, end to end ---------------------------------------------------------------

SPECS: dict[str, tuple[JobSpec, JobType, ActionType | None, int]] = {
    "copy": (
        CopyJob(["a", "b"], container_id="c1", target_container_id="c2", target_path="/dst"),
        JobType.COPY,
        ActionType.COPY,
        2,
    ),
    "move": (MoveJob("a", container_id="c1"), JobType.MOVE, ActionType.MOVE, 1),
    "delete": (
        DeleteJob(["a", "b"], container_id="c1", paths={"a": "/x/a", "b": "/x/b"}),
        JobType.DELETE,
        ActionType.LOGICAL_DELETE,
        2,
    ),
    "delete-permanent": (
        DeleteJob(["a"], container_id="c1", permanent=True),
        JobType.DELETE,
        ActionType.PERMANENT_DELETE,
        1,
    ),
    "restore": (RestoreJob(["a", "b", "c"], container_id="c1"), JobType.RESTORE, None, 3),
    "decompress": (
        DecompressJob("arc", container_id="c1"),
        JobType.DECOMPRESS,
        ActionType.EXTRACT_ALL,
        1,
    ),
    "package": (PackageJob(["a"], container_id="c1"), JobType.PACKAGE_DOWNLOAD, None, 1),
    "empty-recycle-bin": (
        EmptyRecycleBinJob(container_id="c1"),
        JobType.EMPTY_RECYCLE_BIN,
        ActionType.EMPTY_RECYCLE_BIN,
        0,
    ),
}


@pytest.mark.parametrize("name", list(SPECS))
async def test_every_job_type_runs_to_its_final_info(
    name: str, emu: Emulator, clock: VirtualClock
) -> None:
    """Each job type is created, followed through pending and processing, and read in full."""
    spec, job_type, action_type, files = SPECS[name]
    async with connect(emu, clock) as kd:
        job_id = await kd.create_job(spec)
        waiter = kd.wait_for_job(job_id)
        assert isinstance(waiter, JobWaiter)
        updates = [u async for u in waiter]
        info = await waiter
    assert isinstance(info, JobInfo)
    assert updates[0].status is TaskStatus.PENDING
    assert updates[-1].status is TaskStatus.COMPLETED
    assert [u.progress for u in updates] == sorted(u.progress for u in updates)
    assert (info.job_id, info.task_id) == (job_id, job_id)
    assert (info.job_type, info.action_type, info.task_type) == (job_type, action_type, None)
    assert info.result_code is TaskResultCode.ALL_SUCCEEDED
    assert info.content_num == files
    assert len(info.files) == files
    assert all(f.status is FileStatus.SUCCEEDED for f in info.files)
    assert info.task_name
    assert info.user_id == emu.user_id
    # beginTime is read as started_at: 10 s pending after creation.
    assert info.created_at is not None
    assert info.started_at is not None
    assert (info.started_at - info.created_at).total_seconds() == 10
    assert info.ended_at is not None
    assert (info.ended_at - info.started_at).total_seconds() == 100


async def test_copy_job_reports_target_space_and_new_ids(
    emu: Emulator, clock: VirtualClock
) -> None:
    """A copy's detail names the target space and a new id for every copied file."""
    async with connect(emu, clock) as kd:
        job_id = await kd.create_job(
            CopyJob(["a", "b"], container_id="c1", target_container_id="c2")
        )
        info = await kd.wait_for_job(job_id)
    assert info.container_id == "c2"
    assert [f.src_container_id for f in info.files] == ["c1", "c1"]
    assert all(f.new_file_id not in (None, f.file_id) for f in info.files)


@pytest.mark.parametrize("shape", ["A", "B"])
@pytest.mark.parametrize("auth", ["bearer", "signature"])
async def test_both_auth_schemes_and_codes_cover_every_job_call(
    shape: str, auth: str, clock: VirtualClock
) -> None:
    """Create, detail, list and cancel pass with either scheme, and with code 0 or "0"."""
    async with Emulator(clock=clock, shape=shape, script=STEADY) as emu:  # type: ignore[arg-type]
        scheme = BearerToken(emu.token) if auth == "bearer" else signed(emu)
        async with connect(emu, clock, auth=scheme) as kd:
            done = await kd.create_job(MoveJob(["a"], container_id="c1"))
            running = await kd.create_job(CopyJob(["b"], container_id="c1"))
            assert (await kd.wait_for_job(done)).status is TaskStatus.COMPLETED
            assert (await kd.get_job(running)).status is TaskStatus.COMPLETED
            pages = [
                page
                async for page in kd.list_jobs(job_type=JobType.MOVE, status=TaskStatus.COMPLETED)
            ]
            third = await kd.create_job(CopyJob(["c"], container_id="c1"))
            await kd.cancel_job(third)
    assert [[job.job_id for job in page] for page in pages] == [[done]]
    assert emu.stats.auth_failures == 0
    assert emu.snapshot(third).status is TaskStatus.CANCELED


async def test_detail_path_is_encoded_and_signed_as_sent(
    emu: Emulator, clock: VirtualClock
) -> None:
    """A job id with a space, a percent sign and non-ASCII text is one path segment, signed as sent."""
    async with connect(emu, clock, auth=signed(emu)) as kd:
        for odd in ("a b", "100%", "jöb?#x", "%2F"):
            with pytest.raises(NotFoundError, match="13000309"):
                await kd.get_job(odd)
    assert emu.stats.auth_failures == 0
    assert emu.stats.requests["job_detail"] == 4


async def test_a_share_task_id_is_not_a_job(emu: Emulator, clock: VirtualClock) -> None:
    """Querying a share task's id as a job is NotFoundError; the families do not mix up."""
    task_id = emu.add_task(TaskScript(duration_s=5))
    async with connect(emu, clock) as kd:
        with pytest.raises(NotFoundError):
            await kd.get_job(task_id)


# --- package and decompression --------------------------------------------------------------


async def test_package_job_url_downloads_the_zip(emu: Emulator, clock: VirtualClock) -> None:
    """await gives the JobInfo; download_url() gives the checked link to a zip of the files."""
    async with connect(emu, clock) as kd:
        job_id = await kd.create_job(PackageJob(["x.txt", "y.txt"], container_id="c1"))
        waiter = kd.wait_for_job(job_id)
        info = await waiter
        url = await waiter.download_url()
        outcome = await waiter.outcome()
    assert info.download_url == url
    assert outcome.download_url == url
    assert outcome.kind == "completed"
    assert "sig=" not in repr(info)
    assert "sig=" not in repr(outcome)
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        names = zipfile.ZipFile(io.BytesIO(await response.read())).namelist()
    assert sorted(names) == ["x.txt", "y.txt"]


async def test_download_url_of_a_job_that_has_none(emu: Emulator, clock: VirtualClock) -> None:
    """download_url() of a copy job is a ProtocolError that points to the JobInfo."""
    async with connect(emu, clock) as kd:
        waiter = kd.wait_for_job(await kd.create_job(CopyJob("a", container_id="c1")))
        with pytest.raises(ProtocolError, match="only package-download jobs"):
            await waiter.download_url()
        assert (await waiter.outcome()).download_url is None


@pytest.mark.parametrize(
    ("spec", "names", "extracted"),
    [
        (
            DecompressJob("arc", container_id="c1", password="ARCHIVE-PW-SECRET"),
            ["docs/", "docs/readme.txt", "data.bin"],
            True,
        ),
        (
            DecompressJob("arc", container_id="c1", extract=["docs/readme.txt"]),
            ["docs/readme.txt"],
            True,
        ),
        (
            DecompressJob("arc", container_id="c1", view_only=True),
            ["docs/", "docs/readme.txt", "data.bin"],
            False,
        ),
    ],
)
async def test_decompression_lists_the_archive(
    spec: DecompressJob, names: list[str], extracted: bool, emu: Emulator, clock: VirtualClock
) -> None:
    """A decompression reports its entries once done; viewing extracts nothing."""
    async with connect(emu, clock) as kd:
        waiter = kd.wait_for_job(await kd.create_job(spec))
        async for update in waiter:
            if update.status is TaskStatus.PROCESSING:
                assert update.info.uncompressed_files == ()  # type: ignore[attr-defined]
        info = await waiter
    assert info.action_type is spec.action_type
    assert [entry.name for entry in info.uncompressed_files] == names
    assert [entry.is_folder for entry in info.uncompressed_files] == [
        name.endswith("/") for name in names
    ]
    assert all((entry.file_id is not None) is extracted for entry in info.uncompressed_files)
    assert all(entry.size is not None for entry in info.uncompressed_files)


# --- outcomes ---------------------------------------------------------------------------------


async def test_failed_and_partial_jobs(emu: Emulator, clock: VirtualClock) -> None:
    """Every file failed raises TaskFailedError; some failed returns the info with them listed."""
    failing = TaskScript(duration_s=30, outcome=Outcome.ALL_FAILED)
    partial = TaskScript(duration_s=30, outcome=Outcome.PARTIALLY_FAILED)
    emu.queue_script(failing, partial)
    async with connect(emu, clock) as kd:
        failed_id = await kd.create_job(CopyJob(["a", "b"], container_id="c1"))
        partial_id = await kd.create_job(CopyJob(["a", "b"], container_id="c1"))
        with pytest.raises(TaskFailedError, match=f"job {failed_id} completed but every file"):
            await kd.wait_for_job(failed_id)
        info = await kd.wait_for_job(partial_id)
        outcome = await kd.wait_for_job(partial_id).outcome()
    assert info.result_code is TaskResultCode.PARTIALLY_FAILED
    assert [f.file_id for f in info.failed_files] == ["b"]
    assert outcome.kind == "partially_failed"
    assert outcome.to_dict() == {
        "task_id": partial_id,
        "outcome": "partially_failed",
        "failed_files": ["b"],
    }


# --- faults and deadlines -------------------------------------------------------------------


async def test_job_wait_survives_every_transient_fault(emu: Emulator, clock: VirtualClock) -> None:
    """Throttling, 5xx, drops, garbled and truncated bodies on a job's polls are retried."""
    faults = (
        Fault.throttle(retry_after_s=3),
        Fault.server_error(),
        Fault.gateway(502, html=True),
        Fault.drop(),
        Fault.malformed_json(),
        Fault.truncated_json(),
    )
    emu.queue_script(TaskScript(duration_s=20, faults=faults))
    async with connect(emu, clock) as kd:
        job_id = await kd.create_job(MoveJob("a", container_id="c1"))
        info = await kd.wait_for_job(job_id)
        # aiohttp itself resends an idempotent GET once on a dropped pooled connection.
        assert len(faults) - 1 <= kd.stats.retries <= len(faults)
    assert info.status is TaskStatus.COMPLETED
    assert sum(emu.stats.faults.values()) == len(faults)


async def test_service_error_on_a_poll_ends_the_wait(emu: Emulator, clock: VirtualClock) -> None:
    """HTTP 200 with code 13000102 on a job's poll is InvalidParameterError, not a job state."""
    emu.queue_script(TaskScript(faults=(Fault.error_code("13000102"),)))
    async with connect(emu, clock) as kd:
        job_id = await kd.create_job(MoveJob("a", container_id="c1"))
        with pytest.raises(InvalidParameterError) as caught:
            await kd.wait_for_job(job_id)
    assert caught.value.code == "13000102"


async def test_a_faulted_create_is_not_repeated(emu: Emulator, clock: VirtualClock) -> None:
    """A 500 on create is raised, not retried; a 429 is retried and creates one job."""
    async with connect(emu, clock) as kd:
        emu.fail_next_create(Fault.server_error())
        with pytest.raises(ServerError):
            await kd.create_job(CopyJob("a", container_id="c1"))
        assert emu.task_count == 0
        emu.fail_next_create(Fault.throttle(retry_after_s=1))
        job_id = await kd.create_job(CopyJob("a", container_id="c1"))
    assert emu.task_count == 1
    assert emu.stats.requests["job_create"] == 3
    assert emu.snapshot(job_id).status is TaskStatus.PENDING


async def test_job_wait_times_out_with_the_last_state(emu: Emulator, clock: VirtualClock) -> None:
    """A job that outlives the deadline raises WaitTimeoutError naming its last state."""
    emu.queue_script(TaskScript(pending_s=0, duration_s=10_000))
    async with connect(emu, clock) as kd:
        job_id = await kd.create_job(CopyJob("a", container_id="c1"))
        start = clock.monotonic()
        with pytest.raises(WaitTimeoutError) as caught:
            await kd.wait_for_job(job_id, timeout=120)
    assert clock.monotonic() - start == pytest.approx(120)
    assert caught.value.task_id == job_id
    assert isinstance(caught.value.last_info, JobInfo)
    assert caught.value.last_info.status is TaskStatus.PROCESSING
    assert emu.snapshot(job_id).status is TaskStatus.PROCESSING  # the job itself runs on


async def test_stalled_job_raises_task_stalled(emu: Emulator, clock: VirtualClock) -> None:
    """A job whose progress stops moving ends the wait with TaskStalledError."""
    emu.queue_script(
        TaskScript(pending_s=0, duration_s=1000, stalls=(Stall(start=0.2, length=0.7),))
    )
    async with connect(emu, clock) as kd:
        job_id = await kd.create_job(CopyJob("a", container_id="c1"))
        with pytest.raises(TaskStalledError):
            await kd.wait_for_job(job_id, policy=attrs.evolve(POLICY, stall_timeout=120))


# --- cancelling: the wait versus the job ------------------------------------------------------


async def test_cancel_job_stops_the_job_and_its_waits(emu: Emulator, clock: VirtualClock) -> None:
    """cancel_job stops a running job on the server; its waiters end with TaskCanceledError."""
    emu.queue_script(TaskScript(pending_s=0, duration_s=1000))
    async with connect(emu, clock) as kd:
        job_id = await kd.create_job(CopyJob(["a", "b", "c", "d"], container_id="c1"))
        waiter = kd.wait_for_job(job_id)
        async for update in waiter:
            if update.progress >= 50:
                break
        await kd.cancel_job(job_id)
        with pytest.raises(TaskCanceledError, match=f"job {job_id} was canceled") as caught:
            await waiter
        info = await kd.get_job(job_id)
    assert caught.value.info is not None
    assert caught.value.info.status is TaskStatus.CANCELED
    assert info.status is TaskStatus.CANCELED
    assert 50 <= info.progress < 100
    assert [f.status for f in info.files][-1] is FileStatus.PENDING  # not reached
    assert emu.stats.requests["job_cancel"] == 1


async def test_cancel_of_an_ended_or_unknown_job(emu: Emulator, clock: VirtualClock) -> None:
    """Cancelling a finished job is InvalidParameterError; an unknown one NotFoundError."""
    emu.queue_script(TaskScript(pending_s=0, duration_s=5))
    async with connect(emu, clock) as kd:
        job_id = await kd.create_job(CopyJob("a", container_id="c1"))
        await kd.wait_for_job(job_id)
        with pytest.raises(InvalidParameterError, match="has ended"):
            await kd.cancel_job(job_id)
        with pytest.raises(NotFoundError):
            await kd.cancel_job("1234567890123456789")
    assert emu.snapshot(job_id).status is TaskStatus.COMPLETED


async def test_cancelling_the_wait_leaves_the_job_running(
    emu: Emulator, clock: VirtualClock
) -> None:
    """Cancelling the awaiting asyncio task stops watching: no more polls, the job runs on."""
    emu.queue_script(TaskScript(pending_s=0, duration_s=1000))
    async with connect(emu, clock) as kd:
        job_id = await kd.create_job(CopyJob("a", container_id="c1"))
        waiter = kd.wait_for_job(job_id)
        watching = asyncio.ensure_future(waiter.final_info())
        while emu.stats.requests["job_detail"] < 3:
            await clock.sleep(1)
        watching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watching
        polls = emu.stats.requests["job_detail"]
        assert kd.stats.streams == 0
        await clock.sleep(600)
        assert emu.stats.requests["job_detail"] == polls
        assert emu.snapshot(job_id).status is TaskStatus.PROCESSING
        assert emu.stats.requests["job_cancel"] == 0
        assert not waiter.delivered
        assert (await waiter).status is TaskStatus.COMPLETED  # awaiting again continues


async def test_leaving_a_batch_leaves_its_jobs_running(emu: Emulator, clock: VirtualClock) -> None:
    """Leaving as_completed early stops its polls and cancels no job on the server."""
    emu.queue_script(
        TaskScript(pending_s=0, duration_s=10), TaskScript(pending_s=0, duration_s=5000)
    )
    async with connect(emu, clock) as kd:
        quick = await kd.create_job(CopyJob("a", container_id="c1"))
        slow = await kd.create_job(CopyJob("b", container_id="c1"))
        async with kd.as_completed([JobRef(quick), JobRef(slow)]) as done:
            async for outcome in done:
                assert outcome.ref == JobRef(quick)
                break
        assert kd.stats.streams == 0
    assert emu.snapshot(slow).status is TaskStatus.PROCESSING
    assert emu.stats.requests["job_cancel"] == 0


# --- many waits ---------------------------------------------------------------------------------


async def test_waits_on_one_job_share_its_polls(emu: Emulator, clock: VirtualClock) -> None:
    """Three waiters on the same job send the polls of one."""
    async with connect(emu, clock) as kd:
        job_id = await kd.create_job(CopyJob("a", container_id="c1"))
        alone = await kd.wait_for_job(job_id)
        polls_alone = emu.stats.requests["job_detail"]
        other = await kd.create_job(CopyJob("a", container_id="c1"))
        infos = await asyncio.gather(*(kd.wait_for_job(other) for _ in range(3)))
    assert all(info.status is TaskStatus.COMPLETED for info in [alone, *infos])
    # One stream's polls, not three streams' worth (the count moves a little with the
    # schedule's jitter and with what the client learned from the first job).
    assert emu.stats.requests["job_detail"] - polls_alone < 2 * polls_alone


async def test_jobs_and_share_tasks_in_one_batch(emu: Emulator, clock: VirtualClock) -> None:
    """wait_many, as_completed and watch_many take JobRefs beside TaskRefs and tuples."""
    task_ids = [emu.add_task(TaskScript(pending_s=0, duration_s=d)) for d in (30, 90)]
    emu.queue_script(
        TaskScript(pending_s=0, duration_s=60),
        TaskScript(pending_s=0, duration_s=120, outcome=Outcome.ALL_FAILED),
    )
    async with connect(emu, clock) as kd:
        job_ok = await kd.create_job(PackageJob(["a"], container_id="c1"))
        job_bad = await kd.create_job(CopyJob(["a"], container_id="c1"))
        refs = [
            TaskRef("share-1", task_ids[0]),
            JobRef(job_ok),
            ("share-1", task_ids[1]),
            JobRef(job_bad),
            JobRef(job_ok),  # the same job twice is one wait
        ]
        order = [o.ref.task_id async for o in kd.as_completed(refs)]
        outcomes = await kd.wait_many(refs)
        async with kd.watch_many(refs) as stream:
            seen = {ref async for ref, _ in stream}
            kinds = {ref.task_id: o.kind for ref, o in stream.outcomes.items()}
    assert list(outcomes) == [
        TaskRef("share-1", task_ids[0]),
        JobRef(job_ok),
        TaskRef("share-1", task_ids[1]),
        JobRef(job_bad),
    ]
    assert [o.kind for o in outcomes.values()] == ["completed", "completed", "completed", "failed"]
    assert outcomes[JobRef(job_ok)].download_url is not None
    assert isinstance(outcomes[JobRef(job_bad)].error, TaskFailedError)
    assert order == [task_ids[0], job_ok, task_ids[1], job_bad]  # ends at 30, 60, 90, 120 s
    assert seen == set(outcomes)
    assert kinds == {ref.task_id: o.kind for ref, o in outcomes.items()}


# --- list paging ------------------------------------------------------------------------------


async def test_list_jobs_pages_until_a_short_page(emu: Emulator, clock: VirtualClock) -> None:
    """Seven jobs in pages of three: 3, 3, 1, newest first, in three requests."""
    async with connect(emu, clock) as kd:
        ids = [await kd.create_job(CopyJob("a", container_id="c1")) for _ in range(7)]
        pages = [[job.job_id for job in page] async for page in kd.list_jobs(page_size=3)]
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [job for page in pages for job in page] == ids[::-1]
    assert emu.stats.requests["job_list"] == 3


async def test_list_jobs_after_a_full_last_page(emu: Emulator, clock: VirtualClock) -> None:
    """Six jobs in pages of three: a third, empty request ends it; no empty page is yielded."""
    async with connect(emu, clock) as kd:
        for _ in range(6):
            await kd.create_job(CopyJob("a", container_id="c1"))
        pages = [page async for page in kd.list_jobs(page_size=3)]
        nothing = [page async for page in kd.list_jobs(status=TaskStatus.CANCELED)]
    assert [len(page) for page in pages] == [3, 3]
    assert nothing == []
    assert emu.stats.requests["job_list"] == 4


async def test_list_jobs_filters_by_type_and_current_status(
    emu: Emulator, clock: VirtualClock
) -> None:
    """type and status filter on the server; entries carry the job's fields, no files."""
    emu.queue_script(TaskScript(pending_s=0, duration_s=5), TaskScript(pending_s=0, duration_s=500))
    async with connect(emu, clock) as kd:
        copied = await kd.create_job(CopyJob(["a", "b"], container_id="c1"))
        moving = await kd.create_job(MoveJob("a", container_id="c1"))
        await kd.wait_for_job(copied)

        async def listed(**filters: object) -> list[JobInfo]:
            return [job async for page in kd.list_jobs(**filters) for job in page]  # type: ignore[arg-type]

        copies = await listed(job_type=JobType.COPY)
        running = await listed(status=1)
        moves_done = await listed(job_type=3, status=TaskStatus.COMPLETED)
    assert [job.job_id for job in copies] == [copied]
    assert (copies[0].job_type, copies[0].content_num, copies[0].files) == (JobType.COPY, 2, ())
    assert isinstance(copies[0].created_at, datetime)
    assert [job.job_id for job in running] == [moving]
    assert moves_done == []


async def test_list_jobs_survives_transient_faults(clock: VirtualClock) -> None:
    """Pages that meet throttling or a 5xx are fetched again; the iteration goes on."""
    plan = FaultPlan(rate=0.4, mix=(Fault.throttle(retry_after_s=1), Fault.server_error()))
    async with Emulator(clock=clock, seed=5, faults=plan) as emu:
        async with connect(emu, clock, attempts=8) as kd:
            ids = [await kd.create_job(CopyJob("a", container_id="c1")) for _ in range(5)]
            pages = [page async for page in kd.list_jobs(page_size=2)]
            retries = kd.stats.retries
    assert [job.job_id for page in pages for job in page] == ids[::-1]
    assert retries == sum(emu.stats.faults.values()) > 0
    assert emu.stats.requests["job_list"] == 3 + retries


# --- checkpoints --------------------------------------------------------------------------------


async def test_checkpoint_and_resume_mix_jobs_and_share_tasks(
    emu: Emulator, clock: VirtualClock
) -> None:
    """A checkpoint of job and share waits resumes as JobWaiter and TaskWaiter that finish."""
    task_id = emu.add_task(TaskScript(pending_s=0, duration_s=600))
    emu.queue_script(TaskScript(pending_s=0, duration_s=600))
    async with connect(emu, clock) as first:
        job_id = await first.create_job(PackageJob(["a"], container_id="c1"))
        waiters = [
            first.wait_for_job(job_id),
            first.wait_for_task("share-1", task_id, kdstoken="KDS-SECRET"),
        ]
        for waiter in waiters:
            async for update in waiter:
                if update.progress > 0:
                    break
        token = first.checkpoint(waiters)
    document = json.loads(token)
    assert document["version"] == 2
    assert [w["family"] for w in document["waits"]] == ["job", "share_task"]
    assert document["waits"][0]["job_id"] == job_id
    assert "share_id" not in document["waits"][0]
    assert "KDS-SECRET" not in token

    async with connect(emu, clock) as second:
        job_waiter, task_waiter = second.resume(token, kdstokens={task_id: "KDS-SECRET"})
        assert isinstance(job_waiter, JobWaiter)
        assert not isinstance(task_waiter, JobWaiter)
        assert job_waiter.ref == JobRef(job_id)
        assert job_waiter.last_info is not None
        assert job_waiter.last_info.status is TaskStatus.PROCESSING
        info = await job_waiter
        url = await task_waiter
    assert isinstance(info, JobInfo)
    assert info.status is TaskStatus.COMPLETED
    assert info.download_url
    assert url.startswith(emu.url)


async def test_resumed_job_keeps_what_was_left_of_its_deadline(
    emu: Emulator, clock: VirtualClock
) -> None:
    """A job wait checkpointed with L seconds left, resumed 40 s later, times out L - 40 s after."""
    emu.queue_script(TaskScript(pending_s=0, duration_s=10_000))
    async with connect(emu, clock) as first:
        waiter = first.wait_for_job(
            await first.create_job(CopyJob("a", container_id="c1")), timeout=110
        )
        started = clock.monotonic()  # the deadline counts from the first iteration
        async for _ in waiter:
            break
        clock.advance(10)
        left = 110 - (clock.monotonic() - started)
        token = first.checkpoint([waiter])
    clock.advance(40)
    async with connect(emu, clock) as second:
        (resumed,) = second.resume(token)
        start = clock.monotonic()
        with pytest.raises(WaitTimeoutError):
            await resumed
    assert clock.monotonic() - start == pytest.approx(left - 40)


async def test_delivered_job_outcomes_leave_the_checkpoint(
    emu: Emulator, clock: VirtualClock
) -> None:
    """A batch's checkpoint keeps exactly the jobs whose outcome was not yielded yet."""
    emu.queue_script(
        TaskScript(pending_s=0, duration_s=10), TaskScript(pending_s=0, duration_s=900)
    )
    async with connect(emu, clock) as kd:
        quick = await kd.create_job(CopyJob("a", container_id="c1"))
        slow = await kd.create_job(CopyJob("a", container_id="c1"))
        async with kd.as_completed([JobRef(quick), JobRef(slow)]) as done:
            async for _ in done:
                token = kd.checkpoint([done])
                break
        assert done.pending == [JobRef(slow)]
    assert [w["job_id"] for w in json.loads(token)["waits"]] == [slow]


async def test_a_work_pool_takes_jobs_beside_share_tasks(
    emu: Emulator, clock: VirtualClock
) -> None:
    """Jobs and share tasks submitted to one pool of 2 all end; a checkpoint holds the rest."""
    task_ids = [emu.add_task(TaskScript(pending_s=0, duration_s=40 + i)) for i in range(2)]
    emu.queue_script(*(TaskScript(pending_s=0, duration_s=30 + i) for i in range(3)))
    async with connect(emu, clock) as kd:
        job_ids = [await kd.create_job(CopyJob("a", container_id="c1")) for _ in range(3)]
        refs = [
            JobRef(job_ids[0]),
            TaskRef("share-1", task_ids[0]),
            JobRef(job_ids[1]),
            TaskRef("share-1", task_ids[1]),
            JobRef(job_ids[2]),
        ]
        async with kd.pool(2, max_queued=3) as pool:
            for ref in refs:
                await pool.submit(ref)
            token = kd.checkpoint([pool])  # two running, three queued
            pool.finish()
            outcomes = [outcome async for outcome in pool]
    saved = json.loads(token)["waits"]
    assert [w.get("job_id") or w.get("task_id") for w in saved] == [r.task_id for r in refs]
    assert [w["family"] for w in saved] == ["job", "share_task", "job", "share_task", "job"]
    assert sorted(o.ref.task_id for o in outcomes) == sorted(r.task_id for r in refs)
    assert all(o.ok for o in outcomes)
    assert {type(o.info) for o in outcomes if isinstance(o.ref, JobRef)} == {JobInfo}
