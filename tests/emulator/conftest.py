"""Shared fixtures for the emulator tests: a manual clock, an HTTP session, request helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from emulator_helpers import Api

from koodrive_tasks.emulator import ManualClock

# The plugin's fixtures, imported so they work before the pytest11 entry point is installed.
from koodrive_tasks.pytest_plugin import (  # noqa: F401
    koodrive_client,
    koodrive_emulator,
    koodrive_emulator_options,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1000.0)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def api(session: aiohttp.ClientSession) -> Api:
    return Api(session)
