"""Strategies by name. A spec is ``name`` or ``name:ARG[:ARG...]`` (``fixed:0-3``, ``random:4``).

Each entry is a factory ``(args, options) -> Strategy``; registering a name twice is an error, so a
typo in a new module cannot silently shadow an existing method.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import RevtuneError, did_you_mean
from .base import NoSignal, Strategy
from .rules import AllRule, FixedRule, VarianceSplitRule
from .signals import (AGGREGATIONS, COSINE_REDUCTIONS, GRAD_ACCUM_MODES, CosineSignal, GradNormSignal,
                      WeightNormSignal)


@dataclass
class SelectionOptions:
    """Knobs shared by the split-based strategies (METHODS.md §1); every one a named config field."""

    ir_aggregation: str = "authors"
    split_num: int = 1
    ir_boundary: str = "reference"
    ir_window: tuple[float, float] = (0.35, 0.65)
    objective: str = "quality"  # card placement (layercard/placement.py)
    budget: str = ""
    ir_grad_accum: str = "per-backward"
    cosine_reduction: str = "batch-mean"

    def __post_init__(self):
        if self.ir_aggregation not in AGGREGATIONS:
            raise RevtuneError(f"unknown aggregation '{self.ir_aggregation}': "
                               f"{did_you_mean(self.ir_aggregation, AGGREGATIONS)}", field="ir_aggregation")
        for name, valid in (("ir_grad_accum", GRAD_ACCUM_MODES), ("cosine_reduction", COSINE_REDUCTIONS)):
            if getattr(self, name) not in valid:
                raise RevtuneError(f"unknown {name} '{getattr(self, name)}': "
                                   f"{did_you_mean(getattr(self, name), valid)}", field=name)
        self.ir_window = tuple(float(v) for v in self.ir_window)

    def split_rule(self, **overrides) -> VarianceSplitRule:
        settings = dict(window=self.ir_window, split_num=self.split_num, boundary=self.ir_boundary)
        settings.update(overrides)
        return VarianceSplitRule(**settings)


def selection_options(config) -> SelectionOptions:
    """The selection knobs of a run config, in one place so every caller sees the same fields."""
    return SelectionOptions(ir_aggregation=config.ir_aggregation, split_num=config.split_num,
                            ir_boundary=config.ir_boundary, ir_window=tuple(config.ir_window),
                            objective=config.objective, budget=config.budget,
                            ir_grad_accum=config.ir_grad_accum, cosine_reduction=config.cosine_reduction)


Factory = Callable[[list[str], SelectionOptions], Strategy]
STRATEGIES: dict[str, tuple[Factory, str]] = {}


def register(name: str, help_text: str):
    def decorate(factory: Factory) -> Factory:
        if name in STRATEGIES:
            raise ValueError(f"strategy '{name}' registered twice")
        STRATEGIES[name] = (factory, help_text)
        return factory
    return decorate


def split_spec(spec: str) -> tuple[str, list[str]]:
    name, _, rest = spec.strip().partition(":")
    return name, ([rest] if name in ("fixed", "replay", "card") and rest else
                  [a for a in rest.split(":") if a] if rest else [])


def build_strategy(spec: str, options: SelectionOptions | None = None) -> Strategy:
    name, args = split_spec(spec)
    if name not in STRATEGIES:
        raise RevtuneError(f"unknown selection strategy '{name}': {did_you_mean(name, STRATEGIES)}",
                           field="select")
    factory, _ = STRATEGIES[name]
    return factory(args, options or SelectionOptions())


def _no_args(name: str, args: list[str]) -> None:
    if args:
        raise RevtuneError(f"strategy '{name}' takes no argument, got '{':'.join(args)}'", field="select")


@register("ir", "IR-Tuning: gradient-norm scores, variance split, train the high side (default)")
def _ir(args, options):
    _no_args("ir", args)
    return Strategy("ir", GradNormSignal(options.ir_aggregation, options.ir_grad_accum), options.split_rule())


@register("weight", "static: norm of each block's attention output weight, variance split, high side")
def _weight(args, options):
    _no_args("weight", args)
    return Strategy("weight", WeightNormSignal(), options.split_rule(q1_offset=1))


@register("cosine", "input/output cosine of each block every step, variance split, low side")
def _cosine(args, options):
    _no_args("cosine", args)
    return Strategy("cosine", CosineSignal(options.cosine_reduction), options.split_rule(keep="low", q2_offset=-1))


@register("all", "adapters on every layer, no selection")
def _all(args, options):
    _no_args("all", args)
    return Strategy("all", NoSignal(), AllRule())


@register("fixed", "fixed:LIST - the listed layers (0-3,7,-1,top6,mid6,bottom6)")
def _fixed(args, options):
    if not args:
        raise RevtuneError("fixed needs a layer list, e.g. fixed:0-3,-1 or fixed:top6", field="select")
    return Strategy(f"fixed:{args[0]}", NoSignal(), FixedRule(args[0]))
from . import baselines  # noqa: E402,F401  registers full, random, lisa, ist, replay
from . import frequency  # noqa: E402,F401  registers frequency:RUN, intention:OUT
from ..layercard import strategy as _layer_card  # noqa: E402,F401  registers card:PATH
