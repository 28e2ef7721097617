"""What a client did and is doing: counters, live gauges, and the events passed to hooks."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Protocol, TypeVar

import attrs

logger = logging.getLogger("koodrive_tasks")
_E = TypeVar("_E")


class Gauges(Protocol):
    """Live figures a client reads from the parts that keep them (one home each)."""

    @property
    def in_flight(self) -> int:
        """Requests holding one of the ``max_in_flight`` places."""
        ...

    @property
    def queued(self) -> int:
        """Requests waiting for their turn under the rate, a pause or ``max_in_flight``."""
        ...

    @property
    def streams(self) -> int:
        """Tasks being polled now (one stream per task, however many waits share it)."""
        ...


class _NoGauges:
    in_flight = queued = streams = 0


@attrs.define
class ClientStats:
    """What a client has done, for dashboards and tests. Never holds a secret.

    Attributes:
        requests: HTTP requests sent (polls, creates, queries, retries, auth refreshes).
        polls: Task-detail requests sent by waits and one-shot queries.
        retries: Transient failures that were retried.
        rate_limited: HTTP 429 answers.
        pauses: Client-wide pauses started by throttling.
        errors: Errors met, by class name.
        tasks_ended: Tasks a poll saw end (completed or canceled), counted once per
            task stream: waits that share a stream share its count, and a wait that
            failed or timed out saw no end. So it is at most the number of outcomes.
        detection_lag_bound: Sum, over ended tasks that a poll had seen running,
            of the time between the last poll that saw the task running and the poll
            that saw it end: an upper bound of how late each end was noticed.
        lag_samples: How many ended tasks that sum covers.
    """

    requests: int = 0
    polls: int = 0
    retries: int = 0
    rate_limited: int = 0
    pauses: int = 0
    errors: Counter[str] = attrs.field(factory=Counter)
    tasks_ended: int = 0
    detection_lag_bound: float = 0.0
    lag_samples: int = 0
    _gauges: Gauges = attrs.field(default=_NoGauges(), repr=False, eq=False, alias="gauges")

    @property
    def in_flight(self) -> int:
        """Requests in flight now."""
        return self._gauges.in_flight

    @property
    def queued(self) -> int:
        """Requests waiting now for their turn (rate, throttling pause, ``max_in_flight``)."""
        return self._gauges.queued

    @property
    def streams(self) -> int:
        """Tasks being polled now."""
        return self._gauges.streams

    @property
    def mean_detection_lag_bound(self) -> float | None:
        """Mean upper bound of the detection lag, or ``None`` before any sample."""
        return self.detection_lag_bound / self.lag_samples if self.lag_samples else None


@attrs.frozen
class RequestEvent:
    """Passed to ``on_request`` after every HTTP request.

    Attributes:
        operation: What was attempted (``"query task …"``, ``"create share task"``).
        http_status: The answer's status, or ``None`` when none came.
        seconds: How long the request took (client clock).
        trace_id: The ``X-Traceid`` sent.
        error: The error's class name, or ``None`` on success.
    """

    operation: str
    http_status: int | None
    seconds: float
    trace_id: str
    error: str | None


@attrs.frozen
class RetryEvent:
    """Passed to ``on_retry`` whenever a transient failure is going to be retried.

    Attributes:
        task_id: The task being polled, or ``None`` for a create.
        error: The error's class name.
        attempt: Consecutive failures so far.
        delay: Seconds until the next attempt.
    """

    task_id: str | None
    error: str
    attempt: int
    delay: float


def call_hook(hook: Callable[[_E], None] | None, event: _E) -> None:
    """Call an observer; its failure is logged, never allowed to break a wait."""
    if hook is None:
        return
    try:
        hook(event)
    except Exception:
        logger.exception("an on_request/on_retry hook raised; ignoring it")
