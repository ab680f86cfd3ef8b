"""Shipped presets: a named YAML file of config keys (``src/revtune/data/presets/NAME.yaml``) that a run
starts from, under its own YAML file and flags; a recipe in ``configs/`` may name one (``preset:``). ``ir-reference`` is the IR-Tuning authors' settings
(docs/REFERENCE.md)."""
from __future__ import annotations

from pathlib import Path

from .errors import RevtuneError, did_you_mean

PRESETS = ("ir-reference",)


def preset_values(name: str) -> dict:
    """A preset's keys, validated like any YAML config (``RunConfig(**preset_values("ir-reference"))``)."""
    from .config import load_yaml

    if name not in PRESETS:
        raise RevtuneError(f"unknown preset: {did_you_mean(name, PRESETS)}", field="preset")
    return load_yaml(Path(__file__).parent / "data" / "presets" / f"{name}.yaml")


def with_preset(values: dict) -> dict:
    """``values`` over the preset they name (if any). A preset's fp16 applies only on a GPU."""
    if not values.get("preset"):
        return values
    preset = preset_values(str(values["preset"]))
    if preset.get("dtype") == "float16" and "dtype" not in values:
        preset["dtype"] = _half_precision_where_supported(values.get("device", preset.get("device", "auto")))
    return {**preset, **values}


def _half_precision_where_supported(device: str) -> str:
    """The reference trains in fp16 on GPUs; on a CPU (or MPS) fp16 training is slow or unsupported: fp32."""
    from .runtime import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return "float16"
    print(f"revtune: preset: fp16 (the reference's) needs a GPU; training in float32 on {resolved.type}",
          flush=True)
    return "float32"
