"""The pytest plugin's fixtures, used exactly as the README shows (from the pytest11 entry point)."""

from __future__ import annotations

from koodrive_tasks import KooDriveClient
from koodrive_tasks.emulator import Emulator


async def test_my_download(koodrive_emulator: Emulator, koodrive_client: KooDriveClient) -> None:
    """The README example: a task added to the fixture emulator is awaited through the fixture client."""
    task_id = koodrive_emulator.add_task()
    url = await koodrive_client.wait_for_task("share-1", task_id)
    assert url.startswith(koodrive_emulator.url)
