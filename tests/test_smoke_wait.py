"""First end-to-end checks of wait_for_task against a mocked KooDrive."""

from __future__ import annotations

from kd_fakes import PACKAGE_URL, MockKooDrive, shape_a, shape_b

from koodrive_tasks import KooDriveClient, TaskStatus
from koodrive_tasks.testing import VirtualClock


async def test_wait_yields_changes_and_returns_url(
    mock: MockKooDrive, client: KooDriveClient, clock: VirtualClock
) -> None:
    """Iteration yields first observation and each change; await returns the URL without re-polling."""
    mock.detail(payload=shape_a(0))
    mock.detail(payload=shape_a(1, 10))
    mock.detail(payload=shape_a(1, 10))
    mock.detail(payload=shape_b(1, 70))
    mock.detail(payload=shape_b(2, 100, result=1, url=PACKAGE_URL))
    waiter = client.wait_for_task("s1", "t1")
    seen = [(u.status, u.progress) async for u in waiter]
    assert seen == [
        (TaskStatus.PENDING, 0),
        (TaskStatus.PROCESSING, 10),
        (TaskStatus.PROCESSING, 70),
        (TaskStatus.COMPLETED, 100),
    ]
    assert await waiter == PACKAGE_URL
    assert len(mock.requests_to("https://kd.example.com/koodrive/ose/v1/share/taskDetail")) == 5
    # polls at 0, then 1, 2, 4, 8 s later with FAST policy
    assert clock.monotonic() == 1 + 2 + 4 + 8
