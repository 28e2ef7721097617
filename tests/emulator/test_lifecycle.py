"""The task life cycle, driven by a manual clock, in both response shapes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from emulator_helpers import DETAIL, Api

from koodrive_tasks import BearerToken, KooDriveClient, TaskResultCode, TaskStatus
from koodrive_tasks.emulator import Emulator, Outcome, TaskScript
from koodrive_tasks.testing import VirtualClock

WALL = datetime(2026, 11, 29, 10, 15, 0, tzinfo=timezone.utc)


def make_clock() -> VirtualClock:
    return VirtualClock(50.0, WALL, autojump=False)


async def test_pending_then_processing_then_completed(api: Api) -> None:
    """A task is pending, then processes with rising progress, then completes at 100."""
    clock = make_clock()
    script = TaskScript(pending_s=2, duration_s=100)
    emulator = Emulator(clock=clock, script=script, retention_s=86400)
    async with emulator as emu:
        task_id = await api.create(emu)
        info = await api.info(emu, task_id)
        assert (info["taskStatus"], info["progress"], info["taskResultCode"]) == (0, 0, 0)
        assert info["createTime"] == "20261129101500"
        assert (info["startTime"], info["endTime"], info["downloadUrl"]) == ("", "", "")
        seen = []
        for _ in range(9):
            clock.advance(11)
            info = await api.info(emu, task_id)
            assert info["taskStatus"] == 1
            assert info["taskResultCode"] == 0
            seen.append(info["progress"])
        assert seen == sorted(seen)
        assert seen[0] > 0
        assert seen[-1] < 100
        assert info["startTime"] == "20261129101502"
        assert info["endTime"] == ""
        clock.advance(3 * 3600)  # hours of task time in no real time
        info = await api.info(emu, task_id)
        assert (info["taskStatus"], info["progress"], info["taskResultCode"]) == (2, 100, 1)
        assert info["endTime"] == "20261129101642"
        assert info["downloadUrl"].startswith(emu.url + "/download/")


@pytest.mark.parametrize(
    ("outcome", "result_code", "file_statuses", "has_url"),
    [
        (Outcome.ALL_SUCCEEDED, 1, ["1", "1", "1"], True),
        (Outcome.PARTIALLY_FAILED, 2, ["2", "1", "2"], True),
        (Outcome.ALL_FAILED, 3, ["2", "2", "2"], False),
    ],
)
async def test_terminal_outcomes_with_per_file_results(
    api: Api, outcome: Outcome, result_code: int, file_statuses: list[str], has_url: bool
) -> None:
    """Each outcome sets taskResultCode, per-file statuses and (if any file succeeded) a URL."""
    clock = make_clock()
    async with Emulator(clock=clock, script=TaskScript(outcome=outcome, result_code=7)) as emu:
        task_id = await api.create(emu, fileIds=["f1", "f2", "f3"])
        clock.advance(60)
        _, body = await api.detail(emu, task_id)
        info = body["jobInfo"]
        assert info["taskStatus"] == 2
        assert info["taskResultCode"] == result_code
        assert info["resultCode"] == 7
        assert [f["status"] for f in body["taskInfos"]] == file_statuses
        assert [f["fileId"] for f in body["taskInfos"]] == ["f1", "f2", "f3"]
        assert all(f["srcContainerId"] == "container-1" for f in body["taskInfos"])
        assert bool(info["downloadUrl"]) is has_url


async def test_partial_failure_with_chosen_failed_files(api: Api) -> None:
    """failed_file_ids picks exactly which files fail."""
    clock = make_clock()
    script = TaskScript(outcome=Outcome.PARTIALLY_FAILED, failed_file_ids={"f1"})
    async with Emulator(clock=clock, script=script) as emu:
        task_id = await api.create(emu, fileIds=["f1", "f2", "f3"])
        clock.advance(60)
        _, body = await api.detail(emu, task_id)
        assert [f["status"] for f in body["taskInfos"]] == ["2", "1", "1"]
        assert body["jobInfo"]["taskResultCode"] == 2


async def test_files_finish_in_order_as_progress_rises(api: Api) -> None:
    """While processing, the first files report their result and the rest stay "0"."""
    clock = make_clock()
    async with Emulator(clock=clock, script=TaskScript(pending_s=0, duration_s=100)) as emu:
        task_id = await api.create(emu, fileIds=["a", "b", "c", "d"])
        clock.advance(55)
        _, body = await api.detail(emu, task_id)
        assert body["jobInfo"]["progress"] == 55
        assert [f["status"] for f in body["taskInfos"]] == ["1", "1", "0", "0"]


async def test_dump_task_reports_new_file_ids_and_no_download_url(api: Api) -> None:
    """A completed dump task gives each copied file a newFileId and has no downloadUrl."""
    clock = make_clock()
    async with Emulator(clock=clock) as emu:
        task_id = await api.create(
            emu, taskType=2, zipName=None, targetFileId={"fileId": "root", "containerId": "c9"}
        )
        clock.advance(60)
        _, body = await api.detail(emu, task_id)
        assert body["jobInfo"]["taskStatus"] == 2
        assert body["jobInfo"]["downloadUrl"] == ""
        assert all(f["newFileId"].startswith(f["fileId"]) for f in body["taskInfos"])


async def test_scripted_cancel_freezes_progress(api: Api) -> None:
    """A script's cancel_after_s cancels the task then; progress stays where it was."""
    clock = make_clock()
    script = TaskScript(pending_s=0, duration_s=100, cancel_after_s=30)
    async with Emulator(clock=clock, script=script) as emu:
        task_id = await api.create(emu)
        clock.advance(29)
        assert (await api.info(emu, task_id))["taskStatus"] == 1
        clock.advance(1)
        info = await api.info(emu, task_id)
        assert (info["taskStatus"], info["progress"], info["taskResultCode"]) == (3, 30, 0)
        assert info["endTime"] == "20261129101530"
        clock.advance(1000)
        later = await api.info(emu, task_id)
        assert (later["taskStatus"], later["progress"]) == (3, 30)
        assert later["downloadUrl"] == ""


