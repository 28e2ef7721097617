"""Progress-aware polling and stall detection: pure arithmetic, then through the emulator."""

from __future__ import annotations

import math
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
from koodrive_tasks._policy import PollPlan, estimate_end
from koodrive_tasks.emulator import Emulator, Stall, TaskScript
from koodrive_tasks.testing import VirtualClock

NO_JITTER = PollPolicy(jitter=0, initial_delay=1.0, progress_aware=True)
S = ProgressSample


def replay(
    policy: PollPolicy, pending: float, duration: float, curve: str = "linear", rand: float = 0.5
) -> tuple[int, float]:
    """Drive a PollPlan against an ideal task (integer progress, no noise): (polls, lag)."""
    shapes = {
        "linear": lambda x: x,
        "ease-in": lambda x: x * x,
        "ease-out": lambda x: 1 - (1 - x) ** 2,
    }
    plan, now, polls = PollPlan(policy), 0.0, 0
    while True:
        polls += 1
        if now >= pending + duration:
            return polls, now - pending - duration
        processing = now >= pending
        progress = (
            min(99, math.floor(100 * shapes[curve]((now - pending) / duration)))
            if processing
            else 0
        )
        now += plan.observe(now, processing, progress, lambda: rand)


# --- the estimate ----------------------------------------------------------------------


def test_estimate_from_two_values() -> None:
    """Each value counts as half a percent in: 9 % at 10 s and 19 % at 20 s is 1 %/s, 100 % at 100.5 s."""
    assert estimate_end([S(10, 9), S(20, 19)]) == pytest.approx(100.5)


def test_start_bracket_gives_a_rate_from_one_value() -> None:
    """Seen pending at 0 s and at 9 % at 20 s: it started at about 10 s, so 100 % comes at about 115 s."""
    assert estimate_end([S(20, 9)], started_after=0.0) == pytest.approx(20 + 90.5 / 0.95)
    assert estimate_end([S(20, 9)]) is None  # without the bracket one value says nothing


@pytest.mark.parametrize(
    ("samples", "started_after"),
    [([], None), ([], 0.0), ([S(5, 0)], 0.0), ([S(5, 30)], None), ([S(5, 0), S(60, 0)], None)],
)
def test_no_signal_gives_no_estimate(
    samples: list[ProgressSample], started_after: float | None
) -> None:
    """No samples, no rise of at least 1 % (pending, just started, stalled) give no estimate."""
    assert estimate_end(samples, started_after) is None


def test_a_task_speeding_up_is_not_estimated_late() -> None:
    """Ease-in (p = t^2/100, done at 100 s): the parabola lands near 100 s; the last two values alone say 112 s."""
    samples = [S(t, math.floor(t * t / 100)) for t in (30, 50, 70)]
    assert estimate_end(samples[1:]) == pytest.approx(112.08, abs=0.01)
    assert estimate_end(samples) == pytest.approx(100, abs=1)


def test_a_task_slowing_down_is_not_estimated_early() -> None:
    """Ease-out (done at 100 s): where the rate runs out beats the 86 s of a straight line."""
    samples = [S(t, math.floor(100 * (1 - (1 - t / 100) ** 2))) for t in (40, 60, 80)]
    straight = estimate_end(samples[1:])
    curved = estimate_end(samples)
    assert straight is not None
    assert curved is not None
    assert straight == pytest.approx(85.83, abs=0.01)
    assert straight < curved < 100


def test_rounding_steps_do_not_drive_the_fit() -> None:
    """Values less than 5 % apart are not used for the rate when older, wider points exist."""
    assert estimate_end([S(0, 0), S(50, 50), S(51, 51)]) == pytest.approx(
        estimate_end([S(0, 0), S(51, 51)])
    )


