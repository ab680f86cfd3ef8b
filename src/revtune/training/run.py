"""One training run, top to bottom: corpus -> model + adapters -> Trainer + selection -> run directory."""
from __future__ import annotations

import dataclasses
import math
import shutil
import warnings
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback

from .. import adapters as adapter_lib
from ..config import TrainingConfig
from ..errors import RevtuneError
from ..models import load_model, prepare_tokenizer
from ..rundir import building, write_json, write_text
from ..runtime import PeakMemory, resolve_device, resolve_dtype, seed_everything
from ..selection.base import Strategy
from ..selection.callback import LayerSelectionCallback
from .data import load_splits


@dataclass
class RunResult:
    path: Path
    metrics: dict


def resolve_adapter(adapter: adapter_lib.AdapterConfig, strategy: Strategy) -> adapter_lib.AdapterConfig:
    """The adapter part with its kind decided: the strategy's forced kind, else the user's, else the
    strategy's default, else lora."""
    if strategy.adapter and adapter.kind and adapter.kind != strategy.adapter:
        raise RevtuneError(f"strategy '{strategy.name}' trains with adapter '{strategy.adapter}', "
                           f"not '{adapter.kind}'", field="adapter")
    kind = strategy.adapter or adapter.kind or strategy.default_adapter or "lora"
    return dataclasses.replace(adapter, kind=kind)


def make_task(config, splits):
    if config.data.task == "intent":
        from .intent import IntentTask
        return IntentTask(config, splits)
    from .revise import ReviseTask  # noqa: the generation task lives beside this one
    return ReviseTask(config, splits)


class BestDevTracker(TrainerCallback):
    """Evaluates dev every ``every`` steps and keeps a CPU copy of the trainable tensors at the best score,
    so the test score at the best dev step needs no checkpoint on disk."""

    def __init__(self, task, model, every: int):
        self.task, self.model, self.every = task, model, every
        # Named now, while every layer is trainable: mid-run only the active layers require grad.
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.history: list[dict] = []
        self.best: dict | None = None
        self.best_state: dict | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            scores = self.task.evaluate(self.model, "dev")
            if not scores:
                return
            entry = {"step": state.global_step, **{k: v for k, v in scores.items() if k != "per_class"}}
            self.history.append(entry)
            headline = scores[self.task.headline]
            if self.best is None or headline > self.best[self.task.headline]:
                self.best = entry
                self.best_state = self.snapshot() if state.global_step != state.max_steps else None

    def snapshot(self) -> dict:
        params = dict(self.model.named_parameters())
        return {name: params[name].detach().cpu().clone() for name in self.names}


