"""Depth-bounded selection: a strategy's rule, run unchanged on the layers at and above a floor.

Backward runs from the loss down to the lowest layer that needs a gradient, so activation memory follows
how deep a selection reaches, not how many parameters it trains. A floor caps that depth for any rule:
the rule sees only the layers from the floor up (their scores, their count, the run's generator), and
its choice is shifted back to model indices. Signals keep scoring every layer; only the choice is bounded.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..adapters import LayerMap
from ..errors import RevtuneError
from .base import SelectionContext, Strategy


@dataclasses.dataclass
class FloorRule:
    """``inner`` applied to layers ``floor``..n-1 only."""

    inner: object
    floor: int

    def check(self, n_layers: int) -> None:
        if self.floor >= n_layers:
            raise RevtuneError(f"min_layer {self.floor} leaves no layer: the model has {n_layers} "
                               f"(0-{n_layers - 1})", field="min_layer")
        if hasattr(self.inner, "check"):
            self.inner.check(n_layers - self.floor)

    def possible_layers(self, n_layers: int) -> list[int]:
        return list(range(self.floor, n_layers))

    def select(self, step, scores, ctx: SelectionContext):
        above = dataclasses.replace(ctx, layers=_slice(ctx.layers, self.floor))
        part = None if scores is None else np.asarray(scores, dtype=np.float64)[self.floor:]
        active, seen = self.inner.select(step, part, above)
        if seen is not None and scores is not None:
            seen = np.concatenate([np.asarray(scores, dtype=np.float64)[:self.floor], seen])
        return [layer + self.floor for layer in active], seen


def _slice(layers: LayerMap, floor: int) -> LayerMap:
    return LayerMap(layers.names[floor:], layers.params[floor:], layers.outside_names, layers.outside)


def with_floor(strategy: Strategy, floor: int, n_layers: int | None = None) -> Strategy:
    """``strategy`` bounded below by ``floor``; a fixed set reaching below it is refused, not trimmed."""
    if floor <= 0:
        return strategy
    possible = getattr(strategy.rule, "possible_layers", None)
    if possible is not None:
        if n_layers is not None and min(possible(n_layers)) < floor:
            raise RevtuneError(f"strategy '{strategy.name}' trains layer {min(possible(n_layers))}, "
                               f"below min_layer {floor}", field="min_layer")
        return strategy
    return dataclasses.replace(strategy, rule=FloorRule(strategy.rule, floor))
