"""Behaviour fingerprint of every strategy on the tiny model: selections and metrics, timing removed.

Runs each strategy as a ``revtune train`` child on a toy corpus (plus a layer card and an intention-tune
directory for ``card:`` and ``intention:``), and writes one JSON of what each run selected and scored.
Two fingerprints taken before and after a refactor must be equal:

    python bench/behaviour.py OUT_DIR           # writes OUT_DIR/fingerprint.json
    python bench/behaviour.py OUT_DIR --against OLD/fingerprint.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from revtune.rundiff import TIMING_KEYS

INTENTS = {"clarity": ("the thing was done by them", "the committee approved the budget"),
           "fluency": ("they was going their", "they were going there"),
           "coherence": ("It rained. We stayed.", "It rained, so we stayed."),
           "style": ("kids got super mad", "the children became very upset")}
NEW_KEYS = {"labels", "multi_label", "model_source", "layer_sizes", "outside_params",  # moved from config.json
            "base_model_name", "confusion"}  # added by reports and export
SPECS = ["ir", "weight", "cosine", "all", "fixed:0-2,-1", "full", "random:3", "lisa:2:3",
         "lisa:2:20:frozen-embeddings", "ist", "replay:{runs}/ir", "frequency:{runs}/ir",
         "intention:{work}/intention", "card:{work}/card --budget layers=2"]
ADAPTER_RUNS = [("ir", "dora"), ("ir", "bottleneck"), ("random:2", "none"), ("ist", "bottleneck")]


def write_corpus(path: Path, per_intent: int, offset: int) -> str:
    rows = [{"before_sent": f"{b} (item {i + offset})", "after_sent": f"{a} (item {i + offset})", "labels": name}
            for i in range(per_intent) for name, (b, a) in INTENTS.items()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def cli(*args) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-m", "revtune.cli", *map(str, args)], capture_output=True,
                            text=True, env=env)
    if result.returncode:
        raise SystemExit(f"failed: {' '.join(map(str, args))}\n{result.stderr[-3000:]}")


def strip(value):
    """What a behaviour change would move: measured and newly added keys dropped at every depth, so a
    fingerprint written by an older tree compares on what both trees record."""
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in TIMING_KEYS | NEW_KEYS}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("work")
    parser.add_argument("--against")
    parser.add_argument("--resume", action="store_true", help="keep runs already in WORK")
    args = parser.parse_args()
    work = Path(args.work)
    runs = work / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    data = {s: write_corpus(work / f"{s}.jsonl", n, o) for s, n, o in (("train", 6, 0), ("dev", 2, 100),
                                                                      ("test", 2, 200))}
    base = ["--model", "tiny", "--train", data["train"], "--dev", data["dev"], "--test", data["test"],
            "--max-steps", "12", "--batch-size", "4", "--max-length", "200", "--lora-r", "4",
            "--lora-alpha", "8", "--overwrite"]
    if not (args.resume and (work / "card").is_dir()):
        cli("layer-card", *base, "--probe-batches", "1", "--out", work / "card")
    base += ["--eval-every", "6"]
    if not (args.resume and (work / "intention").is_dir()):
        cli("intention-tune", *base, "--out", work / "intention")
    found = {}
    jobs = [(spec.format(runs=runs, work=work), None) for spec in SPECS] + ADAPTER_RUNS
    for job, adapter in jobs:
        spec, *extra = job.split()
        name = spec.replace(str(work) + "/", "").replace("/", "_").replace(":", "_") + (f"_{adapter}" if adapter else "")
        out = runs / ("ir" if spec == "ir" and not adapter else name)
        if not (args.resume and (out / "metrics.json").is_file()):
            cli("train", *base, "--select", spec, *extra, *(["--adapter", adapter] if adapter else []), "--out", out)
        metrics = json.loads((out / "metrics.json").read_text())
        metrics["strategy"] = metrics["strategy"].replace(str(work), "WORK")
        found[name] = {"selection": (out / "selection.jsonl").read_text(), "metrics": strip(metrics)}
        print(f"{name}: {metrics['importance_frequency']}", flush=True)
    intention = json.loads((work / "intention" / "metrics.json").read_text())
    found["intention-tune"] = {k: intention[k] for k in ("test", "importance_frequency", "generator_layers")}
    (work / "fingerprint.json").write_text(json.dumps(found, indent=1, sort_keys=True))
    if args.against:
        old = json.loads(Path(args.against).read_text())
        differ = [k for k in old if strip(old[k]) != strip(found.get(k))]
        print(f"{len(old)} runs compared, {len(differ)} differ: {differ}")
        raise SystemExit(1 if differ else 0)


if __name__ == "__main__":
    main()
