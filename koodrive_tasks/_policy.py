"""When to poll and when to retry: pure arithmetic, no clock and no network.

Every function here takes the random source as an argument, so tests pin jitter.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import attrs
import backoff

from ._validate import fraction, non_negative, positive_or_none
from .exceptions import InvalidArgumentError

DEFAULT_TIMEOUT = 3600.0
"""A wait gives up after one hour unless told otherwise: tasks of a few GB finish well within."""

Random = Callable[[], float]


def exponential(attempt: int, initial: float, factor: float, maximum: float) -> float:
    """``initial * factor ** attempt``, capped at ``maximum``, without overflow.

    ``backoff.expo`` computes ``base ** n`` before capping and overflows a float after
    about a thousand steps, which a day-long wait reaches; this caps in log space.
    """
    if attempt <= 0 or factor == 1 or initial == 0:
        return min(initial, maximum)
    if initial >= maximum or attempt * math.log(factor) >= math.log(maximum) - math.log(initial):
        return maximum
    return initial * factor**attempt


@attrs.frozen
class PollPolicy:
    """How a wait polls one task.

    The first poll is immediate. After the n-th poll the wait sleeps
    ``min(max_delay, initial_delay * factor ** n)``, spread by ``±jitter`` so that
    waits started together drift apart. The whole wait ends at ``timeout``.

    Attributes:
        initial_delay: Seconds between the first and second poll.
        factor: Growth of the delay per poll (>= 1).
        max_delay: Upper bound of any delay between polls (>= initial_delay).
        jitter: Relative spread of each delay, 0 to 1 (0.1 = ±10 %).
        timeout: Seconds after which the wait raises ``WaitTimeoutError``;
            ``None`` waits for as long as it takes.
        retry_initial_delay: First delay after a transient failure (full jitter).
        retry_max_delay: Upper bound of a delay after transient failures.
        retry_after_min: Floor applied to a server's ``Retry-After``.
        retry_after_max: Ceiling applied to a server's ``Retry-After``: a server asking
            for a day must not wedge a worker.
    """

    initial_delay: float = attrs.field(default=1.0, validator=non_negative)
    factor: float = attrs.field(default=1.5, validator=non_negative)
    max_delay: float = attrs.field(default=30.0, validator=non_negative)
    jitter: float = attrs.field(default=0.1, validator=fraction)
    timeout: float | None = attrs.field(default=DEFAULT_TIMEOUT, validator=positive_or_none)
    retry_initial_delay: float = attrs.field(default=0.5, validator=non_negative)
    retry_max_delay: float = attrs.field(default=30.0, validator=non_negative)
    retry_after_min: float = attrs.field(default=0.5, validator=non_negative)
    retry_after_max: float = attrs.field(default=120.0, validator=non_negative)

    def __attrs_post_init__(self) -> None:
        if self.factor < 1:
            raise InvalidArgumentError(f"factor must be >= 1, got {self.factor!r}")
        if self.max_delay < self.initial_delay:
            raise InvalidArgumentError(
                f"max_delay ({self.max_delay}) must be >= initial_delay ({self.initial_delay})"
            )
        if self.retry_max_delay < self.retry_initial_delay:
            raise InvalidArgumentError(
                f"retry_max_delay ({self.retry_max_delay}) must be >= "
                f"retry_initial_delay ({self.retry_initial_delay})"
            )
        if self.retry_after_max < self.retry_after_min:
            raise InvalidArgumentError(
                f"retry_after_max ({self.retry_after_max}) must be >= "
                f"retry_after_min ({self.retry_after_min})"
            )

    def poll_delay(self, polls: int, rand: Random = random.random) -> float:
        """Seconds to sleep after ``polls`` successful polls (1 after the first)."""
        base = exponential(polls - 1, self.initial_delay, self.factor, self.max_delay)
        spread = base * self.jitter * (2 * rand() - 1)
        return max(0.0, min(self.max_delay, base + spread))

    def retry_delay(
        self, failures: int, retry_after: float | None = None, rand: Random = random.random
    ) -> float:
        """Seconds to sleep after ``failures`` consecutive transient failures (>= 1).

        A server's ``Retry-After`` wins, clamped to ``[retry_after_min, retry_after_max]``
        and then stretched by up to 20 % so that throttled clients do not return in
        lockstep (so the longest wait is ``1.2 * retry_after_max``).
        Otherwise capped exponential backoff with full jitter.
        """
        if retry_after is not None:
            clamped = min(self.retry_after_max, max(self.retry_after_min, retry_after))
            return clamped * (1 + 0.2 * rand())
        ceiling = exponential(failures - 1, self.retry_initial_delay, 2.0, self.retry_max_delay)
        return _full_jitter(ceiling, rand)


def _full_jitter(value: float, rand: Random) -> float:
    # backoff.full_jitter draws from the global random module; tests inject `rand`.
    if rand is random.random:
        return backoff.full_jitter(value)
    return value * rand()


def clip_to_deadline(delay: float, now: float, deadline: float | None) -> float:
    """Shorten ``delay`` so that a sleep starting at ``now`` never passes ``deadline``."""
    if deadline is None:
        return delay
    return max(0.0, min(delay, deadline - now))
