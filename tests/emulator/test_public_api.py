"""The emulator package's public surface."""

from __future__ import annotations

import koodrive_tasks.emulator as emulator_package


def test_all_is_sorted_and_exactly_the_public_names() -> None:
    """__all__ lists every public name the package exposes, and nothing else."""
    public = {
        name
        for name, value in vars(emulator_package).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("koodrive")
    }
    public |= {
        "DEFAULT_FAULT_MIX",
        "PERMANENT_FAULTS",
        "TRANSIENT_FAULTS",
        "FileResultsForm",
        "Shape",
    }  # constants and aliases
    assert set(emulator_package.__all__) == public
    for name in emulator_package.__all__:
        assert hasattr(emulator_package, name)
