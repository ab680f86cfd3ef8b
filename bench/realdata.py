"""TF-IDF floor vs `ir` vs `all` on a real corpus, split by document, over several seeds.

For each seed the corpus is split by ``doc_id`` (no document on two sides): about 20% of the rows'
documents are held out as test, and a dev split (for best-dev model selection) is carved from the
remaining documents. Then, each in its own process and with the library's defaults plus any extra
``revtune train`` flags given after ``--``:
  tfidf   the classical floor (class-balanced logistic regression on TF-IDF of deleted/added words)
  ir      revtune train --select ir
  all     revtune train --select all
and prints macro-F1 mean +- std over seeds with a 95% t interval for each, and the paired margins of
`ir` over the floor and over `all`. Figures on a development corpus are development figures.

    .venv/bin/python bench/realdata.py --data ../shared/data/r3-dev --seeds 0,1,2
    .venv/bin/python bench/realdata.py --data DIR --json -- --prompt pair --class-weight none
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import summary
from revtune import corpora
from revtune.rundir import write_jsonl


def corpus_file(data: str) -> Path:
    path = Path(data)
    if path.is_dir():
        files = sorted(path.glob("train.jsonl")) or sorted(path.glob("*.jsonl"))
        if not files:
            sys.exit(f"bench: no .jsonl file in {path}")
        return files[0]
    return path


def write_split(records, path: Path) -> Path:
    """A split as the generic tabular JSONL (before, after, intents, doc_id, context), whatever format the
    corpus came in."""
    write_jsonl(path, [{"before": r.before, "after": r.after, "intents": list(r.intents),
                        "doc_id": r.doc_id, **({"context": r.context} if r.context else {})}
                       for r in records])
    return path


def make_splits(records, seed: int, test_fraction: float, dev_fraction: float, folder: Path) -> dict:
    rest, test = corpora.document_split(records, test_fraction, seed)
    train, dev = corpora.document_split(rest, dev_fraction, seed + 1000)
    folder.mkdir(parents=True, exist_ok=True)
    return {name: write_split(part, folder / f"{name}.jsonl")
            for name, part in (("train", train), ("dev", dev), ("test", test))}


def run(command: list[str], log: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as handle:
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        sys.exit(f"bench: {' '.join(command)} failed (exit {code}); see {log}:\n"
                 + log.read_text()[-2000:])


def train_one(name: str, splits: dict, seed: int, folder: Path, args, extra: list[str]) -> dict:
    data = ["--train", str(splits["train"]), "--dev", str(splits["dev"]), "--test", str(splits["test"]),
            "--seed", str(seed), "--out", str(folder / name), "--overwrite"]
    if name == "tfidf":
        command = [sys.executable, "-m", "revtune.tfidf", *data]
    else:
        command = [sys.executable, "-m", "revtune.cli", "train", "--model", args.model, "--select", name,
                   *data, *extra]
    started = time.perf_counter()
    run(command, folder / f"{name}.log")
    metrics = json.loads((folder / name / "metrics.json").read_text())
    return {"test_at_best_dev": metrics["test_at_best_dev"].get("macro_f1"),
            "test": metrics["test"].get("macro_f1"), "best_dev": metrics["best_dev"].get("macro_f1"),
            "best_dev_step": metrics["best_dev"].get("step"), "steps": metrics["steps"],
            "train_seconds": metrics["train_seconds"], "wall_seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="flags after -- go to every `revtune train` (ir and all)")
    parser.add_argument("--data", required=True, help="corpus file, or a folder holding train.jsonl")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated; each seed splits and trains")
    parser.add_argument("--select", default="ir,all", help="strategies beside the tfidf floor")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of rows held out (by doc)")
    parser.add_argument("--dev-fraction", type=float, default=0.15, help="share of the rest carved as dev")
    parser.add_argument("--metric", default="test_at_best_dev", choices=("test_at_best_dev", "test"),
                        help="which test score the summary reports (best-dev weights or final weights)")
    parser.add_argument("--out", help="keep splits and run directories here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    names = ["tfidf", *[s for s in args.select.split(",") if s and s != "tfidf"]]
    records = corpora.read_corpus(corpus_file(args.data))
    folder = Path(args.out or tempfile.mkdtemp(prefix="revtune-realdata-"))
    runs: dict[str, list[dict]] = {name: [] for name in names}
    sizes = []
    for seed in seeds:
        splits = make_splits(records, seed, args.test_fraction, args.dev_fraction, folder / f"seed{seed}")
        sizes.append({k: sum(1 for _ in open(v)) for k, v in splits.items()})
        for name in names:
            runs[name].append(train_one(name, splits, seed, folder / f"seed{seed}", args, extra))
            if not args.json:
                print(f"seed {seed} {name:6s} {args.metric} {runs[name][-1][args.metric]:.4f} "
                      f"(best dev {runs[name][-1]['best_dev']:.4f}, {runs[name][-1]['wall_seconds']:.0f} s)",
                      flush=True)
    score = {name: [r[args.metric] for r in rows] for name, rows in runs.items()}
    result = {"metric": f"{args.metric}.macro_f1", "seeds": seeds, "split_sizes": sizes,
              "summary": {name: summary(values) for name, values in score.items()},
              "dev": {name: summary([r["best_dev"] for r in rows]) for name, rows in runs.items()},
              "margins": {}, "runs": runs, "train_flags": extra, "model": args.model,
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "threads": os.environ.get("OMP_NUM_THREADS")}, "folder": str(folder)}
    if "ir" in score:
        for other in (n for n in names if n != "ir"):
            result["margins"][f"ir_minus_{other}"] = summary(np.subtract(score["ir"], score[other]))
    if args.json:
        print(json.dumps(result))
        return
    print(f"\n{result['metric']} over seeds {seeds} (mean +- std, 95% t interval); development figures")
    for name, s in result["summary"].items():
        print(f"  {name:6s} {s['mean']:.4f} +- {s['std']:.4f}  [{s['mean'] - s['ci95']:.4f}, "
              f"{s['mean'] + s['ci95']:.4f}]   dev {result['dev'][name]['mean']:.4f}")
    for name, s in result["margins"].items():
        print(f"  {name:16s} {s['mean']:+.4f} +- {s['std']:.4f}  [{s['mean'] - s['ci95']:+.4f}, "
              f"{s['mean'] + s['ci95']:+.4f}]")
    print(f"runs in {folder}")


if __name__ == "__main__":
    main()
