"""The shared validators: one family for every spec, config and record in the project.

Each ``check_*`` returns the checked value or raises ``error`` (default :class:`FieldError`, a
``ValueError``) naming the field and showing the bad value, e.g.
``latency.batch: must be an integer >= 1 (got 0)``. A bool is never accepted as a number.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional

from nas.spec.errors import FieldError


def is_int(value: Any) -> bool:
    """True for an ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """True for a finite ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _range_text(low: Optional[float], high: Optional[float], low_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}]"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"<= {high}"


def check_int(path: str, value: Any, low: Optional[int] = None, high: Optional[int] = None, *,
              error: type[FieldError] = FieldError) -> int:
    """``value`` as an integer within ``[low, high]`` (either bound may be open-ended)."""
    in_range = is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    if not in_range:
        bounds = "" if low is None and high is None else " " + _range_text(low, high)
        raise error(path, value, f"must be an integer{bounds}")
    return int(value)


def check_number(path: str, value: Any, low: Optional[float] = None, high: Optional[float] = None, *,
                 low_open: bool = False, error: type[FieldError] = FieldError) -> float:
    """``value`` as a finite number within ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if not is_number(value):
        raise error(path, value, "must be a finite number")
    too_low = low is not None and (value < low or (low_open and value == low))
    if too_low or (high is not None and value > high):
        raise error(path, value, f"must be {_range_text(low, high, low_open)}")
    return float(value)


def check_choice(path: str, value: Any, choices: Iterable[Any], *, error: type[FieldError] = FieldError) -> Any:
    """``value``, which must be one of ``choices``."""
    allowed = tuple(choices)
    stray_bool = isinstance(value, bool) and not any(isinstance(choice, bool) for choice in allowed)
    if stray_bool or value not in allowed:
        raise error(path, value, f"must be one of {list(allowed)}")
    return value


def check_bool(path: str, value: Any, *, error: type[FieldError] = FieldError) -> bool:
    """``value``, which must be ``true`` or ``false``."""
    if not isinstance(value, bool):
        raise error(path, value, "must be true or false")
    return value


def check_text(path: str, value: Any, *, error: type[FieldError] = FieldError) -> str:
    """``value``, which must be a non-empty string."""
    if not isinstance(value, str) or not value:
        raise error(path, value, "must be a non-empty string")
    return value
