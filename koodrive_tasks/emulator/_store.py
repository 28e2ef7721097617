"""The tasks and jobs the emulator holds: O(1) lookup, bounded size, lazy purge of ended ones."""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from ._tasks import Lifecycle


class TaskStore:
    """Share tasks and jobs by id, forgetting each one ``retention_s`` after it ends.

    Both kinds share one store, so ``max_tasks`` bounds them together.

    Purging is lazy: a lookup drops an expired task on sight, and :meth:`sweep`
    pops a heap of expiry times, so no timer runs and a sweep costs only the
    tasks it removes.

    Args:
        retention_s: How long an ended task stays queryable.
        max_tasks: How many tasks (live or ended, not yet purged) may be held.

    """

    def __init__(self, retention_s: float, max_tasks: int) -> None:
        self.retention_s = retention_s
        self.max_tasks = max_tasks
        self._tasks: dict[str, Lifecycle] = {}
        # (expiry, task id); a cancel pushes an earlier entry and leaves the old one stale.
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    @property
    def full(self) -> bool:
        """Whether no task can be added."""
        return len(self._tasks) >= self.max_tasks

    def _expiry(self, task: Lifecycle) -> float:
        return task.created_at + task.ends_after_s + self.retention_s

    def add(self, task: Lifecycle) -> None:
        """Hold ``task`` (the caller checks :attr:`full` first)."""
        self._tasks[task.task_id] = task
        heapq.heappush(self._expiries, (self._expiry(task), task.task_id))

    def ended_earlier(self, task: Lifecycle) -> None:
        """Record that ``task`` now ends earlier than planned (it was canceled)."""
        heapq.heappush(self._expiries, (self._expiry(task), task.task_id))

    def get(self, task_id: str, now: float) -> Lifecycle | None:
        """Find a task; ``None`` if unknown or already past its retention."""
        task = self._tasks.get(task_id)
        if task is not None and self._expiry(task) <= now:
            del self._tasks[task_id]
            return None
        return task

    def live(self, now: float) -> Iterator[Lifecycle]:
        """Every task not yet past its retention, oldest first (the order they were added)."""
        return (task for task in self._tasks.values() if self._expiry(task) > now)

    def sweep(self, now: float) -> list[str]:
        """Drop every task past its retention.

        Returns:
            The ids of the tasks dropped by this sweep.

        """
        dropped = []
        heap = self._expiries
        while heap and heap[0][0] <= now:
            _, task_id = heapq.heappop(heap)
            task = self._tasks.get(task_id)
            if task is not None and self._expiry(task) <= now:
                del self._tasks[task_id]
                dropped.append(task_id)
        return dropped
