"""The package download route: a real zip behind an HMAC-signed, expiring link."""

from __future__ import annotations

import io
import zipfile

import aiohttp
import pytest
from emulator_helpers import Api

from koodrive_tasks.emulator import Emulator, Outcome, TaskScript, file_contents
from koodrive_tasks.testing import VirtualClock


async def completed_url(api: Api, emu: Emulator, clock: VirtualClock, **overrides: object) -> str:
    task_id = await api.create(emu, **overrides)
    clock.advance(60)
    url = (await api.info(emu, task_id))["downloadUrl"]
    assert isinstance(url, str)
    return url


async def fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, str, bytes]:
    async with http.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def test_download_is_a_zip_of_the_requested_files(
    api: Api, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    """The link serves a valid zip with one entry per file, named after its id."""
    async with Emulator(clock=clock) as emu:
        url = await completed_url(api, emu, clock, fileIds=["doc-1", "img-2"], zipName="p.zip")
        assert url.startswith(f"{emu.url}/download/")
        assert "expires=" in url
        assert "sig=" in url
        status, content_type, body = await fetch(session, url)
        assert (status, content_type) == (200, "application/zip")
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            assert archive.testzip() is None
            assert archive.namelist() == ["doc-1", "img-2"]
            assert archive.read("img-2") == file_contents("img-2")
        assert emu.stats.requests["download"] == 1


async def test_download_holds_only_succeeded_files(
    api: Api, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    """A partially failed task's zip holds only the files that succeeded."""
    script = TaskScript(outcome=Outcome.PARTIALLY_FAILED, failed_file_ids={"b"})
    async with Emulator(clock=clock, script=script) as emu:
        url = await completed_url(api, emu, clock, fileIds=["a", "b", "c"])
        _, _, body = await fetch(session, url)
        assert zipfile.ZipFile(io.BytesIO(body)).namelist() == ["a", "c"]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda u: u[:-1] + ("0" if u[-1] != "0" else "1"), id="signature"),
        pytest.param(lambda u: u.replace("expires=", "expires=9"), id="expiry"),
        pytest.param(lambda u: u.split("?")[0], id="no-query"),
    ],
)
async def test_tampered_link_is_forbidden(
    api: Api, session: aiohttp.ClientSession, clock: VirtualClock, tamper: object
) -> None:
    """Changing the signature or the expiry, or dropping the query, gets 403."""
    async with Emulator(clock=clock) as emu:
        url = await completed_url(api, emu, clock)
        status, _, body = await fetch(session, tamper(url))  # type: ignore[operator]
        assert status == 403
        assert b"SignatureDoesNotMatch" in body


async def test_link_to_another_task_is_forbidden(
    api: Api, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    """A signature is bound to its task id."""
    async with Emulator(clock=clock) as emu:
        url = await completed_url(api, emu, clock)
        other = emu.add_task()
        clock.advance(60)
        task_id = url.split("/download/")[1].split(".zip")[0]
        status, _, _ = await fetch(session, url.replace(task_id, other))
        assert status == 403


async def test_expired_link_is_forbidden(api: Api, session: aiohttp.ClientSession) -> None:
    """After download_ttl_s of wall-clock time the link gets 403."""
    clock = VirtualClock(autojump=False)
    async with Emulator(clock=clock, download_ttl_s=120) as emu:
        url = await completed_url(api, emu, clock)
        clock.advance(100)
        assert (await fetch(session, url))[0] == 200
        clock.advance(30)
        status, _, body = await fetch(session, url)
        assert status == 403
        assert b"expired" in body


async def test_no_link_for_failed_dump_or_running_tasks(api: Api, clock: VirtualClock) -> None:
    """Only completed package downloads with a success get a downloadUrl."""
    async with Emulator(clock=clock) as emu:
        failed = emu.add_task(TaskScript(outcome=Outcome.ALL_FAILED))
        dump = emu.add_task(task_type=2)
        running = emu.add_task(TaskScript(duration_s=1000))
        clock.advance(60)
        for task_id in (failed, dump, running):
            assert (await api.info(emu, task_id))["downloadUrl"] == ""
