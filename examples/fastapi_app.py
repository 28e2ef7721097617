"""A FastAPI app that packages files and shows the progress in the browser over SSE.

Run it against the embedded emulator with one command, then open the URL it prints::

    python examples/fastapi_app.py [--port 8000] [--task-seconds 10]

Same page and routes as ``aiohttp_app.py``. It runs uvicorn through
:class:`KooDriveServer`, which closes the client before uvicorn drains its
connections: uvicorn runs the lifespan shutdown only after every response has ended,
so closing the client there would leave open event streams hanging until the
graceful-shutdown timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse

from koodrive_tasks import BearerToken, KooDriveClient, KooDriveError, PollPolicy
from koodrive_tasks.emulator import Emulator, TaskScript
from koodrive_tasks.sse.starlette import EventStreamResponse

PAGE = Path(__file__).with_name("static") / "progress.html"
SHARE_ID = "share-1"
CONTAINER_ID = "container-1"
FILE_IDS = ("file-1", "file-2", "file-3")
# A progress bar wants sub-second updates; the default policy may wait two minutes.
UI_POLICY = PollPolicy.interactive()
RETRY_S = 2.0  # the browser's reconnection delay after a server restart


def create_app(kd: KooDriveClient) -> FastAPI:
    """The app, using ``kd`` (which the caller closes)."""
    app = FastAPI()

    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(PAGE)

    @app.post("/exports", status_code=201)
    async def create_export() -> JSONResponse:
        try:
            task_id = await kd.create_share_task(
                SHARE_ID, FILE_IDS, container_id=CONTAINER_ID, zip_name="export.zip"
            )
        except KooDriveError as error:
            return JSONResponse({"error": error.to_dict()}, status_code=502)
        return JSONResponse({"task_id": task_id}, status_code=201)

    @app.get("/exports/{task_id}/events")
    async def export_events(task_id: str) -> EventStreamResponse:
        return EventStreamResponse(kd.wait_for_task(SHARE_ID, task_id), retry=RETRY_S)

    return app


class KooDriveServer(uvicorn.Server):
    """uvicorn, closing the KooDrive client before it drains connections (the recipe)."""

    def __init__(self, config: uvicorn.Config, kd: KooDriveClient) -> None:
        super().__init__(config)
        self.kd = kd

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Close the client, then shut down as uvicorn does."""
        await self.kd.close()  # every open event stream ends now, with an `error` event
        await super().shutdown(sockets)


async def serve(host: str, port: int, task_seconds: float) -> None:
    """Run an emulator, a client for it and the app until Ctrl-C or SIGTERM."""
    script = TaskScript(pending_s=0.5, duration_s=task_seconds)
    async with Emulator(script=script) as emu:
        auth = BearerToken(emu.token)
        async with KooDriveClient(
            emu.url, auth=auth, allow_insecure_urls=True, policy=UI_POLICY
        ) as kd:
            # Bind first, so that the URL (port 0: a free port) can be printed.
            listener = socket.create_server((host, port))
            config = uvicorn.Config(create_app(kd), log_level="info", access_log=False)
            server = KooDriveServer(config, kd)
            bound_host, bound_port = listener.getsockname()[:2]
            print(f"Serving on http://{bound_host}:{bound_port}/ (Ctrl-C to stop)", flush=True)
            await server.serve(sockets=[listener])


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and serve until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--task-seconds", type=float, default=10.0, help="how long a task runs")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.task_seconds))


if __name__ == "__main__":
    main()
