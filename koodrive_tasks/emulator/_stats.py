"""Counters the emulator keeps, so tests and benchmarks can see what the client sent."""

from __future__ import annotations

from collections import Counter

import attrs


@attrs.define
class EmulatorStats:
    """What the emulator has seen since it started, or since ``emu.stats.reset()``.

    Attributes:
        requests: Requests received per route: ``"create"``, ``"detail"`` and
            ``"download"`` (share tasks), ``"job_create"``, ``"job_detail"``,
            ``"job_list"`` and ``"job_cancel"`` (batch jobs). The emulator-only
            ``/_emulator/stats`` route is not counted.
        faults: Faults injected per kind (the values of :class:`FaultKind`).
        polls: Detail requests per task or job id, faulted ones included. An entry
            goes when its task is purged; :attr:`detail_polls` keeps the total.
        auth_failures: Requests rejected with HTTP 401.
        tasks_created: Share tasks and jobs created, by HTTP, :meth:`Emulator.add_task`
            or :meth:`Emulator.add_job`.
        tasks_purged: Ended tasks and jobs dropped after ``retention_s``.

    """

    requests: Counter[str] = attrs.field(factory=Counter)
    faults: Counter[str] = attrs.field(factory=Counter)
    polls: Counter[str] = attrs.field(factory=Counter)
    auth_failures: int = 0
    tasks_created: int = 0
    tasks_purged: int = 0

    @property
    def detail_polls(self) -> int:
        """Detail requests received in total, share tasks and jobs (a benchmark's "polls sent")."""
        return self.requests["detail"] + self.requests["job_detail"]

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

    def to_dict(self) -> dict[str, object]:
        """The counters as JSON-ready values (what ``GET /_emulator/stats`` answers).

        Per-task poll counts are summarised as ``polled_tasks`` (how many ids were
        polled), since 10,000 tasks would make the answer large.
        """
        return {
            "requests": dict(sorted(self.requests.items())),
            "faults": dict(sorted(self.faults.items())),
            "detail_polls": self.detail_polls,
            "faults_injected": self.faults_injected,
            "polled_tasks": len(self.polls),
            "auth_failures": self.auth_failures,
            "tasks_created": self.tasks_created,
            "tasks_purged": self.tasks_purged,
        }
