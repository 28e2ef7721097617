"""Counters the emulator keeps, so tests and benchmarks can see what the client sent."""

from __future__ import annotations

from collections import Counter

import attrs


@attrs.define
class EmulatorStats:
    """What the emulator has seen since it started (or since :meth:`reset`).

    Attributes:
        requests: Requests received per route: ``"create"``, ``"detail"``, ``"download"``.
        faults: Faults injected per kind (the values of :class:`FaultKind`).
        polls: Detail requests per task id, faulted ones included. An entry goes
            when its task is purged; :attr:`detail_polls` keeps the total.
        auth_failures: Requests rejected with HTTP 401.
        tasks_created: Tasks created, by HTTP or :meth:`Emulator.add_task`.
        tasks_purged: Ended tasks dropped after ``retention_s``.

    """

    requests: Counter[str] = attrs.field(factory=Counter)
    faults: Counter[str] = attrs.field(factory=Counter)
    polls: Counter[str] = attrs.field(factory=Counter)
    auth_failures: int = 0
    tasks_created: int = 0
    tasks_purged: int = 0

    @property
    def detail_polls(self) -> int:
        """Detail requests received in total (the "polls sent" of a benchmark)."""
        return self.requests["detail"]

    @property
    def faults_injected(self) -> int:
        """Faults injected in total."""
        return self.faults.total()

    def reset(self) -> None:
        """Zero every counter (the tasks themselves stay)."""
        self.requests.clear()
        self.faults.clear()
        self.polls.clear()
        self.auth_failures = 0
        self.tasks_created = 0
        self.tasks_purged = 0
