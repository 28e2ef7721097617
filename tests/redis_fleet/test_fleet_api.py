"""The fleet package's public surface, and that nothing imports redis-py before it is needed."""

from __future__ import annotations

import subprocess
import sys
import types

import koodrive_tasks.fleet as fleet


def test_all_is_exactly_the_public_names() -> None:
    """koodrive_tasks.fleet.__all__ lists every public name it has, no more."""
    public = {
        name
        for name, value in vars(fleet).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert len(set(fleet.__all__)) == len(fleet.__all__)
    assert set(fleet.__all__) == public


def test_neither_the_core_nor_the_fleet_package_imports_redis_by_itself() -> None:
    """Importing koodrive_tasks (or its fleet package) loads no Redis client library."""
    code = (
        "import sys, koodrive_tasks; "
        "assert 'koodrive_tasks.fleet' not in sys.modules; "
        "import koodrive_tasks.fleet; "
        "loaded = [m for m in ('redis', 'valkey') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603 (our own code)


def test_a_claim_is_true_only_when_held() -> None:
    """A Claim reads as True in a boolean context exactly when the lease is held."""
    assert fleet.Claim(held=True, expires_in=1.0)
    assert not fleet.Claim(held=False, expires_in=1.0)
