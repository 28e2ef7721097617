"""koodrive_tasks.sse's public surface, and the core staying free of web frameworks."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import koodrive_tasks.sse
import koodrive_tasks.sse.aiohttp
import koodrive_tasks.sse.starlette

MODULES = [koodrive_tasks.sse, koodrive_tasks.sse.aiohttp, koodrive_tasks.sse.starlette]


def test_all_is_exactly_the_public_namespace() -> None:
    """koodrive_tasks.sse.__all__ is exactly its public (non-underscore, non-module) names."""
    module = koodrive_tasks.sse
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(module.__all__)
    assert len(module.__all__) == len(set(module.__all__))


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_star_import_binds_all(module: types.ModuleType) -> None:
    """`from <module> import *` binds exactly its __all__, each name defined."""
    namespace: dict[str, object] = {}
    exec(f"from {module.__name__} import *", namespace)  # noqa: S102 - the import is the test
    assert set(namespace) - {"__builtins__"} == set(module.__all__)


def test_the_core_imports_no_web_framework() -> None:
    """Importing koodrive_tasks (and koodrive_tasks.sse) loads neither Starlette nor uvicorn."""
    code = (
        "import sys, koodrive_tasks, koodrive_tasks.sse; "
        "print(sorted(m for m in ('starlette', 'uvicorn', 'fastapi') if m in sys.modules))"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[]"
