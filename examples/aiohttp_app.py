"""An aiohttp app that packages files and shows the progress in the browser over SSE.

Run it against the embedded emulator with one command, then open the URL it prints::

    python examples/aiohttp_app.py [--port 8080] [--task-seconds 10]

``GET /`` serves the page (``static/progress.html``), ``POST /exports`` starts a
package task, and ``GET /exports/{task_id}/events`` streams its progress and result.
On Ctrl-C or SIGTERM the client is closed first (``on_shutdown``), so every open
stream ends with a final event before the server waits for its handlers.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from aiohttp import web

from koodrive_tasks import BearerToken, KooDriveClient, KooDriveError, PollPolicy
from koodrive_tasks.emulator import Emulator, TaskScript
from koodrive_tasks.sse.aiohttp import sse_response

PAGE = Path(__file__).with_name("static") / "progress.html"
SHARE_ID = "share-1"
CONTAINER_ID = "container-1"
FILE_IDS = ("file-1", "file-2", "file-3")
# A progress bar wants sub-second updates; the default policy may wait two minutes.
UI_POLICY = PollPolicy.interactive()
RETRY_S = 2.0  # the browser's reconnection delay after a server restart

KD = web.AppKey("kd", KooDriveClient)


async def page(request: web.Request) -> web.FileResponse:
    """The progress page."""
    return web.FileResponse(PAGE)


async def create_export(request: web.Request) -> web.Response:
    """Start a package task; answer its id."""
    try:
        task_id = await request.app[KD].create_share_task(
            SHARE_ID, FILE_IDS, container_id=CONTAINER_ID, zip_name="export.zip"
        )
    except KooDriveError as error:
        return web.json_response({"error": error.to_dict()}, status=502)
    return web.json_response({"task_id": task_id}, status=201)


async def export_events(request: web.Request) -> web.StreamResponse:
    """Stream a task's progress and result (Server-Sent Events)."""
    waiter = request.app[KD].wait_for_task(SHARE_ID, request.match_info["task_id"])
    return await sse_response(request, waiter, retry=RETRY_S)


async def close_client(app: web.Application) -> None:
    """Close the client when the server shuts down (the shutdown recipe)."""
    # The shutdown recipe: on_shutdown runs before aiohttp waits for running handlers,
    # so every open event stream ends now, with an `error` event, instead of being
    # cut off when the shutdown timeout expires.
    await app[KD].close()


def create_app(kd: KooDriveClient | None = None) -> web.Application:
    """The app; pass a client, or add a cleanup context that sets ``app[KD]``."""
    app = web.Application()
    if kd is not None:
        app[KD] = kd
    app.router.add_get("/", page)
    app.router.add_post("/exports", create_export)
    app.router.add_get("/exports/{task_id}/events", export_events)
    app.on_shutdown.append(close_client)
    return app


def with_emulator(task_seconds: float) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context: an emulator whose tasks take ``task_seconds``, and a client for it."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        script = TaskScript(pending_s=0.5, duration_s=task_seconds)
        async with Emulator(script=script) as emu:
            auth = BearerToken(emu.token)
            client = KooDriveClient(emu.url, auth=auth, allow_insecure_urls=True, policy=UI_POLICY)
            async with client as kd:
                app[KD] = kd
                yield

    return context


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and serve until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--task-seconds", type=float, default=10.0, help="how long a task runs")
    args = parser.parse_args(argv)
    app = create_app()
    app.cleanup_ctx.append(with_emulator(args.task_seconds))

    def announce(banner: str) -> None:
        url = re.search(r"https?://\S+", banner)
        print(f"Serving on {url.group(0) if url else banner}/ (Ctrl-C to stop)", flush=True)

    web.run_app(app, host=args.host, port=args.port, print=announce, access_log=None)


if __name__ == "__main__":
    main()
