"""The emulator package's public surface and the manual clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import koodrive_tasks.emulator as emulator_package
from koodrive_tasks.emulator import ManualClock


def test_all_is_sorted_and_exactly_the_public_names() -> None:
    """__all__ lists every public name the package exposes, and nothing else."""
    public = {
        name
        for name, value in vars(emulator_package).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("koodrive")
    }
    public |= {"DEFAULT_FAULT_MIX", "FileResultsForm", "Shape"}  # constants and aliases
    assert set(emulator_package.__all__) == public
    for name in emulator_package.__all__:
        assert hasattr(emulator_package, name)


def test_manual_clock_moves_only_when_advanced() -> None:
    """ManualClock reads the same until advanced; wall() follows; going back is refused."""
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    clock = ManualClock(start=10.0, wall_start=start)
    assert clock() == clock() == 10.0
    clock.advance(7200.5)
    assert clock() == 7210.5
    assert clock.wall() == start + timedelta(seconds=7200.5)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)
