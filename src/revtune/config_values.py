"""Range checks of run-config values, made before anything runs.

Type coercion lets through values that are the right type but no sensible setting (``inf`` learning
rate, ``-3`` LoRA rank, a split count the split rule never accepts); some of them used to fail only
after a whole training run, others were silently ignored by the strategies that do not read them.
Every field named here is checked whatever the strategy, so a bad value is one line, up front.
"""
from __future__ import annotations

import math

from .errors import RevtuneError, shown

# field: (lowest, highest, lowest included, highest included); None = unbounded on that side
RANGES = {
    "tiny_layers": (1, 256, True, True),
    "select_interval": (1, None, True, True),
    "split_num": (1, 2, True, True),
    "lora_r": (1, 65536, True, True),
    "lora_alpha": (0, None, False, True),
    "lora_dropout": (0, 1, True, False),
    "bottleneck_dim": (1, 65536, True, True),
    "max_length": (8, 1_000_000, True, True),
    "learning_rate": (0, 10, False, True),
    "warmup_steps": (0, None, True, True),
    "weight_decay": (0, None, True, True),
    "max_grad_norm": (0, None, True, True),
    "epochs": (0, 100_000, True, True),
    "batch_size": (1, 1_000_000, True, True),
    "grad_accum": (1, 1_000_000, True, True),
    "eval_every": (0, None, True, True),
    "num_beams": (1, 64, True, True),
    "temperature": (0, None, False, True),
    "top_p": (0, 1, False, True),
    "new_tokens_factor": (0, 1000, False, True),
    "new_tokens_floor": (1, 1_000_000, True, True),
    "dev_generate": (0, None, True, True),
    "seed": (0, 2**63 - 1, True, True),
    "dev_fraction": (0, 1, False, False),
}
CHOICES = {
    "ir_aggregation": ("authors", "l2"),
    "ir_boundary": ("reference", "exact"),
}


def check_number(name: str, value, lowest=None, highest=None, low_in=True, high_in=True) -> None:
    """A finite number (not a bool) within the range; otherwise one line naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RevtuneError(f"expected a finite number, got {shown(value)}", field=name)
    too_low = lowest is not None and (value < lowest or (value == lowest and not low_in))
    too_high = highest is not None and (value > highest or (value == highest and not high_in))
    if too_low or too_high:
        left = "" if lowest is None else f"{'>=' if low_in else '>'} {lowest}"
        right = "" if highest is None else f"{'<=' if high_in else '<'} {highest}"
        raise RevtuneError(f"expected {' and '.join(p for p in (left, right) if p)}, got {shown(value)}",
                           field=name)


def check_values(values: dict) -> None:
    """Every range and choice above, the split window and the mapping fields among ``values`` (flat
    names: a config part's or a strategy's options)."""
    for name, bounds in RANGES.items():
        if name in values:
            check_number(name, values[name], *bounds)
    for name, valid in CHOICES.items():
        value = values.get(name, valid[0])
        if value not in valid:
            raise RevtuneError(f"expected one of {', '.join(valid)}, got {shown(value)}", field=name)
    window = values.get("ir_window")
    if window is not None:
        if len(window) != 2:
            raise RevtuneError(f"expected two numbers, e.g. 0.35,0.65, got {shown(window)}", field="ir_window")
        for value in window:
            check_number("ir_window", value, 0, 1)
        if not window[0] < window[1]:
            raise RevtuneError(f"expected low < high, got {shown(window)}", field="ir_window")
    for value in values.get("target_modules", []):
        if not isinstance(value, str) or not value:
            raise RevtuneError(f"expected module names, got {shown(value)}", field="target_modules")
    for key, value in values.get("upsample", {}).items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
            raise RevtuneError(f"the factor of '{key}' must be a whole number from 1 to 1000, got "
                               f"{shown(value)}", field="upsample")
    for key, value in values.get("columns", {}).items():
        if value is not None and not isinstance(value, str):
            raise RevtuneError(f"'{key}' must name a column, got {shown(value)}", field="columns")