class QuietProgress(ProgressCallback):
    """The Trainer's progress bar with the loss in its postfix instead of a printed dict per step."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{logs['loss']:.4f}")


def training_arguments(training: TrainingConfig, tmp: Path, device, total_steps: int) -> TrainingArguments:
    """The Trainer's arguments from the training part."""
    warmup = min(training.warmup_steps, max(0, total_steps // 10)) if total_steps < 10 * training.warmup_steps \
        else training.warmup_steps
    checkpointing = {}
    if training.gradient_checkpointing:  # non-reentrant: active layers above frozen ones keep their grads
        checkpointing = dict(gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False})
    return TrainingArguments(
        output_dir=str(tmp / "trainer"), per_device_train_batch_size=training.batch_size,
        gradient_accumulation_steps=training.grad_accum, learning_rate=training.learning_rate,
        warmup_steps=warmup, lr_scheduler_type="linear", weight_decay=training.weight_decay,
        max_grad_norm=training.max_grad_norm, num_train_epochs=training.epochs, max_steps=training.max_steps,
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to=[], seed=training.seed,
        data_seed=training.seed, use_cpu=device.type == "cpu", remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=False, bf16=False, fp16=False, **checkpointing)


def planned_steps(training: TrainingConfig, n_train: int) -> int:
    """Optimizer steps of a run with the training part ``training`` on ``n_train`` examples."""
    if training.max_steps > 0:
        return training.max_steps
    per_epoch = math.ceil(n_train / (training.batch_size * training.grad_accum))
    return max(1, math.ceil(per_epoch * training.epochs))


def train_run(config, strategy: Strategy | None = None,
              prepare_model: Callable[[torch.nn.Module], None] | None = None,
              quiet: bool = False) -> RunResult:
    """Train one run and leave a complete run directory at ``config.output.out`` (or nothing at all).

    Set-up order: adapters attached, the caller's ``prepare_model(model)``, the strategy's ``prepare``;
    then the one layer map of the run (shared with the callback) and ``trainable.txt``."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    training = config.training
    seed_everything(training.seed)
    device, dtype = resolve_device(config.model.device), resolve_dtype(config.model.dtype)
    splits = load_splits(config.data, training.seed)
    strategy = strategy or config.selection.options.build()
    task = make_task(config, splits)
    config = dataclasses.replace(config, adapter=resolve_adapter(config.adapter, strategy))
    out = config.output.out
    with building(out, config.output.overwrite) as tmp:
        loaded = load_model(config.model.name, task.model_task, splits.labels, splits.multi_label, dtype,
                            training.seed, config.model.tiny_layers)
        tokenizer = prepare_tokenizer(loaded.tokenizer, loaded.model)
        model = adapter_lib.attach(loaded.model, config.adapter, task.name).to(device)
        if prepare_model:
            prepare_model(model)
        strategy.prepare(model)
        task.prepare(tokenizer, device)
        layers = adapter_lib.layer_map(model)  # after every set-up: what really trains
        table = adapter_lib.format_trainable_table(layers)
        say(f"revtune: {config.data.task} on {len(splits.train)} train / {len(splits.dev)} dev / "
            f"{len(splits.test)} test, labels {', '.join(splits.labels)}"
            f"{' (multi-label)' if splits.multi_label else ''}\n"
            f"revtune: model {config.model.name} ({loaded.source}), adapter {config.adapter.kind}, "
            f"select {strategy.name}, device {device}\n{table}")
        write_text(tmp / "trainable.txt", table + "\n")
        steps = planned_steps(training, len(splits.train))
        selector = LayerSelectionCallback(strategy, tmp / "selection.jsonl", config.selection.interval,
                                          training.seed, layers=layers)
        tracker = BestDevTracker(task, model, training.eval_every or max(1, steps // 5))
        trainer = Trainer(model=model, args=training_arguments(training, tmp, device, steps),
                          train_dataset=task.train_dataset, data_collator=task.collator,
                          callbacks=[selector, tracker])
        for noisy in (ProgressCallback, PrinterCallback):
            trainer.remove_callback(noisy)
        trainer.add_callback(QuietProgress())
        peak = PeakMemory(device)
        peak.reset()
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
        peak_bytes = peak.peak_bytes()
        metrics = evaluate_run(task, model, tracker, trainer, selector, layers)
        metrics.update(peak_memory_bytes=peak_bytes, train_seconds=train_seconds, device=str(device),
                       model=config.model.name, strategy=strategy.name, adapter=config.adapter.kind,
                       labels=list(splits.labels), multi_label=splits.multi_label, model_source=loaded.source,
                       layer_sizes=layers.layer_sizes(), outside_params=layers.outside_size())
        save_run(tmp, config, model, tokenizer, task, metrics)
    say(summary_line(out, task, metrics))
    return RunResult(Path(out), metrics)


def evaluate_run(task, model, tracker, trainer, selector, layers) -> dict:
    metrics = {"decision": task.tune(model)}
    metrics["test"] = task.evaluate(model, "test")
    metrics["final_dev"] = tracker.history[-1] if tracker.history else {}
    metrics["best_dev"] = tracker.best or {}
    metrics["dev_history"] = tracker.history
    if tracker.best_state is not None and metrics["test"]:
        final_state = tracker.snapshot()
        _load_trainable(model, tracker.best_state)
        metrics["test_at_best_dev"] = task.evaluate(model, "test")
        _load_trainable(model, final_state)
    else:
        metrics["test_at_best_dev"] = metrics["test"]
    steps = selector.step_seconds[1:] or selector.step_seconds
    sizes = layers.layer_sizes()
    per_step = [sum(sizes[i] for i in r["active"]) + layers.outside_size() for r in selector.history]
    metrics.update(
        train_loss=[{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e],
        steps=trainer.state.global_step,
        mean_step_seconds=sum(steps) / max(1, len(steps)),
        trainable_params=sum(sizes) + layers.outside_size(),
        mean_trainable_params_per_step=sum(per_step) / max(1, len(per_step)),
        mean_active_layers=sum(len(r["active"]) for r in selector.history) / max(1, len(selector.history)),
        n_layers=layers.n_layers,
        importance_frequency=selector.importance_frequency(),
    )
    return metrics


def _load_trainable(model, state: dict) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


def save_run(tmp: Path, config, model, tokenizer, task, metrics) -> None:
    """``config.json`` is exactly the resolved config (it re-runs the run); what the run learned is in
    ``metrics.json``."""
    from ..report import plot_run

    adapter_lib.save_adapter(model, config.adapter, tmp / "adapter")
    tokenizer.save_pretrained(tmp / "tokenizer")
    write_json(tmp / "config.json", config.to_dict())
    write_json(tmp / "metrics.json", metrics)
    task.finish(model, tmp)
    plot_run(tmp)
    shutil.rmtree(tmp / "trainer", ignore_errors=True)


def summary_line(out, task, metrics: dict) -> str:
    test = metrics.get("test") or {}
    head = task.headline
    score = f"test {head} {test[head]:.4f}" if head in test else f"best dev {head} " \
        f"{metrics['best_dev'].get(head, float('nan')):.4f}"
    return (f"revtune: done: {score}, {metrics['steps']} steps, {metrics['mean_step_seconds']:.2f} s/step, "
            f"peak {metrics['peak_memory_bytes'] / 2**30:.2f} GiB, "
            f"{metrics['mean_active_layers']:.1f}/{metrics['n_layers']} layers per step -> {out}")
