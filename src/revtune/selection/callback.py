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
from collections import deque
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from transformers import TrainerCallback
from transformers.trainer_callback import CallbackHandler, ExportableState

from ..adapters import LayerMap, layer_map
from ..distributed import check_agreement, is_main
from ..errors import RevtuneError
from ..statejson import batch_from_json, batch_to_json, exported, generator_state, restored, set_generator_state
from .base import SelectionContext, Strategy, TrainSource
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


HISTORY_IN_MEMORY = 512


class LayerSelectionCallback(TrainerCallback, ExportableState):
    """Select the layers to train at every step (every ``interval`` steps) with a named strategy.

    ``strategy`` is a spec (``"ir"``, ``"random:4"``, ``"fixed:top6"``) with the strategy's options as
    keywords (``LayerSelectionCallback("ir", split_num=2)``), an options dataclass
    (``IrOptions(split_num=2)``) or a built :class:`Strategy`. ``log_path`` receives one JSON line per
    step: ``step``, ``active`` and the ``scores`` the rule saw. ``history`` keeps the last
    :data:`HISTORY_IN_MEMORY` of those records (the log has every one); the run's totals (importance
    frequency, mean active layers, mean step time) are kept as running sums, so memory does not grow with
    the number of steps. ``layers`` is the run's :class:`LayerMap` when the caller already built it
    (default: mapped from the model when training begins).

    Call ``callback.strategy.prepare(model)`` before building the Trainer when the strategy changes which
    tensors train (LISA's embeddings): the optimizer only holds what is trainable when it is built. The
    callback prepares the strategy itself at the start of training if nobody did.

    The optimizer must be built while every layer is trainable, as ``Trainer`` does when handed a peft
    model: a parameter added to the optimizer later would never update. The callback checks this.
    Under DDP/FSDP (``torchrun``, ``accelerate launch``) the optimizer and the DDP reducer are built
    while every layer requires grad, so a layer may train at any later step; frozen layers have their
    gradients set to None, so neither a stale gradient nor the reducer can move them. Scores are averaged
    over the ranks before the rule runs, random draws come from the same seed on every rank, and the
    active set is all-gathered every step: ranks that disagree stop the run with the step and the ranks.
    Gradient clipping: IR scores are defined on gradients *before* clipping, but ``Trainer`` clips before
    any callback runs, so the callback takes over clipping (it sets ``args.max_grad_norm`` to 0 for the
    run, clips to the same norm after scoring, and restores the argument at the end).

    Checkpoints: the callback is an ``ExportableState``, so every Trainer checkpoint carries its state in
    ``trainer_state.json`` (``stateful_callbacks``): the strategy's own state, the generator behind its
    random draws, the current active set, the last training batch (IST probes it) and the selection log
    so far. On ``trainer.train(resume_from_checkpoint=...)`` the callback puts that state back itself in
    ``on_train_begin`` (leave ``restore_callback_states_from_checkpoint`` off: the Trainer's own restore
    rebuilds callbacks from constructor arguments, which cannot carry a strategy bound to a model).

    Loggers: integration callbacks (TensorBoard, W&B) come before user callbacks in a Trainer, so at the
    start of training the callback moves itself to the front of the Trainer's callback list; its ``on_log``
    then adds ``selection/...`` keys before any logger reads the logs (``log_selection=False`` turns it off).
    """

    def __init__(self, strategy: str | StrategyOptions | Strategy = "ir", log_path: str | Path | None = None,
                 interval: int = 1, seed: int = 0, layers: LayerMap | None = None, log_selection: bool = True,
                 **options):
        if interval < 1:
            raise RevtuneError(f"selection interval must be >= 1, got {interval}", field="select_interval")
        if options and not isinstance(strategy, str):
            raise TypeError("option keywords go with a spec string; options dataclasses carry their own")
        self.strategy = strategy if isinstance(strategy, Strategy) else build_strategy(strategy, **options)
        self.layers = layers
        self.log_path = Path(log_path) if log_path else None
        self.interval = interval
        self.seed = seed
        self.log_selection = log_selection
        self._handler: CallbackHandler | None = None
        self.history: deque[dict] = deque(maxlen=HISTORY_IN_MEMORY)
        self.steps_seen = 0
        self.active_total = 0
        self.counts: list[int] = []
        self.lowest_per_step: list[int] = []  # one int a step: which steps reach deepest (memory)
        self._seconds = [0.0, 0, 0.0]  # sum after the first step, steps after the first, the first
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
        self.strategy.check(layers.n_layers)
        loader = kwargs.get("train_dataloader")
        source = None if loader is None else TrainSource(loader.dataset, loader.collate_fn,
                                                         args.per_device_train_batch_size, self.seed)
        self.ctx = SelectionContext(model, layers, np.random.default_rng(self.seed), train=source)
        self.counts = [0] * layers.n_layers
        self.strategy.setup(self.ctx)
        saved = restored(self, state)
        if saved:
            self.load_state_dict(saved, state.global_step)
        self._hook = model.register_forward_pre_hook(self._remember_batch, with_kwargs=True)
        self._args, self._clip = args, args.max_grad_norm
        args.max_grad_norm = 0.0
        if self.log_selection:
            self._handler = _calling_handler(self)
            if self._handler is not None:  # ahead of the loggers, so on_log's additions reach them
                self._handler.callbacks.remove(self)
                self._handler.callbacks.insert(0, self)
        if self.log_path and is_main():  # one log per run, not one per rank
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = _reopen_log(self.log_path, state.global_step, self.history)

    def state(self) -> dict:
        """``ExportableState``: JSON only, written into each checkpoint's ``trainer_state.json``."""
        return exported(self.state_dict() if self.ctx else None)

    def state_dict(self) -> dict:
        return {"strategy_name": self.strategy.name, "strategy": self.strategy.state_dict(),
                "rng": generator_state(self.ctx.rng), "active": self.active, "scores": self.scores,
                "last_batch": batch_to_json(self.ctx.last_batch), "history": list(self.history),
                "steps_seen": self.steps_seen, "active_total": self.active_total, "counts": self.counts,
                "lowest_per_step": self.lowest_per_step, "seconds": self._seconds}

    def load_state_dict(self, saved: dict, step: int) -> None:
        if saved["strategy_name"] != self.strategy.name:
            raise RevtuneError(f"the checkpoint was written by strategy '{saved['strategy_name']}', "
                               f"this run uses '{self.strategy.name}'", field="select")
        if saved["steps_seen"] != step:
            raise RevtuneError(f"the checkpoint's selection state has {saved['steps_seen']} steps, its "
                               f"Trainer state {step}")
        self.strategy.load_state_dict(saved["strategy"], self.ctx)
        set_generator_state(self.ctx.rng, saved["rng"])
        self.active, self.scores = list(saved["active"]), saved["scores"]
        device = next(p for group in self.ctx.layers.params for p in group).device
        self.ctx.last_batch = batch_from_json(saved["last_batch"], device)
        self.history = deque((_record(r["step"], r["active"], r["scores"]) for r in saved["history"]),
                             maxlen=HISTORY_IN_MEMORY)
        self.steps_seen, self.active_total = saved["steps_seen"], saved["active_total"]
        self.counts, self.lowest_per_step = list(saved["counts"]), list(saved["lowest_per_step"])
        self._seconds = list(saved["seconds"])
        if self.active:
            apply_active(self.ctx.layers, self.active)

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
        check_agreement(step, self.active)
        record = _record(step, self.active, self.scores)
        self.history.append(record)
        self.steps_seen += 1
        self.active_total += len(self.active)
        self.lowest_per_step.append(min(self.active))
        for layer in self.active:
            self.counts[layer] += 1
        if self._log:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()
        self._started = time.perf_counter()

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        _unscale(optimizer)
        self.strategy.observe(state.global_step, self.active, self.ctx)
        if self._clip and self._clip > 0:
            grads = [p for group in (self.ctx.layers.params + [self.ctx.layers.outside]) for p in group
                     if p.grad is not None]
            if grads:
                torch.nn.utils.clip_grad_norm_(grads, self._clip)

    def on_step_end(self, args, state, control, **kwargs):
        seconds = time.perf_counter() - self._started
        if self.steps_seen == 1:
            self._seconds[2] = seconds
        else:
            self._seconds[0] += seconds
            self._seconds[1] += 1

    def mean_step_seconds(self) -> float:
        """Mean wall time of a step, the first (warm-up) step excluded when there are others."""
        total, count, first = self._seconds
        return total / count if count else first

    def mean_active_layers(self) -> float:
        return self.active_total / max(1, self.steps_seen)

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
        if not is_main():  # one event file per run: rank 0's (the Trainer gives only it a writer anyway)
            return None
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
        return list(self.counts)


