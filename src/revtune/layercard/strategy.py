"""``card:PATH``: train the blocks a layer card places under ``--objective`` and ``--budget``.

The set is chosen once from the card (no signal during training). Before the first step the card is
checked against the model being trained: same depth and width, the same base weights (per-block norms
of the target weights) and the same adapter shape (trainable parameters per block), so a card made
for another model or adapter is refused instead of silently misplacing the adapters.
"""
from __future__ import annotations

import numpy as np

from ..errors import RevtuneError
from ..adapters import layer_map
from ..selection.base import NoSignal, Strategy
from ..selection.rules import FixedRule
from .card import Card, read_card
from .placement import Placement, gains_of, place
from .probe import block_norms

NORM_TOLERANCE = 1e-2  # relative; survives a float32 <-> bfloat16 reload of the same weights


def check_model(card: Card, model, layer_sizes: list[int]) -> None:
    """Raise a RevtuneError naming the first way ``model`` differs from the card's model."""
    meta = card.data["model"]
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", None)
    n_layers = len(layer_sizes)
    if n_layers != meta["n_layers"] or (hidden is not None and hidden != meta["hidden_size"]):
        raise RevtuneError(f"the card was made for {card.describe()}; this run's model has {n_layers} "
                           f"layers, hidden size {hidden}", path=card.path, field="select")
    norms = block_norms(model, card.data["adapter"]["targets"])
    for index, (ours, theirs) in enumerate(zip(norms, meta["block_norms"])):
        if abs(ours - theirs) > NORM_TOLERANCE * max(abs(theirs), 1e-12):
            raise RevtuneError(f"the card was made for other weights ({meta['spec']}): block {index}'s target "
                               f"weights have norm {theirs:.4g} there, {ours:.4g} here", path=card.path,
                               field="select")
    expected = [int(b["params"]) for b in card.blocks]
    if list(layer_sizes) != expected:
        index = next(i for i, (a, b) in enumerate(zip(layer_sizes, expected)) if a != b)
        raise RevtuneError(f"the card was made for {card.describe()} ({expected[index]:,} adapter parameters "
                           f"in block {index}); this run trains {layer_sizes[index]:,} there: make the card "
                           "with the run's adapter settings", path=card.path, field="select")


class CardSignal(NoSignal):
    """Checks the card against the model before training and logs the card's gains as the step's scores."""

    def __init__(self, card: Card, placement: Placement, spec: str):
        self.card, self.placement, self.spec = card, placement, spec
        self.gains = gains_of(card, placement.gain_source)[0]

    def prepare(self, model):
        check_model(self.card, model, layer_map(model).layer_sizes())
        print(f"revtune: {self.spec} ({self.placement.objective}"
              f"{', ' + self.placement.budget if self.placement.budget else ''}): "
              f"{self.placement.summary(self.card.n_layers)}", flush=True)

    def scores(self, step, ctx):
        return np.asarray(self.gains)


def card(options) -> Strategy:
    """``card:PATH``: the card's placement under the options' objective and budget, fixed for the run."""
    spec = options.spec()
    found = read_card(options.path)
    placement = place(found, options.objective, options.budget)
    rule = FixedRule(",".join(map(str, placement.layers)))
    return Strategy(spec, CardSignal(found, placement, spec), rule, default_adapter=found.data["adapter"]["kind"])
