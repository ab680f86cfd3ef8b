"""The one interface every layer-selection method implements: a signal and a rule.

A *signal* scores each decoder layer (gradient norms, weight norms, a previous run's frequencies...);
a *rule* turns the scores into the layers to train in the next step. :class:`Strategy` pairs them and is
all the training callback talks to, so a new method is a new signal or rule, never a new callback.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from torch import nn

from ..adapters import LayerMap


@dataclass
class SelectionContext:
    """What signals may look at. ``last_batch`` is the latest training batch, for signals that need a
    forward of their own (IST); the callback keeps it current."""

    model: nn.Module
    layers: LayerMap
    rng: np.random.Generator
    last_batch: dict | None = None
    extras: dict = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return self.layers.n_layers


class Signal(Protocol):
    def setup(self, ctx: SelectionContext) -> None: ...

    def scores(self, step: int, ctx: SelectionContext) -> np.ndarray | None:
        """Host copy of the current scores, taken once per step before the rule runs."""

    def observe(self, step: int, active: list[int], ctx: SelectionContext) -> None:
        """After backward, before the optimizer: refresh what this step measured (on the device)."""

    def close(self) -> None: ...


class Rule(Protocol):
    def select(self, step: int, scores: np.ndarray | None, ctx: SelectionContext
               ) -> tuple[list[int], np.ndarray | None]:
        """Return (active layers, the scores the rule actually used, for the log)."""


class NoSignal:
    """For rules that need no scores (all, fixed, random, LISA, replay)."""

    def setup(self, ctx):
        pass

    def scores(self, step, ctx):
        return None

    def observe(self, step, active, ctx):
        pass

    def close(self):
        pass


@dataclass
class Strategy:
    """A named signal + rule, plus what the method needs from the parameter setup.

    ``adapter`` forces an adapter kind (``full`` needs ``none``); ``default_adapter`` is used only when
    the user named none; ``outside_blocks`` is ``"train"`` (embeddings and final norm train, LISA),
    ``"freeze"`` (only the task head trains outside the blocks) or None (as the adapter leaves them).
    """

    name: str
    signal: Signal
    rule: Rule
    adapter: str | None = None
    default_adapter: str | None = None
    outside_blocks: str | None = None
    prepared: bool = field(default=False, init=False, repr=False)

    def prepare(self, model: nn.Module) -> None:
        """Set the model up for this strategy, before the optimizer and the layer map are built: which
        tensors outside the blocks train, and each part's own ``prepare(model)`` (a card checks the model)
        and ``check(n_layers)`` (a layer list past the top is refused)."""
        from ..adapters import freeze_outside_blocks, unfreeze_outside_blocks
        from ..models import decoder_blocks

        if self.outside_blocks == "train":
            unfreeze_outside_blocks(model)
        elif self.outside_blocks == "freeze":
            freeze_outside_blocks(model)
        n_layers = len(decoder_blocks(model))
        for part in (self.signal, self.rule):
            if hasattr(part, "prepare"):
                part.prepare(model)
            if hasattr(part, "check"):
                part.check(n_layers)
        self.prepared = True

    def setup(self, ctx: SelectionContext) -> None:
        self.signal.setup(ctx)

    def choose(self, step: int, ctx: SelectionContext) -> tuple[list[int], list[float] | None]:
        scores = self.signal.scores(step, ctx)
        active, seen = self.rule.select(step, scores, ctx)
        return sorted(active), (None if seen is None else [float(s) for s in seen])

    def observe(self, step: int, active: list[int], ctx: SelectionContext) -> None:
        self.signal.observe(step, active, ctx)

    def close(self) -> None:
        self.signal.close()