def test_sitting_on_a_value_does_not_recede_the_estimate() -> None:
    """The estimate counts from when the value was first seen, so waiting longer makes the task overdue."""
    samples = [S(0, 0), S(50, 50)]  # 1 %/s: 49.5 % to go from 50 s
    assert estimate_end(samples) == pytest.approx(99.5)
    # overdue by 30 s, then by 90 s: polled again after half the overrun, never sooner than initial_delay
    assert NO_JITTER.next_delay(
        9, samples[0], samples[-1], now=129.5, samples=samples
    ) == pytest.approx(15)
    assert NO_JITTER.next_delay(
        9, samples[0], samples[-1], now=189.5, samples=samples
    ) == pytest.approx(45)
    assert NO_JITTER.next_delay(
        9, samples[0], samples[-1], now=100, samples=samples
    ) == pytest.approx(1)


# --- the schedule ----------------------------------------------------------------------


def test_without_signal_the_delay_is_exponential() -> None:
    """Pending or not-yet-moving tasks fall back to exponential backoff."""
    assert NO_JITTER.next_delay(3, None, None, now=10) == NO_JITTER.poll_delay(3)
    stuck = [S(6, 0)]
    assert NO_JITTER.next_delay(
        4, stuck[0], stuck[0], now=14, samples=stuck, started_after=2
    ) == NO_JITTER.poll_delay(4)


def test_far_from_the_end_the_delay_approaches() -> None:
    """A fresh estimate that nothing confirms: 90 % of the remainder, within 0.85x the watched time."""
    samples = [S(0, 0), S(100, 50)]  # 99 s to go, 100 s watched
    assert NO_JITTER.next_delay(5, None, None, now=100, samples=samples) == pytest.approx(85)
    samples = [S(0, 0), S(400, 80)]  # 97.5 s to go, 400 s watched
    assert NO_JITTER.next_delay(5, None, None, now=400, samples=samples) == pytest.approx(
        97.5 * 0.9
    )


def test_agreeing_estimates_jump_past_the_end() -> None:
    """When the value just seen confirms the estimate made without it, poll just after the end."""
    samples = [S(0, 0), S(400, 80), S(480, 96)]  # a steady 0.2 %/s: with or without 96 %, 497.5 s
    assert estimate_end(samples) == estimate_end(samples[:-1]) == pytest.approx(497.5)
    assert NO_JITTER.next_delay(6, None, None, now=480, samples=samples) == pytest.approx(
        17.5 * 1.1 + 0.1
    )
    # the same samples looked at later (nothing new seen): only approach
    assert NO_JITTER.next_delay(7, None, None, now=481, samples=samples) == pytest.approx(
        16.5 * 0.9
    )
    # a value that contradicts the estimate made without it: only approach
    jumpy = [S(0, 0), S(400, 80), S(480, 99)]
    end = estimate_end(jumpy)
    assert end is not None
    assert abs(end - 497.5) > 0.25 * (end - 480) + 1
    assert NO_JITTER.next_delay(6, None, None, now=480, samples=jumpy) == pytest.approx(
        max(1.0, (end - 480) * 0.9)
    )


def test_a_far_jump_past_the_end_is_not_taken() -> None:
    """Agreeing estimates 97.5 s away: a 10 % margin would cost 9.75 s of lag, so approach once more."""
    samples = [S(0, 0), S(300, 60), S(400, 80)]
    assert estimate_end(samples) == estimate_end(samples[:-1]) == pytest.approx(497.5)
    assert NO_JITTER.next_delay(6, None, None, now=400, samples=samples) == pytest.approx(
        97.5 * 0.9
    )


def test_near_the_end_the_poll_lands_just_after_the_estimate() -> None:
    """An estimated second to go is polled 10 % later plus a small constant."""
    samples = [S(0, 0), S(98.5, 98)]
    remaining = estimate_end(samples)
    assert remaining is not None
    remaining -= 99.5
    assert remaining <= NO_JITTER.initial_delay
    assert NO_JITTER.next_delay(5, None, None, now=99.5, samples=samples) == pytest.approx(
        remaining * 1.1 + 0.1
    )