def _unscale(optimizer) -> None:
    """fp16: unscale the gradients before scores and clipping read them (the Trainer would have done it
    in its own clipping, which the callback replaces); the scaler's step then skips a second unscale."""
    scaler = getattr(optimizer, "scaler", None)  # accelerate's AcceleratedOptimizer under fp16
    if scaler is not None and scaler.is_enabled():
        scaler.unscale_(optimizer.optimizer)


def _reopen_log(path: Path, step: int, recent) -> TextIO:
    """Open ``selection.jsonl`` for the steps from ``step`` on.

    A resumed run keeps the lines its interrupted predecessor wrote before the checkpoint (the
    checkpoint holds only the last :data:`HISTORY_IN_MEMORY` records, so the file is the full record);
    records the file lost are filled in from ``recent``. Lines written after the checkpoint are dropped:
    those steps run again.
    """
    kept: dict[int, dict] = {}
    if step > 0 and path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut by the kill, and nothing after it can be trusted
            if record["step"] < step:
                kept[record["step"]] = _record(record["step"], record["active"], record["scores"])
    for record in recent:
        kept.setdefault(record["step"], record)
    log = path.open("w")
    log.writelines(json.dumps(kept[s]) + "\n" for s in sorted(kept))
    log.flush()
    return log


def _record(step: int, active: list[int], scores: list[float] | None) -> dict:
    """One line of ``selection.jsonl``, its keys in this order (a restored log is rewritten byte for byte)."""
    return {"step": step, "active": active, "scores": scores}


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
