"""A local KooDrive service (what moto is to AWS), built on ``aiohttp.web``.

It answers the share-task routes and the batch-job routes (create, detail, list,
cancel), and ``GET /_emulator/stats``. Use it as ``async with Emulator() as emu:``
and point a client at ``emu.url`` with ``emu.token`` (or ``emu.app_id``/
``emu.app_secret``); drive time with a :class:`koodrive_tasks.testing.VirtualClock`,
script tasks and jobs with :class:`TaskScript` and inject faults with :class:`Fault`
and :class:`FaultPlan`.
"""

from ._auth import AppCredential
from ._download import file_contents
from ._faults import (
    DEFAULT_FAULT_MIX,
    PERMANENT_FAULTS,
    TRANSIENT_FAULTS,
    Fault,
    FaultKind,
    FaultPlan,
)
from ._scripts import Curve, FileResultsForm, Outcome, RandomScripts, Shape, Stall, TaskScript
from ._server import Emulator, serve
from ._stats import EmulatorStats
from ._tasks import Task, TaskSnapshot, replay

__all__ = [
    "DEFAULT_FAULT_MIX",
    "PERMANENT_FAULTS",
    "TRANSIENT_FAULTS",
    "AppCredential",
    "Curve",
    "Emulator",
    "EmulatorStats",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "FileResultsForm",
    "Outcome",
    "RandomScripts",
    "Shape",
    "Stall",
    "Task",
    "TaskScript",
    "TaskSnapshot",
    "file_contents",
    "replay",
    "serve",
]
