"""``LayerSelectionCallback``: layer-wise selection inside any transformers ``Trainer``.

Drop it into a Trainer (or a TRL trainer) that trains a peft model: at the start of every step the
strategy picks the active layers and only those receive gradients; after backward the strategy's signal
reads the gradients. Nothing else of revtune is needed.

The callback also speaks to the Trainer's loggers: at every log it adds the active-layer count and each
layer's score and activity to the logs, so ``report_to="tensorboard"`` or ``"wandb"`` shows the selection
as it happens, and it writes histograms of the scores and active layers to TensorBoard's writer.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback
from transformers.trainer_callback import CallbackHandler

from ..adapters import LayerMap, layer_map
from ..errors import RevtuneError
from .base import SelectionContext, Strategy
from .registry import SelectionOptions, build_strategy


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

    ``strategy`` is a spec (``"ir"``, ``"random:4"``, ``"fixed:top6"``) or a :class:`Strategy`.
    ``log_path`` receives one JSON line per step: ``step``, ``active`` and the ``scores`` the rule saw.

    The optimizer must be built while every layer is trainable, as ``Trainer`` does when handed a peft
    model: a parameter added to the optimizer later would never update. The callback checks this.
    Gradient clipping: IR scores are defined on gradients *before* clipping, but ``Trainer`` clips before
    any callback runs, so the callback takes over clipping (it sets ``args.max_grad_norm`` to 0 for the
    run, clips to the same norm after scoring, and restores the argument at the end).
    Loggers: integration callbacks (TensorBoard, W&B) come before user callbacks in a Trainer, so at the
    start of training the callback moves itself to the front of the Trainer's callback list; its ``on_log``
    then adds ``selection/...`` keys before any logger reads the logs (``log_selection=False`` turns it off).
    """

    def __init__(self, strategy: str | Strategy = "ir", log_path: str | Path | None = None,
                 interval: int = 1, seed: int = 0, options: SelectionOptions | None = None,
                 log_selection: bool = True):
        if interval < 1:
            raise RevtuneError(f"selection interval must be >= 1, got {interval}", field="select_interval")
        self.strategy = build_strategy(strategy, options) if isinstance(strategy, str) else strategy
        self.log_path = Path(log_path) if log_path else None
        self.interval = interval
        self.seed = seed
        self.log_selection = log_selection
        self._handler: CallbackHandler | None = None
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
        layers = layer_map(model)
        if layers.n_layers == 0 or not any(layers.params):
            raise RevtuneError("no trainable parameter inside the decoder blocks: attach adapters first")
        if optimizer is not None:
            _check_optimizer_holds(optimizer, layers)
        self.strategy.check(layers.n_layers)
        self.ctx = SelectionContext(model, layers, np.random.default_rng(self.seed))
        self.strategy.setup(self.ctx)
        self._hook = model.register_forward_pre_hook(self._remember_batch, with_kwargs=True)
        self._args, self._clip = args, args.max_grad_norm
        args.max_grad_norm = 0.0
        if self.log_selection:
            self._handler = _calling_handler(self)
            if self._handler is not None:  # ahead of the loggers, so on_log's additions reach them
                self._handler.callbacks.remove(self)
                self._handler.callbacks.insert(0, self)
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

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self.log_selection or logs is None or self.ctx is None or "loss" not in logs:
            return
        logs.update(self.selection_logs())
        writer = self._tensorboard_writer()
        if writer is not None:
            step = state.global_step
            writer.add_histogram("selection/active", np.asarray(self.active, dtype=np.float64), step,
                                 bins=np.arange(self.ctx.n_layers + 1) - 0.5)
            if self.scores is not None and np.isfinite(self.scores).all():
                writer.add_histogram("selection/scores", np.asarray(self.scores, dtype=np.float64), step)

    def selection_logs(self) -> dict[str, float]:
        """What the current step's selection adds to the Trainer's logs: the count, then per layer its
        score (when the strategy has one) and activity (1 trained, 0 frozen)."""
        logs = {"selection/active_layers": float(len(self.active))}
        wanted = set(self.active)
        for layer in range(self.ctx.n_layers):
            if self.scores is not None and layer < len(self.scores) and np.isfinite(self.scores[layer]):
                logs[f"selection/layer_{layer:02d}/score"] = float(self.scores[layer])
            logs[f"selection/layer_{layer:02d}/active"] = float(layer in wanted)
        return logs

    def _tensorboard_writer(self):
        for callback in self._handler.callbacks if self._handler else ():
            if type(callback).__name__ == "TensorBoardCallback" and getattr(callback, "tb_writer", None):
                return callback.tb_writer
        return None

    def on_train_end(self, args, state, control, **kwargs):
        # Leave every layer trainable again, so saving and later training see the whole adapter.
        apply_active(self.ctx.layers, list(range(self.ctx.n_layers)))
        self.close()

    def close(self):
        self._handler = None
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


def _calling_handler(callback) -> CallbackHandler | None:
    """The Trainer's CallbackHandler that is calling ``callback`` now (events carry no reference to it)."""
    frame = sys._getframe(1)
    for _ in range(6):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, CallbackHandler) and any(c is callback for c in owner.callbacks):
            return owner
        frame = frame.f_back
    return None


def _check_optimizer_holds(optimizer, layers: LayerMap) -> None:
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for names, params in zip(layers.names, layers.params):
        for name, param in zip(names, params):
            if id(param) not in held:
                raise RevtuneError(f"parameter {name} is trainable but not in the optimizer: build the "
                                   "optimizer while every layer is trainable")
