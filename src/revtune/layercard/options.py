"""How a card is measured. Kept free of torch so that building the CLI parser stays fast."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import RevtuneError
from ..knobs import check_choices, knob

GRAM_MODES = ("auto", "never", "always")
COUPLING_MODES = ("pooled", "token")
EIG_DTYPE_NAMES = ("float32", "float64")


@dataclass
class CardOptions:
    """How a card is measured; every field is a ``revtune layer-card`` flag."""

    probe_batches: int = knob(4, "probe batches (of --batch-size sequences) for the signals")
    ridge: float = knob(1e-2, "ridge lam = RIDGE * tr(Sigma) / d_in in resnorm and the adapter direction")
    gram: str = knob("auto", "token-Gram form while tokens < d_in (auto), never, or always", choices=GRAM_MODES)
    max_bytes: float = knob(2e9, "memory for the per-module sums; beyond it blocks are measured in groups")
    eig_dtype: str = knob("float32", "precision of the eigendecompositions: float32 or float64 (slower)",
                          choices=EIG_DTYPE_NAMES)
    coupling_sequences: int = knob(2, "sequences per coupling batch (the first probe sequences)")
    coupling_batches: int = knob(1, "batches for the coupling matrix")
    coupling_eps: float = knob(1e-3, "finite-difference step along each block's unit direction")
    coupling_mode: str = knob("pooled", "pooled (inner products summed over tokens) or token (mean cosine)",
                              choices=COUPLING_MODES)
    measure_cost: bool = knob(False, "measure step time and peak memory with each block adapted alone")
    cost_steps: int = knob(2, "timed steps per block with --measure-cost (after one warm-up step)")
    measure_performance: bool = knob(False, "fine-tune each block alone and the standard placements")
    probe_steps: int = knob(50, "steps of each --measure-performance fine-tune")
    placement_k: int = knob(0, "layers in the standard placements (0: 20% of the blocks)")

    def __post_init__(self):
        for name in ("probe_batches", "coupling_sequences", "coupling_batches", "cost_steps", "probe_steps"):
            if getattr(self, name) < 1:
                raise RevtuneError(f"expected >= 1, got {getattr(self, name)}", field=name)
        check_choices(self)
        if self.ridge < 0 or self.coupling_eps <= 0 or self.max_bytes <= 0 or self.placement_k < 0:
            raise RevtuneError("ridge, placement_k >= 0 and coupling_eps, max_bytes > 0 expected",
                               field="ridge")
