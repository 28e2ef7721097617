"""attrs validators shared by the settings objects; they raise ``InvalidArgumentError``."""

from __future__ import annotations

import math
import sys
from typing import Any

import attrs

from .exceptions import InvalidArgumentError

_FLOAT_MAX = sys.float_info.max


def is_text(value: str) -> bool:
    """Whether ``value`` has a UTF-8 encoding (no lone surrogate), ASCII checked first."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def require_text(name: str, value: object) -> None:
    """Check that ``value`` is a non-empty string with a UTF-8 encoding.

    Raises:
        InvalidArgumentError: Otherwise, quoting the value (never pass a secret).
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"{name} must be a non-empty string, got {value!r}")
    if not is_text(value):
        raise InvalidArgumentError(f"{name} is not valid text (a lone surrogate)")


def has_control_character(value: str) -> bool:
    """Whether ``value`` holds a character no HTTP header may carry (CR, LF, NUL, ...)."""
    return any(ord(char) < 32 or ord(char) == 127 for char in value)


def header_value(name: str, value: object) -> str | None:
    """``value`` checked as an optional header value: ``None``, or text a header can carry.

    Raises:
        InvalidArgumentError: If it is not a string, is empty, or holds a control
            character or a lone surrogate.
    """
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"{name} must be a non-empty string or None, got {value!r}")
    if has_control_character(value) or not is_text(value):
        raise InvalidArgumentError(f"{name} holds a character no HTTP header can carry")
    return value


def is_number(value: object) -> bool:
    """A real int or float that a float can hold (booleans are not numbers here).

    An int past the float range (``10**400``) is refused here rather than reach
    ``math.isfinite``, which raises ``OverflowError`` on it.
    """
    if type(value) is float:
        return True
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and -_FLOAT_MAX <= value <= _FLOAT_MAX
    )


def non_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """A finite number >= 0."""
    if not (is_number(value) and math.isfinite(value) and value >= 0):
        raise InvalidArgumentError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def fraction(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """A number from 0 to 1."""
    if not (is_number(value) and 0 <= value <= 1):
        raise InvalidArgumentError(f"{attribute.name} must be between 0 and 1, got {value!r}")


def positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """A finite number > 0."""
    if not (is_number(value) and math.isfinite(value) and value > 0):
        raise InvalidArgumentError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def positive_or_none(
    instance: object, attribute: attrs.Attribute[Any], value: float | None
) -> None:
    """A finite number > 0, or ``None``."""
    if value is not None and not (is_number(value) and math.isfinite(value) and value > 0):
        raise InvalidArgumentError(f"{attribute.name} must be > 0 or None, got {value!r}")


def at_least_one(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    """An integer >= 1."""
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise InvalidArgumentError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def boolean(instance: object, attribute: attrs.Attribute[Any], value: bool) -> None:
    """``True`` or ``False``, not merely truthy."""
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{attribute.name} must be True or False, got {value!r}")
