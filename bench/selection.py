"""What IR selection costs, measured side by side in one run.

Runs three trainings of the same model, data, seed and steps, each in its own process so that peak
memory is that configuration's own:
  ir      IR-Tuning (gradient-norm scores + variance split every step)
  replay  the ir run's own active sets replayed as fixed sets (same layers trained, no scoring)
  all     adapters on every layer
and prints
  overhead_ir_vs_replay = mean step time of ir / replay      (target <= 1.03)
  memory_ir_vs_all      = peak memory of ir / all            (target <= 0.85)
plus macro-F1 of ir and all at equal steps.

    .venv/bin/python bench/selection.py            # default model, shipped corpus
    .venv/bin/python bench/selection.py --json     # one JSON object
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from _common import train_metrics


def train(out: Path, select: str, args) -> dict:
    return train_metrics("--model", args.model, "--select", select, "--max-steps", args.steps,
                         "--batch-size", args.batch_size, "--max-length", args.max_length,
                         "--learning-rate", args.learning_rate, "--seed", args.seed, out=out, what=select)


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=171)
    parser.add_argument("--out", help="keep the run directories here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    folder = Path(args.out or tempfile.mkdtemp(prefix="revtune-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    ir = train(folder / "ir", "ir", args)
    replay = train(folder / "replay", f"replay:{folder / 'ir'}", args)
    full = train(folder / "all", "all", args)
    result = {
        "overhead_ir_vs_replay": ir["mean_step_seconds"] / replay["mean_step_seconds"],
        "memory_ir_vs_all": ir["peak_memory_bytes"] / full["peak_memory_bytes"],
        "macro_f1_ir": ir["test"]["macro_f1"], "macro_f1_all": full["test"]["macro_f1"],
        "step_seconds": {"ir": ir["mean_step_seconds"], "replay": replay["mean_step_seconds"],
                         "all": full["mean_step_seconds"]},
        "peak_memory_gib": {name: m["peak_memory_bytes"] / 2**30
                            for name, m in (("ir", ir), ("replay", replay), ("all", full))},
        "mean_active_layers_ir": ir["mean_active_layers"], "n_layers": ir["n_layers"],
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "out")},
        "machine": machine(), "runs": str(folder),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"overhead_ir_vs_replay  {result['overhead_ir_vs_replay']:.3f}  (target <= 1.03)")
    print(f"memory_ir_vs_all       {result['memory_ir_vs_all']:.3f}  (target <= 0.85)")
    print(f"macro-F1 ir / all      {result['macro_f1_ir']:.4f} / {result['macro_f1_all']:.4f}")
    print(f"step seconds           {result['step_seconds']}")
    print(f"peak memory GiB        {result['peak_memory_gib']}")
    print(f"runs in {folder}")


if __name__ == "__main__":
    main()
