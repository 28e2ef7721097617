"""How the CLI shows progress: live bars on a terminal, JSON lines for scripts.

The bars are plain ANSI escapes: no extra dependency, so the CLI is the same
everywhere the library is installed.
"""

from __future__ import annotations

import json
import time
from typing import Protocol, TextIO

from .._models import ProgressUpdate, TaskStatus

_BAR_WIDTH = 30
_REDRAW_INTERVAL = 0.1
_STATUS_WORDS = {
    TaskStatus.PENDING: "pending",
    TaskStatus.PROCESSING: "processing",
    TaskStatus.COMPLETED: "completed",
    TaskStatus.CANCELED: "canceled",
}


class Renderer(Protocol):
    """Receives every change and every ending."""

    def update(self, task_id: str, update: ProgressUpdate) -> None:
        """A task changed."""

    def finish(self, task_id: str, outcome: str, detail: dict[str, object]) -> None:
        """A task ended: ``outcome`` is a word, ``detail`` holds what to report."""

    def close(self) -> None:
        """No more events."""


def status_word(status: TaskStatus) -> str:
    """The lower-case name of a status."""
    return _STATUS_WORDS[status]


class JsonLines:
    """One JSON object per line: ``{"event": "update", ...}`` then ``{"event": "result", ...}``."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def _emit(self, obj: dict[str, object]) -> None:
        self._out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._out.flush()

    def update(self, task_id: str, update: ProgressUpdate) -> None:
        """Print the change."""
        self._emit({"event": "update", **update.to_dict(), "task_id": task_id})

    def finish(self, task_id: str, outcome: str, detail: dict[str, object]) -> None:
        """Print the result object."""
        self._emit({"event": "result", **detail, "task_id": task_id, "outcome": outcome})

    def close(self) -> None:
        """Nothing buffered."""


class Bars:
    """One live bar per task, redrawn in place at most ten times a second."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._rows: dict[str, str] = {}
        self._progress: dict[str, int] = {}
        self._drawn = 0
        self._last_draw = 0.0

    def _row(self, task_id: str, progress: int, word: str) -> str:
        filled = round(_BAR_WIDTH * progress / 100)
        name = task_id if len(task_id) <= 14 else task_id[:13] + "…"
        return f"{name:<14} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {progress:>3}% {word}"

    def update(self, task_id: str, update: ProgressUpdate) -> None:
        """Move a bar."""
        self._progress[task_id] = update.progress
        self._rows[task_id] = self._row(task_id, update.progress, status_word(update.status))
        self._draw(force=update.status.is_terminal)

    def finish(self, task_id: str, outcome: str, detail: dict[str, object]) -> None:
        """Mark a bar with its outcome."""
        progress = (
            100 if outcome in ("completed", "partially_failed") else self._progress.get(task_id, 0)
        )
        self._rows[task_id] = self._row(task_id, progress, outcome.replace("_", " "))
        self._draw(force=True)

    def _draw(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < _REDRAW_INTERVAL:
            return
        self._last_draw = now
        # Move up over the previous frame, then rewrite every row, clearing leftovers.
        frame = f"\x1b[{self._drawn}F" if self._drawn else ""
        frame += "".join(f"\x1b[2K{row}\n" for row in self._rows.values())
        self._out.write(frame)
        self._out.flush()
        self._drawn = len(self._rows)

    def close(self) -> None:
        """Draw the last frame."""
        self._draw(force=True)
