"""Event ids: where each task of a stream stands, so a reconnecting browser resumes.

Every event that moves a task forward carries, as its ``id:``, the position of every
task the browser has seen so far. The browser sends the last one back as
``Last-Event-ID`` when it reconnects; the new stream then skips whatever is not past
those positions. Ids are opaque to the browser (base64url) and short: seven bytes
per task, whatever its ids.

Positions only grow: 1 pending, 2 + p processing at p %, 103 ended (completed or
canceled), 104 result delivered. An observation at or below a task's position is
never sent, so the browser never sees a duplicate or a step back, across
reconnections or within one stream (progress that went back is not shown).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping

from .. import JobRef, ProgressUpdate, TaskRef, TaskStatus

ENDED = 103
DELIVERED = 104
_PREFIX = "k1."
_KEY_BYTES = 6
_ENTRY = _KEY_BYTES + 1
# Far above any stream a browser follows (about 8,000 tasks in a 64 KiB header);
# longer headers are ignored rather than decoded.
_MAX_ID_CHARS = 65_536

Positions = dict[bytes, int]


def task_key(ref: TaskRef | JobRef) -> bytes:
    """A short, stable key of a task or job (its ids, hashed; not a kdstoken)."""
    if isinstance(ref, JobRef):
        # A share task's key starts with its share id, never empty: no job's key is one.
        name = f"\0{ref.job_id}".encode()
    else:
        name = f"{ref.share_id}\0{ref.task_id}".encode()
    return hashlib.blake2b(name, digest_size=_KEY_BYTES).digest()


def position(update: ProgressUpdate) -> int:
    """Where an observation stands in its task's life (see the module docstring)."""
    if update.status.is_terminal:
        return ENDED
    if update.status is TaskStatus.PENDING:
        return 1
    return 2 + min(max(update.progress, 0), 100)


def encode(positions: Mapping[bytes, int]) -> str:
    """The event id for these positions (sorted, so equal positions give equal ids)."""
    raw = b"".join(key + bytes((pos,)) for key, pos in sorted(positions.items()))
    return _PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(event_id: str | None) -> Positions:
    """The positions in a ``Last-Event-ID``; empty for none, or one not made by :func:`encode`.

    A browser sends back whatever it last saw, so a foreign or damaged id is not an
    error: the stream simply starts from the beginning.
    """
    if not event_id or not event_id.startswith(_PREFIX) or len(event_id) > _MAX_ID_CHARS:
        return {}
    body = event_id[len(_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        return {}
    if len(raw) % _ENTRY:
        return {}
    positions: Positions = {}
    for start in range(0, len(raw), _ENTRY):
        pos = raw[start + _KEY_BYTES]
        if not 1 <= pos <= DELIVERED:
            return {}
        positions[raw[start : start + _KEY_BYTES]] = pos
    return positions
