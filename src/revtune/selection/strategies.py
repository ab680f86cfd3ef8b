"""The split-based strategies (``ir``, ``weight``, ``cosine``) and the plain ones (``all``, ``fixed``).

Each factory takes its options dataclass (``selection/options.py``) whole and returns a ``Strategy``.
"""
from __future__ import annotations

from .base import NoSignal, Strategy
from .rules import AllRule, FixedRule, VarianceSplitRule
from .signals import CosineSignal, GradNormSignal, WeightNormSignal


def ir(options) -> Strategy:
    return Strategy(options.spec(), GradNormSignal(options.aggregation, options.grad_accum), VarianceSplitRule(options))


def weight(options) -> Strategy:
    return Strategy(options.spec(), WeightNormSignal(), VarianceSplitRule(options, q1_offset=1))


def cosine(options) -> Strategy:
    return Strategy(options.spec(), CosineSignal(options.reduction),
                    VarianceSplitRule(options, keep="low", q2_offset=-1))


def all_layers(options) -> Strategy:
    return Strategy(options.spec(), NoSignal(), AllRule())


def fixed(options) -> Strategy:
    return Strategy(options.spec(), NoSignal(), FixedRule(options.layers))
