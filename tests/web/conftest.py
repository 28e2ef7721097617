"""Fixtures of the web tests: a mocked KooDrive that lets loopback HTTP through."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kd_fakes import MockKooDrive
from sse_support import ScriptedTasks

from koodrive_tasks.testing import VirtualClock


@pytest.fixture
def mock() -> Iterator[MockKooDrive]:
    # The apps under test are served on loopback: those requests go to them for real.
    with MockKooDrive(passthrough=["http://127.0.0.1"]) as m:
        yield m


@pytest.fixture
def tasks(mock: MockKooDrive, clock: VirtualClock) -> ScriptedTasks:
    scripted = ScriptedTasks(clock)
    mock.detail(callback=scripted, repeat=True)
    return scripted
