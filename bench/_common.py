"""What the benchmarks share: running ``revtune`` in a process of its own, and a synthetic intent corpus.

Each measured run gets its own process, so its peak memory and its thread count are its own; a failed
run stops the benchmark with the tail of its stderr (a figure from a half-run is worse than none).
"""
from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

WORDS = "the committee approved a budget for next year while members argued about costs".split()
LABELS = ["clarity", "fluency", "coherence", "style", "meaning-changed"]


def revtune(*args, threads: int | None = None, what: str = "") -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds and the finished ``revtune ARGS`` process; exits the benchmark when it fails."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "revtune.cli", *map(str, args)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"bench: {what or ' '.join(command[3:])} failed:\n{result.stderr.strip()[-2000:]}")
    return time.perf_counter() - started, result


def train_metrics(*args, out: Path, threads: int | None = None, what: str = "") -> dict:
    """``revtune train ARGS --out OUT`` and the metrics.json it wrote."""
    revtune("train", *args, "--out", out, threads=threads, what=what)
    return json.loads((Path(out) / "metrics.json").read_text())


def write_corpus(folder: Path, sizes: dict[str, int], text: Callable[[random.Random], str],
                 after: Callable[[str], str]) -> dict[str, Path]:
    """Intent splits (``{"train": 40, ...}``) of generated sentences, labels in turn, seeded."""
    rng = random.Random(0)
    files = {}
    for name, n in sizes.items():
        path = Path(folder) / f"{name}.jsonl"
        with path.open("w") as handle:
            for i in range(n):
                before = text(rng)
                handle.write(json.dumps({"before_sent": before, "after_sent": after(before),
                                         "labels": LABELS[i % len(LABELS)]}) + "\n")
        files[name] = path
    return files


def corpus_flags(files: dict[str, Path]) -> list:
    return ["--train", files["train"], "--dev", files["dev"], "--test", files["test"]]


def summary(values: list[float]) -> dict:
    """Mean, sample std and the half-width of a 95% t interval (nan for one seed)."""
    import numpy as np
    from scipy import stats

    x = np.asarray(values, dtype=float)
    std = float(x.std(ddof=1)) if len(x) > 1 else math.nan
    half = float(stats.t.ppf(0.975, len(x) - 1) * std / math.sqrt(len(x))) if len(x) > 1 else math.nan
    return {"mean": float(x.mean()), "std": std, "ci95": half, "values": [float(v) for v in x]}
