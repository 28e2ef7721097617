"""Fixtures: a virtual clock, a mocked KooDrive, a client wired to both."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator

import pytest
from kd_fakes import BASE, FAST, TOKEN, MockKooDrive

from koodrive_tasks import BearerToken, KooDriveClient
from koodrive_tasks.testing import VirtualClock


@pytest.fixture
def mock() -> Iterator[MockKooDrive]:
    with MockKooDrive() as m:
        yield m


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def client(clock: VirtualClock) -> AsyncIterator[KooDriveClient]:
    async with KooDriveClient(BASE, auth=BearerToken(TOKEN), clock=clock, policy=FAST) as kd:
        yield kd


@pytest.fixture(autouse=True)
def _no_unclosed_sessions() -> Iterator[None]:
    """Fail a test that leaves an aiohttp session or connector open (ResourceWarning is an error)."""
    yield
    gc.collect()
