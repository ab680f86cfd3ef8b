"""Rules: turn per-layer scores into the set of layers to train next."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import RevtuneError
from .options import SplitOptions

SENTINEL = 1000.0


def split_costs(sorted_scores) -> np.ndarray:
    """V[k-1] = var(x_0..x_{k-1}) + var(x_k..x_{n-1}) for k = 1..n-1 (population variances).

    Each variance is computed directly rather than from prefix sums: n is at most a few hundred, and
    a sentinel of 1000 beside scores near 0.1 would make prefix sums cancel badly, which matters because
    the rule looks for the first index *equal* to the window minimum.
    """
    x = np.asarray(sorted_scores, dtype=np.float64)
    return np.array([x[:k].var() + x[k:].var() for k in range(1, len(x))])


def variance_split(scores, window=(0.35, 0.65), keep="high", boundary="reference",
                   q1_offset: int = 0, q2_offset: int = 0) -> list[int]:
    """One split of (layer, score) pairs where var(low) + var(high) is least inside a quantile window.

    ``scores`` maps position -> score (a sequence or a dict layer -> score). ``keep='high'`` returns the
    layers from L_{j*} upwards (``boundary='reference'``: one more than the variance-optimal high group,
    as the authors' code does) or from L_{j*+1} (``'exact'``). ``keep='low'`` (the cosine variant)
    returns L_0..L_{j*-1} as the reference does, or the whole optimal low group L_0..L_{j*} with
    ``'exact'``; never fewer than one layer. See METHODS.md §1.
    """
    items = sorted(scores.items() if isinstance(scores, dict) else enumerate(scores),
                   key=lambda pair: (pair[1], pair[0]))
    n = len(items)
    layers = [layer for layer, _ in items]
    if n < 2:
        return sorted(layers)
    costs = split_costs([score for _, score in items])
    q1 = math.floor(window[0] * n) + q1_offset
    q2 = min(math.floor(window[1] * n) + q2_offset, len(costs) - 1)
    if q1 > q2 or q1 < 0:
        return sorted(layers)
    best = costs[q1:q2 + 1].min()
    j_star = int(np.flatnonzero(costs == best)[0])
    if keep == "low":
        end = j_star if boundary == "reference" else j_star + 1
        return sorted(layers[:max(end, 1)])
    start = j_star if boundary == "reference" else j_star + 1
    return sorted(layers[start:])


@dataclass
class VarianceSplitRule:
    """IR-Tuning's rule, applied ``split.split_num`` times; random scores stand in before any measurement.

    ``split`` holds the user's settings (window, split count, boundary); ``keep`` and the quantile
    offsets are what a strategy (``weight``, ``cosine``) changes about the rule itself."""

    split: SplitOptions = field(default_factory=SplitOptions)
    keep: str = "high"
    q1_offset: int = 0
    q2_offset: int = 0

    def stand_in(self, scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """What the rule sees: random scores while every layer still holds the sentinel."""
        if np.all(scores == SENTINEL):
            return rng.uniform(size=len(scores))
        return scores

    def choose(self, scores: np.ndarray) -> list[int]:
        kept = dict(enumerate(scores.tolist()))
        for _ in range(self.split.split_num):
            chosen = variance_split(kept, self.split.window, self.keep, self.split.boundary, self.q1_offset,
                                    self.q2_offset)
            kept = {layer: kept[layer] for layer in chosen}
        return sorted(kept)

    def select(self, step, scores, ctx):
        seen = self.stand_in(np.asarray(scores, dtype=np.float64), ctx.rng)
        return self.choose(seen), seen


def parse_layer_list(spec: str, n_layers: int) -> list[int]:
    """'0-3,7,-1' -> sorted unique indices; negative indices count from the top; 'topK'/'bottomK'/'midK'."""
    chosen: set[int] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        chosen.update(_parse_part(part, n_layers))
    if not chosen:
        raise RevtuneError(f"layer list '{spec}' selects no layer (model has {n_layers}: 0-{n_layers - 1})",
                           field="select")
    return sorted(chosen)


def _parse_part(part: str, n: int) -> list[int]:
    for prefix, make in (("top", lambda k: range(n - k, n)), ("bottom", lambda k: range(k)),
                         ("mid", lambda k: range((n - k) // 2, (n - k) // 2 + k))):
        if part.startswith(prefix) and part[len(prefix):].isdigit():
            k = int(part[len(prefix):])
            if not 1 <= k <= n:
                raise RevtuneError(f"'{part}' asks for {k} of {n} layers", field="select")
            return list(make(k))
    try:
        if "-" in part.lstrip("-"):
            head, _, tail = part.lstrip("-").partition("-")
            low = int(("-" if part.startswith("-") else "") + head)
            bounds = [_index(low, n, part), _index(int(tail), n, part)]
            return list(range(min(bounds), max(bounds) + 1))
        return [_index(int(part), n, part)]
    except ValueError:
        raise RevtuneError(f"bad layer '{part}': give indices (3), ranges (0-3), negative indices (-1) "
                           "or topK/bottomK/midK", field="select") from None


def _index(value: int, n: int, part: str) -> int:
    index = value + n if value < 0 else value
    if not 0 <= index < n:
        raise RevtuneError(f"layer '{part}' is outside the model's layers 0-{n - 1}", field="select")
    return index


class AllRule:
    """Every layer, every step (standard PEFT, full fine-tuning)."""

    def select(self, step, scores, ctx):
        return list(range(ctx.n_layers)), scores


@dataclass
class FixedRule:
    """The same listed layers every step (``fixed:LIST``, and fixed sets chosen once by a signal)."""

    spec: str

    def check(self, n_layers: int) -> None:
        parse_layer_list(self.spec, n_layers)

    def possible_layers(self, n_layers: int) -> list[int]:
        return parse_layer_list(self.spec, n_layers)

    def select(self, step, scores, ctx):
        return parse_layer_list(self.spec, ctx.n_layers), scores
