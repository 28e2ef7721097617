"""The emulated service's state and rules, apart from HTTP: share tasks and batch jobs."""

from __future__ import annotations

import collections
import random
import secrets

from .._models import TaskType
from ._clock import TimeSource
from ._faults import Fault, FaultPlan
from ._jobs import Job, JobRequest
from ._scripts import FileResultsForm, RandomScripts, Shape, TaskScript
from ._stats import EmulatorStats
from ._store import TaskStore
from ._tasks import Lifecycle, Task, TaskSnapshot


class TaskService:
    """Share tasks, batch jobs, scripts, faults and counters of one emulator.

    Args:
        shape: Default response shape.
        file_results: Default ``taskInfos`` form in shape B.
        clock: The time source, read at each request.
        default_script: Script for tasks when none is queued and ``random_scripts`` is unset.
        random_scripts: Distribution to draw scripts from, or ``None``.
        fault_plan: Random faults.
        seed: Seeds every random choice (scripts, faults, task ids); ``None`` for fresh.
        retention_s: How long ended tasks stay queryable.
        max_tasks: How many tasks may be held at once.

    """

    def __init__(
        self,
        *,
        shape: Shape,
        file_results: FileResultsForm,
        clock: TimeSource,
        default_script: TaskScript,
        random_scripts: RandomScripts | None,
        fault_plan: FaultPlan,
        seed: int | None,
        retention_s: float,
        max_tasks: int,
    ) -> None:
        self.shape: Shape = shape
        self.file_results: FileResultsForm = file_results
        self.clock = clock
        self.default_script = default_script
        self.random_scripts = random_scripts
        self.fault_plan = fault_plan
        self.store = TaskStore(retention_s, max_tasks)
        self.stats = EmulatorStats()
        # Separate streams, so drawing a fault never changes which script comes next.
        self.script_rng = random.Random(f"{seed}-scripts") if seed is not None else random.Random()
        self.fault_rng = random.Random(f"{seed}-faults") if seed is not None else random.Random()
        self._id_rng = random.Random(f"{seed}-ids") if seed is not None else None
        self.queued_scripts: collections.deque[TaskScript] = collections.deque()
        self.create_faults: collections.deque[Fault | None] = collections.deque()

    def new_task_id(self) -> str:
        """Make an opaque task id; reproducible when the emulator is seeded."""
        if self._id_rng is not None:
            return f"{self._id_rng.getrandbits(96):024x}"
        return secrets.token_hex(12)

    def new_job_id(self) -> str:
        """Make a job id: 19 decimal digits, as the reference's examples show them."""
        span = 9 * 10**18
        offset = (
            self._id_rng.randrange(span) if self._id_rng is not None else secrets.randbelow(span)
        )
        return str(10**18 + offset)

    def next_script(self) -> TaskScript:
        """Choose the script for the next created task: queued, else drawn, else the default."""
        if self.queued_scripts:
            return self.queued_scripts.popleft()
        if self.random_scripts is not None:
            return self.random_scripts.draw(self.script_rng)
        return self.default_script

    def sweep(self) -> None:
        """Purge tasks past their retention (amortised: called on each create)."""
        for task_id in self.store.sweep(self.clock.monotonic()):
            self.stats.polls.pop(task_id, None)
            self.stats.tasks_purged += 1

    def create(
        self,
        *,
        task_type: TaskType,
        share_id: str,
        container_id: str,
        user_id: str,
        file_ids: tuple[str, ...],
        zip_name: str = "",
        target: tuple[str, str] | None = None,
        script: TaskScript | None = None,
    ) -> Task | None:
        """Create a task, or return ``None`` when ``max_tasks`` are already held.

        Args:
            task_type: Package download or dump.
            share_id: The share the task belongs to.
            container_id: The source space.
            user_id: The owner.
            file_ids: The files.
            zip_name: The package name (package downloads).
            target: ``(fileId, containerId)`` of the destination folder (dumps).
            script: The task's script; :meth:`next_script` when ``None``.

        """
        self.sweep()
        if self.store.full:
            return None
        if script is None:
            script = self.next_script()
        task = Task(
            task_id=self.new_task_id(),
            task_type=task_type,
            share_id=share_id,
            container_id=container_id,
            user_id=user_id,
            file_ids=file_ids,
            script=script,
            created_at=self.clock.monotonic(),
            created_wall=self.clock.now(),
            zip_name=zip_name,
            target=target,
        )
        self.store.add(task)
        self.stats.tasks_created += 1
        return task

    def create_job(
        self, *, user_id: str, request: JobRequest, script: TaskScript | None = None
    ) -> Job | None:
        """Create a batch job, or return ``None`` when ``max_tasks`` are already held.

        Args:
            user_id: The owner.
            request: The checked create body.
            script: The job's script; :meth:`next_script` when ``None``.

        """
        self.sweep()
        if self.store.full:
            return None
        job = Job(
            task_id=self.new_job_id(),
            user_id=user_id,
            request=request,
            script=script if script is not None else self.next_script(),
            created_at=self.clock.monotonic(),
            created_wall=self.clock.now(),
        )
        self.store.add(job)
        self.stats.tasks_created += 1
        return job

    def jobs_of(self, user_id: str) -> list[Job]:
        """The user's jobs not yet purged, newest first (the order the list answers in)."""
        jobs = [
            task
            for task in self.store.live(self.clock.monotonic())
            if isinstance(task, Job) and task.user_id == user_id
        ]
        jobs.reverse()
        return jobs

    def lookup(self, task_id: str) -> Lifecycle | None:
        """Find a task or job; ``None`` if unknown or purged."""
        task = self.store.get(task_id, self.clock.monotonic())
        if task is None:
            self.stats.polls.pop(task_id, None)
        return task

    def cancel(self, task_id: str) -> bool:
        """Cancel a live task now.

        Returns:
            ``True`` if canceled, ``False`` if it had already ended.

        Raises:
            KeyError: If no such task is held.

        """
        task = self.lookup(task_id)
        if task is None:
            raise KeyError(task_id)
        canceled = task.cancel(self.clock.monotonic())
        if canceled:
            self.store.ended_earlier(task)
        return canceled

    def snapshot(self, task_id: str) -> TaskSnapshot:
        """Return the state of a task now.

        Raises:
            KeyError: If no such task is held.

        """
        task = self.lookup(task_id)
        if task is None:
            raise KeyError(task_id)
        return task.snapshot(self.clock.monotonic())

    def detail_fault(self, task: Lifecycle | None) -> Fault | None:
        """Count a detail poll and choose its fault: scripted for the task, else random."""
        if task is not None:
            polls = self.stats.polls
            index = polls[task.task_id]
            polls[task.task_id] = index + 1
            scripted = task.script.faults
            if index < len(scripted):
                return scripted[index]
        return self.fault_plan.pick(self.fault_rng)

    def create_fault(self) -> Fault | None:
        """Choose the fault for a create request: queued, else random if the plan covers creates."""
        if self.create_faults:
            return self.create_faults.popleft()
        return self.write_fault()

    def write_fault(self) -> Fault | None:
        """Choose the random fault of a request that changes state, if the plan covers those."""
        if self.fault_plan.on_create:
            return self.fault_plan.pick(self.fault_rng)
        return None

    def read_fault(self) -> Fault | None:
        """Choose the random fault of a read that is not a detail poll (a job list)."""
        return self.fault_plan.pick(self.fault_rng)
