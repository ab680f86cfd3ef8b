"""Checks of command options that are not run-config fields (those are checked by the config)."""
from __future__ import annotations


def check_positive(name: str, value) -> None:
    """A command option's count (a batch size) from 1 to 1,000,000 (0 or -1 would fail deep inside a
    loop); one line naming it."""
    from .errors import RevtuneError

    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise RevtuneError(f"expected a whole number from 1 to 1000000, got {value!r}", field=name)
