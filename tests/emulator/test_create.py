"""Creating tasks: validation, both code styles, the task limit."""

from __future__ import annotations

from typing import Any

import pytest
from emulator_helpers import CREATE, Api, create_body

from koodrive_tasks.emulator import Emulator, TaskScript

INVALID_BODIES = [
    pytest.param(create_body(taskType=None), id="no-taskType"),
    pytest.param(create_body(taskType=3), id="unknown-taskType"),
    pytest.param(create_body(taskType=True), id="boolean-taskType"),
    pytest.param(create_body(taskType="1"), id="string-taskType"),
    pytest.param(create_body(zipName=None), id="package-without-zipName"),
    pytest.param(create_body(taskType=2, zipName=None), id="dump-without-target"),
    pytest.param(
        create_body(taskType=2, targetFileId={"fileId": "root"}), id="target-without-container"
    ),
    pytest.param(create_body(taskType=2, targetFileId="root"), id="target-not-object"),
    pytest.param(create_body(fileIds=[]), id="no-fileIds"),
    pytest.param(create_body(fileIds=[f"f{i}" for i in range(1001)]), id="1001-fileIds"),
    pytest.param(create_body(fileIds=["f1", 2]), id="non-string-fileId"),
    pytest.param(create_body(fileIds="f1"), id="fileIds-not-list"),
    pytest.param(create_body(shareId=None), id="no-shareId"),
    pytest.param(create_body(containerId=None), id="no-containerId"),
    pytest.param(create_body(containerId=""), id="empty-containerId"),
    pytest.param(create_body(kdstoken=5), id="non-string-kdstoken"),
    pytest.param(b"{not json", id="not-json"),
    pytest.param([create_body()], id="array-body"),
]


@pytest.mark.parametrize("body", INVALID_BODIES)
async def test_invalid_create_is_rejected_with_parameter_error(api: Api, body: Any) -> None:
    """An invalid create body gets HTTP 400 with code 13000102 and creates no task."""
    async with Emulator() as emu:
        status, answer = await api.post(emu, CREATE, body)
        assert status == 400
        assert answer["code"] == "13000102"
        assert answer["msg"]
        assert emu.task_count == 0
        assert emu.stats.tasks_created == 0


async def test_thousand_file_ids_are_accepted(api: Api) -> None:
    """Exactly 1000 file ids is within the documented limit."""
    async with Emulator() as emu:
        await api.create(emu, fileIds=[f"f{i}" for i in range(1000)])
        assert emu.task_count == 1


@pytest.mark.parametrize(("shape", "code"), [("A", "0"), ("B", 0)])
async def test_create_answers_in_the_emulator_code_style(api: Api, shape: Any, code: Any) -> None:
    """Shape A answers code "0" (string), shape B code 0 (integer), both with a task id."""
    async with Emulator(shape=shape) as emu:
        status, body = await api.post(emu, CREATE, create_body(kdstoken="share-token"))
        assert status == 200
        assert body["code"] == code
        assert type(body["code"]) is type(code)
        assert body["msg"] == "success"
        assert body["taskId"]
        assert "traceId" in body  # an unknown field the client must ignore


async def test_create_code_style_follows_a_queued_script_shape(api: Api) -> None:
    """A queued script's shape override also decides the create answer's code style."""
    async with Emulator(shape="B") as emu:
        emu.queue_script(TaskScript(shape="A"))
        _, body = await api.post(emu, CREATE, create_body())
        assert body["code"] == "0"


async def test_dump_task_is_created(api: Api) -> None:
    """A dump task with a target folder is accepted and records type 2."""
    async with Emulator() as emu:
        task_id = await api.create(
            emu,
            taskType=2,
            zipName=None,
            targetFileId={"fileId": "root", "containerId": "c2"},
        )
        info = await api.info(emu, task_id)
        assert info["taskType"] == 2


async def test_create_beyond_max_tasks_reports_insufficient_space(api: Api) -> None:
    """With max_tasks held, a create gets HTTP 400 code 13000311 and add_task raises."""
    async with Emulator(max_tasks=2) as emu:
        await api.create(emu)
        emu.add_task()
        status, body = await api.post(emu, CREATE, create_body())
        assert (status, body["code"]) == (400, "13000311")
        with pytest.raises(OverflowError):
            emu.add_task()
        assert emu.task_count == 2


async def test_queued_scripts_are_used_in_order(api: Api) -> None:
    """Queued scripts go to the next created tasks, first in first out."""
    async with Emulator() as emu:
        emu.queue_script(TaskScript(duration_s=5), TaskScript(duration_s=7))
        first = await api.create(emu)
        second = await api.create(emu)
        third = await api.create(emu)
        assert emu.service.lookup(first).script.duration_s == 5  # type: ignore[union-attr]
        assert emu.service.lookup(second).script.duration_s == 7  # type: ignore[union-attr]
        assert emu.service.lookup(third).script == TaskScript()  # type: ignore[union-attr]


async def test_invalid_create_does_not_consume_a_queued_script(api: Api) -> None:
    """A rejected create leaves the queued script for the next valid one."""
    async with Emulator() as emu:
        emu.queue_script(TaskScript(duration_s=5))
        status, _ = await api.post(emu, CREATE, create_body(shareId=None))
        assert status == 400
        task_id = await api.create(emu)
        assert emu.service.lookup(task_id).script.duration_s == 5  # type: ignore[union-attr]
