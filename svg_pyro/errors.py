"""The failures a user can fix. The command line prints these (and ``OSError``) as one line and exits
with status 2; any other exception is a bug and keeps its traceback."""
from __future__ import annotations


class SvgPyroError(Exception):
    """A failure whose message names the problem and the fix: a bad option or input, a missing or
    unfit file, a diverged or refused run."""


class InvalidInput(SvgPyroError, ValueError):
    """A value the program cannot use (an option, a shape, a file's content)."""


class InvalidType(SvgPyroError, TypeError):
    """An input of the wrong type."""


class MissingInput(SvgPyroError, FileNotFoundError):
    """A file or folder the program was pointed at is not there."""
