"""Pytest fixtures for testing code that uses KooDrive tasks, against the emulator.

Registered under the ``pytest11`` entry point, so installing ``koodrive-tasks`` makes
these fixtures available; they need ``pytest-asyncio``.

Fixtures:
    koodrive_clock: A virtual clock shared by the emulator and the client: sleeps take
        no real time (time jumps ahead whenever the event loop is idle), so a task
        scripted to take an hour finishes instantly. ``koodrive_clock.advance(s)``
        moves time by hand.
    koodrive_emulator_options: A ``dict`` of keyword arguments for
        :class:`~koodrive_tasks.emulator.Emulator`; empty by default. Override it in a
        ``conftest.py`` or a test module to configure the emulator, e.g.
        ``return {"shape": "A", "clock": clock, "fault_rate": 0.1, "seed": 1}``.
    koodrive_emulator: A running :class:`~koodrive_tasks.emulator.Emulator` on
        loopback (function scope), stopped after the test. Its ``url``, ``token``,
        ``app_id``/``app_secret``/``user_id`` and ``stats`` are ready to use.
    koodrive_client: A connected ``KooDriveClient`` for ``koodrive_emulator``,
        authenticated with its bearer token and allowed to use its plain-HTTP URLs.
        It shares ``koodrive_clock`` with the emulator unless the options give the
        emulator a clock of their own (then both use their own time).

Example::

    async def test_download(koodrive_emulator, koodrive_client):
        task_id = koodrive_emulator.add_task(TaskScript(pending_s=0, duration_s=0.1))
        ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from .emulator import Emulator
from .testing import VirtualClock

if TYPE_CHECKING:
    # pytest-asyncio's decorator is untyped; pytest's has the same signature.
    _async_fixture = pytest.fixture
else:
    try:
        from pytest_asyncio import fixture as _async_fixture
    except ImportError:  # pragma: no cover - without pytest-asyncio, rely on the host's plugin
        _async_fixture = pytest.fixture


@pytest.fixture
def koodrive_clock() -> VirtualClock:
    """A virtual clock for the emulator and the client."""
    return VirtualClock()


@pytest.fixture
def koodrive_emulator_options() -> dict[str, Any]:
    """Keyword arguments for the emulator; override to configure it."""
    return {}


@_async_fixture
async def koodrive_emulator(
    koodrive_emulator_options: dict[str, Any], koodrive_clock: VirtualClock
) -> AsyncIterator[Emulator]:
    """Yield a running emulator on loopback, stopped after the test."""
    options: dict[str, Any] = {"clock": koodrive_clock}
    options.update(koodrive_emulator_options)
    async with Emulator(**options) as emulator:
        yield emulator


@_async_fixture
async def koodrive_client(
    koodrive_emulator: Emulator,
    koodrive_emulator_options: dict[str, Any],
    koodrive_clock: VirtualClock,
) -> AsyncIterator[Any]:
    """Yield a ``KooDriveClient`` connected to ``koodrive_emulator`` with its token."""
    # Imported here so the plugin (and every other fixture) loads even when the
    # client cannot be imported.
    from koodrive_tasks import BearerToken, KooDriveClient  # noqa: PLC0415

    shares_clock = "clock" not in koodrive_emulator_options
    client = KooDriveClient(
        koodrive_emulator.url,
        auth=BearerToken(koodrive_emulator.token),
        allow_insecure_urls=True,
        clock=koodrive_clock if shares_clock else None,
    )
    async with client as connected:
        yield connected
