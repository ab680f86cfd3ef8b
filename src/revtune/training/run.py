"""One training run, top to bottom: corpus -> model + adapters -> Trainer + selection -> run directory."""
from __future__ import annotations

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
from ..errors import RevtuneError
from ..models import load_model, prepare_tokenizer
from ..rundir import building, write_json, write_text
from ..runtime import PeakMemory, resolve_device, resolve_dtype, seed_everything
from ..selection.base import Strategy
from ..selection.callback import LayerSelectionCallback
from ..selection.registry import build_strategy, selection_options
from .data import load_splits


@dataclass
class RunResult:
    path: Path
    metrics: dict
    headline: str = "macro_f1"  # the task's best-dev metric


def adapter_config(config, strategy: Strategy, task_name: str) -> adapter_lib.AdapterConfig:
    kind = strategy.adapter or config.adapter or strategy.default_adapter or "lora"
    if strategy.adapter and config.adapter and config.adapter != strategy.adapter:
        raise RevtuneError(f"strategy '{strategy.name}' trains with adapter '{strategy.adapter}', "
                           f"not '{config.adapter}'", field="adapter")
    return adapter_lib.AdapterConfig(kind=kind, r=config.lora_r, alpha=config.lora_alpha,
                                     dropout=config.lora_dropout,
                                     targets=tuple(config.target_modules) or None,
                                     bottleneck_dim=config.bottleneck_dim,
                                     train_head=not config.freeze_head and task_name == "intent",
                                     train_outside_blocks=strategy.train_outside_blocks)


def make_task(config, splits):
    if config.task == "intent":
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
            entry = {"step": state.global_step, **{k: v for k, v in scores.items() if k not in ("per_class", "confusion")}}
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


