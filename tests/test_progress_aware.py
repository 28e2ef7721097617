"""Progress-aware polling, through the public PollPlan: the estimate, the schedule, the
expectation of a task's duration, then whole waits through the emulator."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from koodrive_tasks import (
    BearerToken,
    ExpectedDuration,
    InvalidArgumentError,
    KooDriveClient,
    PollPlan,
    PollPolicy,
    ProgressSample,
    TaskStalledError,
    TaskStatus,
    WaitTimeoutError,
)
from koodrive_tasks.emulator import Emulator, Stall, TaskScript
from koodrive_tasks.testing import VirtualClock

AWARE = PollPolicy(jitter=0, initial_delay=1.0)  # progress-aware, the default
SHORTEST = AWARE.initial_delay * 0.2  # the shortest progress-aware gap but one per new value
S = ProgressSample
Answer = tuple[float, bool, int]  # (time, processing, progress)

SHAPES: dict[str, Callable[[float], float]] = {
    "linear": lambda x: x,
    "ease-in": lambda x: x * x,
    "ease-out": lambda x: 1 - (1 - x) ** 2,
    "ease-in-out": lambda x: x * x * (3 - 2 * x),
}


def fed(answers: list[Answer], policy: PollPolicy = AWARE) -> PollPlan:
    """A plan that has seen ``answers``."""
    plan = PollPlan(policy)
    for now, processing, progress in answers:
        plan.observe(now, processing, progress, lambda: 0.5)
    return plan


def shaped(shape: str, times: tuple[float, ...], duration: float = 100.0) -> list[Answer]:
    """Answers of a task processing from 0 s for ``duration`` seconds along ``shape``."""
    curve = SHAPES[shape]
    return [(t, True, min(99, math.floor(100 * curve(t / duration)))) for t in times]


def replay(
    policy: PollPolicy,
    pending: float,
    duration: float,
    shape: str = "linear",
    rand: float = 0.5,
    expected: ExpectedDuration | None = None,
) -> tuple[int, float]:
    """Drive a PollPlan against an ideal task (integer progress, no noise): (polls, lag)."""
    plan, now, polls = PollPlan(policy, expected=expected), 0.0, 0
    curve = SHAPES[shape]
    while True:
        polls += 1
        if now >= pending + duration:
            return polls, now - pending - duration
        processing = now >= pending
        progress = min(99, math.floor(100 * curve((now - pending) / duration))) if processing else 0
        now += plan.observe(now, processing, progress, lambda: rand)


# --- the estimate ----------------------------------------------------------------------


def test_two_values_give_an_estimate_that_narrows_as_progress_rises() -> None:
    """Two values give an estimate; on a steady 1 %/s task it is within 6 % of 100 s by 90 %
    and its spread (10 % to 90 % edges) is a fraction of what it was at 19 %."""
    early = fed([(10, True, 9), (20, True, 19)])
    late = fed([(t, True, t - 1) for t in (10, 20, 40, 60, 80, 91)])
    assert early.estimated_end() is not None
    assert late.estimated_end() == pytest.approx(100, rel=0.06)
    early_spread = early.estimated_end(level=0.9) - early.estimated_end(level=0.1)  # type: ignore[operator]
    late_spread = late.estimated_end(level=0.9) - late.estimated_end(level=0.1)  # type: ignore[operator]
    assert late_spread < early_spread / 5


def test_start_bracket_gives_an_estimate_from_one_value() -> None:
    """Seen pending at 0 s and at 9 % at 20 s: processing started in between, which gives a rate."""
    bracketed = fed([(0, False, 0), (20, True, 9)])
    assert bracketed.started_after == 0
    end = bracketed.estimated_end()
    assert end is not None
    assert 60 < end < 250
    assert (
        fed([(20, True, 9)]).estimated_end() is None
    )  # without the bracket one value says nothing


@pytest.mark.parametrize(
    "answers",
    [
        [],
        [(0, False, 0)],
        [(0, False, 0), (5, True, 0)],
        [(5, True, 30)],
        [(5, True, 0), (60, True, 0)],
    ],
)
def test_no_signal_gives_no_estimate(answers: list[Answer]) -> None:
    """Pending, no rise above 0 % or a single value without a start bracket give no estimate."""
    assert fed(answers).estimated_end() is None


@pytest.mark.parametrize("shape", list(SHAPES))
def test_estimate_follows_the_shape_of_progress(shape: str) -> None:
    """Steady, speeding up, slowing down or S-shaped: five values put the end within 6 %."""
    plan = fed([(0, False, 0), *shaped(shape, (20, 40, 60, 80, 90))])
    assert plan.estimated_end() == pytest.approx(100, rel=0.06)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_end_lies_between_the_edges_of_the_estimate(shape: str) -> None:
    """The early and late edges the schedule aims at hold the true end on clean curves."""
    plan = fed([(0, False, 0), *shaped(shape, (20, 40, 60, 80, 90))])
    early, late = plan.estimated_end(level=0.15), plan.estimated_end(level=0.9)
    assert early is not None
    assert late is not None
    assert early <= 100.5
    assert late >= 99.5
    assert late - early <= 25


def test_rounding_steps_do_not_drive_the_fit() -> None:
    """A 1 % step next to a wide one barely moves the estimate: each value's rounding is weighed."""
    wide = fed([(0, True, 0), (51, True, 51)]).estimated_end()
    with_step = fed([(0, True, 0), (50, True, 50), (51, True, 51)]).estimated_end()
    assert wide is not None
    assert with_step == pytest.approx(wide, rel=0.01)


