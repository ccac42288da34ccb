"""The project's error types, and how the CLI reports them (one line, exit code 2).

- :class:`NasError`: a named, user-facing error that is not a bad value (a busy device, a run
  that cannot resume, a missing package, ...). Every package derives its own errors from it.
- :class:`FieldError`: a bad value, a ``ValueError`` whose ``path`` names the field
  (``blocks[3].kernel``, ``latency.batch``) and whose message shows the value.
- :class:`SpecError`: a bad value in a spec; :class:`ConfigError`: a bad config file or key.
- :class:`MissingDependencyError`: an optional package is not installed; the message is the
  ``pip install`` line that fixes it.
"""
from __future__ import annotations

from typing import Any


class NasError(Exception):
    """Base for named, user-facing errors that are not bad values (those are ValueError)."""


class FieldError(ValueError):
    """A value is invalid. ``path`` names the field, ``value`` is what was given."""

    def __init__(self, path: str, value: Any, reason: str) -> None:
        self.path = path
        self.value = value
        self.reason = reason
        super().__init__(f"{path}: {reason} (got {value!r})")

    def under(self, prefix: str) -> "FieldError":
        """The same error (same type), with its path placed under ``prefix``."""
        joined = f"{prefix}{self.path}" if self.path.startswith("[") else f"{prefix}.{self.path}"
        return type(self)(joined, self.value, self.reason)


class SpecError(FieldError):
    """A spec value is invalid. ``path`` names the field, e.g. ``blocks[3].kernel``."""


class ConfigError(NasError, ValueError):
    """A config file is missing, malformed, or has an unknown key or a bad value."""


class MissingDependencyError(NasError, ImportError):
    """An optional package is not installed; the message says how to install it."""


USER_ERRORS: tuple[type[BaseException], ...] = (NasError, ValueError, LookupError, OSError)


def one_line(error: BaseException) -> str:
    """A single-line message for ``error``."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(str(text).split()) or type(error).__name__
