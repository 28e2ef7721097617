"""Progress-aware polling and stall detection: pure arithmetic, then through the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from koodrive_tasks import (
    BearerToken,
    InvalidArgumentError,
    KooDriveClient,
    PollPolicy,
    ProgressSample,
    TaskStalledError,
    TaskStatus,
    WaitTimeoutError,
)
from koodrive_tasks._policy import estimate_remaining
from koodrive_tasks._virtual_clock import VirtualClock
from koodrive_tasks.emulator import Emulator, Stall, TaskScript

NO_JITTER = PollPolicy(jitter=0, initial_delay=1.0, progress_aware=True)


def test_estimate_from_average_rate() -> None:
    """50 % gained in 100 s leaves 40 % to do: 80 s from when 60 % was first seen."""
    assert estimate_remaining(ProgressSample(0, 10), ProgressSample(100, 60), now=100) == 80
    assert estimate_remaining(ProgressSample(0, 10), ProgressSample(100, 60), now=130) == 50


def test_time_spent_on_the_current_value_counts() -> None:
    """Sitting at 99 % for longer than 1 % should take makes the task overdue, not 'always 18 s away'."""
    first, latest = ProgressSample(0, 0), ProgressSample(1782, 99)
    assert estimate_remaining(first, latest, now=1782) == pytest.approx(18)
    assert estimate_remaining(first, latest, now=1810) == pytest.approx(-10)


@pytest.mark.parametrize(
    ("first", "latest"),
    [
        (None, None),
        (ProgressSample(0, 10), None),
        (ProgressSample(5, 10), ProgressSample(5, 20)),
        (ProgressSample(0, 30), ProgressSample(60, 30)),
    ],
)
def test_no_signal_gives_no_estimate(first: ProgressSample | None, latest: ProgressSample | None) -> None:
    """Missing samples, no elapsed time or no progress give no estimate."""
    assert estimate_remaining(first, latest, now=100) is None


def test_without_signal_the_delay_is_exponential() -> None:
    """Pending or not-yet-moving tasks fall back to exponential backoff."""
    assert NO_JITTER.next_delay(3, None, None, now=10) == NO_JITTER.poll_delay(3)


def test_far_from_the_end_the_delay_halves_the_distance() -> None:
    """An estimated 200 s to go, after 300 s watched, gives a 100 s sleep."""
    first, latest = ProgressSample(0, 0), ProgressSample(300, 60)
    assert estimate_remaining(first, latest, now=300) == pytest.approx(200)
    assert NO_JITTER.next_delay(5, first, latest, now=300) == pytest.approx(100)


def test_no_jump_further_than_the_watched_time() -> None:
    """After 60 s watched, the next look is at most 60 s away, whatever the estimate."""
    first, latest = ProgressSample(0, 0), ProgressSample(60, 20)
    assert estimate_remaining(first, latest, now=60) == pytest.approx(240)
    assert NO_JITTER.next_delay(5, first, latest, now=60) == pytest.approx(60)


def test_a_recent_speed_up_shortens_the_estimate() -> None:
    """The faster recent rate wins over a slow average (tasks that accelerate)."""
    first, previous, latest = ProgressSample(0, 0), ProgressSample(90, 10), ProgressSample(100, 30)
    assert estimate_remaining(first, latest, now=100) == pytest.approx(233.33, abs=0.01)
    assert estimate_remaining(previous, latest, now=100) == pytest.approx(35)
    assert NO_JITTER.next_delay(5, first, latest, now=100, previous=previous) == pytest.approx(17.5)


def test_near_the_end_the_poll_lands_just_after_the_estimate() -> None:
    """An estimated 1.5 s to go is polled 10 % later plus a small constant."""
    first, latest = ProgressSample(0, 0), ProgressSample(48.5, 97)
    assert estimate_remaining(first, latest, now=48.5) == pytest.approx(1.5)
    assert NO_JITTER.next_delay(5, first, latest, now=48.5) == pytest.approx(1.5 * 1.1 + 0.1)


def test_overdue_tasks_are_polled_with_growing_gaps() -> None:
    """An overdue (stalled) task is polled after half its overrun, not in a hot loop."""
    first, latest = ProgressSample(0, 0), ProgressSample(99, 99)
    assert NO_JITTER.next_delay(5, first, latest, now=100.5) == NO_JITTER.initial_delay
    assert NO_JITTER.next_delay(5, first, latest, now=160) == pytest.approx(30)


def test_progress_aware_off_ignores_progress() -> None:
    """With progress_aware off (the default) the delay is the exponential one whatever the samples say."""
    policy = PollPolicy(jitter=0)
    assert policy.next_delay(4, ProgressSample(0, 0), ProgressSample(10, 90), now=10) == policy.poll_delay(4)


@given(
    polls=st.integers(1, 10_000),
    t0=st.floats(0, 1e6),
    dt=st.floats(0, 1e6),
    p0=st.integers(0, 100),
    dp=st.integers(-100, 100),
    r=st.floats(0, 1),
)
def test_next_delay_is_always_within_bounds(polls: int, t0: float, dt: float, p0: int, dp: int, r: float) -> None:
    """Whatever the samples, the delay is finite and within [0, progress_max_delay]."""
    policy = PollPolicy(progress_aware=True)
    latest = ProgressSample(t0 + dt, min(100, max(0, p0 + dp)))
    delay = policy.next_delay(polls, ProgressSample(t0, p0), latest, now=t0 + dt, rand=lambda: r)
    assert 0 <= delay <= policy.progress_max_delay


@pytest.mark.parametrize(
    "kwargs", [{"progress_max_delay": 0.5}, {"eta_margin": 1.5}, {"stall_timeout": 0}, {"progress_aware": 1}]
)
def test_invalid_progress_settings_are_refused(kwargs: dict[str, object]) -> None:
    """Progress settings are validated at construction."""
    with pytest.raises(InvalidArgumentError):
        PollPolicy(**kwargs)  # type: ignore[arg-type]


# --- through the emulator --------------------------------------------------------------


@pytest.fixture
async def emu(clock: VirtualClock) -> AsyncIterator[Emulator]:
    async with Emulator(clock=clock.monotonic, wall_clock=clock.now) as emulator:
        yield emulator


async def polls_for(emu: Emulator, clock: VirtualClock, policy: PollPolicy, script: TaskScript) -> tuple[int, float]:
    """Wait for one task; return (polls sent, detection lag)."""
    task_id = emu.add_task(script)
    start = clock.monotonic()
    async with KooDriveClient(emu.url, auth=BearerToken(emu.token), clock=clock, policy=policy, allow_insecure_urls=True) as kd:
        await kd.wait_for_task("share-1", task_id).final_info()
        polls = kd.stats.polls
    return polls, clock.monotonic() - (start + script.end_s)


async def test_progress_aware_polls_less_and_notices_sooner(emu: Emulator, clock: VirtualClock) -> None:
    """On a steady 30-minute task the progress-aware policy needs far fewer polls and less lag."""
    script = TaskScript(pending_s=2, duration_s=1800)
    aware_polls, aware_lag = await polls_for(emu, clock, PollPolicy(jitter=0, progress_aware=True), script)
    plain_polls, plain_lag = await polls_for(emu, clock, PollPolicy(jitter=0), script)
    assert aware_polls * 2 <= plain_polls
    assert aware_lag < plain_lag
    assert aware_lag < 5


async def test_stall_is_reported_separately_from_the_deadline(emu: Emulator, clock: VirtualClock) -> None:
    """A task stuck at one progress for stall_timeout raises TaskStalledError before the deadline."""
    script = TaskScript(pending_s=0, duration_s=10_000, stalls=(Stall(start=0.1, length=0.8),))
    task_id = emu.add_task(script)
    policy = PollPolicy(stall_timeout=600, timeout=7200, progress_aware=True)
    async with KooDriveClient(emu.url, auth=BearerToken(emu.token), clock=clock, policy=policy, allow_insecure_urls=True) as kd:
        with pytest.raises(TaskStalledError) as caught:
            await kd.wait_for_task("share-1", task_id)
    error = caught.value
    assert isinstance(error, WaitTimeoutError)
    assert error.stalled_for >= 600
    assert error.last_info is not None
    assert error.last_info.status is TaskStatus.PROCESSING
    # the stall starts at 1000 s; it is noticed from the first poll that sees it
    assert 1000 + 600 <= clock.monotonic() <= 1000 + 600 + policy.progress_max_delay
    assert "no progress for" in str(error)