async def test_cancel_a_live_task(api: Api) -> None:
    """emu.cancel stops a running task now; canceling again or after the end returns False."""
    clock = make_clock()
    async with Emulator(clock=clock, script=TaskScript(pending_s=0, duration_s=10)) as emu:
        task_id = await api.create(emu)
        done_id = await api.create(emu)
        clock.advance(4)
        assert emu.cancel(task_id) is True
        assert emu.cancel(task_id) is False
        clock.advance(100)
        info = await api.info(emu, task_id)
        assert (info["taskStatus"], info["progress"]) == (3, 40)
        assert emu.cancel(done_id) is False
        assert (await api.info(emu, done_id))["taskStatus"] == 2
        with pytest.raises(KeyError):
            emu.cancel("no-such-task")


async def test_cancel_while_pending_has_no_start_time(api: Api) -> None:
    """A task canceled before processing reports progress 0 and an empty startTime."""
    clock = make_clock()
    async with Emulator(clock=clock, script=TaskScript(pending_s=10)) as emu:
        task_id = await api.create(emu)
        clock.advance(3)
        emu.cancel(task_id)
        info = await api.info(emu, task_id)
        assert (info["taskStatus"], info["progress"], info["startTime"]) == (3, 0, "")
        assert info["endTime"] != ""


async def test_shape_a_body(api: Api) -> None:
    """Shape A: code "0", fields in taskInfo, no per-file results, an unknown extra field."""
    async with Emulator(shape="A") as emu:
        task_id = await api.create(emu)
        _, body = await api.detail(emu, task_id)
        assert body["code"] == "0"
        assert "jobInfo" not in body
        assert "taskInfos" not in body
        assert set(body["taskInfo"]) >= {
            "userId", "taskId", "taskType", "taskStatus", "taskResultCode", "resultCode",
            "createTime", "startTime", "endTime", "progress", "downloadUrl",
        }  # fmt: skip
        assert body["taskInfo"]["userId"] == emu.user_id
        assert "extra" in body["taskInfo"]


