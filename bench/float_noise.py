"""How much of IR-Tuning's per-step choice float noise decides, read from finished runs' selection logs.

Every step of a run's ``selection.jsonl`` logs the scores its rule saw. Here each step's scores are
multiplied by ``1 + relative * N(0, 1)`` (sentinels kept) ``--trials`` times and split again with the
run's own rule (window, split count and boundary from its ``config.json``). A step is *fragile* when
some trial picks another layer set. No training: this is the immediate sensitivity of each decision.
What noise does over a whole run (a frozen layer keeps its stale score, so one flipped step can lock in
another set) is measured on the tiny model by tests/test_float_noise.py.

    .venv/bin/python bench/float_noise.py RUN [RUN ...] [--relative 1e-6] [--trials 200] [--json]
    .venv/bin/python bench/float_noise.py RUN --ir-boundary exact   # the same scores, the other boundary
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from revtune.report import read_selection
from revtune.rundir import read_run
from revtune.selection.rules import VarianceSplitRule
from revtune.selection.rules import SENTINEL


def fragility(run: Path, relative: float, trials: int, boundary: str | None = None, seed: int = 0) -> dict:
    _, config, _ = read_run(run)
    options = config.selection.options
    if options.name != "ir":
        raise SystemExit(f"bench: {run} is a '{config.selection.select}' run; this reads ir runs")
    boundary = boundary or options.boundary
    rule = VarianceSplitRule(dataclasses.replace(options, boundary=boundary))
    rng = np.random.default_rng(seed)
    flips = []
    for record in read_selection(run / "selection.jsonl"):
        if record.get("scores") is None:
            continue
        scores = np.asarray(record["scores"], dtype=np.float64)
        chosen = rule.choose(scores)
        noisy = scores * (1 + relative * rng.standard_normal((trials, len(scores))))
        noisy = np.where(scores == SENTINEL, scores, noisy)
        flips.append(np.mean([rule.choose(row) != chosen for row in noisy]))
    flips = np.asarray(flips)
    return {"run": str(run), "steps": len(flips), "fragile_steps": float(np.mean(flips > 0)),
            "mean_flip_probability": float(flips.mean()), "relative": relative, "trials": trials, "ir_boundary": boundary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished ir run directories")
    parser.add_argument("--relative", type=float, default=1e-6)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--ir-boundary", choices=("reference", "exact"),
                        help="split the logged scores with this boundary instead of the run's own")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results = [fragility(run, args.relative, args.trials, args.ir_boundary) for run in args.runs]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for result in results:
        print(f"{result['run']}: {result['fragile_steps']:.1%} of {result['steps']} steps fragile at relative "
              f"{result['relative']:g}, boundary {result['ir_boundary']} (mean flip probability {result['mean_flip_probability']:.3f})")


if __name__ == "__main__":
    main()
