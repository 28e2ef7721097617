"""The README's Python examples: each parses, and every name it imports from the library exists."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_an_example_parses_and_imports_only_what_exists(number: int) -> None:
    """Snippets may await at top level (they run inside an async function or a REPL), and
    use names defined by the text around them; what they import from koodrive_tasks must
    be there."""
    tree = compile(
        BLOCKS[number],
        f"README.md python block {number}",
        "exec",
        flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("koodrive_tasks"):
            module = importlib.import_module(node.module or "")
            missing = [alias.name for alias in node.names if not hasattr(module, alias.name)]
            assert not missing, f"{node.module} has no {missing} (block {number})"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("koodrive_tasks"):
                    importlib.import_module(alias.name)
