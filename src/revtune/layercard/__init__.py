"""Layer Card: per-layer diagnostics of a frozen model and budgeted adapter placement.

Quantities and placement rule are ours, derived in LAYERCARD.md from the abstract of Xu et al.,
"Understanding and Guiding Layer Placement in Parameter-Efficient Fine-Tuning of Large Language Models"
(arXiv 2602.04019). Modules: ``stats`` (the math), ``probe`` (hooks on the frozen model), ``coupling``,
``cost``, ``performance`` (probe fine-tunes), ``card`` (files), ``placement``, ``strategy``
(``--select card:PATH``), ``ir`` (cross-check with an IR run), ``build`` (the whole card).
"""
from .card import Card, read_card
from .ir import overlap_with_ir
from .placement import Placement, place


def build_card(*args, **kwargs):
    from .build import build_card as build

    return build(*args, **kwargs)


__all__ = ["Card", "Placement", "build_card", "overlap_with_ir", "place", "read_card"]
