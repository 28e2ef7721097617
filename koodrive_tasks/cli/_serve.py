"""``koodrive-tasks serve``: its flags, checked by argparse, and the emulator settings they make.

Imports nothing of the emulator at module level: only ``serve`` needs it loaded.
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..emulator import RandomScripts

DEFAULT_DURATIONS = (1.0, 20.0, 600.0)
DEFAULT_MAX_PENDING = 2.0
DEFAULT_OUTCOMES = {"completed": 80.0, "partial": 10.0, "failed": 10.0, "canceled": 0.0}
# The command-line word for each keyword of RandomScripts.from_outcome_mix.
_OUTCOME_KEYWORDS = {
    "completed": "completed",
    "partial": "partially_failed",
    "failed": "failed",
    "canceled": "canceled",
}


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{what}: {text!r} is not a finite number")
    return value


def durations(text: str) -> tuple[float, float, float]:
    """Parse ``--durations``: ``MIN,MEDIAN,MAX`` seconds, or one number for a fixed duration.

    Raises:
        argparse.ArgumentTypeError: Unless 0 < MIN <= MEDIAN <= MAX.
    """
    parts = [_number(part.strip(), "durations") for part in text.split(",")]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("durations: give MIN,MEDIAN,MAX seconds, or one number")
    low, median, high = parts
    if not 0 < low <= median <= high:
        raise argparse.ArgumentTypeError(
            f"durations: need 0 < MIN <= MEDIAN <= MAX, got {low:g},{median:g},{high:g}"
        )
    return low, median, high


def max_pending(text: str) -> float:
    """Parse ``--max-pending``: seconds >= 0."""
    value = _number(text, "max-pending")
    if value < 0:
        raise argparse.ArgumentTypeError("max-pending: must be >= 0 seconds")
    return value


def outcomes(text: str) -> dict[str, float]:
    """Parse ``--outcomes``: ``completed=W,partial=W,failed=W,canceled=W`` (omitted ones weigh 0).

    Raises:
        argparse.ArgumentTypeError: On an unknown or repeated name, a negative weight, or
            weights that are all zero.
    """
    weights: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or name not in _OUTCOME_KEYWORDS:
            raise argparse.ArgumentTypeError(
                f"outcomes: {item.strip()!r} is not NAME=WEIGHT with NAME one of "
                + ", ".join(_OUTCOME_KEYWORDS)
            )
        if name in weights:
            raise argparse.ArgumentTypeError(f"outcomes: {name} given twice")
        weight = _number(value, f"outcomes: {name}")
        if weight < 0:
            raise argparse.ArgumentTypeError(f"outcomes: {name} must be >= 0")
        weights[name] = weight
    if not sum(weights.values()) > 0:
        raise argparse.ArgumentTypeError("outcomes: at least one weight must be > 0")
    return {name: weights.get(name, 0.0) for name in _OUTCOME_KEYWORDS}


def fault_rate(text: str) -> float:
    """Parse ``--faults``: a probability from 0 to 1."""
    value = _number(text, "faults")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("faults: a probability from 0 to 1, e.g. 0.1")
    return value


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``serve``."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--shape", choices=("A", "B"), default="B", help="response shape (default B)"
    )
    parser.add_argument(
        "--durations",
        type=durations,
        default=DEFAULT_DURATIONS,
        metavar="MIN,MEDIAN,MAX",
        help="seconds a task processes: log-normal around MEDIAN, clipped to MIN..MAX; one "
        "number for a fixed duration (default 1,20,600)",
    )
    parser.add_argument(
        "--max-pending",
        type=max_pending,
        default=DEFAULT_MAX_PENDING,
        metavar="SECONDS",
        help="seconds a task waits before processing, uniform from 0 (default 2)",
    )
    parser.add_argument(
        "--outcomes",
        type=outcomes,
        default=DEFAULT_OUTCOMES,
        metavar="NAME=WEIGHT,...",
        help="how tasks end, relative weights of completed, partial, failed, canceled "
        "(default completed=80,partial=10,failed=10,canceled=0)",
    )
    parser.add_argument(
        "--faults",
        type=fault_rate,
        default=0.0,
        metavar="RATE",
        help="probability of a random fault per poll: 429, 5xx, dropped connection, slow "
        "answer, malformed or truncated JSON (default 0)",
    )
    parser.add_argument(
        "--permanent-faults",
        action="store_true",
        help="let random faults also be service errors (non-zero code) that end a wait",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--token", help="the bearer token to accept (generated and printed if absent)"
    )


def scripts_from(args: argparse.Namespace) -> RandomScripts:
    """The task distribution the parsed flags describe."""
    from ..emulator import RandomScripts  # noqa: PLC0415 - only `serve` needs the emulator

    low, median, high = args.durations
    return RandomScripts.from_outcome_mix(
        **{_OUTCOME_KEYWORDS[name]: weight for name, weight in args.outcomes.items()},
        min_duration_s=low,
        median_duration_s=median,
        max_duration_s=high,
        max_pending_s=args.max_pending,
    )


def describe(args: argparse.Namespace) -> str:
    """One line saying how tasks behave, for the start-up banner."""
    low, median, high = args.durations
    total = sum(args.outcomes.values())
    mix = ", ".join(
        f"{name} {100 * weight / total:.0f}%" for name, weight in args.outcomes.items() if weight
    )
    kinds = "transient and permanent" if args.permanent_faults else "transient"
    faults = f"{100 * args.faults:g}% {kinds} faults" if args.faults else "no faults"
    return (
        f"# tasks: {low:g}-{high:g} s (median {median:g} s) after up to {args.max_pending:g} s "
        f"pending; {mix}; {faults}"
    )
