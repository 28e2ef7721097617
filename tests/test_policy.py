"""Polling and retry arithmetic: pure functions, pinned randomness, no clock."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from koodrive_tasks import InvalidArgumentError, PollPolicy

NAN = float("nan")
INF = float("inf")


def zero() -> float:
    return 0.0


def one() -> float:
    return 1.0


def half() -> float:
    return 0.5


# --- validation ---------------------------------------------------------------------------


def test_defaults_are_valid() -> None:
    """The default policy constructs, is progress-aware and has the documented values."""
    policy = PollPolicy()
    assert policy.progress_aware is True
    assert (policy.initial_delay, policy.factor, policy.max_delay) == (10.0, 2.5, 120.0)
    assert (policy.progress_max_delay, policy.poll_cost) == (120.0, 1.0)
    assert 0 <= policy.jitter <= 1
    assert policy.timeout == 3600.0
    assert policy.retry_after_max >= policy.retry_after_min


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay": -1},
        {"initial_delay": NAN},
        {"initial_delay": INF},
        {"initial_delay": "1"},
        {"factor": 0},
        {"factor": 0.5},
        {"factor": 0.999},
        {"factor": -2},
        {"factor": NAN},
        {"max_delay": -1},
        {"max_delay": 0.5, "initial_delay": 1.0},
        {"jitter": -0.01},
        {"jitter": 1.01},
        {"jitter": NAN},
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": NAN},
        {"timeout": "60"},
        {"retry_initial_delay": -0.1},
        {"retry_max_delay": -1},
        {"retry_initial_delay": 5, "retry_max_delay": 1},
        {"retry_after_min": -1},
        {"retry_after_max": -1},
        {"retry_after_min": 10, "retry_after_max": 5},
    ],
)
def test_invalid_values_rejected_at_construction(kwargs: dict[str, Any]) -> None:
    """Every invalid setting raises InvalidArgumentError (a ValueError) when the policy is built."""
    with pytest.raises(InvalidArgumentError):
        PollPolicy(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay": 0, "max_delay": 0},
        {"factor": 1},
        {"jitter": 0},
        {"jitter": 1},
        {"timeout": None},
        {"timeout": 0.001},
        {"retry_after_min": 3, "retry_after_max": 3},
    ],
)
def test_boundary_values_accepted(kwargs: dict[str, Any]) -> None:
    """Values on the edge of their range are accepted."""
    PollPolicy(**kwargs)


def test_policy_is_frozen() -> None:
    """A policy cannot be changed after construction."""
    policy = PollPolicy()
    with pytest.raises(AttributeError):
        policy.factor = 3.0  # type: ignore[misc]


# --- the exponential backoff ------------------------------------------------------------


def plain(initial: float, factor: float, maximum: float) -> PollPolicy:
    """A policy whose poll_delay is the bare exponential: no jitter."""
    return PollPolicy(
        initial_delay=initial,
        factor=factor,
        max_delay=maximum,
        jitter=0.0,
        progress_max_delay=max(300.0, maximum),
    )


@pytest.mark.parametrize(
    ("polls", "expected"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (6, 10.0), (0, 1.0), (-3, 1.0)],
)
def test_exponential_values(polls: int, expected: float) -> None:
    """initial * factor ** (polls - 1), capped at max_delay; polls <= 1 gives initial."""
    assert plain(1.0, 2.0, 10.0).poll_delay(polls) == expected


@pytest.mark.parametrize("polls", [10**3, 10**6, 10**12])
def test_exponential_never_overflows(polls: int) -> None:
    """A huge poll count gives the cap, not an OverflowError or inf."""
    assert plain(0.5, 2.0, 30.0).poll_delay(polls) == 30.0
    assert plain(1.0, 1.5, 30.0).poll_delay(polls) == 30.0


def test_exponential_tiny_initial_does_not_overflow() -> None:
    """A subnormal initial delay, which PollPolicy accepts, caps instead of overflowing."""
    policy = PollPolicy(initial_delay=5e-324, factor=10.0, max_delay=1.0, jitter=0.0)
    assert policy.poll_delay(400) == 1.0


def test_exponential_edge_cases() -> None:
    """factor 1 stays at initial; initial 0 stays 0; initial equal to the cap stays there."""
    assert plain(3.0, 1.0, 10.0).poll_delay(101) == 3.0
    assert plain(0.0, 2.0, 10.0).poll_delay(101) == 0.0
    assert plain(10.0, 2.0, 10.0).poll_delay(1) == 10.0
    assert plain(10.0, 2.0, 10.0).poll_delay(6) == 10.0


@given(
    st.integers(min_value=-5, max_value=10**9),
    # subnormal initials overflow: see test_exponential_tiny_initial_does_not_overflow
    st.one_of(st.just(0.0), st.floats(min_value=1e-9, max_value=1e6)),
    st.floats(min_value=1, max_value=100),
    st.floats(min_value=0, max_value=1e6),
)
def test_property_exponential_bounded(
    polls: int, initial: float, factor: float, headroom: float
) -> None:
    """The backoff is finite, non-negative and never above max_delay."""
    policy = plain(initial, factor, initial + headroom)
    value = policy.poll_delay(polls)
    assert math.isfinite(value)
    assert 0 <= value <= policy.max_delay


# --- poll_delay ---------------------------------------------------------------------------


def test_poll_delay_sequence_without_jitter() -> None:
    """With jitter 0, delays after 1, 2, 3 ... polls are initial * factor ** (n - 1), capped."""
    policy = PollPolicy(initial_delay=1.0, factor=2.0, max_delay=8.0, jitter=0.0)
    assert [policy.poll_delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]


def test_poll_delay_backoff_sequence() -> None:
    """The backoff() preset doubles from 2 s, capped at 30 s."""
    policy = PollPolicy.backoff(jitter=0.0)
    delays = [policy.poll_delay(n) for n in range(1, 12)]
    assert delays[:5] == [2.0, 4.0, 8.0, 16.0, 30.0]
    assert delays[-1] == 30.0
    assert delays == sorted(delays)


def test_poll_delay_jitter_bounds() -> None:
    """rand 0 gives base * (1 - jitter), rand 1 gives base * (1 + jitter), rand 0.5 the base."""
    policy = PollPolicy(initial_delay=10.0, factor=2.0, max_delay=100.0, jitter=0.2)
    assert policy.poll_delay(1, rand=zero) == pytest.approx(8.0)
    assert policy.poll_delay(1, rand=one) == pytest.approx(12.0)
    assert policy.poll_delay(1, rand=half) == pytest.approx(10.0)
    assert policy.poll_delay(2, rand=zero) == pytest.approx(16.0)


def test_poll_delay_jitter_never_exceeds_max() -> None:
    """At the cap, upward jitter is clipped to max_delay."""
    policy = PollPolicy(initial_delay=10.0, factor=2.0, max_delay=30.0, jitter=0.5)
    assert policy.poll_delay(50, rand=one) == 30.0
    assert policy.poll_delay(50, rand=zero) == pytest.approx(15.0)


def test_poll_delay_full_jitter_can_reach_zero() -> None:
    """jitter 1 with rand 0 gives 0, never negative."""
    policy = PollPolicy(jitter=1.0)
    assert policy.poll_delay(1, rand=zero) == 0.0


@given(
    st.one_of(st.just(0.0), st.floats(min_value=1e-9, max_value=100)),
    st.floats(min_value=1, max_value=10),
    st.floats(min_value=0, max_value=1000),
    st.floats(min_value=0, max_value=1),
    st.integers(min_value=1, max_value=10**7),
    st.floats(min_value=0, max_value=1),
)
def test_property_poll_delay_within_bounds(
    initial: float, factor: float, extra: float, jitter: float, polls: int, r: float
) -> None:
    """poll_delay is always within [0, max_delay]."""
    policy = PollPolicy(
        initial_delay=initial, factor=factor, max_delay=initial + extra, jitter=jitter
    )
    delay = policy.poll_delay(polls, rand=lambda: r)
    assert 0 <= delay <= policy.max_delay


def test_poll_delay_default_random_within_bounds() -> None:
    """With the real random source, delays stay within ±jitter of the base."""
    policy = PollPolicy(initial_delay=10.0, factor=1.0, max_delay=10.0, jitter=0.1)
    for _ in range(200):
        assert 9.0 <= policy.poll_delay(1) <= 10.0


# --- retry_delay --------------------------------------------------------------------------


def test_retry_delay_full_jitter_bounds() -> None:
    """Without Retry-After: full jitter in [0, retry_initial * 2 ** (n - 1)], capped."""
    policy = PollPolicy(retry_initial_delay=0.5, retry_max_delay=4.0)
    assert [policy.retry_delay(n, rand=one) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(policy.retry_delay(n, rand=zero) == 0.0 for n in range(1, 7))
    assert policy.retry_delay(3, rand=half) == 1.0


def test_retry_delay_default_random_within_bounds() -> None:
    """With the real random source, the full-jitter delay stays in [0, ceiling]."""
    policy = PollPolicy(retry_initial_delay=0.5, retry_max_delay=4.0)
    for n in (1, 2, 10, 10**6):
        for _ in range(50):
            assert 0 <= policy.retry_delay(n) <= min(4.0, 0.5 * 2.0 ** min(n - 1, 10))


@pytest.mark.parametrize(
    ("retry_after", "low"),
    [
        (10.0, 10.0),
        (0.0, 0.5),
        (-5.0, 0.5),
        (0.1, 0.5),
        (500.0, 120.0),
        (INF, 120.0),
        (120.0, 120.0),
    ],
)
def test_retry_after_clamped_and_stretched(retry_after: float, low: float) -> None:
    """Retry-After wins, clamped to [retry_after_min, retry_after_max], stretched by 0 to 20 %."""
    policy = PollPolicy(retry_after_min=0.5, retry_after_max=120.0)
    assert policy.retry_delay(1, retry_after, rand=zero) == pytest.approx(low)
    assert policy.retry_delay(1, retry_after, rand=one) == pytest.approx(low * 1.2)
    for _ in range(50):
        assert low <= policy.retry_delay(7, retry_after) <= low * 1.2


def test_retry_after_ignores_failure_count() -> None:
    """With Retry-After the number of failures does not matter."""
    policy = PollPolicy()
    assert policy.retry_delay(1, 3.0, rand=zero) == policy.retry_delay(10**6, 3.0, rand=zero) == 3.0


@given(
    st.integers(min_value=1, max_value=10**9),
    st.one_of(st.none(), st.floats(allow_nan=False)),
    st.floats(min_value=0, max_value=1),
)
def test_property_retry_delay_bounded(failures: int, retry_after: float | None, r: float) -> None:
    """retry_delay is finite and never above max(retry_max_delay, 1.2 * retry_after_max)."""
    policy = PollPolicy()
    delay = policy.retry_delay(failures, retry_after, rand=lambda: r)
    assert math.isfinite(delay)
    assert 0 <= delay <= max(policy.retry_max_delay, 1.2 * policy.retry_after_max)


# --- presets ---------------------------------------------------------------------------


def test_presets_are_progress_aware_but_backoff() -> None:
    """The default, efficient() and interactive() schedule from progress; backoff() does not."""
    assert PollPolicy().progress_aware is True
    assert PollPolicy.efficient().progress_aware is True
    assert PollPolicy.interactive().progress_aware is True
    assert PollPolicy.backoff().progress_aware is False


def test_efficient_differs_from_the_default_only_by_a_higher_poll_cost() -> None:
    """efficient() is the default with a poll worth more seconds of lag."""
    assert PollPolicy.efficient() == PollPolicy(poll_cost=PollPolicy.efficient().poll_cost)
    assert PollPolicy.efficient().poll_cost > PollPolicy().poll_cost


def test_interactive_polls_faster_and_aims_closer() -> None:
    """The interactive preset looks sooner, more often and values a poll less than the default."""
    ui, worker = PollPolicy.interactive(), PollPolicy()
    assert ui.initial_delay < 1 < worker.initial_delay
    assert ui.progress_max_delay <= 5
    assert ui.poll_cost < worker.poll_cost


def test_presets_take_changes() -> None:
    """A preset's fields can be changed in the call, and the result is still validated."""
    policy = PollPolicy.efficient(timeout=60, stall_timeout=300)
    assert (policy.timeout, policy.stall_timeout, policy.progress_aware) == (60, 300, True)
    assert PollPolicy.interactive(jitter=0).jitter == 0
    assert PollPolicy.backoff(initial_delay=1).poll_delay(2, rand=half) == 2.0
    with pytest.raises(InvalidArgumentError):
        PollPolicy.interactive(initial_delay=10)  # above the preset's max_delay