def test_the_estimate_assumes_the_task_still_runs() -> None:
    """Asked later, the estimate is never earlier than the time it is asked for."""
    plan = fed([(0, True, 0), (50, True, 50)])
    end = plan.estimated_end()
    assert end is not None
    assert plan.estimated_end(now=end + 30) >= end + 30  # type: ignore[operator]


def test_a_task_running_past_its_estimate_is_expected_to_end_soon() -> None:
    """A steady task still at 99 % just past the end its values point to: the estimate moves
    to just after now, not far out, and the next poll comes within seconds."""
    plan = fed([(0, False, 0), *shaped("linear", (20, 40, 60, 80, 90, 98))])
    delay = plan.observe(101, True, 99, lambda: 0.5)
    end = plan.estimated_end()
    assert end is not None
    assert 101 <= end <= 106
    assert delay <= 5


# --- the schedule ----------------------------------------------------------------------


def test_pending_polls_back_off_with_the_time_waited() -> None:
    """While pending: initial_delay, then (factor - 1) times the time waited, capped at max_delay."""
    policy = PollPolicy(jitter=0, initial_delay=2, factor=3, max_delay=50, progress_aware=True)
    plan = PollPlan(policy)
    assert plan.observe(0, False, 0) == 2
    assert plan.observe(2, False, 0) == 4
    assert plan.observe(6, False, 0) == 12
    assert plan.observe(18, False, 0) == 36
    assert plan.observe(54, False, 0) == 50


def test_at_zero_percent_the_gap_grows_with_the_time_watched() -> None:
    """Processing at 0 %: a multiple of the processing time watched, not a fixed backoff."""
    plan = fed(
        [(0, False, 0)], PollPolicy(jitter=0, initial_delay=1, max_delay=1000, progress_aware=True)
    )
    first = plan.observe(10, True, 0)  # started between 0 s and 10 s: about 5 s watched
    second = plan.observe(10 + first, True, 0)
    assert first > 10
    assert second > first


def test_far_from_the_end_the_next_poll_lands_before_it() -> None:
    """A steady task half done: the next poll comes before the end, to see it closer."""
    plan = fed([(0, False, 0), (10, True, 10), (50, True, 50)])
    delay = plan.observe(60, True, 60)
    assert 60 + delay < 100


def test_near_the_end_the_poll_lands_at_the_end() -> None:
    """At 97 % of a steady 100 s task the next poll lands within a second of the end."""
    plan = fed([(0, False, 0), *shaped("linear", (20, 40, 60, 80, 90))])
    delay = plan.observe(97, True, 97)
    assert 99 <= 97 + delay <= 101


def test_a_wide_estimate_polls_before_its_middle_and_a_sharp_one_after() -> None:
    """For the same poll cost, where the estimate is wide the next poll comes before its
    middle, to look again; where it is sharp, past its middle, to see the end at once."""
    policy = PollPolicy(jitter=0, initial_delay=1.0, poll_cost=5.0)
    wide = fed([(0, False, 0), (10, True, 10)], policy)
    delay = wide.observe(30, True, 30)
    middle = wide.estimated_end()
    assert middle is not None
    assert 30 + delay < middle
    sharp = fed([(0, False, 0), *shaped("linear", (20, 40, 60, 80, 90))], policy)
    delay = sharp.observe(97, True, 97)
    middle = sharp.estimated_end()
    assert middle is not None
    assert 97 + delay > middle