def test_old_signature_still_works() -> None:
    """first / previous / latest alone are enough (the three newest values)."""
    first, previous, latest = S(0, 0), S(200, 40), S(300, 60)
    assert NO_JITTER.next_delay(
        6, first, latest, now=300, previous=previous
    ) == NO_JITTER.next_delay(6, None, None, now=300, samples=[first, previous, latest])


def test_progress_aware_off_ignores_progress() -> None:
    """With progress_aware off (the default) the delay is the exponential one whatever the samples say."""
    policy = PollPolicy(jitter=0)
    assert policy.next_delay(4, S(0, 0), S(10, 90), now=10) == policy.poll_delay(4)


@pytest.mark.parametrize("r", [0.0, 1.0])
def test_jitter_spreads_progress_delays(r: float) -> None:
    """Progress-aware delays are spread by exactly ±jitter around the same base."""
    policy = PollPolicy(jitter=0.2, initial_delay=1.0, progress_aware=True)
    samples = [S(0, 0), S(100, 50)]
    base = NO_JITTER.next_delay(5, None, None, now=100, samples=samples)
    delay = policy.next_delay(5, None, None, now=100, samples=samples, rand=lambda: r)
    assert delay == pytest.approx(base * (0.8 if r == 0 else 1.2))


@given(
    polls=st.integers(1, 10_000),
    start=st.one_of(st.none(), st.floats(0, 1e6)),
    steps=st.lists(st.tuples(st.floats(0, 1e5), st.integers(0, 30)), max_size=8),
    later=st.floats(0, 1e6),
    r=st.floats(0, 1),
)
def test_next_delay_is_always_within_bounds(
    polls: int, start: float | None, steps: list[tuple[float, int]], later: float, r: float
) -> None:
    """Whatever the samples, the delay is finite and within [0, progress_max_delay]."""
    policy = PollPolicy(progress_aware=True)
    at, progress, samples = (start or 0.0) + 1, 0, []
    for dt, dp in steps:
        at, progress = at + dt, min(99, progress + dp)
        if not samples or samples[-1].progress != progress:
            samples.append(S(at, progress))
    delay = policy.next_delay(
        polls, None, None, now=at + later, rand=lambda: r, samples=samples, started_after=start
    )
    assert 0 <= delay <= policy.progress_max_delay
    assert math.isfinite(delay)


@given(
    answers=st.lists(
        st.tuples(st.booleans(), st.integers(0, 99), st.floats(0, 1)), min_size=1, max_size=60
    )
)
def test_a_delay_below_the_minimum_needs_a_new_progress_value(
    answers: list[tuple[bool, int, float]],
) -> None:
    """Only a poll aimed just after an estimated end comes sooner than initial_delay, and
    there is at most one per change of progress: a task sitting on a value is never hammered."""
    policy = PollPolicy(jitter=0, progress_aware=True)
    plan, now, latest, short_since_change = PollPlan(policy), 0.0, None, 0
    for processing, progress, r in answers:
        if processing and progress != latest:
            latest, short_since_change = progress, 0
        delay = plan.observe(now, processing, progress, lambda r=r: r)
        short_since_change += delay < policy.initial_delay
        assert short_since_change <= 1, (now, processing, progress, delay)
        now += delay


@pytest.mark.parametrize(
    "kwargs",
    [{"progress_max_delay": 0.5}, {"eta_margin": 1.5}, {"stall_timeout": 0}, {"progress_aware": 1}],
)
def test_invalid_progress_settings_are_refused(kwargs: dict[str, object]) -> None:
    """Progress settings are validated at construction."""
    with pytest.raises(InvalidArgumentError):
        PollPolicy(**kwargs)  # type: ignore[arg-type]


# --- the plan --------------------------------------------------------------------------


