"""Intention-Tuning's step-2 rule: split another run's importance frequency once, keep the high side.

G_l (how many steps layer l was active in a finished run, ``metrics.json`` ``importance_frequency``) is
split with the same variance rule as IR-Tuning (window, split count and boundary from the run's
options), and the kept layers S_gen train for the whole run (METHODS.md §4).

``frequency:RUN`` reads any finished run; ``intention:OUT`` reuses the S_gen stored by ``intention-tune``
in OUT (layers only: the adapter initialisation from the predictor is ``intention-tune``'s job).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RevtuneError
from .base import NoSignal, Strategy
from .options import SplitOptions
from .rules import VarianceSplitRule


def _metrics(path: Path) -> dict:
    if not path.is_file():
        raise RevtuneError("not found: expected a finished run directory", path=path, field="select")
    from ..jsonsafe import read_json_file

    return read_json_file(path)


def read_frequency(run: str | Path) -> list[int]:
    """G_l of a finished run."""
    path = Path(run) / "metrics.json"
    frequency = _metrics(path).get("importance_frequency")
    if not frequency:
        raise RevtuneError("holds no importance_frequency (is it a revtune training run?)", path=path,
                           field="importance_frequency")
    if not isinstance(frequency, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                  for v in frequency):
        raise RevtuneError("expected a list of step counts", path=path, field="importance_frequency")
    return [int(v) for v in frequency]


def generation_layers(frequency, split: SplitOptions | None = None) -> list[int]:
    """S_gen: the split rule on (l, G_l), high side kept, applied once before training."""
    return VarianceSplitRule(split or SplitOptions()).choose(np.asarray(frequency, dtype=np.float64))


@dataclass
class FrequencyRule:
    """The same layers every step; refuses a model whose depth differs from the measured run's."""

    layers: list[int]
    frequency: list[int]
    source: str

    def possible_layers(self, n_layers: int) -> list[int]:
        return list(self.layers)

    def select(self, step, scores, ctx):
        if ctx.n_layers != len(self.frequency):
            raise RevtuneError(f"the importance frequency covers {len(self.frequency)} layers but this "
                               f"model has {ctx.n_layers}", path=self.source, field="select")
        return list(self.layers), np.asarray(self.frequency, dtype=np.float64)


def frequency(options) -> Strategy:
    counts = read_frequency(options.run)
    return Strategy(options.spec(), NoSignal(), FrequencyRule(generation_layers(counts, options), counts,
                                                             str(options.run)))


def intention(options) -> Strategy:
    out = Path(options.run)
    metrics = _metrics(out / "metrics.json")
    if "generator_layers" not in metrics:
        raise RevtuneError("not an intention-tune directory (no generator_layers)", path=out, field="select")
    return Strategy(options.spec(), NoSignal(), FrequencyRule(metrics["generator_layers"],
                                                             metrics["importance_frequency"], str(out)))