def test_a_higher_poll_cost_trades_polls_for_lag() -> None:
    """Over tasks of many lengths and shapes, poll_cost 5 needs fewer polls than 0.2 and
    notices the ends later."""
    totals = {}
    for cost in (0.2, 5.0):
        policy = PollPolicy(jitter=0, poll_cost=cost)
        runs = [
            replay(policy, pending=2, duration=duration, shape=shape)
            for duration in (20.0, 90.0, 400.0, 1500.0)
            for shape in SHAPES
        ]
        totals[cost] = (sum(p for p, _ in runs), sum(lag for _, lag in runs))
    assert totals[5.0][0] < totals[0.2][0]
    assert totals[5.0][1] > totals[0.2][1]


def test_a_task_sitting_on_a_value_is_polled_with_growing_gaps() -> None:
    """Stuck at 50 % from 50 s: every gap is at least a tenth of the time sat there, and
    once past the late edge of the estimate each gap is longer than the one before."""
    plan = fed([(0, False, 0), (10, True, 10), (50, True, 50)])
    late = plan.estimated_end(level=0.9)
    assert late is not None
    now, polls, previous = 60.0, 0, 0.0
    while now < 3000:
        gap = plan.observe(now, True, 50)
        assert gap >= min(0.1 * (now - 50), AWARE.progress_max_delay) - 1e-9
        if now > late + previous:
            assert gap > previous or gap == AWARE.progress_max_delay
        previous = gap
        now += gap
        polls += 1
    assert polls <= 3000 / AWARE.progress_max_delay + 10


def test_progress_aware_off_ignores_progress() -> None:
    """Without progress_aware (backoff()) the delay is the exponential one whatever the
    progress says, and only the first sighting is kept."""
    policy = PollPolicy.backoff(jitter=0)
    plan = PollPlan(policy)
    delays = [plan.observe(t, True, p) for t, p in [(0, 0), (1, 40), (3, 80), (7, 99)]]
    assert delays == [policy.poll_delay(n) for n in range(1, 5)] == [2, 4, 8, 16]
    assert plan.estimated_end() is None
    assert plan.samples == (S(0, 0),)  # only the first sighting: the rest would cost memory


@pytest.mark.parametrize("r", [0.0, 1.0])
def test_jitter_spreads_progress_delays(r: float) -> None:
    """Progress-aware delays are spread by exactly ±jitter around the same base."""
    answers: list[Answer] = [(0, False, 0), (10, True, 10), (50, True, 50)]
    jittery = PollPolicy(jitter=0.2, initial_delay=1.0)
    base = fed(answers).observe(60, True, 60, lambda: 0.5)
    delay = fed(answers, jittery).observe(60, True, 60, lambda: r)
    assert delay == pytest.approx(base * (0.8 if r == 0 else 1.2))


answers_strategy = st.lists(
    st.tuples(st.booleans(), st.integers(0, 99), st.floats(0, 1)), min_size=1, max_size=60
)


@given(
    answers=answers_strategy,
    policy=st.sampled_from([AWARE, PollPolicy.efficient(), PollPolicy.interactive()]),
)
def test_delays_are_always_within_bounds(
    answers: list[tuple[bool, int, float]], policy: PollPolicy
) -> None:
    """Whatever the answers, each delay is finite and within [0, the larger cap]."""
    plan, now = PollPlan(policy), 0.0
    ceiling = max(policy.max_delay, policy.progress_max_delay)
    for processing, progress, r in answers:
        delay = plan.observe(now, processing, progress, lambda r=r: r)
        assert math.isfinite(delay)
        assert 0 <= delay <= ceiling
        now += delay


@given(answers=answers_strategy)
def test_a_delay_below_the_minimum_needs_a_new_progress_value(
    answers: list[tuple[bool, int, float]],
) -> None:
    """Only a poll aimed just past an estimated end comes sooner than the shortest gap, and
    there is at most one per change of progress: a task sitting on a value is never hammered."""
    plan, now, latest, short_since_change = PollPlan(AWARE), 0.0, None, 0
    for processing, progress, r in answers:
        if processing and progress != latest:
            latest, short_since_change = progress, 0
        delay = plan.observe(now, processing, progress, lambda r=r: r)
        short_since_change += delay < SHORTEST - 1e-9
        assert short_since_change <= 1, (now, processing, progress, delay)
        now += delay