async def test_shape_b_body_with_file_results_as_object(api: Api) -> None:
    """Shape B may render taskInfos as a single object instead of a list."""
    async with Emulator(shape="B", file_results="object") as emu:
        task_id = await api.create(emu, fileIds=["only"])
        _, body = await api.detail(emu, task_id)
        assert body["code"] == 0
        assert body["taskInfos"] == {
            "fileId": "only",
            "status": "0",
            "srcContainerId": "container-1",
        }


async def test_shape_can_be_chosen_per_task(api: Api) -> None:
    """A script's shape and file_results override the emulator's for that task."""
    async with Emulator(shape="B") as emu:
        a_task = emu.add_task(TaskScript(shape="A"))
        obj_task = emu.add_task(TaskScript(file_results="object"))
        _, a_body = await api.detail(emu, a_task)
        _, obj_body = await api.detail(emu, obj_task)
        assert a_body["code"] == "0"
        assert "taskInfo" in a_body
        assert isinstance(obj_body["taskInfos"], dict)


@pytest.mark.parametrize("shape", ["A", "B"])
async def test_bodies_parse_with_the_client_wire_format(api: Api, shape: Any) -> None:
    """Detail bodies of both shapes parse into the client's TaskInfo (a cross-check)."""
    clock = make_clock()
    async with Emulator(shape=shape, clock=clock) as emu:
        task_id = emu.add_task(file_ids=["x", "y"])
        clock.advance(60)
        async with KooDriveClient(
            emu.url, auth=BearerToken(emu.token), allow_insecure_urls=True, clock=clock
        ) as kd:
            parsed = await kd.get_share_task("share-1", task_id)
        assert parsed.status is TaskStatus.COMPLETED
        assert parsed.result_code is TaskResultCode.ALL_SUCCEEDED
        assert parsed.ended_at == WALL.replace(tzinfo=None) + timedelta(seconds=11)


@pytest.mark.parametrize(
    "body",
    [
        {"taskId": "nope", "shareId": "share-1"},
        {"shareId": "share-1"},
        {"taskId": "", "shareId": "share-1"},
        {"taskId": "x"},
    ],
)
async def test_detail_of_bad_requests(api: Api, body: dict[str, str]) -> None:
    """Unknown tasks get 13000309; missing ids get 13000102; both with HTTP 400."""
    async with Emulator() as emu:
        status, answer = await api.post(emu, DETAIL, body)
        expected = "13000309" if body.get("taskId") and body.get("shareId") else "13000102"
        assert (status, answer["code"]) == (400, expected)


async def test_detail_with_the_wrong_share_or_user_is_not_found(api: Api) -> None:
    """A task queried with another share id, or owned by another user, does not exist."""
    async with Emulator() as emu:
        task_id = emu.add_task(share_id="share-1")
        other_user = emu.add_task(share_id="share-1", user_id="someone-else")
        status, body = await api.detail(emu, task_id, share_id="share-2")
        assert (status, body["code"]) == (400, "13000309")
        status, body = await api.detail(emu, other_user)
        assert (status, body["code"]) == (400, "13000309")
        status, body = await api.post(
            emu, DETAIL, {"taskId": task_id, "shareId": "share-1", "kdstoken": "t"}
        )
        assert status == 200


async def test_snapshot_reads_state_without_counting_a_poll(api: Api) -> None:
    """emu.snapshot reports the state directly and leaves the poll counters alone."""
    clock = make_clock()
    async with Emulator(clock=clock, script=TaskScript(pending_s=0, duration_s=10)) as emu:
        task_id = emu.add_task()
        clock.advance(5)
        snap = emu.snapshot(task_id)
        assert (snap.status, snap.progress) == (TaskStatus.PROCESSING, 50)
        assert emu.stats.polls[task_id] == 0
        await api.detail(emu, task_id)
        assert emu.stats.polls[task_id] == 1
