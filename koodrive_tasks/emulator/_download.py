"""Signed, short-lived package links and the zip files behind them."""

from __future__ import annotations

import hashlib
import hmac
import io
import zipfile
from datetime import datetime
from urllib.parse import quote

from .._models import FileStatus, TaskStatus
from ._tasks import Lifecycle, TaskSnapshot

# A fixed entry date keeps the zip bytes deterministic.
_ZIP_DATE = (2024, 1, 1, 0, 0, 0)


class DownloadSigner:
    """Signs and checks ``/download/{task_id}.zip?expires=..&sig=..`` links.

    Args:
        key: The HMAC key; private to one emulator.

    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _sign(self, task_id: str, expires: str) -> str:
        return hmac.new(self._key, f"{task_id}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, base_url: str, task_id: str, expires: int) -> str:
        """Return the absolute link to ``task_id``'s package, valid until Unix time ``expires``."""
        sig = self._sign(task_id, str(expires))
        return f"{base_url}/download/{quote(task_id, safe='')}.zip?expires={expires}&sig={sig}"

    def verify(self, task_id: str, expires: str, sig: str) -> bool:
        """Whether ``sig`` is this emulator's signature of ``task_id`` and ``expires``."""
        return hmac.compare_digest(self._sign(task_id, expires).encode(), sig.encode())


def file_contents(file_id: str) -> bytes:
    """Return the deterministic contents the emulator gives file ``file_id``."""
    return f"KooDrive emulator file {file_id}\n".encode()


def build_zip(file_ids: list[str]) -> bytes:
    """Build a zip with one entry per file id, named after it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file_id in file_ids:
            archive.writestr(zipfile.ZipInfo(file_id, date_time=_ZIP_DATE), file_contents(file_id))
    return buffer.getvalue()


class PackageLinks:
    """The ``downloadUrl`` of a finished package: signed, valid for ``ttl_s`` from now.

    Args:
        signer: Signs the links.
        ttl_s: How long a link stays valid.
    """

    def __init__(self, signer: DownloadSigner, ttl_s: float) -> None:
        self.signer = signer
        self.ttl_s = ttl_s

    def link(self, base_url: str, item: Lifecycle, snap: TaskSnapshot, now: datetime) -> str:
        """The link for ``item`` in state ``snap``.

        Returns:
            ``""`` unless ``item`` is a completed package with at least one file packed.
        """
        if (
            snap.status is not TaskStatus.COMPLETED
            or not item.is_package
            or FileStatus.SUCCEEDED not in item.final_statuses()
        ):
            return ""
        return self.signer.url(base_url, item.task_id, int(now.timestamp() + self.ttl_s))
