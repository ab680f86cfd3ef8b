"""Compare two run directories: are they the same run, bit for bit, timings aside?

Compared: ``selection.jsonl`` (record by record), every tensor under ``adapter/`` (dtype, shape and
bits), ``metrics.json`` without its timing and memory keys, ``config.json`` without ``out`` and
``overwrite`` and the checkpointing knobs, and ``trainable.txt``. Intention-Tuning outputs are compared
sub-run by sub-run (``predictor/``, ``generator/``, ``alignment/``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import RevtuneError

TIMING_KEYS = {"mean_step_seconds", "train_seconds", "peak_memory_bytes", "peak_memory_bytes_per_rank",
               "step_peak_memory_bytes", "median_step_peak_memory_bytes",
               "predicted_peak_memory_bytes"}  # measured (the prediction starts from the RSS), not computed
CONFIG_KEYS_IGNORED = {"out", "overwrite", "save_every", "keep_checkpoints"}
SUB_RUNS = ("predictor", "generator", "alignment")


def _without_timings(value, root: str):
    """Timing keys dropped, and the run's own location written as ``<run>`` (``frequency:OUT/predictor``
    names it), so two copies of one run at different paths compare equal."""
    if isinstance(value, dict):
        return {k: _without_timings(v, root) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timings(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<run>")
    return value


def _flat_config(run: Path) -> dict:
    """A run's settings by flat name (``seed``, ``lora_r``), from its nested ``config.json`` or the flat
    one of an older run."""
    from .config import RunConfig, legacy_values

    saved = _json(run / "config.json")
    return RunConfig.from_values(saved if "data" in saved else legacy_values(saved)).flat()


def _same(a, b) -> bool:
    """Equality that treats NaN as equal to NaN (a run that logged NaN twice is the same run)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


def _first_difference(a, b, where="") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{where}{key}: only in {'B' if key not in a else 'A'}"
            if not _same(a[key], b[key]):
                return _first_difference(a[key], b[key], f"{where}{key}.")
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where.rstrip('.')}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            if not _same(x, y):
                return _first_difference(x, y, f"{where}{i}.")
    return f"{where.rstrip('.')}: {a!r} vs {b!r}"


def _json(path: Path):
    return json.loads(path.read_text())


def _tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    tensors = {}
    for path in sorted(folder.rglob("*.safetensors")):
        for name, value in load_file(str(path)).items():
            tensors[f"{path.relative_to(folder)}:{name}"] = value
    return tensors


def _bits(tensor):
    """The tensor's bytes, so -0.0 vs 0.0 and NaN payloads count as differences."""
    import torch

    return tensor.contiguous().reshape(-1).view(torch.uint8)


def diff_runs(a: str | Path, b: str | Path, roots: tuple[str, str] | None = None) -> list[str]:
    """Differences between runs ``a`` and ``b``, one line each; empty when they are the same run."""
    a, b = Path(a), Path(b)
    roots = roots or (str(a), str(b))
    for run in (a, b):
        if not run.is_dir():
            raise RevtuneError("run directory not found", path=run, field="run")
    subs = [s for s in SUB_RUNS if (a / s).is_dir() or (b / s).is_dir()]
    if subs:
        found = []
        for sub in subs:
            found += [f"{sub}/{line}" for line in diff_runs(a / sub, b / sub, roots)]
        return found
    if not (a / "config.json").is_file():
        raise RevtuneError("not a run directory (no config.json)", path=a, field="run")
    found = []
    rows_a = [json.loads(line) for line in (a / "selection.jsonl").read_text().splitlines()]
    rows_b = [json.loads(line) for line in (b / "selection.jsonl").read_text().splitlines()]
    if not _same(rows_a, rows_b):
        found.append(f"selection.jsonl: {_first_difference(rows_a, rows_b)}")
    ta, tb = _tensors(a / "adapter"), _tensors(b / "adapter")
    if ta.keys() != tb.keys():
        found.append(f"adapter: tensor names differ ({sorted(ta.keys() ^ tb.keys())[:3]} ...)")
    for name in sorted(ta.keys() & tb.keys()):
        x, y = ta[name], tb[name]
        if x.dtype != y.dtype or x.shape != y.shape or not _bits(x).equal(_bits(y)):
            delta = (x.double() - y.double()).abs().max().item() if x.shape == y.shape else float("nan")
            found.append(f"adapter {name}: differs (max abs difference {delta:.3g})")
    ma, mb = (_without_timings(_json(run / "metrics.json"), root) for run, root in ((a, roots[0]), (b, roots[1])))
    if not _same(ma, mb):
        found.append(f"metrics.json: {_first_difference(ma, mb)}")
    ca, cb = ({k: v for k, v in _without_timings(_flat_config(run), root).items()
               if k not in CONFIG_KEYS_IGNORED} for run, root in ((a, roots[0]), (b, roots[1])))
    if not _same(ca, cb):
        found.append(f"config.json: {_first_difference(ca, cb)}")
    if (a / "trainable.txt").read_text() != (b / "trainable.txt").read_text():
        found.append("trainable.txt: differs")
    return found
