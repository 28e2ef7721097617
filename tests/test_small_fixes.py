"""Small behaviours users tripped over: resume() arguments, checkpointed polls, warnings, counters."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from koodrive_tasks import (
    BearerToken,
    InvalidArgumentError,
    KooDriveClient,
    PollPolicy,
    TaskRef,
)
from koodrive_tasks.emulator import Emulator, Outcome, TaskScript
from koodrive_tasks.testing import VirtualClock

SHARE = "share-1"
POLICY = PollPolicy(initial_delay=1, factor=1, max_delay=1, jitter=0, timeout=3600)


@pytest.fixture
async def setup() -> AsyncIterator[tuple[Emulator, KooDriveClient]]:
    clock = VirtualClock()
    async with (
        Emulator(clock=clock) as emu,
        KooDriveClient(
            emu.url,
            auth=BearerToken(emu.token),
            allow_insecure_urls=True,
            clock=clock,
            policy=POLICY,
        ) as kd,
    ):
        yield emu, kd


@pytest.mark.parametrize("token", [{"format": "koodrive-tasks/waits"}, 42, None, ["x"]])
async def test_resume_with_something_else_than_a_token_is_a_typed_error(
    setup: tuple[Emulator, KooDriveClient], token: Any
) -> None:
    """resume() given a dict (a token already parsed) or any non-text says what to pass."""
    _, kd = setup
    with pytest.raises(InvalidArgumentError, match=r"kd\.checkpoint"):
        kd.resume(token)


async def test_resume_kdstokens_must_be_a_mapping(setup: tuple[Emulator, KooDriveClient]) -> None:
    """kdstokens given as a list is refused before anything is resumed."""
    emu, kd = setup
    token = kd.checkpoint([kd.wait_for_task(SHARE, emu.add_task())])
    with pytest.raises(InvalidArgumentError, match="mapping"):
        kd.resume(token, kdstokens=["kds"])  # type: ignore[arg-type]


async def test_a_finished_wait_is_checkpointed_with_its_polls(
    setup: tuple[Emulator, KooDriveClient],
) -> None:
    """A wait iterated to a running state and then left keeps its poll count in the token."""
    emu, kd = setup
    task_id = emu.add_task(TaskScript(pending_s=0, duration_s=100))
    waiter = kd.wait_for_task(SHARE, task_id)
    seen = 0
    async for update in waiter:
        seen += 1
        if update.progress >= 3:
            break
    polls = emu.stats.polls[task_id]
    assert polls >= 3
    (state,) = json.loads(kd.checkpoint([waiter]))["waits"]
    assert state["polls"] == polls


async def test_a_partial_failure_warns_for_a_lone_wait_only(
    setup: tuple[Emulator, KooDriveClient], caplog: pytest.LogCaptureFixture
) -> None:
    """A batch's outcome already says a task partly failed: no WARNING; a lone await warns once."""
    emu, kd = setup
    script = TaskScript(pending_s=0, duration_s=5, outcome=Outcome.PARTIALLY_FAILED)
    batched = emu.add_task(script, file_ids=["a", "b"])
    alone = emu.add_task(script, file_ids=["a", "b"])
    with caplog.at_level(logging.WARNING, logger="koodrive_tasks"):
        outcomes = await kd.wait_many([TaskRef(SHARE, batched)])
        assert outcomes[TaskRef(SHARE, batched)].kind == "partially_failed"
        assert not [r for r in caplog.records if r.levelno == logging.WARNING]
        waiter = kd.wait_for_task(SHARE, alone)
        await waiter
        await waiter  # awaited twice: still one warning
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert alone in warnings[0].getMessage()


async def test_tasks_ended_counts_tasks_whose_end_a_poll_saw_once(
    setup: tuple[Emulator, KooDriveClient],
) -> None:
    """Two waits on one task and one wait that times out: 3 outcomes, tasks_ended 1."""
    emu, kd = setup
    shared = emu.add_task(TaskScript(pending_s=0, duration_s=5))
    long = emu.add_task(TaskScript(pending_s=0, duration_s=1000))
    outcomes = await kd.wait_many([TaskRef(SHARE, shared), TaskRef(SHARE, long)], timeout=60)
    again = await kd.wait_many([TaskRef(SHARE, shared)])
    assert len(outcomes) + len(again) == 3
    assert kd.stats.tasks_ended == 2  # the shared task's stream ended twice, one per batch
    assert kd.stats.lag_samples == 1  # only the first stream had seen it running