@pytest.mark.parametrize(
    "kwargs",
    [
        {"progress_max_delay": 0.5, "initial_delay": 1},
        {"poll_cost": -1},
        {"poll_cost": math.nan},
        {"stall_timeout": 0},
        {"progress_aware": 1},
    ],
)
def test_invalid_progress_settings_are_refused(kwargs: dict[str, object]) -> None:
    """Progress settings are validated at construction."""
    with pytest.raises(InvalidArgumentError):
        PollPolicy(**kwargs)  # type: ignore[arg-type]


# --- the plan --------------------------------------------------------------------------


def test_plan_brackets_the_start_with_the_last_pending_poll() -> None:
    """Processing started after the last pending poll; the first value and the newest are kept
    with their first sightings."""
    plan = PollPlan(AWARE)
    plan.observe(0, False, 0)
    plan.observe(1, False, 0)
    plan.observe(3, True, 2)
    assert plan.started_after == 1
    assert plan.samples == (S(3, 2),)
    plan.observe(7, True, 2)  # the same value is kept with its first sighting
    plan.observe(9, True, 5)
    assert plan.samples == (S(3, 2), S(9, 5))
    plan.observe(12, True, 8)  # values in between go into the estimate, not the samples
    assert plan.samples == (S(3, 2), S(12, 8))
    assert plan.polls == 6


def test_progress_going_back_starts_the_estimate_afresh() -> None:
    """A restart (progress falls) voids what came before, the start bracket included."""
    plan = fed([(0, False, 0), (5, True, 10), (9, True, 30), (12, True, 50), (15, True, 20)])
    assert plan.samples == (S(15, 20),)
    assert plan.started_after is None
    assert plan.estimated_end() is None  # one value without a start bracket: no rate yet
    plan.observe(25, True, 40)
    assert plan.estimated_end() is not None


def test_observed_duration_is_the_middle_of_both_brackets() -> None:
    """Started between 0 s and 10 s, ended between 90 s and 100 s: 90 s of processing."""
    plan = fed([(0, False, 0), (10, True, 8), (50, True, 50), (90, True, 95)])
    assert plan.observed_duration(100) == pytest.approx(90)
    assert fed([(10, True, 8), (90, True, 95)]).observed_duration(100) is None  # start unknown


@pytest.mark.parametrize("duration", [10.0, 60.0, 600.0, 1800.0])
def test_steady_task_ends_are_noticed_soon_with_few_polls(duration: float) -> None:
    """A linear task is detected within a few seconds, with a handful of polls beyond one per
    progress_max_delay, far fewer than plain backoff on long tasks."""
    policy = PollPolicy(jitter=0)
    polls, lag = replay(policy, pending=3, duration=duration)
    plain_polls, _ = replay(PollPolicy.backoff(), pending=3, duration=duration)
    assert 0 <= lag <= 8
    assert polls <= duration / policy.progress_max_delay + 8
    if duration >= 600:
        assert polls * 2 <= plain_polls


@pytest.mark.parametrize("shape", ["ease-in", "ease-out", "ease-in-out"])
def test_curved_tasks_are_noticed_soon(shape: str) -> None:
    """Tasks that speed up or slow down are still noticed within a few seconds of their end."""
    polls, lag = replay(PollPolicy(jitter=0), pending=2, duration=300, shape=shape)
    assert 0 <= lag <= 8
    assert polls <= 14


def test_interactive_notices_a_short_task_within_a_second() -> None:
    """The interactive preset sees a 10 s task end well within a second, showing its progress."""
    polls, lag = replay(PollPolicy.interactive(jitter=0), pending=1, duration=10)
    assert lag < 1
    assert 6 <= polls <= 20


# --- an expected duration ---------------------------------------------------------------


def test_an_expected_duration_saves_polls() -> None:
    """Knowing a task takes about 600 s, a wait needs fewer polls for the same detection."""
    policy = PollPolicy.efficient(jitter=0)
    without, _ = replay(policy, pending=3, duration=600, shape="ease-in-out")
    expected = ExpectedDuration(seconds=600, spread=0.1)
    with_it, lag_with = replay(
        policy, pending=3, duration=600, shape="ease-in-out", expected=expected
    )
    assert with_it < without
    assert lag_with <= 8


