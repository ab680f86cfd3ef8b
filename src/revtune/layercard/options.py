"""How a card is measured. Kept free of torch so that building the CLI parser stays fast."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import RevtuneError, did_you_mean

GRAM_MODES = ("auto", "never", "always")
COUPLING_MODES = ("pooled", "token")
EIG_DTYPE_NAMES = ("float32", "float64")


def _o(default, help_text):
    return field(default=default, metadata={"help": help_text})


@dataclass
class CardOptions:
    """How a card is measured; every field is a ``revtune layer-card`` flag."""

    probe_batches: int = _o(4, "probe batches (of --batch-size sequences) for the signals")
    ridge: float = _o(1e-2, "ridge lam = RIDGE * tr(Sigma) / d_in in resnorm and the adapter direction")
    gram: str = _o("auto", "token-Gram form while tokens < d_in (auto), never, or always")
    max_bytes: float = _o(2e9, "memory for the per-module sums; beyond it blocks are measured in groups")
    eig_dtype: str = _o("float32", "precision of the eigendecompositions: float32 or float64 (slower)")
    coupling_sequences: int = _o(2, "sequences per coupling batch (the first probe sequences)")
    coupling_batches: int = _o(1, "batches for the coupling matrix")
    coupling_eps: float = _o(1e-3, "finite-difference step along each block's unit direction")
    coupling_mode: str = _o("pooled", "pooled (inner products summed over tokens) or token (mean cosine)")
    measure_cost: bool = _o(False, "measure step time and peak memory with each block adapted alone")
    cost_steps: int = _o(2, "timed steps per block with --measure-cost (after one warm-up step)")
    measure_performance: bool = _o(False, "fine-tune each block alone and the standard placements")
    probe_steps: int = _o(50, "steps of each --measure-performance fine-tune")
    placement_k: int = _o(0, "layers in the standard placements (0: 20% of the blocks)")

    def __post_init__(self):
        for name in ("probe_batches", "coupling_sequences", "coupling_batches", "cost_steps", "probe_steps"):
            if getattr(self, name) < 1:
                raise RevtuneError(f"expected >= 1, got {getattr(self, name)}", field=name)
        for name, valid in (("gram", GRAM_MODES), ("coupling_mode", COUPLING_MODES),
                            ("eig_dtype", EIG_DTYPE_NAMES)):
            if getattr(self, name) not in valid:
                raise RevtuneError(f"unknown value '{getattr(self, name)}': {did_you_mean(getattr(self, name), valid)}",
                                   field=name)
        if self.ridge < 0 or self.coupling_eps <= 0 or self.max_bytes <= 0 or self.placement_k < 0:
            raise RevtuneError("ridge, placement_k >= 0 and coupling_eps, max_bytes > 0 expected",
                               field="ridge")
