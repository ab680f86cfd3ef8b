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
from ..distributed import mean_across_ranks


@dataclass
class TrainSource:
    """The training split as the Trainer reads it, for signals that draw batches of their own (IST)."""

    dataset: object
    collate_fn: object
    batch_size: int
    seed: int


@dataclass
class SelectionContext:
    """What signals may look at. ``last_batch`` is the latest training batch (the callback keeps it
    current); ``train`` is the training split, for signals that need a forward on a batch of their own."""

    model: nn.Module
    layers: LayerMap
    rng: np.random.Generator
    last_batch: dict | None = None
    extras: dict = field(default_factory=dict)
    train: TrainSource | None = None

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

    # A signal with state between steps also defines state_dict() and load_state_dict(state, ctx).


class Rule(Protocol):
    def select(self, step: int, scores: np.ndarray | None, ctx: SelectionContext
               ) -> tuple[list[int], np.ndarray | None]:
        """Return (active layers, the scores the rule actually used, for the log)."""

    # A rule with state between steps also defines state_dict() and load_state_dict(state, ctx).


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

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict, ctx) -> None:
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
        from ..models import decoder_blocks

        self.set_outside_blocks(model)
        for part in (self.signal, self.rule):
            if hasattr(part, "prepare"):
                part.prepare(model)
        self.check(len(decoder_blocks(model)))
        self.prepared = True

    def set_outside_blocks(self, model: nn.Module) -> None:
        """Which tensors outside the blocks train (the memory planner's meta model needs this alone)."""
        from ..adapters import freeze_outside_blocks, unfreeze_outside_blocks

        if self.outside_blocks == "train":
            unfreeze_outside_blocks(model)
        elif self.outside_blocks == "freeze":
            freeze_outside_blocks(model)

    def check(self, n_layers: int) -> None:
        """Refuse, before any training, a strategy that cannot work on ``n_layers`` layers
        (a layer list past the top, a card made for another depth). Parts may define ``check``."""
        for part in (self.signal, self.rule):
            if hasattr(part, "check"):
                part.check(n_layers)

    def setup(self, ctx: SelectionContext) -> None:
        self.signal.setup(ctx)

    def choose(self, step: int, ctx: SelectionContext) -> tuple[list[int], list[float] | None]:
        scores = self.signal.scores(step, ctx)
        if scores is not None:  # one score vector on every rank before the rule runs (distributed.py)
            scores = mean_across_ranks(scores)
        active, seen = self.rule.select(step, scores, ctx)
        return sorted(active), (None if seen is None else [float(s) for s in seen])

    def observe(self, step: int, active: list[int], ctx: SelectionContext) -> None:
        self.signal.observe(step, active, ctx)

    def close(self) -> None:
        self.signal.close()

    def state_dict(self) -> dict:
        """What a checkpoint must keep so a resumed run selects exactly as an uninterrupted one.

        JSON values only (``revtune.statejson`` encodes arrays and tensors exactly). A signal or rule
        with state between steps defines ``state_dict()`` and ``load_state_dict(state, ctx)``; parts
        without either are stateless (their output depends only on the step, the scores and
        ``ctx.rng``, which the callback saves)."""
        return {part: getattr(obj, "state_dict", dict)() for part, obj in
                (("signal", self.signal), ("rule", self.rule))}

    def load_state_dict(self, state: dict, ctx: SelectionContext) -> None:
        """After ``setup``: put back what :meth:`state_dict` returned."""
        for part, obj in (("signal", self.signal), ("rule", self.rule)):
            if state.get(part) and hasattr(obj, "load_state_dict"):
                obj.load_state_dict(state[part], ctx)
