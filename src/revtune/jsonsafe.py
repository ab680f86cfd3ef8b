"""JSON from users' files, with the one-line errors of :class:`RevtuneError` for every way it can fail.

``json.loads`` raises ``RecursionError`` (not ``JSONDecodeError``) on deeply nested input, such as
10,000 opening brackets on one line; here that is bad input like any other.
"""
from __future__ import annotations

import json

from .errors import RevtuneError


def parse_json(text: str, path, line: int | None = None, expected: str = "one JSON object per line"):
    """The parsed value of ``text`` (one line of a JSONL file, or a whole JSON file)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RevtuneError(f"malformed JSON at column {e.colno}: {e.msg} (expected {expected})", path=path,
                           line=e.lineno if line is None else line) from None
    except RecursionError:
        raise RevtuneError("JSON nested too deeply to read", path=path, line=line) from None


def read_json_file(path, expected: str = "a JSON object") -> dict:
    """A whole JSON file that must hold an object (a run's config.json, metrics.json, ...)."""
    from pathlib import Path

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RevtuneError("missing", path=path) from None
    except UnicodeDecodeError:
        raise RevtuneError("not UTF-8 text", path=path) from None
    except OSError as e:
        raise RevtuneError(f"cannot read: {e.strerror}", path=path) from None
    value = parse_json(text, path, expected=expected)
    if not isinstance(value, dict):
        raise RevtuneError(f"expected {expected}, got {type(value).__name__}", path=path)
    return value
