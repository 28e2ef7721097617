"""Shared fixtures for the emulator tests: a virtual clock that moves only when advanced, an HTTP session, request helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from emulator_helpers import Api

from koodrive_tasks.testing import VirtualClock


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(1000.0, autojump=False)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def api(session: aiohttp.ClientSession) -> Api:
    return Api(session)