def test_plan_brackets_the_start_with_the_last_pending_poll() -> None:
    """Pending polls back off exponentially; processing started after the last of them."""
    plan = PollPlan(NO_JITTER)
    assert plan.observe(0, False, 0, lambda: 0.5) == NO_JITTER.poll_delay(1)
    assert plan.observe(1, False, 0, lambda: 0.5) == NO_JITTER.poll_delay(2)
    plan.observe(3, True, 2, lambda: 0.5)
    assert plan.started_after == 1
    assert plan.samples == [S(3, 2)]
    plan.observe(7, True, 2, lambda: 0.5)  # the same value is kept with its first sighting
    plan.observe(9, True, 5, lambda: 0.5)
    assert plan.samples == [S(3, 2), S(9, 5)]
    assert plan.first == S(3, 2)
    assert plan.latest == S(9, 5)


@pytest.mark.parametrize("duration", [10.0, 60.0, 600.0, 1800.0])
def test_steady_task_ends_are_noticed_soon_with_few_polls(duration: float) -> None:
    """A linear task is detected within a few seconds, with far fewer polls than plain backoff on long tasks."""
    polls, lag = replay(PollPolicy(progress_aware=True), pending=3, duration=duration)
    plain_polls, _ = replay(PollPolicy(), pending=3, duration=duration)
    assert 0 <= lag <= 6
    assert polls <= 20
    if duration >= 600:
        assert polls * 2 <= plain_polls


@pytest.mark.parametrize("curve", ["ease-in", "ease-out"])
def test_curved_tasks_are_noticed_soon(curve: str) -> None:
    """Tasks that speed up or slow down are still noticed within a few seconds of their end."""
    polls, lag = replay(PollPolicy(progress_aware=True), pending=2, duration=300, curve=curve)
    assert 0 <= lag <= 5
    assert polls <= 20


# --- through the emulator --------------------------------------------------------------


@pytest.fixture
async def emu(clock: VirtualClock) -> AsyncIterator[Emulator]:
    async with Emulator(clock=clock) as emulator:
        yield emulator


async def polls_for(
    emu: Emulator, clock: VirtualClock, policy: PollPolicy, script: TaskScript
) -> tuple[int, float]:
    """Wait for one task; return (polls sent, detection lag)."""
    task_id = emu.add_task(script)
    start = clock.monotonic()
    async with KooDriveClient(
        emu.url, auth=BearerToken(emu.token), clock=clock, policy=policy, allow_insecure_urls=True
    ) as kd:
        await kd.wait_for_task("share-1", task_id).final_info()
        polls = kd.stats.polls
    return polls, clock.monotonic() - (start + script.end_s)


async def test_progress_aware_polls_less_and_notices_sooner(
    emu: Emulator, clock: VirtualClock
) -> None:
    """On a steady 30-minute task the progress-aware policy needs far fewer polls and less lag."""
    script = TaskScript(pending_s=2, duration_s=1800)
    aware_polls, aware_lag = await polls_for(
        emu, clock, PollPolicy(jitter=0, progress_aware=True), script
    )
    plain_polls, plain_lag = await polls_for(emu, clock, PollPolicy(jitter=0), script)
    assert aware_polls * 2 <= plain_polls
    assert aware_lag < plain_lag
    assert aware_lag < 5


async def test_stall_is_reported_separately_from_the_deadline(
    emu: Emulator, clock: VirtualClock
) -> None:
    """A task stuck at one progress for stall_timeout raises TaskStalledError before the deadline."""
    script = TaskScript(pending_s=0, duration_s=10_000, stalls=(Stall(start=0.1, length=0.8),))
    task_id = emu.add_task(script)
    policy = PollPolicy(stall_timeout=600, timeout=7200, progress_aware=True)
    async with KooDriveClient(
        emu.url, auth=BearerToken(emu.token), clock=clock, policy=policy, allow_insecure_urls=True
    ) as kd:
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
