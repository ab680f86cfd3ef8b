"""Intention-Tuning vs LoRA on every layer for revision generation, equal steps, side by side.

    python bench/generation.py --json                      # smollm2, shipped corpus, 30 steps, batch 8

Each configuration runs in its own ``revtune`` process, so peak memory (CPU: peak RSS from the start of
training; GPU: max allocated) and step time are measured the same way for each:

1. ``predictor``: ``revtune train --task intent --select ir`` (Intention-Tuning step 1; its cost is
   reported, not part of the ratios);
2. ``intention``: ``revtune intention-tune --predictor <1>`` (step 2: the generator on S_gen, adapters
   initialised from the predictor's);
3. ``lora-all``: ``revtune train --task revise --select all --adapter lora``.

Ratios are intention / lora-all (below 1 means Intention-Tuning is cheaper). The test split can be capped
(``--test-limit``) because greedy generation dominates the time of a short CPU run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MEMORY_TARGET = 0.85
METRICS = ("sari", "gleu", "update_r", "copy_rate", "exact_match")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--test-limit", type=int, default=40, help="first N test items (0: all)")
    parser.add_argument("--dev-generate", type=int, default=8, help="dev items generated per dev evaluation")
    parser.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS of each run (0: inherit)")
    parser.add_argument("--work", default="bench-runs/generation", help="folder for the three run directories")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser.parse_args(argv)


def capped_test(args, work: Path) -> Path:
    from revtune.corpora import sample_path

    lines = sample_path("test").read_text().splitlines()
    lines = lines[:args.test_limit] if args.test_limit > 0 else lines
    path = work / "test.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def common(args, test: Path) -> list[str]:
    return ["--model", args.model, "--max-steps", args.steps, "--batch-size", args.batch_size,
            "--max-length", args.max_length, "--test", test, "--dev-generate", args.dev_generate,
            "--overwrite"]


def revtune(name: str, argv: list, env: dict) -> float:
    """Run one configuration in its own process; returns its wall time."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "revtune.cli", *map(str, argv)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench: {name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    print(f"bench: {name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return time.perf_counter() - started


def run_all(args) -> dict:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    test = capped_test(args, work)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    base = common(args, test)
    wall = {
        "predictor": revtune("predictor", ["train", "--task", "intent", "--select", "ir", *base,
                                           "--out", work / "predictor"], env),
        "intention": revtune("intention", ["intention-tune", "--predictor", work / "predictor", *base,
                                           "--out", work / "intention"], env),
        "lora-all": revtune("lora-all", ["train", "--task", "revise", "--select", "all", "--adapter", "lora",
                                         *base, "--out", work / "lora-all"], env),
    }
    return summarise(work, wall, args)


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _cost(metrics: dict) -> dict:
    return {key: metrics[key] for key in ("steps", "mean_step_seconds", "peak_memory_bytes", "train_seconds",
                                          "trainable_params", "mean_trainable_params_per_step",
                                          "mean_active_layers", "n_layers")}


def summarise(work: Path, wall: dict, args) -> dict:
    predictor = _read(work / "predictor" / "metrics.json")
    intention = _read(work / "intention" / "metrics.json")
    generator = _read(work / "intention" / "generator" / "metrics.json")
    lora = _read(work / "lora-all" / "metrics.json")
    memory = generator["peak_memory_bytes"] / lora["peak_memory_bytes"]
    return {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "ratios": {"peak_memory": memory, "step_time": generator["mean_step_seconds"] / lora["mean_step_seconds"],
                   "trainable_params_per_step": generator["mean_trainable_params_per_step"]
                   / lora["mean_trainable_params_per_step"]},
        "memory_target": MEMORY_TARGET, "memory_target_met": memory <= MEMORY_TARGET,
        "generator_layers": intention["generator_layers"],
        "importance_frequency": intention["importance_frequency"],
        "test": {"intention": {k: generator["test"].get(k) for k in METRICS},
                 "lora-all": {k: lora["test"].get(k) for k in METRICS}},
        "test_at_best_dev": {"intention": {k: generator["test_at_best_dev"].get(k) for k in METRICS},
                             "lora-all": {k: lora["test_at_best_dev"].get(k) for k in METRICS}},
        "cost": {"predictor": _cost(predictor), "intention": _cost(generator), "lora-all": _cost(lora)},
        "wall_seconds": wall,
        "predictor_test_macro_f1": predictor["test"].get("macro_f1"),
    }


def format_table(result: dict) -> str:
    cost, ratios = result["cost"], result["ratios"]
    lines = [f"{'config':<10} {'s/step':>7} {'peak GiB':>9} {'params/step':>12}  " +
             "  ".join(f"{m:>11}" for m in METRICS)]
    for name in ("intention", "lora-all"):
        test = result["test"][name]
        lines.append(f"{name:<10} {cost[name]['mean_step_seconds']:>7.2f} "
                     f"{cost[name]['peak_memory_bytes'] / 2**30:>9.2f} "
                     f"{cost[name]['mean_trainable_params_per_step']:>12,.0f}  " +
                     "  ".join(f"{test[m]:>11.4f}" for m in METRICS))
    lines += ["", f"peak memory ratio {ratios['peak_memory']:.3f} (target <= {result['memory_target']}: "
                  f"{'met' if result['memory_target_met'] else 'NOT met'}), step time ratio "
                  f"{ratios['step_time']:.3f}, trainable params per step ratio "
                  f"{ratios['trainable_params_per_step']:.3f}",
              f"generator layers {result['generator_layers']} of {cost['intention']['n_layers']}; predictor "
              f"step 1: {cost['predictor']['steps']} steps, {cost['predictor']['train_seconds']:.0f} s, "
              f"test macro-F1 {result['predictor_test_macro_f1']:.3f}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run_all(args)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
