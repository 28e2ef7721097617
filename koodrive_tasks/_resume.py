"""Continuation tokens: carry waits across a process restart.

A token is versioned JSON (never pickle): which tasks, what was last seen, how far
the backoff had gone, how much of each deadline was left. It holds no credential
and no ``kdstoken``: pass those again when resuming.

Version 2 names each wait's family: ``{"family": "share_task", "share_id", "task_id", ...}``
or ``{"family": "job", "job_id", ...}``. Version 1 (share tasks only, no ``family``)
is still read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import datetime

import attrs

from ._models import JobRef, Ref, TaskRef, TaskStatus
from ._validate import is_number
from .exceptions import InvalidArgumentError

FORMAT = "koodrive-tasks/waits"
VERSION = 2
READABLE_VERSIONS = (1, 2)
_SHARE_TASK = "share_task"
_JOB = "job"
_MAX_TOKEN_BYTES = 16 << 20


@attrs.frozen
class WaitState:
    """Where one wait stood when it was checkpointed.

    Attributes:
        ref: The share task (without its kdstoken) or the batch job.
        status: The last status seen, if any.
        progress: The last progress seen, if any.
        polls: Successful polls so far (the backoff resumes from here).
        timeout_left: Seconds left before the wait's deadline, or ``None`` for no deadline.
    """

    ref: Ref
    status: TaskStatus | None
    progress: int | None
    polls: int
    timeout_left: float | None


def dump(states: Iterable[WaitState], saved_at: datetime) -> str:
    """Serialise wait states into a token."""
    return json.dumps(
        {
            "format": FORMAT,
            "version": VERSION,
            "saved_at": saved_at.isoformat(),
            "waits": [
                {
                    **_ref_fields(s.ref),
                    "status": None if s.status is None else int(s.status),
                    "progress": s.progress,
                    "polls": s.polls,
                    "timeout_left": s.timeout_left,
                }
                for s in states
            ],
        },
        separators=(",", ":"),
    )


def _ref_fields(ref: Ref) -> dict[str, object]:
    # Only ids: a kdstoken is a secret and never goes into a token.
    if isinstance(ref, JobRef):
        return {"family": _JOB, "job_id": ref.job_id}
    return {"family": _SHARE_TASK, "share_id": ref.share_id, "task_id": ref.task_id}


def _ref(item: dict[str, object], version: int) -> Ref:
    family = _SHARE_TASK if version == 1 else _field(item, "family", str)
    try:
        if family == _JOB:
            return JobRef(str(_field(item, "job_id", str)))
        if family == _SHARE_TASK:
            return TaskRef(str(_field(item, "share_id", str)), str(_field(item, "task_id", str)))
    except InvalidArgumentError:
        raise _bad("a wait holds an invalid id") from None
    raise _bad(f"unknown family {family!r}")


def _bad(why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"not a valid koodrive-tasks continuation token: {why}")


def _field(
    item: dict[str, object], name: str, kind: type | tuple[type, ...], *, optional: bool = False
) -> object:
    value = item.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise _bad(f"'{name}' is missing or of the wrong type")
    return value


def load(token: str | bytes) -> tuple[list[WaitState], datetime]:
    """Parse a token made by :func:`dump`.

    Raises:
        InvalidArgumentError: If it is not such a token, or of a version this release
            cannot read.
    """
    if not isinstance(token, (str, bytes)):
        raise _bad(
            f"expected the str (or bytes) kd.checkpoint() returned, got {type(token).__name__}"
            + (
                ": pass json.dumps(...) of it, or the stored text itself"
                if isinstance(token, dict)
                else ""
            )
        )
    if len(token) > _MAX_TOKEN_BYTES:
        raise _bad("too large")
    try:
        document = json.loads(token)
    except (ValueError, RecursionError):
        raise _bad("not JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _bad("wrong format marker")
    version = document.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise _bad(
            f"version {version!r}; this release reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    try:
        saved_at = datetime.fromisoformat(str(document.get("saved_at")))
    except ValueError:
        raise _bad("'saved_at' is not a timestamp") from None
    if saved_at.tzinfo is None:
        raise _bad("'saved_at' has no time zone")
    waits = document.get("waits")
    if not isinstance(waits, list):
        raise _bad("'waits' is not a list")
    states = []
    for item in waits:
        if not isinstance(item, dict):
            raise _bad("a wait is not an object")
        status = _field(item, "status", int, optional=True)
        timeout_left = _field(item, "timeout_left", (int, float), optional=True)
        polls = _field(item, "polls", int)
        # is_number first: math.isfinite() of an int past the float range raises OverflowError.
        finite = timeout_left is None or (
            is_number(timeout_left) and math.isfinite(timeout_left)  # type: ignore[arg-type]
        )
        if (
            (status is not None and status not in {int(s) for s in TaskStatus})
            or not finite
            or polls < 0  # type: ignore[operator]
        ):
            raise _bad("a wait holds out-of-range values")
        states.append(
            WaitState(
                ref=_ref(item, version),
                status=None if status is None else TaskStatus(status),
                progress=_field(item, "progress", int, optional=True),  # type: ignore[arg-type]
                polls=polls,  # type: ignore[arg-type]
                timeout_left=None if timeout_left is None else float(timeout_left),  # type: ignore[arg-type]
            )
        )
    return states, saved_at
