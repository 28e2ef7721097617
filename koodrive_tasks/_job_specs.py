"""What a batch job is asked to do: one small class per job type, checked when built.

``KooDriveClient.create_job`` takes one of these. Each class has exactly the arguments
its job type needs, so a wrong combination is an ``InvalidArgumentError`` when the
object is made, before any request. Each turns itself into a :class:`JobRequest`, the
one normalised form the wire format encodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import attrs

from ._models import ActionType, JobType
from ._redact import secret_repr
from ._validate import boolean, require_text
from .exceptions import InvalidArgumentError


@attrs.frozen
class JobRequest:
    """A create request, normalised: what ``POST /koodrive/ose/v1/jobs`` carries.

    Attributes:
        job_type: ``taskType``.
        action_type: ``actionType``, or ``None`` for the types that take none.
        container_id: ``srcContainerId``: the space the job works in.
        target_container_id: ``dstContainerId``: the target space (the same space for
            jobs that stay in one).
        files: ``fileInfo``: each file's id and, where given, its full path.
        new_file_path: ``newFilePath``: where the files go, if given.
        extract_paths: ``uncompressFilePaths``: the archive paths to extract.
        password: The archive's password: a secret, never shown.
    """

    job_type: JobType
    action_type: ActionType | None
    container_id: str
    target_container_id: str
    files: tuple[tuple[str, str | None], ...] = ()
    new_file_path: str | None = None
    extract_paths: tuple[str, ...] = ()
    password: str | None = attrs.field(default=None, repr=secret_repr)


class JobSpec:
    """The base of the job classes below; :meth:`KooDriveClient.create_job` takes any of them."""

    __slots__ = ()
    job_type: ClassVar[JobType]

    def to_request(self) -> JobRequest:
        """The normalised request this job is created with."""
        raise NotImplementedError


# --- validators (each raises InvalidArgumentError, never quoting a password) ----------------


def _text(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    require_text(attribute.name, value)


def _optional_text(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        require_text(attribute.name, value)


def _id_tuple(value: object) -> tuple[str, ...]:
    """A lone id as one id; any other iterable as a tuple (checked by ``_ids``)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
        raise InvalidArgumentError(f"expected an iterable of ids, got {type(value).__name__}")
    return tuple(value)


def _ids(instance: object, attribute: attrs.Attribute[Any], value: tuple[object, ...]) -> None:
    if not value:
        raise InvalidArgumentError(f"{attribute.name} must hold at least one id")
    for item in value:
        require_text(f"every id in {attribute.name}", item)


def _path_tuple(value: object) -> tuple[str, ...]:
    return () if value is None else _id_tuple(value)


def _paths(instance: object, attribute: attrs.Attribute[Any], value: tuple[object, ...]) -> None:
    for item in value:
        require_text(f"every path in {attribute.name}", item)


