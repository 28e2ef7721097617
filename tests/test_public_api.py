"""The public surface: __all__ matches the package namespace, exceptions are documented."""

from __future__ import annotations

import importlib
import inspect
import types
from pathlib import Path

import pytest

import koodrive_tasks
from koodrive_tasks import exceptions


def test_all_is_sorted() -> None:
    """__all__ is sorted and has no duplicates."""
    assert koodrive_tasks.__all__ == sorted(koodrive_tasks.__all__)
    assert len(set(koodrive_tasks.__all__)) == len(koodrive_tasks.__all__)


def test_all_is_exactly_the_public_namespace() -> None:
    """__all__ is exactly the public (non-underscore, non-module) names bound in the package."""
    public = {
        name
        for name, value in vars(koodrive_tasks).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(koodrive_tasks.__all__)


@pytest.mark.parametrize("name", koodrive_tasks.__all__)
def test_every_name_importable(name: str) -> None:
    """Every name in __all__ can be imported from the package."""
    module = importlib.import_module("koodrive_tasks")
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from koodrive_tasks import {name}", namespace)  # noqa: S102 - the import statement is the test
    assert namespace[name] is getattr(koodrive_tasks, name)


def test_star_import_matches_all() -> None:
    """`from koodrive_tasks import *` binds exactly __all__."""
    namespace: dict[str, object] = {}
    exec("from koodrive_tasks import *", namespace)  # noqa: S102 - the import statement is the test
    assert set(namespace) - {"__builtins__"} == set(koodrive_tasks.__all__)


EXCEPTION_CLASSES = sorted(
    (
        obj
        for obj in vars(exceptions).values()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == exceptions.__name__
    ),
    key=lambda cls: cls.__name__,
)


def test_every_exception_is_exported() -> None:
    """Every exception class defined in exceptions.py is in the package's __all__."""
    assert {cls.__name__ for cls in EXCEPTION_CLASSES} <= set(koodrive_tasks.__all__)
    assert all(issubclass(cls, koodrive_tasks.KooDriveError) for cls in EXCEPTION_CLASSES)


@pytest.mark.parametrize("cls", EXCEPTION_CLASSES, ids=lambda cls: cls.__name__)
def test_every_exception_says_raised_when(cls: type) -> None:
    """Every exception class has a docstring with a 'Raised when' sentence."""
    assert cls.__doc__ is not None
    assert "Raised when" in cls.__doc__


def test_exception_tree_in_module_docstring() -> None:
    """The exceptions module docstring draws every exception class."""
    assert exceptions.__doc__ is not None
    for cls in EXCEPTION_CLASSES:
        assert cls.__name__ in exceptions.__doc__


def test_builtin_parents() -> None:
    """Exceptions subclass the nearest built-in where one fits."""
    assert issubclass(koodrive_tasks.WaitTimeoutError, TimeoutError)
    assert issubclass(koodrive_tasks.InvalidArgumentError, ValueError)
    assert issubclass(koodrive_tasks.RequestTimeoutError, TimeoutError)
    assert issubclass(koodrive_tasks.RequestTimeoutError, koodrive_tasks.TransportError)
    assert issubclass(koodrive_tasks.ClockSkewError, koodrive_tasks.AuthenticationError)
    assert issubclass(koodrive_tasks.MalformedResponseError, koodrive_tasks.ProtocolError)


def test_retryable_flags() -> None:
    """Exactly the transient errors are marked retryable."""
    retryable = {cls.__name__ for cls in EXCEPTION_CLASSES if cls.retryable}
    assert retryable == {
        "TransportError",
        "ConnectError",
        "RequestTimeoutError",
        "MalformedResponseError",
        "RateLimitedError",
        "ServerError",
        "CredentialProviderError",
    }


def test_py_typed_marker_present() -> None:
    """The package ships a py.typed marker."""
    assert (Path(koodrive_tasks.__file__).parent / "py.typed").is_file()
