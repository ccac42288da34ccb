"""The error types the CLI reports as one line (exit code 2) instead of a traceback."""
from __future__ import annotations


class NasError(Exception):
    """Base for named, user-facing errors that are not bad values (those are ValueError)."""


USER_ERRORS: tuple[type[BaseException], ...] = (NasError, ValueError, LookupError, OSError)


def one_line(error: BaseException) -> str:
    """A single-line message for ``error``."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    text = " ".join(str(text).split()) or type(error).__name__
    return text