def training_arguments(config, tmp: Path, device, total_steps: int) -> TrainingArguments:
    warmup = min(config.warmup_steps, max(0, total_steps // 10)) if total_steps < 10 * config.warmup_steps \
        else config.warmup_steps
    checkpointing = {}
    if config.gradient_checkpointing:  # non-reentrant: active layers above frozen ones keep their grads
        checkpointing = dict(gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False})
    return TrainingArguments(
        output_dir=str(tmp / "trainer"), per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.learning_rate,
        warmup_steps=warmup, lr_scheduler_type="linear", weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm, num_train_epochs=config.epochs, max_steps=config.max_steps,
        logging_steps=1, save_strategy="no", eval_strategy="no", seed=config.seed,
        report_to=[] if config.report_to == "none" else [config.report_to],
        data_seed=config.seed, use_cpu=device.type == "cpu", remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=False, bf16=False, fp16=False, **checkpointing)


def check_report_to(config) -> None:
    """A missing logger is a one-line error before any training, not a traceback from the Trainer."""
    import importlib.util

    if config.report_to != "none" and importlib.util.find_spec(config.report_to) is None:
        raise RevtuneError(f"--report-to {config.report_to} needs the {config.report_to} package: "
                           f"pip install {config.report_to} (or revtune[logging])", field="report_to")


def live_logging(trainer, config, tmp: Path) -> None:
    """TensorBoard event files inside the run directory (the Trainer's own folder is deleted at the end);
    W&B's files too, under a project named revtune unless the user set one."""
    import os

    if config.report_to == "tensorboard":
        for callback in trainer.callback_handler.callbacks:
            if type(callback).__name__ == "TensorBoardCallback":
                callback.logging_dir = str(tmp / "tensorboard")
    elif config.report_to == "wandb":
        os.environ.setdefault("WANDB_PROJECT", "revtune")
        os.environ["WANDB_DIR"] = str(tmp)


def planned_steps(config, n_train: int) -> int:
    if config.max_steps > 0:
        return config.max_steps
    per_epoch = math.ceil(n_train / (config.batch_size * config.grad_accum))
    return max(1, math.ceil(per_epoch * config.epochs))


def train_run(config, strategy: Strategy | None = None,
              prepare_model: Callable[[torch.nn.Module], None] | None = None,
              quiet: bool = False, announce: bool = True) -> RunResult:
    """Train one run and leave a complete run directory at ``config.out`` (or nothing at all).

    ``announce`` prints the summary line at the end (the CLI prints it itself, last)."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    # peft checks the vocabulary against the base's config, and a tiny base is only saved at the end
    warnings.filterwarnings("ignore", message="Could not find a config file", module="peft")
    check_report_to(config)
    seed_everything(config.seed)
    device, dtype = resolve_device(config.device), resolve_dtype(config.dtype)
    splits = load_splits(config)
    strategy = strategy or build_strategy(config.select, selection_options(config))
    task = make_task(config, splits)
    adapters = adapter_config(config, strategy, task.name)
    with building(config.out, config.overwrite) as tmp:
        loaded = load_model(config.model, task.model_task, splits.labels, splits.multi_label, dtype,
                            config.seed, config.tiny_layers)
        tokenizer = prepare_tokenizer(loaded.tokenizer, loaded.model)
        model = adapter_lib.attach(loaded.model, adapters, task.name).to(device)
        if prepare_model:
            prepare_model(model)
        task.prepare(tokenizer, device)
        layers = adapter_lib.layer_map(model)
        strategy.check(layers.n_layers)
        table = adapter_lib.format_trainable_table(layers)
        say(f"revtune: {config.task} on {len(splits.train)} train / {len(splits.dev)} dev / "
            f"{len(splits.test)} test, labels {', '.join(splits.labels)}"
            f"{' (multi-label)' if splits.multi_label else ''}\n"
            f"revtune: model {config.model} ({loaded.source}), adapter {adapters.kind}, "
            f"select {strategy.name}, device {device}\n{table}")
        write_text(tmp / "trainable.txt", table + "\n")
        steps = planned_steps(config, len(splits.train))
        selector = LayerSelectionCallback(strategy, tmp / "selection.jsonl", config.select_interval,
                                          config.seed)
        tracker = BestDevTracker(task, model, config.eval_every or max(1, steps // 5))
        trainer = Trainer(model=model, args=training_arguments(config, tmp, device, steps),
                          train_dataset=task.train_dataset, data_collator=task.collator,
                          callbacks=[selector, tracker])
        for noisy in (ProgressCallback, PrinterCallback):
            trainer.remove_callback(noisy)
        trainer.add_callback(QuietProgress())
        live_logging(trainer, config, tmp)
        peak = PeakMemory(device)
        peak.reset()
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
        peak_bytes = peak.peak_bytes()
        metrics = evaluate_run(task, model, tracker, trainer, selector, selector.ctx.layers)
        metrics.update(peak_memory_bytes=peak_bytes, train_seconds=train_seconds, device=str(device),
                       model=config.model, strategy=strategy.name, adapter=adapters.kind)
        save_run(tmp, config, model, tokenizer, adapters, task, metrics, loaded)
    if announce:
        say(summary_line(config.out, task.headline, metrics))
    return RunResult(Path(config.out), metrics, task.headline)


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


def save_run(tmp: Path, config, model, tokenizer, adapters, task, metrics, loaded) -> None:
    from ..environment import environment
    from ..modelcard import trained_layers, write_task_and_card
    from ..models import TINY_BASE, resolvable_name
    from ..report import plot_run
    from ..report_html import write_report

    base_name = resolvable_name(config.model, config.out)
    adapter_lib.save_adapter(model, adapters, tmp / "adapter", task.name, trained_layers(metrics), base_name)
    tokenizer.save_pretrained(tmp / "tokenizer")
    tokenizer.save_pretrained(tmp / "adapter")  # AutoPeftModel reads the tokenizer beside the adapter
    if config.model == "tiny":
        save_tiny_base(config, task, tmp / TINY_BASE, tokenizer)
    resolved = {**config.to_dict(), "labels": list(task.splits.labels), "multi_label": task.splits.multi_label,
                "adapter": adapters.kind, "model_source": loaded.source, "base_model_name": base_name,
                "decision_threshold": metrics["decision"].get("threshold", 0.5)}
    env = environment()
    write_json(tmp / "config.json", resolved)
    write_json(tmp / "metrics.json", metrics)
    write_json(tmp / "environment.json", env)
    write_task_and_card(tmp / "adapter", resolved, metrics, env, base_name, merged=False)
    task.finish(model, tmp)
    plot_run(tmp)
    shutil.rmtree(tmp / "trainer", ignore_errors=True)
    write_report(tmp, tmp / "report.html", name=Path(config.out).name)


def save_tiny_base(config, task, folder: Path, tokenizer) -> None:
    """The tiny model's random base (rebuilt from its seed, as ``predict`` does), with the run's labels in
    its config: the base a tiny run's adapter names, so peft's auto classes can load it like any other."""
    base = load_model("tiny", task.model_task, task.splits.labels, task.splits.multi_label,
                      resolve_dtype(config.dtype), config.seed, config.tiny_layers)
    prepare_tokenizer(base.tokenizer, base.model)
    base.model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def summary_line(out, head: str, metrics: dict) -> str:
    test = metrics.get("test") or {}
    score = f"test {head} {test[head]:.4f}" if head in test else f"best dev {head} " \
        f"{metrics['best_dev'].get(head, float('nan')):.4f}"
    return (f"revtune: done: {score}, {metrics['steps']} steps, {metrics['mean_step_seconds']:.2f} s/step, "
            f"peak {metrics['peak_memory_bytes'] / 2**30:.2f} GiB, "
            f"{metrics['mean_active_layers']:.1f}/{metrics['n_layers']} layers per step -> {out} "
            f"(report: {Path(out) / 'report.html'})")


def run_summary(out, task_name: str, headline: str, metrics: dict) -> dict:
    """What ``revtune train --json`` prints: where the run is and its headline figures."""
    test = metrics.get("test") or {}
    return {"run": str(out), "report": str(Path(out) / "report.html"), "task": task_name,
            "headline": headline, "test": {k: v for k, v in test.items() if isinstance(v, (int, float))},
            "best_dev": metrics.get("best_dev"), "steps": metrics.get("steps"),
            "mean_step_seconds": metrics.get("mean_step_seconds"), "peak_memory_bytes": metrics.get("peak_memory_bytes"),
            "mean_active_layers": metrics.get("mean_active_layers"), "n_layers": metrics.get("n_layers")}