def _path_pairs(value: object) -> tuple[tuple[str, str], ...]:
    """A ``{file_id: path}`` mapping as pairs: kept hashable, like the rest of the object."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(
            f"paths must be a mapping of file id to full path, got {type(value).__name__}"
        )
    for key, path in value.items():
        require_text("every file id in paths", key)
        require_text(f"the path of file {key!r}", path)
    return tuple(value.items())


def _password(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # Never quoted: it is a secret.
    if value is not None and not (isinstance(value, str) and value):
        raise InvalidArgumentError("password must be a non-empty string or None")


def _files(file_ids: tuple[str, ...]) -> tuple[tuple[str, str | None], ...]:
    return tuple((file_id, None) for file_id in file_ids)


# --- the job types ------------------------------------------------------------------------


@attrs.frozen
class CopyJob(JobSpec):
    """Copy files (``JobType.COPY``, ``ActionType.COPY``).

    Attributes:
        file_ids: The files and folders to copy (a lone string is one id).
        container_id: The space they are in.
        target_container_id: The space to copy into; by default the same space.
        target_path: Where the copies go (``newFilePath``), if given.
    """

    job_type: ClassVar[JobType] = JobType.COPY
    file_ids: tuple[str, ...] = attrs.field(converter=_id_tuple, validator=_ids)
    container_id: str = attrs.field(kw_only=True, validator=_text)
    target_container_id: str | None = attrs.field(
        default=None, kw_only=True, validator=_optional_text
    )
    target_path: str | None = attrs.field(default=None, kw_only=True, validator=_optional_text)

    def to_request(self) -> JobRequest:
        """The normalised request."""
        return JobRequest(
            self.job_type,
            ActionType.COPY,
            self.container_id,
            self.target_container_id or self.container_id,
            _files(self.file_ids),
            self.target_path,
        )


@attrs.frozen
class MoveJob(JobSpec):
    """Move files (``JobType.MOVE``, ``ActionType.MOVE``).

    Attributes:
        file_ids: The files and folders to move (a lone string is one id).
        container_id: The space they are in.
        target_container_id: The space to move them into; by default the same space.
        target_path: Where they go (``newFilePath``), if given.
    """

    job_type: ClassVar[JobType] = JobType.MOVE
    file_ids: tuple[str, ...] = attrs.field(converter=_id_tuple, validator=_ids)
    container_id: str = attrs.field(kw_only=True, validator=_text)
    target_container_id: str | None = attrs.field(
        default=None, kw_only=True, validator=_optional_text
    )
    target_path: str | None = attrs.field(default=None, kw_only=True, validator=_optional_text)

    def to_request(self) -> JobRequest:
        """The normalised request."""
        return JobRequest(
            self.job_type,
            ActionType.MOVE,
            self.container_id,
            self.target_container_id or self.container_id,
            _files(self.file_ids),
            self.target_path,
        )


@attrs.frozen
class DeleteJob(JobSpec):
    """Delete files: into the recycle bin, or for good with ``permanent=True``.

    Moving files to the recycle bin (``ActionType.LOGICAL_DELETE``) needs every file's
    full path, which the service keeps for restoring it; ``permanent=True``
    (``ActionType.PERMANENT_DELETE``) needs none.

    Attributes:
        file_ids: The files and folders to delete (a lone string is one id).
        container_id: The space they are in.
        paths: Each file's full path: given as a ``{file_id: path}`` mapping (required
            for every file unless ``permanent``), kept as ``(file_id, path)`` pairs.
        permanent: Delete for good instead of moving to the recycle bin.

    Raises:
        InvalidArgumentError: If a file has no path for a move to the recycle bin.
    """

    job_type: ClassVar[JobType] = JobType.DELETE
    file_ids: tuple[str, ...] = attrs.field(converter=_id_tuple, validator=_ids)
    container_id: str = attrs.field(kw_only=True, validator=_text)
    paths: tuple[tuple[str, str], ...] = attrs.field(
        default=None, kw_only=True, converter=_path_pairs
    )
    permanent: bool = attrs.field(default=False, kw_only=True, validator=boolean)

    def __attrs_post_init__(self) -> None:
        if self.permanent:
            return
        known = dict(self.paths)
        missing = [f for f in self.file_ids if f not in known]
        if missing:
            shown = ", ".join(repr(f) for f in missing[:5]) + (" …" if len(missing) > 5 else "")
            raise InvalidArgumentError(
                "moving files to the recycle bin needs paths={file_id: full path} for every "
                f"file (or permanent=True); no path for {shown}"
            )

    def to_request(self) -> JobRequest:
        """The normalised request."""
        paths = dict(self.paths)
        return JobRequest(
            self.job_type,
            ActionType.PERMANENT_DELETE if self.permanent else ActionType.LOGICAL_DELETE,
            self.container_id,
            self.container_id,
            tuple((f, paths.get(f)) for f in self.file_ids),
        )


@attrs.frozen
class RestoreJob(JobSpec):
    """Restore files from the recycle bin (``JobType.RESTORE``).

    Attributes:
        file_ids: The files in the recycle bin (a lone string is one id).
        container_id: The space whose recycle bin holds them.
    """

    job_type: ClassVar[JobType] = JobType.RESTORE
    file_ids: tuple[str, ...] = attrs.field(converter=_id_tuple, validator=_ids)
    container_id: str = attrs.field(kw_only=True, validator=_text)

    def to_request(self) -> JobRequest:
        """The normalised request."""
        return JobRequest(
            self.job_type, None, self.container_id, self.container_id, _files(self.file_ids)
        )


@attrs.frozen
class DecompressJob(JobSpec):
    """Unpack one archive in the cloud (``JobType.DECOMPRESS``).

    Extracts everything (``ActionType.EXTRACT_ALL``), only ``extract`` paths
    (``EXTRACT_SOME``), or nothing with ``view_only=True`` (``VIEW_ARCHIVE``: the
    finished job lists the archive's entries in ``JobInfo.uncompressed_files``).

    Attributes:
        archive_id: The archive's file id.
        container_id: The space it is in.
        target_container_id: The space to extract into; by default the same space.
        target_path: Where the entries go (``newFilePath``), if given.
        extract: Full paths inside the archive to extract; empty for all of it.
        view_only: List the entries without extracting anything.
        password: The archive's password, if it has one. A secret: never shown in a
            repr, a log or an error.

    Raises:
        InvalidArgumentError: If ``view_only`` is combined with ``extract``.
    """

    job_type: ClassVar[JobType] = JobType.DECOMPRESS
    archive_id: str = attrs.field(validator=_text)
    container_id: str = attrs.field(kw_only=True, validator=_text)
    target_container_id: str | None = attrs.field(
        default=None, kw_only=True, validator=_optional_text
    )
    target_path: str | None = attrs.field(default=None, kw_only=True, validator=_optional_text)
    extract: tuple[str, ...] = attrs.field(
        default=(), kw_only=True, converter=_path_tuple, validator=_paths
    )
    view_only: bool = attrs.field(default=False, kw_only=True, validator=boolean)
    password: str | None = attrs.field(
        default=None, kw_only=True, validator=_password, repr=secret_repr
    )

    def __attrs_post_init__(self) -> None:
        if self.view_only and self.extract:
            raise InvalidArgumentError("view_only extracts nothing: it cannot take extract paths")

    @property
    def action_type(self) -> ActionType:
        """What the job does: view, extract some, or extract all."""
        if self.view_only:
            return ActionType.VIEW_ARCHIVE
        return ActionType.EXTRACT_SOME if self.extract else ActionType.EXTRACT_ALL

    def to_request(self) -> JobRequest:
        """The normalised request."""
        return JobRequest(
            self.job_type,
            self.action_type,
            self.container_id,
            self.target_container_id or self.container_id,
            ((self.archive_id, None),),
            self.target_path,
            self.extract,
            self.password,
        )


@attrs.frozen
class PackageJob(JobSpec):
    """Package files into a zip to download (``JobType.PACKAGE_DOWNLOAD``).

    The finished job's ``download_url`` is the zip (``await waiter.download_url()``).
    The reference has no field for the zip's name.

    Attributes:
        file_ids: The files and folders to package (a lone string is one id).
        container_id: The space they are in.
    """

    job_type: ClassVar[JobType] = JobType.PACKAGE_DOWNLOAD
    file_ids: tuple[str, ...] = attrs.field(converter=_id_tuple, validator=_ids)
    container_id: str = attrs.field(kw_only=True, validator=_text)

    def to_request(self) -> JobRequest:
        """The normalised request."""
        return JobRequest(
            self.job_type, None, self.container_id, self.container_id, _files(self.file_ids)
        )


@attrs.frozen
class EmptyRecycleBinJob(JobSpec):
    """Empty a space's recycle bin (``JobType.EMPTY_RECYCLE_BIN``; allow-listed users only).

    Attributes:
        container_id: The space.
    """

    job_type: ClassVar[JobType] = JobType.EMPTY_RECYCLE_BIN
    container_id: str = attrs.field(kw_only=True, validator=_text)

    def to_request(self) -> JobRequest:
        """The normalised request."""
        return JobRequest(
            self.job_type, ActionType.EMPTY_RECYCLE_BIN, self.container_id, self.container_id
        )


JOB_SPECS = (CopyJob, MoveJob, DeleteJob, RestoreJob, DecompressJob, PackageJob, EmptyRecycleBinJob)
"""Every job class, in ``JobType`` order."""
