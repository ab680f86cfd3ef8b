"""Layer card benchmark: what a card costs next to one training step, and what its placement is worth.

    python bench/layer_card.py --json --steps 30 --batch-size 8 --max-length 128

On the default model and the shipped corpus: (1) ``revtune layer-card`` once, its compute time and
peak memory relative to one training step of ``all`` (goal: at most 10 steps' cost); (2) macro-F1
after the same number of steps for the card's placement at a 20% layer budget against ``all``, ``ir``,
``fixed:topK`` and ``fixed:midK`` (K = the same 20%). Every configuration runs in its own process, so
each peak-memory figure is that process's alone, and all get the same thread count.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _common import revtune


def cli(args: list[str], threads: int) -> tuple[float, subprocess.CompletedProcess]:
    return revtune(*args, threads=threads)


def run_config(name: str, select: list[str], common: list[str], work: Path, threads: int) -> dict:
    out = work / "runs" / name
    wall, _ = cli(["train", *common, *select, "--out", str(out), "--overwrite"], threads)
    metrics = json.loads((out / "metrics.json").read_text())
    row = {"select": " ".join(select), "test_macro_f1": metrics["test"].get("macro_f1"),
           "test_macro_f1_at_best_dev": metrics["test_at_best_dev"].get("macro_f1"),
           "best_dev_macro_f1": metrics["best_dev"].get("macro_f1"),
           "mean_step_seconds": metrics["mean_step_seconds"], "peak_memory_bytes": metrics["peak_memory_bytes"],
           "train_seconds": metrics["train_seconds"], "mean_active_layers": metrics["mean_active_layers"],
           "trainable_params": metrics["trainable_params"], "wall_seconds": wall}
    print(f"bench: {name}: macro-F1 {row['test_macro_f1']:.4f}, {row['mean_step_seconds']:.2f} s/step, "
          f"{row['mean_active_layers']:.1f} layers", file=sys.stderr, flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--probe-batches", type=int, default=4)
    parser.add_argument("--budget", type=float, default=0.2, help="share of the layers for the placements")
    parser.add_argument("--threads", type=int, default=1, help="OMP threads per process (shared machine: 1)")
    parser.add_argument("--work", default="bench-runs/layer_card")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = parser.parse_args(argv)

    work = Path(args.work)
    common = ["--model", args.model, "--max-steps", str(args.steps), "--batch-size", str(args.batch_size),
              "--max-length", str(args.max_length)]
    card_dir = work / "card"
    card_wall, _ = cli(["layer-card", *common, "--probe-batches", str(args.probe_batches), "--out",
                        str(card_dir), "--overwrite"], args.threads)
    card = json.loads((card_dir / "card.json").read_text())
    n = card["model"]["n_layers"]
    k = max(1, round(args.budget * n))
    print(f"bench: card in {card['timing']['card_seconds']:.1f} s ({card_wall:.1f} s wall)", file=sys.stderr)
    configs = {
        f"card_layers{k}": ["--select", f"card:{card_dir}", "--budget", f"layers={k}"],
        "all": ["--select", "all"],
        "ir": ["--select", "ir"],
        f"top{k}": ["--select", f"fixed:top{k}"],
        f"mid{k}": ["--select", f"fixed:mid{k}"],
    }
    runs = {name: run_config(name, select, common, work, args.threads) for name, select in configs.items()}
    step = runs["all"]["mean_step_seconds"]
    selection = json.loads((work / "runs" / f"card_layers{k}" / "selection.jsonl").read_text().splitlines()[0])
    result = {
        "command": "python bench/layer_card.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": args.model, "n_layers": n, "budget_layers": k, "steps": args.steps,
        "batch_size": args.batch_size, "max_length": args.max_length, "threads": args.threads,
        "card": {"seconds": card["timing"]["card_seconds"], "signals_seconds": card["timing"]["signals_seconds"],
                 "coupling_seconds": card["timing"]["coupling_seconds"], "wall_seconds": card_wall,
                 "peak_bytes": card["timing"]["card_peak_bytes"], "probe_tokens": card["probe"]["tokens"],
                 "rho": card["coupling"]["rho"], "layers": selection["active"],
                 "steps_equivalent": card["timing"]["card_seconds"] / step,
                 "peak_memory_vs_step": card["timing"]["card_peak_bytes"] / runs["all"]["peak_memory_bytes"]},
        "runs": runs,
    }
    print(json.dumps(result, indent=2) if args.json else
          "\n".join(f"{name:>14}: macro-F1 {r['test_macro_f1']:.4f}  {r['mean_step_seconds']:.2f} s/step"
                    for name, r in runs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
