"""Depth-bounded selection against plain `ir` and `all`: peak memory, step time and macro-F1 at equal steps.

Backward runs from the loss down to the lowest trained layer, so a bound on depth is what lowers peak
memory, not a smaller count of trained layers. For each seed this trains, each in its own process (so
each peak is its own) on the default model and the shipped corpus:
  all              LoRA on every layer
  ir               the IR rule on every layer
  ir@budget        the IR rule under ``--memory-budget`` = BUDGET x all's planned peak (the planner turns
                   it into the lowest layer allowed)
  ir@L             the IR rule with ``--min-layer L``, for each L of ``--min-layers``
and prints, per configuration, the mean +- std over seeds of peak memory, s/step and test macro-F1, then
the ratios the issue sets: peak / all's (goal <= 0.80) and macro-F1 - plain ir's (goal >= -0.02), paired
by seed, with a 95% t interval.

    OMP_NUM_THREADS=1 .venv/bin/python bench/depth.py --seeds 0,1,2 --json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from _common import summary, train_metrics


def run(args, seed: int, name: str, extra: list[str], work: Path) -> dict:
    out = work / f"{name.replace('@', '-at-')}-seed{seed}"
    metrics = train_metrics("--model", args.model, "--max-steps", args.steps, "--batch-size", args.batch_size,
                            "--max-length", args.max_length, "--learning-rate", args.learning_rate,
                            "--seed", seed, "--overwrite", *extra, out=out, threads=args.threads,
                            what=f"{name} seed {seed}")
    lowest = metrics.get("lowest_layer_per_step") or []
    row = {"peak_bytes": metrics["peak_memory_bytes"], "predicted_bytes": metrics.get("predicted_peak_memory_bytes"),
           "step_seconds": metrics["mean_step_seconds"], "macro_f1": metrics["test"]["macro_f1"],
           "mean_active_layers": metrics["mean_active_layers"],
           "lowest_layer_min": min(lowest) if lowest else None,
           "lowest_layer_median": statistics.median(lowest) if lowest else None}
    print(f"bench: {name} seed {seed}: macro-F1 {row['macro_f1']:.3f}, peak {row['peak_bytes'] / 2**30:.2f} GiB, "
          f"{row['step_seconds']:.2f} s/step, lowest layer {row['lowest_layer_min']}", file=sys.stderr, flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--budget", type=float, default=0.80, help="memory budget as a share of all's planned peak")
    parser.add_argument("--min-layers", default="15", help="comma-separated --min-layer values to run too")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="keep the run directories here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    floors = [int(v) for v in args.min_layers.split(",") if v]
    rows: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.out or tmp)
        for seed in seeds:
            base = run(args, seed, "all", ["--select", "all"], work)
            configs = {"ir": ["--select", "ir"],
                       "ir@budget": ["--select", "ir", "--memory-budget",
                                     str(int(args.budget * base["predicted_bytes"]))],
                       **{f"ir@{L}": ["--select", "ir", "--min-layer", str(L)] for L in floors}}
            rows.setdefault("all", []).append(base)
            for name, extra in configs.items():
                rows.setdefault(name, []).append(run(args, seed, name, extra, work))
    result = {"command": "python bench/depth.py " + " ".join(sys.argv[1:]), "seeds": seeds, "steps": args.steps,
              "budget_share_of_all": args.budget, "configs": {}}
    for name, runs in rows.items():
        result["configs"][name] = {
            "peak_gib": summary([r["peak_bytes"] / 2**30 for r in runs]),
            "step_seconds": summary([r["step_seconds"] for r in runs]),
            "macro_f1": summary([r["macro_f1"] for r in runs]),
            "lowest_layer_min": [r["lowest_layer_min"] for r in runs],
            "mean_active_layers": summary([r["mean_active_layers"] for r in runs]),
            "peak_vs_all": summary([r["peak_bytes"] / a["peak_bytes"] for r, a in zip(runs, rows["all"])]),
            "step_vs_all": summary([r["step_seconds"] / a["step_seconds"] for r, a in zip(runs, rows["all"])]),
            "f1_minus_ir": summary([r["macro_f1"] - i["macro_f1"] for r, i in zip(runs, rows["ir"])]),
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    def cell(s, digits=3):
        return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}" if len(s["values"]) > 1 else f"{s['mean']:.{digits}f}"

    print("| config | lowest layer | peak GiB | peak / all | s/step | macro-F1 | F1 - ir [95% t] |")
    print("|---|---|---|---|---|---|---|")
    for name, c in result["configs"].items():
        diff = c["f1_minus_ir"]
        print(f"| {name} | {c['lowest_layer_min']} | {cell(c['peak_gib'])} | {cell(c['peak_vs_all'])} | "
              f"{cell(c['step_seconds'], 2)} | {cell(c['macro_f1'])} | {diff['mean']:+.3f} ± {diff['ci95']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
