"""``LayerSelectionCallback``: layer-wise selection inside any transformers ``Trainer``.

Drop it into a Trainer (or a TRL trainer) that trains a peft model: at the start of every step the
strategy picks the active layers and only those receive gradients; after backward the strategy's signal
reads the gradients. Nothing else of revtune is needed.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

from ..adapters import LayerMap, layer_map
from ..errors import RevtuneError
from .base import SelectionContext, Strategy
from .registry import StrategyOptions, build_strategy


def apply_active(layers: LayerMap, active: list[int]) -> None:
    """Only the active layers require grad; the others drop their gradient buffers."""
    wanted = set(active)
    for index, params in enumerate(layers.params):
        on = index in wanted
        for param in params:
            param.requires_grad_(on)
            if not on:
                param.grad = None


class LayerSelectionCallback(TrainerCallback):
    """Select the layers to train at every step (every ``interval`` steps) with a named strategy.

    ``strategy`` is a spec (``"ir"``, ``"random:4"``, ``"fixed:top6"``) with the strategy's options as
    keywords (``LayerSelectionCallback("ir", split_num=2)``), an options dataclass
    (``IrOptions(split_num=2)``) or a built :class:`Strategy`. ``log_path`` receives one JSON line per
    step: ``step``, ``active`` and the ``scores`` the rule saw. ``layers`` is the run's :class:`LayerMap`
    when the caller already built it (default: mapped from the model when training begins).

    Call ``callback.strategy.prepare(model)`` before building the Trainer when the strategy changes which
    tensors train (LISA's embeddings): the optimizer only holds what is trainable when it is built. The
    callback prepares the strategy itself at the start of training if nobody did.

    The optimizer must be built while every layer is trainable, as ``Trainer`` does when handed a peft
    model: a parameter added to the optimizer later would never update. The callback checks this.
    Gradient clipping: IR scores are defined on gradients *before* clipping, but ``Trainer`` clips before
    any callback runs, so the callback takes over clipping (it sets ``args.max_grad_norm`` to 0 for the
    run, clips to the same norm after scoring, and restores the argument at the end).
    """

    def __init__(self, strategy: str | StrategyOptions | Strategy = "ir", log_path: str | Path | None = None,
                 interval: int = 1, seed: int = 0, layers: LayerMap | None = None, **options):
        if interval < 1:
            raise RevtuneError(f"selection interval must be >= 1, got {interval}", field="select_interval")
        if options and not isinstance(strategy, str):
            raise TypeError("option keywords go with a spec string; options dataclasses carry their own")
        self.strategy = strategy if isinstance(strategy, Strategy) else build_strategy(strategy, **options)
        self.layers = layers
        self.log_path = Path(log_path) if log_path else None
        self.interval = interval
        self.seed = seed
        self.history: list[dict] = []
        self.step_seconds: list[float] = []
        self._log = None
        self._hook = None
        self._clip = 0.0
        self._args = None
        self.ctx: SelectionContext | None = None
        self.active: list[int] = []
        self.scores: list[float] | None = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if not self.strategy.prepared:
            self.strategy.prepare(model)
        layers = self.layers or layer_map(model)
        if layers.n_layers == 0 or not any(layers.params):
            raise RevtuneError("no trainable parameter inside the decoder blocks: attach adapters first")
        if optimizer is not None:
            _check_optimizer_holds(optimizer, layers)
        self.ctx = SelectionContext(model, layers, np.random.default_rng(self.seed))
        self.strategy.setup(self.ctx)
        self._hook = model.register_forward_pre_hook(self._remember_batch, with_kwargs=True)
        self._args, self._clip = args, args.max_grad_norm
        args.max_grad_norm = 0.0
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("w")

    def _remember_batch(self, module, args, kwargs):
        if module.training and "input_ids" in kwargs:
            self.ctx.last_batch = kwargs

    def on_step_begin(self, args, state, control, **kwargs):
        step = state.global_step
        if step % self.interval == 0 or not self.active:
            self.active, self.scores = self.strategy.choose(step, self.ctx)
            if not self.active:
                raise RuntimeError(f"strategy {self.strategy.name} chose no layer at step {step}")
            apply_active(self.ctx.layers, self.active)
        record = {"step": step, "active": self.active, "scores": self.scores}
        self.history.append(record)
        if self._log:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()
        self._started = time.perf_counter()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.strategy.observe(state.global_step, self.active, self.ctx)
        if self._clip and self._clip > 0:
            grads = [p for group in (self.ctx.layers.params + [self.ctx.layers.outside]) for p in group
                     if p.grad is not None]
            if grads:
                torch.nn.utils.clip_grad_norm_(grads, self._clip)

    def on_step_end(self, args, state, control, **kwargs):
        self.step_seconds.append(time.perf_counter() - self._started)

    def on_train_end(self, args, state, control, **kwargs):
        # Leave every layer trainable again, so saving and later training see the whole adapter.
        apply_active(self.ctx.layers, list(range(self.ctx.n_layers)))
        self.close()

    def close(self):
        if self._args is not None:
            self._args.max_grad_norm = self._clip
            self._args = None
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self._log:
            self._log.close()
            self._log = None
        self.strategy.close()

    def importance_frequency(self) -> list[int]:
        """How many steps each layer was active: Intention-Tuning's G_l."""
        counts = [0] * (self.ctx.n_layers if self.ctx else 0)
        for record in self.history:
            for layer in record["active"]:
                counts[layer] += 1
        return counts


def _check_optimizer_holds(optimizer, layers: LayerMap) -> None:
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for names, params in zip(layers.names, layers.params):
        for name, param in zip(names, params):
            if id(param) not in held:
                raise RevtuneError(f"parameter {name} is trainable but not in the optimizer: build the "
                                   "optimizer while every layer is trainable")
