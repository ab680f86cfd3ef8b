"""Memory planner against measurement: predicted peak vs the peak a real run reaches, side by side.

Each configuration trains a few steps in its own process (``revtune train``) on a synthetic corpus whose
every example fills ``--max-length`` tokens, so the batch shape the planner assumes is the one trained.
On CPU the figure is peak RSS of the training phase; on CUDA, max allocated bytes.

    .venv/bin/python bench/plan.py [--model smollm2] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import WORDS, corpus_flags, train_metrics, write_corpus

CONFIGS = [("all", []), ("ir", []), ("fixed:15-29", []), ("fixed:top6", []),
           ("all", ["--gradient-checkpointing"]), ("ir", ["--min-layer", "15"])]
def measure(args, files, select, extra, out: Path) -> dict:
    metrics = train_metrics("--model", args.model, "--select", select, *corpus_flags(files),
                            "--max-steps", args.steps, "--batch-size", args.batch_size,
                            "--max-length", args.max_length, "--eval-every", args.steps, "--overwrite", *extra,
                            out=out, threads=args.threads, what=" ".join([select, *extra]))
    return {"config": " ".join([select, *extra]), "predicted": metrics["predicted_peak_memory_bytes"],
            "measured": metrics["peak_memory_bytes"],
            "ratio": metrics["predicted_peak_memory_bytes"] / metrics["peak_memory_bytes"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", help="measure only the configs whose text contains this, e.g. checkpointing")
    args = parser.parse_args()
    configs = [c for c in CONFIGS if args.only is None or args.only in " ".join([c[0], *c[1]])]
    with tempfile.TemporaryDirectory() as tmp:
        files = write_corpus(Path(tmp), {"train": 40, "dev": 5, "test": 5},
                             lambda rng: " ".join(rng.choice(WORDS) for _ in range(args.max_length)),
                             lambda before: before + " indeed")
        rows = [measure(args, files, select, extra, Path(tmp) / f"run{i}")
                for i, (select, extra) in enumerate(configs)]
    worst = max(abs(r["ratio"] - 1) for r in rows)
    if args.json:
        print(json.dumps({"rows": rows, "worst_relative_error": worst, "target": 0.15}, indent=2))
    else:
        print(f"{'config':<32} {'predicted GiB':>13} {'measured GiB':>13} {'pred/meas':>9}")
        for r in rows:
            print(f"{r['config']:<32} {r['predicted'] / 2**30:>13.3f} {r['measured'] / 2**30:>13.3f} "
                  f"{r['ratio']:>9.3f}")
    print(f"worst relative error {worst:.3f} (target <= 0.15: {'met' if worst <= 0.15 else 'missed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
