"""Byte sizes as users write them (3GiB, 800MiB, 2e9); torch-free, so config validation stays cheap."""
from __future__ import annotations

import re

from .errors import RevtuneError

UNITS = {"": 1, "b": 1, "k": 2 ** 10, "kb": 2 ** 10, "kib": 2 ** 10, "m": 2 ** 20, "mb": 2 ** 20,
         "mib": 2 ** 20, "g": 2 ** 30, "gb": 2 ** 30, "gib": 2 ** 30, "t": 2 ** 40, "tb": 2 ** 40,
         "tib": 2 ** 40}


def parse_bytes(text: str, field: str) -> int:
    """``3GiB``, ``2.5g``, ``800MB`` or a plain number of bytes (binary units throughout)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in UNITS:
        raise RevtuneError(f"expected a size such as 3GiB, 800MiB or 2e9, got {text!r}", field=field)
    value = float(match.group(1)) * UNITS[unit]
    if not value > 0:
        raise RevtuneError(f"expected a size above 0, got {text!r}", field=field)
    return int(value)
