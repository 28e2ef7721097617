"""``koodrive-tasks jobs create|get|list|cancel|wait``: batch jobs on the command line.

Waiting shows the same bars and JSON lines, and exits with the same codes, as for
share tasks (``_common.follow``). ``get`` and ``list`` print one line per job (one JSON
object with ``--json`` or off a terminal); they never print a download URL, which is
a secret until used: ``jobs wait`` prints a finished package job's URL at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from .._client import MAX_JOB_PAGE
from .._job_specs import (
    CopyJob,
    DecompressJob,
    DeleteJob,
    EmptyRecycleBinJob,
    JobSpec,
    MoveJob,
    PackageJob,
    RestoreJob,
)
from .._models import JobInfo, JobRef, JobType, Ref, TaskStatus
from ..exceptions import InvalidArgumentError, KooDriveError
from ._common import env, follow, make_client, make_renderer
from ._outcomes import EXIT_OK, CommandError, exit_code_for, worst
from ._render import JsonLines, status_word

PASSWORD_VARIABLE = "KOODRIVE_ARCHIVE_PASSWORD"  # noqa: S105 - the name of a variable, not a password
"""Where ``jobs create decompress`` reads an archive's password (never from a flag)."""

_TYPE_WORDS = {t: t.name.lower().replace("_", "-") for t in JobType}
_STATUS_WORDS = {status_word(s): s for s in TaskStatus}


def _word(member: Any) -> str | None:
    return None if member is None else str(member.name.lower())


def job_summary(info: JobInfo) -> dict[str, object]:
    """A job as JSON-ready data for ``get`` and ``list`` (no download URL: see the module)."""
    data: dict[str, object] = {
        "job_id": info.job_id,
        "job_type": None if info.job_type is None else _TYPE_WORDS[info.job_type],
        "action_type": _word(info.action_type),
        "status": status_word(info.status),
        "progress": info.progress,
        "result": _word(info.result_code),
        "task_name": info.task_name,
        "content_num": info.content_num,
        "container_id": info.container_id,
        "created_at": info.created_at.isoformat() if info.created_at else None,
        "started_at": info.started_at.isoformat() if info.started_at else None,
        "ended_at": info.ended_at.isoformat() if info.ended_at else None,
    }
    failed = [f.file_id for f in info.failed_files]
    if failed:
        data["failed_files"] = failed
    if info.uncompressed_files:
        data["uncompressed_files"] = [entry.name for entry in info.uncompressed_files]
    return data


def _line(info: JobInfo) -> str:
    kind = _TYPE_WORDS.get(info.job_type, "?") if info.job_type is not None else "?"
    result = f" {_word(info.result_code)}" if info.result_code is not None else ""
    name = f"  {info.task_name}" if info.task_name else ""
    return (
        f"{info.job_id:<20} {kind:<18} {status_word(info.status):<10} "
        f"{info.progress:>3}%{result}{name}"
    )


def _show(info: JobInfo, out: TextIO, *, json_lines: bool) -> None:
    if json_lines:
        out.write(json.dumps({"event": "job", **job_summary(info)}, ensure_ascii=False) + "\n")
    else:
        out.write(_line(info) + "\n")
    out.flush()


# --- create ---------------------------------------------------------------------------------


