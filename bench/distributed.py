"""One process vs two (DDP, and FSDP with --fsdp) at the same global batch, on CPU (gloo).

Each strategy trains once as 1 process x batch B and once under ``torchrun --nproc_per_node 2`` with
batch B/2 per rank (same seed, same data order), and the bench prints, per strategy and engine:
  step seconds   mean step time (first step excluded)
  peak MiB/rank  peak resident memory of each rank
  agree          share of steps whose active set equals the single process's

    OMP_NUM_THREADS=1 .venv/bin/python bench/distributed.py --model tiny --steps 20
    .venv/bin/python bench/distributed.py --model smollm2 --steps 10 --select ir,lisa --fsdp --json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path


def train(out: Path, select: str, nproc: int, batch: int, args, fsdp: bool = False) -> dict:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    command = [*launcher, "-m", "revtune.cli", "train", "--model", args.model, "--select", select,
               "--max-steps", str(args.steps), "--batch-size", str(batch), "--max-length", str(args.max_length),
               "--learning-rate", str(args.learning_rate), "--seed", str(args.seed), "--lora-dropout", "0",
               "--eval-every", str(args.steps), "--out", str(out), "--overwrite", *(["--fsdp"] if fsdp else [])]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if not (out / "metrics.json").exists():  # a finished run in --out is reused: an interrupted bench resumes
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            sys.exit(f"bench: {select} with {nproc} process(es) failed:\n{result.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["sets"] = [json.loads(line)["active"] for line in (out / "selection.jsonl").read_text().splitlines()]
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--select", default="ir,random,lisa,all", help="comma-separated strategies")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=171)
    parser.add_argument("--fsdp", action="store_true", help="also run the two processes with --fsdp")
    parser.add_argument("--out", help="keep the run directories here (default: a temporary folder); "
                                      "finished runs found there are reused")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    folder = Path(args.out or tempfile.mkdtemp(prefix="revtune-bench-dist-"))
    folder.mkdir(parents=True, exist_ok=True)
    engines = [("ddp", False)] + ([("fsdp", True)] if args.fsdp else [])
    rows = []
    for select in args.select.split(","):
        name = select.replace(":", "-")
        one = train(folder / f"{name}-1", select, 1, args.global_batch, args)
        rows.append({"select": select, "engine": "single", "processes": 1,
                     "step_seconds": one["mean_step_seconds"],
                     "peak_mib_per_rank": [b / 2**20 for b in one["peak_memory_bytes_per_rank"]],
                     "agree": 1.0, "macro_f1": one["test"].get("macro_f1")})
        for engine, fsdp in engines:
            two = train(folder / f"{name}-2-{engine}", select, 2, args.global_batch // 2, args, fsdp)
            agree = sum(a == b for a, b in zip(one["sets"], two["sets"])) / max(1, len(one["sets"]))
            rows.append({"select": select, "engine": engine, "processes": 2,
                         "step_seconds": two["mean_step_seconds"],
                         "peak_mib_per_rank": [b / 2**20 for b in two["peak_memory_bytes_per_rank"]],
                         "agree": agree, "macro_f1": two["test"].get("macro_f1"),
                         "step_time_vs_single": two["mean_step_seconds"] / one["mean_step_seconds"]})
    result = {"rows": rows, "settings": {k: v for k, v in vars(args).items() if k not in ("json", "out")},
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version()}, "runs": str(folder)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"global batch {args.global_batch}, {args.steps} steps, model {args.model}, "
          f"{os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}")
    print(f"{'select':<10} {'engine':<7} {'procs':>5} {'s/step':>8} {'vs 1':>6} {'peak MiB/rank':>20} "
          f"{'agree':>6} {'macro-F1':>9}")
    for row in rows:
        peaks = "/".join(f"{p:,.0f}" for p in row["peak_mib_per_rank"])
        ratio = f"{row['step_time_vs_single']:.2f}" if "step_time_vs_single" in row else "-"
        f1 = f"{row['macro_f1']:.4f}" if row["macro_f1"] is not None else "-"
        print(f"{row['select']:<10} {row['engine']:<7} {row['processes']:>5} {row['step_seconds']:>8.3f} "
              f"{ratio:>6} {peaks:>20} {row['agree']:>6.0%} {f1:>9}")
    print(f"runs in {folder}")


if __name__ == "__main__":
    main()
