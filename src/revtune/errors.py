"""User-facing errors.

Anything a user can fix by changing their input raises :class:`RevtuneError`. The CLI turns it into a
single line on stderr and exit code 2, so the message must carry everything needed to act on it: which
file, which line, which field and what was expected.
"""
from __future__ import annotations

import reprlib
import unicodedata
from os import PathLike

MAX_MESSAGE = 600  # characters of one error line; a hostile value cannot flood the terminal


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
        return printable(f"{where}: {self.message}" if where else self.message)


def printable(text: str, limit: int = MAX_MESSAGE) -> str:
    """One terminal-safe line: control characters (newlines, escape codes) and lone surrogates are
    shown escaped, and the line is cut at ``limit`` characters."""
    out = []
    for char in str(text):
        if char in "\n\r\t" or unicodedata.category(char) in ("Cc", "Cs", "Cf", "Zl", "Zp"):
            out.append(char.encode("unicode_escape", "backslashreplace").decode("ascii"))
        else:
            out.append(char)
    line = "".join(out)
    return line if len(line) <= limit else line[:limit - 3] + "..."


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 2, 60, 60, 4, 4


def shown(value) -> str:
    """A short repr of a user's value for an error message: bounded length and depth."""
    return _SHORT.repr(value)


def did_you_mean(name: str, valid) -> str:
    """Suffix for unknown-name errors: the closest valid name, then every valid one."""
    import difflib

    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{hint}valid: {', '.join(valid)}"