@pytest.mark.parametrize("wrong", [60.0, 6000.0])
def test_a_wrong_expectation_is_dropped(wrong: float) -> None:
    """An expectation ten times off costs a few polls at most and does not stop the wait from
    seeing the end soon."""
    policy = PollPolicy.efficient(jitter=0)
    polls, lag = replay(policy, pending=3, duration=600, expected=ExpectedDuration(wrong, 0.1))
    without, _ = replay(policy, pending=3, duration=600)
    assert lag <= 12
    assert polls <= without + 5


def test_a_vague_expectation_is_ignored() -> None:
    """Durations of a kind that are not predictable (spread over 0.5) do not steer the wait."""
    plan = PollPlan(AWARE, expected=ExpectedDuration(100, spread=1.3))
    assert plan.expected is None
    sharp = ExpectedDuration(100, spread=0.2)
    plan.expected = sharp
    assert plan.expected == sharp


def test_an_expectation_gives_an_estimate_before_progress_moves() -> None:
    """At 0 %, the expected duration from the estimated start says when the end should come."""
    plan = fed([(0, False, 0), (10, True, 0)])
    assert plan.estimated_end() is None
    plan.expected = ExpectedDuration(200, spread=0.1)
    plan.observe(12, True, 0)
    assert plan.estimated_end() == pytest.approx(205, rel=0.05)


# --- a task known to be fresh ------------------------------------------------------------


def test_a_task_of_unknown_age_is_polled_at_once() -> None:
    """Without created_at the first poll is immediate: the task may have ended long ago."""
    assert PollPlan(AWARE).first_delay(now=50.0) == 0.0


def test_a_fresh_task_is_first_polled_when_it_may_have_started() -> None:
    """A task created at 100 s is first polled initial_delay after its creation (half its
    expected processing time if shorter), however late the wait starts; once polled, at once."""
    policy = PollPolicy(jitter=0)
    assert PollPlan(policy, created_at=100.0).first_delay(now=100.0) == 10.0
    assert PollPlan(policy, created_at=100.0).first_delay(now=104.0) == 6.0
    assert PollPlan(policy, created_at=100.0).first_delay(now=130.0) == 0.0
    quick = ExpectedDuration(seconds=8, spread=0.1)
    assert PollPlan(policy, expected=quick, created_at=100.0).first_delay(now=100.0) == 4.0
    plan = PollPlan(policy, created_at=100.0)
    plan.observe(110.0, False, 0)
    assert plan.first_delay(now=110.0) == 0.0


def test_a_fresh_task_counts_its_pending_time_from_its_creation() -> None:
    """Created at 0 and first seen processing at 10 s: processing started after 0 s, which
    brackets the start (an estimate from one value, a duration to learn), and a task seen
    pending waits in proportion to its age, not to the wait's."""
    plan = PollPlan(PollPolicy(jitter=0), created_at=0.0)
    plan.observe(10.0, True, 5)
    assert plan.started_after == 0.0
    assert plan.estimated_end() is not None
    plan.observe(90.0, True, 95)
    assert plan.observed_duration(100.0) == pytest.approx(90.0)  # (90 + 100) / 2 - (0 + 10) / 2
    pending = PollPlan(PollPolicy(jitter=0, factor=3), created_at=0.0)
    assert pending.observe(40.0, False, 0) == 80.0  # (factor - 1) * 40 s since creation


@pytest.mark.parametrize("created_at", [math.nan, math.inf, "0"])
def test_an_impossible_creation_time_is_refused(created_at: object) -> None:
    """created_at must be a finite time."""
    with pytest.raises(InvalidArgumentError):
        PollPlan(AWARE, created_at=created_at)  # type: ignore[arg-type]


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
    """On a steady 30-minute task the default (progress-aware) policy needs far fewer polls
    than plain backoff, and less lag."""
    script = TaskScript(pending_s=2, duration_s=1800)
    aware_polls, aware_lag = await polls_for(emu, clock, PollPolicy(jitter=0), script)
    plain_polls, plain_lag = await polls_for(emu, clock, PollPolicy.backoff(jitter=0), script)
    assert aware_polls * 2 <= plain_polls
    assert aware_lag < plain_lag
    assert aware_lag < 8


async def test_stall_is_reported_separately_from_the_deadline(
    emu: Emulator, clock: VirtualClock
) -> None:
    """A task stuck at one progress for stall_timeout raises TaskStalledError before the deadline."""
    script = TaskScript(pending_s=0, duration_s=10_000, stalls=(Stall(start=0.1, length=0.8),))
    task_id = emu.add_task(script)
    policy = PollPolicy.efficient(stall_timeout=600, timeout=7200)
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
