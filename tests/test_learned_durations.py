"""What a client learns from its own tasks: fresh tasks wait before their first poll, and
tasks of a kind seen before are polled near their expected end."""

from __future__ import annotations

import pytest

from koodrive_tasks import (
    BearerToken,
    DurationModel,
    InvalidArgumentError,
    KooDriveClient,
    PollPolicy,
    TaskKind,
)
from koodrive_tasks.emulator import Curve, Emulator, TaskScript
from koodrive_tasks.testing import VirtualClock

SHARE, SPACE = "share-1", "space-1"


def connect(emu: Emulator, clock: VirtualClock, **kwargs: object) -> KooDriveClient:
    return KooDriveClient(
        emu.url,
        auth=BearerToken(emu.token),
        allow_insecure_urls=True,
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_a_task_the_client_created_is_not_polled_at_once() -> None:
    """A fresh task is first polled initial_delay after its creation; another task at once."""
    clock = VirtualClock()
    polled_at: list[float] = []
    async with (
        Emulator(clock=clock, script=TaskScript(pending_s=1, duration_s=300)) as emu,
        connect(emu, clock, on_request=lambda e: polled_at.append(clock.monotonic())) as kd,
    ):
        created = await kd.create_share_task(SHARE, ["f"], container_id=SPACE, zip_name="a.zip")
        start = clock.monotonic()
        await kd.wait_for_task(SHARE, created).__anext__()
        assert polled_at[-1] - start == pytest.approx(PollPolicy().initial_delay, abs=0.01)
        other = emu.add_task(share_id=SHARE)
        start = clock.monotonic()
        await kd.wait_for_task(SHARE, other).__anext__()
        assert polled_at[-1] == pytest.approx(start, abs=0.01)


async def test_tasks_of_a_known_kind_take_fewer_polls() -> None:
    """After a dozen 120-s tasks of one kind, the next is polled less than by a client that learns nothing."""
    clock = VirtualClock()
    script = TaskScript(pending_s=5, duration_s=120, curve=Curve.EASE_IN, noise=0)
    async with Emulator(clock=clock, script=script) as emu:
        polls: dict[str, int] = {}
        for name, durations in (("learning", DurationModel()), ("not learning", None)):
            # No jitter: the two clients' schedules differ only by what one learned.
            policy = PollPolicy(jitter=0)
            async with connect(emu, clock, durations=durations, policy=policy) as kd:
                for _ in range(12):
                    task_id = await kd.create_share_task(
                        SHARE, ["f"], container_id=SPACE, zip_name="a.zip"
                    )
                    await kd.wait_for_task(SHARE, task_id)
                before = emu.stats.detail_polls
                task_id = await kd.create_share_task(
                    SHARE, ["f"], container_id=SPACE, zip_name="a.zip"
                )
                await kd.wait_for_task(SHARE, task_id)
                polls[name] = emu.stats.detail_polls - before
    assert polls["learning"] < polls["not learning"], polls


async def test_a_shared_model_learns_from_every_client() -> None:
    """One DurationModel given to two clients knows what either saw finish."""
    clock = VirtualClock()
    model = DurationModel()
    async with Emulator(clock=clock, script=TaskScript(pending_s=1, duration_s=60)) as emu:
        async with connect(emu, clock, durations=model) as kd:
            for _ in range(6):
                task_id = await kd.create_share_task(
                    SHARE, ["f"], container_id=SPACE, zip_name="a.zip"
                )
                await kd.wait_for_task(SHARE, task_id)
    expected = model.expect(TaskKind("share", 1, 1))
    assert expected is not None
    assert expected.seconds == pytest.approx(60, rel=0.2)


def test_durations_must_be_a_model_or_none() -> None:
    """durations=<anything else> is refused when the client is made."""
    with pytest.raises(InvalidArgumentError, match="DurationModel"):
        KooDriveClient("https://kd.example.com", auth=BearerToken("t"), durations="yes")  # type: ignore[arg-type]
