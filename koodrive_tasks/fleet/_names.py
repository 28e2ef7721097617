"""What fleet mode stores and sends, by name: keys, the fleet channel, its messages.

Every key of a namespace carries the same hash tag (``{namespace}``), so a script may
touch the rate gate and a task's lease together and Redis Cluster still finds all its
keys in one slot. A task is named by a short hash of its key, so key names have a fixed
length and do not show share or task ids.
"""

from __future__ import annotations

import functools
import hashlib
import re

import attrs

from ..exceptions import InvalidArgumentError

PREFIX = "kdt"
DEFAULT_NAMESPACE = "default"
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# Message kinds on the fleet channel (the first byte of each message).
UPDATE = b"U"
FINAL = b"F"
RELEASED = b"R"
JOINED = b"J"
PAUSE = b"P"


def namespace_from_identity(identity: str) -> str:
    """A namespace derived from a non-secret identity (an app id or a user id).

    The identity is hashed so that it does not appear in key names; it must never be a
    secret, since a hash of a short secret can be reversed by guessing.
    """
    if not identity:
        raise InvalidArgumentError("a fleet identity must not be empty")
    digest = hashlib.blake2b(identity.encode(), digest_size=6, person=b"kdt-fleet")
    return digest.hexdigest()


def check_namespace(namespace: str) -> str:
    """Return ``namespace`` if it is safe inside a key name and a hash tag.

    Raises:
        InvalidArgumentError: If it is empty, longer than 64 characters or holds a
            character other than letters, digits, ``_``, ``.`` and ``-``.
    """
    if not _NAMESPACE.fullmatch(namespace):
        raise InvalidArgumentError(
            f"a fleet namespace is 1 to 64 letters, digits, '_', '.' or '-'; got {namespace!r}"
        )
    return namespace


@functools.lru_cache(maxsize=65536)  # a task is named at each of its polls
def task_id(task_key: str) -> str:
    """The fixed-length name of a task inside key names and messages.

    Raises:
        InvalidArgumentError: If ``task_key`` is empty.
    """
    if not task_key:
        raise InvalidArgumentError("a task key must not be empty")
    return hashlib.blake2b(task_key.encode(), digest_size=8).hexdigest()


@attrs.frozen
class Names:
    """The key and channel names of one namespace.

    Attributes:
        namespace: The namespace.
        gate: The hash holding the rate's timeline, the pause and the burst tolerance.
        members: The sorted set of the fleet's live processes: each one's id, scored
            by when its heartbeat lapses (server µs).
        channel: The fleet channel: task updates, releases and pauses of every process.
    """

    namespace: str
    gate: str
    members: str
    channel: str

    @classmethod
    def of(cls, namespace: str) -> Names:
        """The names of ``namespace``."""
        tag = f"{PREFIX}:{{{namespace}}}"
        return cls(namespace, gate=f"{tag}:gate", members=f"{tag}:members", channel=f"{tag}:events")

    def lease(self, tid: str) -> str:
        """The key of a task's lease (value: the holder's id)."""
        return f"{PREFIX}:{{{self.namespace}}}:lease:{tid}"

    def latest(self, tid: str) -> str:
        """The key of a task's latest observation (value: a kind byte, then the payload)."""
        return f"{PREFIX}:{{{self.namespace}}}:latest:{tid}"

    def ears(self, tid: str) -> str:
        """The key that says other processes listen to a task (its holder then publishes)."""
        return f"{PREFIX}:{{{self.namespace}}}:ears:{tid}"


def update_header(kind: bytes, origin: str, tid: str) -> bytes:
    """The start of an update message; the publishing script appends the rest."""
    return kind + origin.encode() + b"\n" + tid.encode()


def release_message(origin: str, tid: str) -> bytes:
    """The message that says a task's lease was given up: nobody polls it now."""
    return update_header(RELEASED, origin, tid) + b"\n0\n"


def joined_message(origin: str, tid: str) -> bytes:
    """The message that says a process started listening to a task (its holder publishes)."""
    return update_header(JOINED, origin, tid) + b"\n0\n"


def pause_header(origin: str) -> bytes:
    """The start of a pause message; the pausing script appends its length."""
    return PAUSE + origin.encode()


@attrs.frozen
class Message:
    """One message read from the fleet channel.

    Attributes:
        kind: :data:`UPDATE`, :data:`FINAL`, :data:`RELEASED`, :data:`JOINED` or
            :data:`PAUSE`.
        origin: The id of the coordinator that sent it.
        tid: The task's id (updates and releases), the ids of the tasks joined
            (comma-separated), else ``""``.
        number: Updates: milliseconds left on the task's lease; pauses: the pause in
            microseconds; releases and joins: 0.
        payload: Updates: the observation; releases, joins and pauses: ``b""``.
    """

    kind: bytes
    origin: str
    tid: str
    number: int
    payload: bytes


def parse_message(data: bytes) -> Message | None:
    r"""Read a fleet message, or ``None`` for one this version does not understand.

    Layouts: ``U|F|R|J <origin> \n <tid> \n <lease ms> \n <payload>`` (a release or
    a join has no payload) and ``P <origin> \n <pause µs>``.
    """
    kind = data[:1]
    try:
        if kind == PAUSE:
            origin, number = data[1:].split(b"\n", 1)
            return Message(kind, origin.decode(), "", int(number), b"")
        if kind in (UPDATE, FINAL, RELEASED, JOINED):
            origin, tid, number, payload = data[1:].split(b"\n", 3)
            return Message(kind, origin.decode(), tid.decode(), int(number), payload)
    except (ValueError, UnicodeDecodeError):
        return None
    return None
