"""Does resident memory grow with steps? A long `revtune train` with selection at every step.

Starts one ordinary `revtune train` (tiny model by default, `ir` selection every step, dev evaluation
rarely), reads its resident set size from /proc/PID/status a few times a second and its step from the
`selection.jsonl` it streams (one flushed line per step), and fits RSS against step by least squares
over the steps after warm-up (the first quarter: allocator pools, lazy imports and the first
evaluation fill up there). A leak of one small dict per step would show as a positive slope; the
figure to read is `slope_bytes_per_step` and the projected growth over 10,000 steps.

    OMP_NUM_THREADS=1 .venv/bin/python bench/soak.py --steps 3000 [--json]

Linux only (reads /proc).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def steps_done(log: Path) -> int:
    try:
        with open(log, "rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 16), b""))
    except OSError:
        return 0


def fit(points: list[tuple[int, int]]) -> tuple[float, float]:
    """(slope, intercept) of RSS on step by least squares."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx if sxx else 0.0
    return slope, mean_y - slope * mean_x


def soak(args) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "soak"
        command = [sys.executable, "-m", "revtune.cli", "train", "--model", args.model, "--select", args.select,
                   "--select-interval", "1", "--max-steps", str(args.steps), "--batch-size", "4",
                   "--max-length", "64", "--lora-r", "4", "--lora-alpha", "8", "--eval-every", str(args.steps),
                   "--dev-fraction", "0.2", "--seed", "0", "--out", str(out)]
        src = args.src or str(ROOT / "src")
        env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
        log = (Path(folder) / "train.log").open("w+")  # a file, not a pipe: an unread pipe fills and blocks it
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env, text=True)
        samples: list[tuple[int, int]] = []
        started = time.perf_counter()
        while child.poll() is None:
            rss = rss_bytes(child.pid)
            step = steps_done(Path(folder) / "soak.partial" / "selection.jsonl")  # rundir.partial_path
            if rss and step:
                samples.append((step, rss))
            time.sleep(args.interval)
        seconds = time.perf_counter() - started
        if child.returncode != 0:
            log.seek(0)
            sys.exit(f"soak: training failed:\n{log.read()[-2000:]}")
    training = [(s, r) for s, r in samples if s < args.steps]  # the final evaluation and saving excluded
    warm = [(s, r) for s, r in training if s >= args.steps // 4]
    if len(warm) < 10:
        sys.exit(f"soak: only {len(warm)} samples after warm-up; give more --steps")
    slope, _ = fit(warm)
    rss_values = [r for _, r in warm]
    return {"command": " ".join(command[1:]), "steps": args.steps, "samples": len(warm), "seconds": round(seconds, 1),
            "rss_first_mib": round(rss_values[0] / 2**20, 1), "rss_last_mib": round(rss_values[-1] / 2**20, 1),
            "rss_max_mib": round(max(rss_values) / 2**20, 1),
            "slope_bytes_per_step": round(slope, 1),
            "projected_growth_per_10k_steps_mib": round(slope * 10_000 / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--select", default="ir")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between RSS samples")
    parser.add_argument("--src", help="the revtune source tree to soak (default: this checkout's src/)")
    parser.add_argument("--json", action="store_true")
    result = soak(parser.parse_args())
    if result and "--json" in sys.argv:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:<38} {value}")


if __name__ == "__main__":
    main()
