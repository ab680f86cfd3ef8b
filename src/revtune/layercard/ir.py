"""Cross-check: do the card's blocks agree with the layers IR-Tuning found important in a run?"""
from __future__ import annotations

import json

from ..errors import RevtuneError
from ..rundir import read_run
from ..selection.rules import variance_split
from .card import read_card
from .placement import place


def ir_layers(run_dir) -> tuple[list[int], list[int]]:
    """(important layers, importance frequency) of a finished run: the IR split on how many steps
    each layer was active (Intention-Tuning's rule, METHODS.md §4)."""
    run, _, _ = read_run(run_dir)
    metrics_path = run / "metrics.json"
    try:
        frequency = json.loads(metrics_path.read_text())["importance_frequency"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, RecursionError, UnicodeDecodeError):
        raise RevtuneError("no importance_frequency in the run's metrics.json", path=metrics_path) from None
    return variance_split(frequency), list(frequency)


def overlap_with_ir(card_path, run_dir, objective: str = "quality", budget: str | None = None) -> dict:
    """The card's placement beside IR's important layers of ``run_dir``.

    Unless a budget is given, the card places as many layers as IR kept, so the overlap compares sets
    of equal size. ``overlap`` = |card & IR|, ``share_of_ir`` = overlap / |IR|, ``jaccard`` as usual.
    """
    card = read_card(card_path)
    important, frequency = ir_layers(run_dir)
    if len(frequency) != card.n_layers:
        raise RevtuneError(f"the run has {len(frequency)} layers, the card {card.n_layers}", path=run_dir)
    placement = place(card, objective, budget if budget is not None else f"layers={len(important)}")
    chosen, kept = set(placement.layers), set(important)
    both = chosen & kept
    return {"card_layers": sorted(chosen), "ir_layers": sorted(kept), "overlap": len(both),
            "shared_layers": sorted(both), "share_of_ir": len(both) / len(kept) if kept else 0.0,
            "jaccard": len(both) / len(chosen | kept) if chosen | kept else 0.0,
            "predicted_ratio": placement.ratio, "ir_frequency": frequency}
