"""User-facing errors.

Anything a user can fix by changing their input raises :class:`RevtuneError`. The CLI turns it into a
single line on stderr and exit code 2, so the message must carry everything needed to act on it: which
file, which line, which field and what was expected.
"""
from __future__ import annotations

from os import PathLike


class RevtuneError(Exception):
    """A problem with the user's input (file, flag, config), reported as one line."""

    def __init__(self, message: str, *, path: str | PathLike | None = None, line: int | None = None,
                 field: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
        if self.field is not None:
            where = f"{where}: field '{self.field}'" if where else f"field '{self.field}'"
        return f"{where}: {self.message}" if where else self.message


def did_you_mean(name: str, valid) -> str:
    """Suffix for unknown-name errors: the closest valid name, then every valid one."""
    import difflib

    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{hint}valid: {', '.join(valid)}"
