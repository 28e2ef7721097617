"""The example apps, served in-process on loopback against an emulator, for the web tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import uvicorn
from aiohttp import web
from sse_support import Event, load_example, read_events

from koodrive_tasks import BearerToken, KooDriveClient, PollPolicy
from koodrive_tasks.emulator import Emulator, TaskScript

APPS = ("aiohttp_app", "fastapi_app")
# Seconds, real: a task that a test can watch from start to end in about 1.5 s.
FAST_SCRIPT = TaskScript(pending_s=0.2, duration_s=1.2)
FAST_POLICY = PollPolicy.backoff(initial_delay=0.2, factor=1.3, max_delay=1.0, jitter=0.0)


@dataclass
class RunningApp:
    """An example app being served, its emulator and its client."""

    url: str
    emulator: Emulator
    kd: KooDriveClient
    server: Any  # the aiohttp runner or the uvicorn server

    async def start_export(self, http: aiohttp.ClientSession) -> str:
        async with http.post(f"{self.url}/exports") as answer:
            assert answer.status == 201, await answer.text()
            return str((await answer.json())["task_id"])

    async def events(self, http: aiohttp.ClientSession, task_id: str) -> list[Event]:
        async with http.get(f"{self.url}/exports/{task_id}/events") as answer:
            assert answer.status == 200
            return [event async for event in read_events(answer)]


@asynccontextmanager
async def running_app(
    name: str, script: TaskScript = FAST_SCRIPT, policy: PollPolicy = FAST_POLICY
) -> AsyncIterator[RunningApp]:
    """Serve ``examples/<name>.py`` on a free loopback port (real time)."""
    module = load_example(name)
    async with Emulator(script=script) as emu:
        auth = BearerToken(emu.token)
        async with KooDriveClient(
            emu.url, auth=auth, allow_insecure_urls=True, policy=policy
        ) as kd:
            if name == "aiohttp_app":
                runner = web.AppRunner(module.create_app(kd), access_log=None)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                try:
                    yield RunningApp(f"http://127.0.0.1:{site.port}", emu, kd, runner)
                finally:
                    await runner.cleanup()
                return
            listener = socket.create_server(("127.0.0.1", 0))
            port = listener.getsockname()[1]
            config = uvicorn.Config(module.create_app(kd), log_config=None, access_log=False)
            server = module.KooDriveServer(config, kd)
            serving = asyncio.ensure_future(server.serve(sockets=[listener]))
            while not server.started:
                if serving.done():
                    serving.result()  # startup failed: say why
                await asyncio.sleep(0.01)
            try:
                yield RunningApp(f"http://127.0.0.1:{port}", emu, kd, server)
            finally:
                server.should_exit = True
                await serving