def _paths(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    paths = {}
    for pair in pairs:
        file_id, sep, path = pair.partition("=")
        if not (sep and file_id and path):
            raise CommandError(f"--file-path takes FILE_ID=PATH, got {pair!r}")
        paths[file_id] = path
    return paths


def _copy(args: argparse.Namespace) -> JobSpec:
    cls = CopyJob if args.kind == "copy" else MoveJob
    return cls(
        args.file_ids,
        container_id=args.container,
        target_container_id=args.to,
        target_path=args.path,
    )


def _delete(args: argparse.Namespace) -> JobSpec:
    return DeleteJob(
        args.file_ids,
        container_id=args.container,
        paths=_paths(args.file_path),
        permanent=args.permanent,
    )


def _decompress(args: argparse.Namespace) -> JobSpec:
    return DecompressJob(
        args.archive_id,
        container_id=args.container,
        target_container_id=args.to,
        target_path=args.path,
        extract=args.extract or (),
        view_only=args.view_only,
        password=env(PASSWORD_VARIABLE),
    )


_SPECS: dict[str, Callable[[argparse.Namespace], JobSpec]] = {
    "copy": _copy,
    "move": _copy,
    "delete": _delete,
    "restore": lambda args: RestoreJob(args.file_ids, container_id=args.container),
    "decompress": _decompress,
    "package": lambda args: PackageJob(args.file_ids, container_id=args.container),
    "empty-recycle-bin": lambda args: EmptyRecycleBinJob(container_id=args.container),
}


async def cmd_create(args: argparse.Namespace, out: TextIO) -> int:
    """``jobs create KIND ...``: print the new job's id; with ``--wait``, follow it."""
    try:
        spec = _SPECS[args.kind](args)
    except InvalidArgumentError as error:
        raise CommandError(str(error)) from None
    async with make_client(args) as kd:
        job_id = await kd.create_job(spec)
        renderer = make_renderer(args, out)
        if isinstance(renderer, JsonLines):
            out.write(json.dumps({"event": "created", "job_id": job_id, "job_type": args.kind}))
            out.write("\n")
        else:
            out.write(f"{job_id}\n")
        out.flush()
        if not args.wait:
            return EXIT_OK
        return await follow(kd, [JobRef(job_id)], renderer, args.timeout, out)


# --- get, list, cancel, wait ------------------------------------------------------------------


def _json_lines(args: argparse.Namespace, out: TextIO) -> bool:
    return isinstance(make_renderer(args, out), JsonLines)


def _refs(job_ids: list[str]) -> list[Ref]:
    try:
        return [JobRef(job_id) for job_id in dict.fromkeys(job_ids)]
    except InvalidArgumentError as error:
        raise CommandError(str(error)) from None


async def cmd_get(args: argparse.Namespace, out: TextIO) -> int:
    """``jobs get JOB_ID``: the job's state once."""
    _refs([args.job_id])
    async with make_client(args) as kd:
        _show(await kd.get_job(args.job_id), out, json_lines=_json_lines(args, out))
    return EXIT_OK


async def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    """``jobs list [--type T] [--status S] [--max N]``: newest first, as the service lists them."""
    json_lines = _json_lines(args, out)
    shown = 0
    async with make_client(args) as kd:
        pages = kd.list_jobs(
            job_type=None if args.type is None else JobType[args.type.upper().replace("-", "_")],
            status=None if args.status is None else _STATUS_WORDS[args.status],
            page_size=args.page_size if args.max is None else min(args.page_size, args.max),
        )
        async for page in pages:
            for info in page:
                _show(info, out, json_lines=json_lines)
                shown += 1
                if shown == args.max:
                    return EXIT_OK  # before the next page is fetched
    return EXIT_OK


async def cmd_cancel(args: argparse.Namespace, out: TextIO) -> int:
    """``jobs cancel JOB_ID...``: ask the server to stop each job; one line per job."""
    refs = _refs(args.job_ids)
    json_lines = _json_lines(args, out)
    codes = []
    async with make_client(args) as kd:
        for ref in refs:
            try:
                await kd.cancel_job(ref.task_id)
            except KooDriveError as error:
                print(f"koodrive-tasks: {ref.task_id}: {error}", file=sys.stderr)
                codes.append(exit_code_for(error))
                continue
            if json_lines:
                out.write(json.dumps({"event": "canceled", "job_id": ref.task_id}) + "\n")
            else:
                out.write(f"canceled {ref.task_id}\n")
            out.flush()
            codes.append(EXIT_OK)
    return worst(codes)


async def cmd_wait(args: argparse.Namespace, out: TextIO) -> int:
    """``jobs wait JOB_ID...``: bars or JSON lines until every job ends; the worst exit code."""
    refs = _refs(args.job_ids)
    async with make_client(args) as kd:
        return await follow(kd, refs, make_renderer(args, out), args.timeout, out)


# --- parsing ------------------------------------------------------------------------------


def _page_size(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_JOB_PAGE:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_JOB_PAGE}")
    return value


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _add_create_parsers(create: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    kinds = create.add_subparsers(dest="kind", required=True, metavar="KIND")

    def kind(name: str, help_text: str, *, files: bool = True) -> argparse.ArgumentParser:
        parser = kinds.add_parser(name, parents=[common], help=help_text)
        if files:
            parser.add_argument("file_ids", nargs="+", metavar="file_id")
        parser.add_argument("--container", required=True, help="the space the job works in")
        parser.add_argument("--wait", action="store_true", help="then wait for it")
        parser.set_defaults(run=cmd_create)
        return parser

    for name in ("copy", "move"):
        parser = kind(name, f"{name} files")
        parser.add_argument("--to", help="the target space (default: the same space)")
        parser.add_argument("--path", help="where the files go (newFilePath)")
    delete = kind("delete", "move files to the recycle bin, or delete them for good")
    delete.add_argument(
        "--file-path",
        action="append",
        metavar="FILE_ID=PATH",
        help="a file's full path; needed for every file unless --permanent",
    )
    delete.add_argument("--permanent", action="store_true", help="delete for good")
    kind("restore", "restore files from the recycle bin")
    decompress = kind(
        "decompress",
        f"unpack an archive in the cloud (password from {PASSWORD_VARIABLE})",
        files=False,
    )
    decompress.add_argument("archive_id")
    decompress.add_argument("--to", help="the target space (default: the same space)")
    decompress.add_argument("--path", help="where the entries go (newFilePath)")
    decompress.add_argument(
        "--extract", action="append", metavar="PATH", help="extract only this path (repeatable)"
    )
    decompress.add_argument(
        "--view-only", action="store_true", help="list the entries without extracting"
    )
    kind("package", "package files into a zip; --wait prints its download URL")
    kind("empty-recycle-bin", "empty a space's recycle bin (allow-listed users)", files=False)


def add_jobs_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``jobs`` and its sub-commands to the CLI's ``commands``.

    Args:
        commands: The top-level sub-parsers.
        common: The parent parser of the flags every command takes.
    """
    jobs = commands.add_parser(
        "jobs",
        help="create, inspect, list, cancel and wait for batch jobs",
        description="Batch jobs: copy, move, delete, restore, decompress, package, "
        "empty the recycle bin. `cancel` stops a job on the server; interrupting "
        "`wait` (Ctrl-C) only stops watching it.",
    )
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_create_parsers(actions.add_parser("create", help="create a job and print its id"), common)

    get = actions.add_parser("get", parents=[common], help="show a job's state once")
    get.add_argument("job_id")
    get.set_defaults(run=cmd_get)

    listing = actions.add_parser("list", parents=[common], help="list jobs, newest first")
    listing.add_argument("--type", choices=list(_TYPE_WORDS.values()), help="only this type")
    listing.add_argument("--status", choices=list(_STATUS_WORDS), help="only this status")
    listing.add_argument(
        "--page-size", type=_page_size, default=MAX_JOB_PAGE, help="jobs per request (1-100)"
    )
    listing.add_argument("--max", type=_at_least_one, help="stop after this many jobs")
    listing.set_defaults(run=cmd_list)

    cancel = actions.add_parser(
        "cancel", parents=[common], help="stop jobs on the server (pending or processing)"
    )
    cancel.add_argument("job_ids", nargs="+", metavar="job_id")
    cancel.set_defaults(run=cmd_cancel)

    wait = actions.add_parser(
        "wait", parents=[common], help="wait for jobs with bars; print a package's URL"
    )
    wait.add_argument("job_ids", nargs="+", metavar="job_id")
    wait.set_defaults(run=cmd_wait)
