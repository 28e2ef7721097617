"""Outcomes and exit codes: which word and which code a task's end gets on the command line."""

from __future__ import annotations

from collections.abc import Sequence

from .._models import TaskRef
from .._outcome import TaskOutcome
from ..exceptions import InvalidArgumentError, KooDriveError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_FAILED = 4
EXIT_CANCELED = 5
EXIT_TIMEOUT = 6
EXIT_AUTH = 7
EXIT_INTERRUPTED = 130
# Which exit code wins when several tasks end differently: the last in this list.
_SEVERITY = (EXIT_OK, EXIT_PARTIAL, EXIT_FAILED, EXIT_CANCELED, EXIT_TIMEOUT, EXIT_AUTH, EXIT_ERROR)


class CommandError(Exception):
    """Raised when the command line cannot be acted on; printed as one line."""


def worst(codes: Sequence[int]) -> int:
    """The exit code of the worst outcome."""
    return max(codes, key=_SEVERITY.index, default=EXIT_OK)


_EXIT_CODES = {
    "completed": EXIT_OK,
    "partially_failed": EXIT_PARTIAL,
    "failed": EXIT_FAILED,
    "canceled": EXIT_CANCELED,
    "timeout": EXIT_TIMEOUT,
    "auth_error": EXIT_AUTH,
    "error": EXIT_ERROR,
}


def classify(outcome: TaskOutcome) -> tuple[str, int, dict[str, object]]:
    """(outcome word, exit code, the outcome's JSON form) for one task's outcome."""
    return outcome.kind, _EXIT_CODES[outcome.kind], outcome.to_dict()


def exit_code_for(error: KooDriveError) -> int:
    """The exit code of an error raised outside a wait."""
    if isinstance(error, InvalidArgumentError):
        return EXIT_USAGE
    return classify(TaskOutcome(TaskRef("-", "-"), None, None, error))[1]
