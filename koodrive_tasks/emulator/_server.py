"""The :class:`Emulator` context manager and :func:`serve`."""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType

from aiohttp import web

from .._models import TaskType
from ._app import EmulatorApp
from ._auth import AppCredential, Authenticator
from ._clock import SystemClock, TimeSource
from ._download import DownloadSigner
from ._faults import PERMANENT_FAULTS, TRANSIENT_FAULTS, Fault, FaultPlan
from ._http import InvalidRequest
from ._jobs import parse_create
from ._scripts import FileResultsForm, RandomScripts, Shape, TaskScript
from ._service import TaskService
from ._stats import EmulatorStats
from ._tasks import TaskSnapshot


class Emulator:
    """A local KooDrive service for share tasks and batch jobs, for tests, demos and benchmarks.

    ``async with Emulator(shape="B", seed=1) as emu:`` serves on ``emu.url`` until the
    block ends. Task state is computed from ``clock`` at each request, so a
    :class:`koodrive_tasks.testing.VirtualClock` drives hours of task time instantly
    and 10,000 tasks cost only their records.

    Args:
        shape: ``"A"`` (``code`` ``"0"``, ``taskInfo``) or ``"B"`` (``code`` ``0``,
            ``jobInfo`` and ``taskInfos``); a task's script may override it. Job
            answers keep their one documented layout and take only the ``code`` type.
        file_results: How shape B renders ``taskInfos``: ``"list"`` or ``"object"``.
        seed: Seeds scripts drawn from ``random_scripts``, random faults and task ids.
        clock: A :class:`koodrive_tasks.Clock` (only ``monotonic()`` and ``now()`` are
            read): monotonic time drives task life cycles, token expiry and retention;
            wall time the ``X-Date`` checks, timestamps, ``Date`` headers and link expiry.
            Real time by default. Pass the client's clock to share virtual time.
        script: The script of created tasks and jobs when none is queued and
            ``random_scripts`` is unset (default: ``TaskScript()``, 1 s pending then 10 s processing).
        random_scripts: Draw each created task's and job's script from this distribution.
        fault_rate: Probability of a random transient fault on each detail or job list
            request (a shortcut for ``faults=FaultPlan(rate=fault_rate)``).
        faults: The random fault plan; overrides ``fault_rate``.
        retention_s: How long an ended task or job stays queryable before it is purged.
        max_tasks: How many share tasks and jobs, together, may be held; a create beyond
            it gets HTTP 400 with code ``13000311`` (insufficient space), since they
            fill the space.
        token: The bearer token to accept (generated when ``None``).
        app_id: The app id to accept (generated when ``None``).
        app_secret: That app's secret (generated when ``None``).
        user_id: The user of ``token`` and ``app_id`` (generated when ``None``).
        tokens: More accepted tokens, each mapped to its user id.
        apps: More accepted apps, each mapped to its credential.
        token_ttl_s: Idle seconds before a token expires (``None``: never).
        max_skew_s: How far ``X-Date`` may lie from ``clock.now()``, either way.
        download_ttl_s: How long a package link stays valid.
        host: The interface to listen on.
        port: The port; ``0`` picks a free one.

    """

    def __init__(
        self,
        *,
        shape: Shape = "B",
        file_results: FileResultsForm = "list",
        seed: int | None = None,
        clock: TimeSource | None = None,
        script: TaskScript | None = None,
        random_scripts: RandomScripts | None = None,
        fault_rate: float = 0.0,
        faults: FaultPlan | None = None,
        retention_s: float = 3600.0,
        max_tasks: int = 100_000,
        token: str | None = None,
        app_id: str | None = None,
        app_secret: str | None = None,
        user_id: str | None = None,
        tokens: Mapping[str, str] | None = None,
        apps: Mapping[str, AppCredential] | None = None,
        token_ttl_s: float | None = None,
        max_skew_s: float = 900.0,
        download_ttl_s: float = 300.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if shape not in ("A", "B"):
            raise ValueError(f"shape must be 'A' or 'B', not {shape!r}")
        if file_results not in ("list", "object"):
            raise ValueError(f"file_results must be 'list' or 'object', not {file_results!r}")
        self.user_id = user_id or f"user-{secrets.token_hex(6)}"
        self.token = token or secrets.token_urlsafe(32)
        self.app_id = app_id or f"app-{secrets.token_hex(8)}"
        self.app_secret = app_secret or secrets.token_hex(32)
        clock = clock if clock is not None else SystemClock()
        self.service = TaskService(
            shape=shape,
            file_results=file_results,
            clock=clock,
            default_script=script or TaskScript(),
            random_scripts=random_scripts,
            fault_plan=faults if faults is not None else FaultPlan(rate=fault_rate),
            seed=seed,
            retention_s=retention_s,
            max_tasks=max_tasks,
        )
        auth = Authenticator(
            {self.token: self.user_id, **(tokens or {})},
            {self.app_id: AppCredential(self.app_secret, self.user_id), **(apps or {})},
            clock=clock,
            max_skew_s=max_skew_s,
            token_ttl_s=token_ttl_s,
        )
        self.app: web.Application = EmulatorApp(
            self.service, auth, DownloadSigner(secrets.token_bytes(32)), download_ttl_s
        ).build()
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    def __repr__(self) -> str:
        # Credentials stay out of the repr.
        return f"<Emulator url={self._url!r} tasks={len(self.service.store)}>"

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash.

        Raises:
            RuntimeError: If the emulator is not serving.

        """
        if self._url is None:
            raise RuntimeError("the emulator is not serving; use 'async with Emulator() as emu'")
        return self._url

    @property
    def stats(self) -> EmulatorStats:
        """Counters of requests, faults and polls."""
        return self.service.stats

    @property
    def task_count(self) -> int:
        """How many share tasks and jobs are held (ended ones included until purged)."""
        return len(self.service.store)

    async def start(self) -> None:
        """Start serving (``async with`` calls this)."""
        # No access log: it would add a line per poll, and nothing there must show credentials.
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        host = f"[{host}]" if ":" in host else host
        self._url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Stop serving and close every connection (``async with`` calls this)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            self._url = None
            await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def queue_script(self, *scripts: TaskScript) -> None:
        """Use these scripts, in order, for the next tasks or jobs created over HTTP."""
        self.service.queued_scripts.extend(scripts)

    def fail_next_create(self, *faults: Fault | None) -> None:
        """Inject these faults, in order, into the next share-task or job creates (``None``: none).

        A faulted create creates nothing.
        """
        self.service.create_faults.extend(faults)

    def add_task(
        self,
        script: TaskScript | None = None,
        *,
        file_ids: Iterable[str] = ("file-1",),
        task_type: TaskType | int = TaskType.PACKAGE_DOWNLOAD,
        share_id: str = "share-1",
        container_id: str = "container-1",
        zip_name: str = "package.zip",
        user_id: str | None = None,
    ) -> str:
        """Create a task directly, as if a create request had succeeded.

        Args:
            script: Its script; the next queued, drawn or default one when ``None``.
            file_ids: Its files.
            task_type: Package download (1) or dump (2).
            share_id: The share to query it with.
            container_id: Its source space.
            zip_name: The package name.
            user_id: Its owner (``emu.user_id`` by default).

        Returns:
            The new task's id.

        Raises:
            OverflowError: If ``max_tasks`` tasks are already held.

        """
        kind = TaskType(task_type)
        task = self.service.create(
            task_type=kind,
            share_id=share_id,
            container_id=container_id,
            user_id=user_id or self.user_id,
            file_ids=tuple(file_ids),
            zip_name=zip_name if kind is TaskType.PACKAGE_DOWNLOAD else "",
            target=("root", container_id) if kind is TaskType.DUMP else None,
            script=script,
        )
        if task is None:
            raise OverflowError(
                f"the emulator already holds max_tasks={self.service.store.max_tasks} tasks"
            )
        return task.task_id

    def add_job(
        self,
        script: TaskScript | None = None,
        *,
        job_type: int = 1,
        action_type: int | None = None,
        file_ids: Iterable[str] = ("file-1",),
        src_container_id: str = "container-1",
        dst_container_id: str = "container-2",
        new_file_path: str = "/",
        uncompress_paths: Iterable[str] = (),
        user_id: str | None = None,
    ) -> str:
        """Create a batch job directly, as if ``POST /koodrive/ose/v1/jobs`` had succeeded.

        The fields are checked by the same rules as a create request (each file gets the
        ``filePath`` ``"/{file_id}"``).

        Args:
            script: Its script; the next queued, drawn or default one when ``None``.
            job_type: ``taskType``: 1 copy, 2 delete, 3 move, 4 restore, 5 decompress,
                6 package download, 7 empty the recycle bin.
            action_type: ``actionType``; the type's default when ``None`` (101, 201, 301,
                502, 701; none for 4 and 6).
            file_ids: Its files (may be empty for type 7; one archive for type 5).
            src_container_id: The source space.
            dst_container_id: The target space (``containerId`` in its details).
            new_file_path: ``newFilePath``.
            uncompress_paths: Paths to extract (``actionType`` 503).
            user_id: Its owner (``emu.user_id`` by default).

        Returns:
            The new job's id.

        Raises:
            ValueError: If the fields break a create rule (the message says which).
            OverflowError: If ``max_tasks`` tasks and jobs are already held.

        """
        files = [{"fileId": f, "filePath": f"/{f}"} for f in file_ids]
        body: dict[str, object] = {
            "taskType": job_type,
            "dstContainerId": dst_container_id,
            "taskInfo": {
                "srcContainerId": src_container_id,
                "fileInfo": files,
                "newFilePath": new_file_path,
                "uncompressFilePaths": list(uncompress_paths) or None,
            },
        }
        if action_type is not None:
            body["actionType"] = action_type
        try:
            request = parse_create(body)
        except InvalidRequest as invalid:
            raise ValueError(invalid.detail) from None
        job = self.service.create_job(
            user_id=user_id or self.user_id, request=request, script=script
        )
        if job is None:
            raise OverflowError(
                f"the emulator already holds max_tasks={self.service.store.max_tasks} tasks"
            )
        return job.task_id

    def cancel(self, task_id: str) -> bool:
        """Cancel a task or job now, freezing its progress.

        Returns:
            ``True`` if canceled, ``False`` if it had already ended.

        Raises:
            KeyError: If no such task is held.

        """
        return self.service.cancel(task_id)

    def snapshot(self, task_id: str) -> TaskSnapshot:
        """Return a task's or job's state now, without a request (and without counting a poll).

        Raises:
            KeyError: If no such task is held.

        """
        return self.service.snapshot(task_id)

    def purge(self) -> None:
        """Drop ended tasks past ``retention_s`` now (creates do this too)."""
        self.service.sweep()


async def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    shape: Shape = "B",
    random_scripts: RandomScripts | None = None,
    fault_rate: float = 0.0,
    permanent_faults: bool = False,
    seed: int | None = None,
    on_ready: Callable[[Emulator], None] | None = None,
    **options: object,
) -> None:
    """Run an emulator until Ctrl-C, SIGTERM or cancellation (the CLI's ``koodrive-tasks serve``).

    Created tasks and jobs draw their scripts from ``random_scripts``. The counters are
    served as JSON on ``GET /_emulator/stats``.

    Args:
        host: The interface to listen on.
        port: The port; ``0`` picks a free one.
        shape: The response shape, ``"A"`` or ``"B"``.
        random_scripts: How created tasks behave (durations, pending time, outcome mix);
            ``RandomScripts()`` by default.
        fault_rate: Probability of a random fault on each detail or list request.
        permanent_faults: Whether random faults include service errors (non-zero
            ``code``, :data:`PERMANENT_FAULTS`) besides the transient ones.
        seed: Seed for scripts, faults and task ids.
        on_ready: Called once serving, e.g. to print ``emu.url`` and the credentials.
        **options: Further :class:`Emulator` keyword arguments (``faults=`` overrides
            ``fault_rate`` and ``permanent_faults``).

    """
    mix = TRANSIENT_FAULTS + (PERMANENT_FAULTS if permanent_faults else ())
    options.setdefault("faults", FaultPlan(rate=fault_rate, mix=mix))
    emulator = Emulator(
        host=host,
        port=port,
        shape=shape,
        random_scripts=random_scripts if random_scripts is not None else RandomScripts(),
        seed=seed,
        **options,  # type: ignore[arg-type]
    )
    async with emulator:
        if on_ready is not None:
            on_ready(emulator)
        await _until_interrupted()


async def _until_interrupted() -> None:
    """Wait for Ctrl-C or SIGTERM (or cancellation).

    The signals end this wait rather than raise KeyboardInterrupt wherever the loop happens
    to be (Python 3.10's asyncio.run does that), so that the server then closes its
    connections in order: interrupted mid-callback, its clean-up could hang.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
            continue
        installed.append(signum)
    try:
        await stop.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
