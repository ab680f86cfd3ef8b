"""Placement from a card: which blocks to adapt, under a budget (our rule, LAYERCARD.md).

Predicted gain of a set S: u_S^T R_S^-1 u_S with u_l = sqrt(gain of block l) and R the coupling matrix
(shrunk towards I by ``shrink`` so near-collinear blocks cannot blow it up). Objective ``quality``:
greedy forward selection on that prediction within the budget. Objective ``cost`` (``cost:0.9`` sets
the share): the shallowest backward cut, i.e. the highest lowest block c, whose greedy set inside
blocks c.. reaches 95% of the predicted gain of all blocks; the greedy set stops as soon as it does.

Set costs follow :mod:`.cost`: backward runs down to the lowest block, so time(S) is the measured time
of min(S) alone scaled by the FLOP model, and memory(S) the measured memory of min(S) alone plus the
other blocks' parameters with their gradients and AdamW moments.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RevtuneError, did_you_mean
from .card import Card
from .cost import ADAM_BYTES_PER_PARAM, set_flops

OBJECTIVES = ("quality", "cost")
BUDGET_KINDS = ("layers", "params", "time", "memory")
GAIN_SOURCES = ("auto", "probe_gain", "gain_cf", "gain")
DEFAULT_COST_SHARE = 0.95


def parse_objective(text: str) -> tuple[str, float]:
    """'quality', 'cost' or 'cost:SHARE' -> (name, share of the full predicted gain)."""
    name, _, share = (text or "quality").partition(":")
    if name not in OBJECTIVES:
        raise RevtuneError(f"unknown objective '{name}': {did_you_mean(name, OBJECTIVES)}", field="objective")
    if share and name != "cost":
        raise RevtuneError(f"objective '{name}' takes no share, got '{text}'", field="objective")
    try:
        value = float(share) if share else DEFAULT_COST_SHARE
    except ValueError:
        raise RevtuneError(f"expected cost:SHARE with a number, got '{text}'", field="objective") from None
    if not 0 < value <= 1:
        raise RevtuneError(f"the cost objective's share must be in (0, 1], got {value}", field="objective")
    return name, value


def parse_budget(text: str) -> dict[str, tuple[float, bool]]:
    """'layers=6,params=2e6', 'layers=20%' -> {kind: (value, is_percent_of_all_blocks)}."""
    limits = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        kind, sep, value = part.partition("=")
        kind = kind.strip()
        if not sep or kind not in BUDGET_KINDS:
            raise RevtuneError(f"bad budget '{part}': give KIND=VALUE with KIND one of "
                               f"{', '.join(BUDGET_KINDS)} (e.g. layers=6, params=2e6, layers=20%)",
                               field="budget")
        percent = value.strip().endswith("%")
        try:
            number = float(value.strip().rstrip("%"))
        except ValueError:
            raise RevtuneError(f"bad budget value '{value}' for {kind}", field="budget") from None
        if number <= 0:
            raise RevtuneError(f"budget {kind} must be > 0, got {value}", field="budget")
        limits[kind] = (number / 100 if percent else number, percent)
    return limits


class GainModel:
    """Coupling-aware predicted gain of block sets."""

    def __init__(self, gains: np.ndarray, coupling: np.ndarray, shrink: float = 0.1):
        self.u = np.sqrt(np.clip(np.asarray(gains, dtype=np.float64), 0, None))
        n = len(self.u)
        self.r = (1 - shrink) * np.asarray(coupling, dtype=np.float64) + shrink * np.eye(n)

    def predicted(self, layers) -> float:
        layers = list(layers)
        if not layers:
            return 0.0
        u, r = self.u[layers], self.r[np.ix_(layers, layers)]
        solution = np.linalg.lstsq(r, u, rcond=1e-12)[0]
        return float(u @ solution)


class CostModel:
    """Cost of a block set in layers, parameters, FLOPs per token and, when measured, s/step and bytes."""

    def __init__(self, card: Card):
        self.blocks = card.blocks
        self.params = card.column("params")
        self.seconds = card.column("step_seconds")
        self.memory = card.column("peak_bytes")

    def of(self, layers) -> dict:
        layers = sorted(layers)
        cost = {"layers": len(layers), "params": float(self.params[layers].sum()) if layers else 0.0,
                "flops": set_flops(self.blocks, layers)}
        if layers and self.seconds is not None:
            low = layers[0]
            cost["time"] = float(self.seconds[low] * set_flops(self.blocks, layers)
                                 / set_flops(self.blocks, [low]))
        if layers and self.memory is not None:
            cost["memory"] = float(self.memory[layers[0]]
                                   + ADAM_BYTES_PER_PARAM * self.params[layers[1:]].sum())
        return cost

    def limits(self, budget: dict[str, tuple[float, bool]]) -> dict[str, float]:
        """Absolute limits; percentages are of the cost of all blocks."""
        everything = self.of(range(len(self.blocks)))
        result = {}
        for kind, (value, percent) in budget.items():
            if kind not in everything:
                raise RevtuneError(f"a '{kind}' budget needs measured costs: make the card with "
                                   "--measure-cost", field="budget")
            result[kind] = value * everything[kind] if percent else value
        return result

    def fits(self, layers, limits: dict[str, float]) -> bool:
        if not limits:
            return True
        cost = self.of(layers)
        return all(cost[kind] <= limit * (1 + 1e-9) + 1e-9 for kind, limit in limits.items())


@dataclass
class Placement:
    layers: list[int]
    predicted: float
    full: float
    cost: dict
    objective: str
    budget: str
    gain_source: str

    @property
    def ratio(self) -> float:
        return self.predicted / self.full if self.full > 0 else float("nan")

    def summary(self, n_layers: int) -> str:
        parts = [f"layers {','.join(map(str, self.layers))} ({len(self.layers)}/{n_layers})",
                 f"predicted gain {self.ratio:.0%} of all layers (by {self.gain_source})",
                 f"{self.cost['params']:,.0f} adapter params"]
        if "time" in self.cost:
            parts.append(f"{self.cost['time']:.2f} s/step")
        if "memory" in self.cost:
            parts.append(f"peak {self.cost['memory'] / 2**30:.2f} GiB")
        return ", ".join(parts)


def gains_of(card: Card, source: str = "auto") -> tuple[np.ndarray, str]:
    """The per-block gains placement uses: probe gains when measured (and not all 0: probes too short
    to lower the dev loss carry no ranking), else the cross-fitted budgeted gain (the plug-in one if
    every cross-fitted value is 0)."""
    if source not in GAIN_SOURCES:
        raise RevtuneError(f"unknown gain source '{source}': {did_you_mean(source, GAIN_SOURCES)}")
    if source == "auto":
        probe = card.column("probe_gain")
        return (probe, "probe_gain") if probe is not None and np.any(probe > 0) else signal_gains(card)
    values = card.column(source)
    if values is None:
        raise RevtuneError(f"the card has no '{source}' column (not measured)", path=card.path, field="blocks")
    return values, source


def signal_gains(card: Card) -> tuple[np.ndarray, str]:
    cross = card.column("gain_cf")
    return (cross, "gain_cf") if np.any(cross > 0) else (card.column("gain"), "gain")


def greedy(model: GainModel, costs: CostModel, limits: dict, candidates, tiebreak: np.ndarray,
           stop: float | None = None) -> list[int]:
    """Add the block that most raises the predicted gain while the set fits the limits; with
    ``stop``, stop once the prediction reaches it. Ties go to the larger ``tiebreak``."""
    chosen: list[int] = []
    left = set(candidates)
    while left and (stop is None or model.predicted(chosen) < stop):
        best, best_key = None, None
        for layer in sorted(left):
            trial = chosen + [layer]
            if not costs.fits(trial, limits):
                continue
            key = (round(model.predicted(trial), 12), tiebreak[layer])
            if best_key is None or key > best_key:
                best, best_key = layer, key
        if best is None:
            break
        chosen.append(best)
        left.discard(best)
    return sorted(chosen)


def place(card: Card, objective: str = "quality", budget: str = "", shrink: float = 0.1,
          gain_source: str = "auto") -> Placement:
    name, share = parse_objective(objective)
    limits_spec = parse_budget(budget)
    if name == "quality" and not limits_spec:
        raise RevtuneError("card placement with objective 'quality' needs a budget, e.g. --budget layers=6 "
                           "(or use --objective cost)", field="budget")
    gains, source = gains_of(card, gain_source)
    model = GainModel(gains, card.coupling, shrink)
    costs = CostModel(card)
    limits = costs.limits(limits_spec)
    n = card.n_layers
    full = model.predicted(range(n))
    if full <= 0:
        raise RevtuneError(f"the card predicts no gain for any block (every '{source}' is 0)",
                           path=card.path)
    tiebreak = card.column("gain")
    if name == "quality":
        layers = greedy(model, costs, limits, range(n), tiebreak)
    else:
        layers = []
        for cut in reversed(range(n)):
            layers = greedy(model, costs, limits, range(cut, n), tiebreak, stop=share * full)
            if layers and model.predicted(layers) >= share * full:
                break
    if not layers:
        raise RevtuneError(f"no block fits the budget '{budget}' (one block costs {costs.of([n - 1])})",
                           field="budget")
    return Placement(layers, model.predicted(layers), full, costs.of(layers), objective, budget, source)
