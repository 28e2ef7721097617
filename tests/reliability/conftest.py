"""Reliability suites: a guard that no secret reaches a log record or an exception.

Every test under ``tests/reliability`` runs with the autouse ``secret_guard``: it
captures every log record at DEBUG (the ``koodrive_tasks`` logger and the root logger,
so aiohttp and asyncio records too), records every ``KooDriveError`` created while the
test runs (raised, retried internally, or carried in an outcome) and the exception a
failing test ends with, and fails the test if the access token, the app secret, the
kdstoken or a download URL's signed query appears in any of them (``str``, ``repr``,
and the ``repr`` of every attribute).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the suites' helper module, rel_support

import rel_support

from koodrive_tasks import exceptions


class SecretLedger:
    """Extra secret values a test adds (e.g. an emulator's signed URL) and what was seen."""

    def __init__(self) -> None:
        self.extra: set[str] = set()
        self.errors: list[BaseException] = []

    def add(self, *values: str) -> None:
        """Also fail on these values."""
        self.extra.update(v for v in values if v)

    def texts_of_errors(self) -> Iterator[tuple[str, str]]:
        """(where, text) for every recorded exception: str, repr, and each attribute's repr."""
        for error in self.errors:
            name = type(error).__name__
            yield f"str({name})", str(error)
            yield f"repr({name})", repr(error)
            for attr, value in vars(error).items():
                yield f"{name}.{attr}", repr(value)


@pytest.fixture
def secret_ledger() -> SecretLedger:
    """The current test's ledger of extra secret values."""
    return SecretLedger()


@pytest.fixture(autouse=True)
def secret_guard(
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    secret_ledger: SecretLedger,
) -> Iterator[SecretLedger]:
    """Fail the test if a known secret reaches a log record or an exception's text."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="koodrive_tasks")
    original_init = exceptions.KooDriveError.__init__

    def recording_init(self: exceptions.KooDriveError, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        secret_ledger.errors.append(self)

    monkeypatch.setattr(exceptions.KooDriveError, "__init__", recording_init)
    yield secret_ledger
    monkeypatch.undo()
    problems: list[str] = []
    for record in caplog.get_records("setup") + caplog.get_records("call"):
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]!s} {record.exc_info[1]!r}"
        problems.extend(
            f"log record {record.name}:{record.levelname} shows {leak!r}: {text[:300]}"
            for leak in rel_support.leaks_in(text, secret_ledger.extra)
        )
    for where, text in secret_ledger.texts_of_errors():
        problems.extend(
            f"{where} shows {leak!r}: {text[:300]}"
            for leak in rel_support.leaks_in(text, secret_ledger.extra)
        )
    if problems:
        pytest.fail("secret leaked:\n" + "\n".join(dict.fromkeys(problems)), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Mark the report of a test whose final exception shows a secret (the guard's last check)."""
    report = yield
    if call.excinfo is not None and call.when == "call":
        error = call.excinfo.value
        leaks = rel_support.leaks_in(f"{error!s} {error!r}")
        if leaks:
            report.outcome = "failed"
            report.longrepr = (
                f"the exception that ended the test shows a secret {leaks!r}:\n{report.longrepr}"
            )
    return report
