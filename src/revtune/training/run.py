"""One training run, top to bottom: corpus -> model + adapters -> Trainer + selection -> run directory."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import threading
import time
import warnings
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from transformers import TrainingArguments
from transformers.trainer_callback import ExportableState, PrinterCallback, ProgressCallback, TrainerCallback

from .. import adapters as adapter_lib
from .. import distributed as dist_lib
from ..config import TrainingConfig
from ..environment import environment as provenance
from ..errors import RevtuneError
from ..models import decoder_blocks, load_model, prepare_tokenizer
from ..planner import check_limit, format_plan, plan_run
from ..rundir import STARTED_CONFIG, disk_errors, partial_path, write_json, write_text
from ..runtime import (PeakMemory, environment, mixed_precision, resolve_device, resolve_dtype, seed_everything,
                       use_deterministic_algorithms)
from ..selection.base import Strategy
from ..statejson import exported, restored
from ..selection.callback import LayerSelectionCallback
from .checkpoint import CheckpointTrainer, Interrupted, StopOnSignal, last_checkpoint
from .data import load_splits
from .engine import check_engine, evaluate_split, run_directory, tune_once, upcast_trainable
from .memory import StepMemory


@dataclass
class RunResult:
    path: Path
    metrics: dict
    headline: str = "macro_f1"  # the task's best-dev metric


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


class BestDevTracker(TrainerCallback, ExportableState):
    """Evaluates dev every ``every`` steps and keeps a CPU copy of the trainable tensors at the best score,
    so the test score at the best dev step needs no checkpoint on disk. With ``test_every`` the test split
    is scored on its own schedule too, as the reference logs it (``test_history``; selection stays on dev). Checkpoints carry the history
    (JSON, ``stateful_callbacks``) and the best-dev tensors (``checkpoint_tensors``)."""

    def __init__(self, task, model, every: int, test_every: int = 0):
        self.task, self.model, self.every, self.test_every = task, model, every, test_every
        # Named now, while every layer is trainable: mid-run only the active layers require grad.
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.history: list[dict] = []
        self.test_history: list[dict] = []
        self.best: dict | None = None
        self.best_state: dict | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.test_every and state.global_step % self.test_every == 0:
            scores = evaluate_split(self.task, self.model, "test")
            if scores:
                self.test_history.append({"step": state.global_step,
                                          **{k: v for k, v in scores.items() if k != "per_class"}})
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            scores = evaluate_split(self.task, self.model, "dev")
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

    def state(self) -> dict:
        return exported({"history": self.history, "test_history": self.test_history, "best": self.best})

    def on_train_begin(self, args, state, control, **kwargs):
        saved = restored(self, state)
        if saved:
            self.history, self.best = list(saved["history"]), saved["best"]
            self.test_history = list(saved["test_history"])

    def checkpoint_tensors(self) -> dict:
        return self.best_state or {}

    def load_checkpoint_tensors(self, tensors: dict) -> None:
        self.best_state = tensors or None


class LossLog(TrainerCallback, ExportableState):
    """The loss of every step as two compact arrays, and the Trainer's own per-step log trimmed: with
    ``logging_steps=1`` its ``log_history`` grows by a dict per step for the whole run. Checkpoints carry
    the arrays, so a resumed run reports the loss of every step."""

    KEEP = 64

    def __init__(self):
        self.steps, self.losses = array("q"), array("d")

    def state(self) -> dict:
        return exported({"steps": list(self.steps), "losses": list(self.losses)})

    def on_train_begin(self, args, state, control, **kwargs):
        saved = restored(self, state)
        if saved:
            self.steps, self.losses = array("q", saved["steps"]), array("d", saved["losses"])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.steps.append(state.global_step)
            self.losses.append(float(logs["loss"]))
        if len(state.log_history) > 2 * self.KEEP:
            del state.log_history[:-self.KEEP]

    def rows(self) -> list[dict]:
        return [{"step": step, "loss": loss} for step, loss in zip(self.steps, self.losses)]


class QuietProgress(ProgressCallback):
    """The Trainer's progress bar with the loss in its postfix instead of a printed dict per step."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{logs['loss']:.4f}")


def effective_warmup(requested: int, total_steps: int) -> int:
    """The reference's warm-up unless the run is too short for it (fewer than 2 x warm-up steps):
    then 10% of the run, so a short run still spends most of its steps at the peak rate."""
    return requested if total_steps >= 2 * requested else total_steps // 10


def training_arguments(training: TrainingConfig, checkpoints: Path, device, total_steps: int, dtype: str = "float32",
                       save_every: int = 0) -> TrainingArguments:
    """The Trainer's arguments from the training part (``dtype``: the model part's, for mixed precision;
    ``save_every``: the output part's checkpoint interval)."""
    warmup = effective_warmup(training.warmup_steps, total_steps)
    checkpointing = {}
    if training.gradient_checkpointing:  # non-reentrant: active layers above frozen ones keep their grads
        checkpointing = dict(gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False})
    return TrainingArguments(
        output_dir=str(checkpoints), per_device_train_batch_size=training.batch_size,
        gradient_accumulation_steps=training.grad_accum, learning_rate=training.learning_rate,
        warmup_steps=warmup, lr_scheduler_type="linear", weight_decay=training.weight_decay,
        max_grad_norm=training.max_grad_norm, num_train_epochs=training.epochs, max_steps=training.max_steps,
        logging_steps=1, save_strategy="steps" if save_every else "no",
        save_steps=save_every or 500, save_only_model=False, eval_strategy="no",
        report_to=[] if training.report_to == "none" else [training.report_to],
        full_determinism=training.deterministic, seed=training.seed,
        data_seed=training.seed, use_cpu=device.type == "cpu", remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=not dist_lib.is_main(), **mixed_precision(dtype, device),
        # Layers switch on and off between steps: DDP must look for unused parameters every step, and
        # the graph is not static. Frozen layers have grad None, which DDP leaves untouched.
        ddp_find_unused_parameters=True, ddp_static_graph=False, **checkpointing)


def check_report_to(training: TrainingConfig) -> None:
    """A missing logger is a one-line error before any training, not a traceback from the Trainer."""
    import importlib.util

    if training.report_to != "none" and importlib.util.find_spec(training.report_to) is None:
        raise RevtuneError(f"--report-to {training.report_to} needs the {training.report_to} package: "
                           f"pip install {training.report_to} (or revtune[logging])", field="report_to")


def live_logging(trainer, training: TrainingConfig, tmp: Path) -> None:
    """TensorBoard event files inside the run directory (the Trainer's own folder is deleted at the end);
    W&B's files too, under a project named revtune unless the user set one."""
    import os

    if training.report_to == "tensorboard":
        for callback in trainer.callback_handler.callbacks:
            if type(callback).__name__ == "TensorBoardCallback":
                callback.logging_dir = str(tmp / "tensorboard")
    elif training.report_to == "wandb":
        os.environ.setdefault("WANDB_PROJECT", "revtune")
        os.environ["WANDB_DIR"] = str(tmp)


def planned_steps(training: TrainingConfig, n_train: int) -> int:
    """Optimizer steps of a run with the training part ``training`` on ``n_train`` examples."""
    if training.max_steps > 0:
        return training.max_steps
    per_epoch = math.ceil(n_train / (training.batch_size * training.grad_accum))
    return max(1, math.ceil(per_epoch * training.epochs))


def train_run(config, strategy: Strategy | None = None,
              prepare_model: Callable[[torch.nn.Module], None] | None = None,
              quiet: bool = False, resume: bool = False, resume_hint: str | None = None,
              announce: bool = True) -> RunResult:
    """Train one run and leave a complete run directory at ``config.output.out``.

    The run is built in ``OUT.partial``; with ``resume`` it continues from the last checkpoint there.
    SIGINT/SIGTERM finish the step, write a checkpoint and raise :class:`Interrupted`; a run stopped
    before its first checkpoint leaves nothing behind. ``announce`` prints the summary line at the end
    (the CLI prints it itself, last). Set-up order: adapters attached, the caller's
    ``prepare_model(model)``, the strategy's ``prepare``; then the one layer map of the run (shared with
    the callback) and ``trainable.txt``.
    """
    stop = StopOnSignal()
    if threading.current_thread() is threading.main_thread():
        stop.install()
    out = config.output.out
    try:
        return _train_run(config, strategy, prepare_model, quiet, resume, stop, announce)
    except Interrupted as exc:
        exc.checkpoint = last_checkpoint(partial_path(out) / "checkpoints")
        exc.resume = exc.resume or resume_hint or f"revtune train --resume {out}"
        raise
    finally:
        stop.uninstall()


def _train_run(config, strategy, prepare_model, quiet, resume, stop, announce) -> RunResult:
    say = (lambda *a: None) if quiet or not dist_lib.is_main() else (lambda *a: print(*a, flush=True))
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    # peft checks the vocabulary against the base's config, and a tiny base is only saved at the end
    warnings.filterwarnings("ignore", message="Could not find a config file", module="peft")
    training, model_part = config.training, config.model
    check_report_to(training)
    seed_everything(training.seed)
    device, dtype = resolve_device(model_part.device), resolve_dtype(model_part.dtype)
    if training.deterministic:
        use_deterministic_algorithms(device)
    splits = load_splits(config.data, training.seed)
    strategy = strategy or config.selection.options.build()
    planned = plan_run(config, splits, strategy)
    strategy = planned.strategy
    limit = check_limit(planned.plan, config.memory, device)
    say("revtune: " + format_plan(planned.plan, limit))
    task = make_task(config, splits)
    config = dataclasses.replace(config, adapter=resolve_adapter(config.adapter, strategy))
    check_engine(config, strategy, config.adapter, device)
    out = config.output.out
    with run_directory(out, config.output.overwrite, resume) as tmp:
        checkpoints = tmp / "checkpoints"
        resume_from = _start_or_resume(tmp, config, device, resume, say)
        loaded = load_model(model_part.name, task.model_task, splits.labels, splits.multi_label, dtype,
                            training.seed, model_part.tiny_layers, quantize=model_part.quantize)
        if model_part.quantize:
            from peft import prepare_model_for_kbit_training
            prepare_model_for_kbit_training(loaded.model, training.gradient_checkpointing)
        tokenizer = prepare_tokenizer(loaded.tokenizer, loaded.model, pad_token_id=model_part.pad_token_id)
        model = adapter_lib.attach(loaded.model, config.adapter, task.name)
        strategy.set_outside_blocks(model)  # what trains is settled before the caller's prepare_model sees it
        model = model if model_part.quantize else model.to(device)
        upcast_trainable(model)
        if model_part.fsdp:
            dist_lib.shard_model(model, decoder_blocks(model))
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
        if dist_lib.is_main():
            write_text(tmp / "trainable.txt", table + "\n")
        steps = planned_steps(training, len(splits.train))
        warmup = effective_warmup(training.warmup_steps, steps)
        if warmup != training.warmup_steps:
            say(f"revtune: warm-up {warmup} steps instead of {training.warmup_steps}: the run has {steps} steps, "
                f"fewer than 2 x {training.warmup_steps}")
        selector = LayerSelectionCallback(strategy, tmp / "selection.jsonl", config.selection.interval,
                                          training.seed, layers=layers)
        tracker = BestDevTracker(task, model, training.eval_every or max(1, steps // 5), training.test_every)
        peak = PeakMemory(device)
        memory = StepMemory(peak)  # before the tracker: a step's peak excludes the evaluation after it
        losses = LossLog()
        arguments = training_arguments(training, checkpoints, device, steps, model_part.dtype,
                                       config.output.save_every)
        trainer = CheckpointTrainer(model=model, args=arguments,
                                    train_dataset=task.train_dataset, data_collator=task.collator,
                                    compute_loss_func=task.compute_loss,
                                    callbacks=[selector, memory, tracker, losses, stop], trainable=tracker.names,
                                    keep=config.output.keep_checkpoints)
        if task.name == "intent":
            # transformers takes a model with **kwargs to normalise its loss over the whole accumulated
            # batch; the classification loss does not, so each micro-batch loss is divided here, as the
            # reference's Trainer did (METHODS.md §1: per-backward gradients of the scaled loss).
            trainer.model_accepts_loss_kwargs = False
        for noisy in (ProgressCallback, PrinterCallback):
            trainer.remove_callback(noisy)
        trainer.add_callback(QuietProgress())
        live_logging(trainer, training, tmp)
        peak.reset()
        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        train_seconds = time.perf_counter() - started
        if stop.signum is not None:
            raise Interrupted(stop.signum)
        metrics = evaluate_run(task, model, tracker, trainer, selector, layers, losses)
        world = dist_lib.world_size()
        peak_bytes = memory.run_peak()
        metrics.update(effective_warmup_steps=warmup, peak_memory_bytes=peak_bytes, **memory.summary(),
                       predicted_peak_memory_bytes=planned.plan.total, train_seconds=train_seconds,
                       device=str(device), model=model_part.name, strategy=strategy.name,
                       adapter=config.adapter.kind, world_size=world,
                       global_batch_size=training.batch_size * training.grad_accum * world,
                       peak_memory_bytes_per_rank=dist_lib.gather_objects(peak_bytes),
                       labels=list(splits.labels), multi_label=splits.multi_label, model_source=loaded.source,
                       layer_sizes=layers.layer_sizes(), outside_params=layers.outside_size())
        task.finish(model, tmp)  # every rank: its test predictions are sharded (a scratch folder off rank 0)
        state = dist_lib.full_trainable_state(model)  # gathered on every rank when FSDP shards it
        if dist_lib.is_main():
            with disk_errors(out):  # adapters, tokenizers and the tiny base write themselves
                save_run(tmp, config, model, tokenizer, task, metrics, state)
        dist_lib.barrier()  # every rank got here: only now may rank 0 rename the run into place
    if announce:
        say(summary_line(out, task.headline, metrics))
    return RunResult(Path(out), metrics, task.headline)


def _start_or_resume(tmp: Path, config, device, resume: bool, say) -> Path | None:
    """A fresh run records its config and environment; a resumed one returns its last checkpoint."""
    env = environment(device, config.model.dtype, config.training.deterministic)
    if not resume:
        (tmp / "checkpoints").mkdir()
        write_json(tmp / "checkpoints" / STARTED_CONFIG, config.to_dict())
        write_json(tmp / "environment.json", {**provenance(), **env})  # provenance: command, packages (report)
        return None
    checkpoint = last_checkpoint(tmp / "checkpoints")
    if checkpoint is None:
        raise RevtuneError("no complete checkpoint to resume from", path=tmp / "checkpoints", field="resume")
    recorded = json.loads((tmp / "environment.json").read_text())
    changed = [f"{k} {recorded.get(k)} -> {v}" for k, v in env.items()
               if k not in ("git", "platform") and recorded.get(k) != v]
    if changed:
        say(f"revtune: warning: resuming in another environment, the result may differ in the last bits "
            f"from an uninterrupted run: {'; '.join(changed)}")
    say(f"revtune: resuming from {checkpoint}")
    return checkpoint


def evaluate_run(task, model, tracker, trainer, selector, layers, losses) -> dict:
    metrics = {"decision": tune_once(task, model)}
    metrics["test"] = evaluate_split(task, model, "test")
    metrics["final_dev"] = tracker.history[-1] if tracker.history else {}
    metrics["best_dev"] = tracker.best or {}
    metrics["dev_history"] = tracker.history
    if tracker.test_every:
        metrics["test_history"] = tracker.test_history
    if tracker.best_state is not None and metrics["test"]:
        final_state = tracker.snapshot()
        _load_trainable(model, tracker.best_state)
        metrics["test_at_best_dev"] = evaluate_split(task, model, "test")
        _load_trainable(model, final_state)
    else:
        metrics["test_at_best_dev"] = metrics["test"]
    sizes = layers.layer_sizes()
    frequency = selector.importance_frequency()
    per_step = sum(n * size for n, size in zip(frequency, sizes)) / max(1, selector.steps_seen)
    metrics.update(
        train_loss=losses.rows(),
        steps=trainer.state.global_step,
        mean_step_seconds=selector.mean_step_seconds(),
        trainable_params=sum(sizes) + layers.outside_size(),
        mean_trainable_params_per_step=per_step + layers.outside_size(),
        mean_active_layers=selector.mean_active_layers(),
        lowest_layer_per_step=selector.lowest_per_step,
        n_layers=layers.n_layers,
        importance_frequency=frequency,
    )
    return metrics


def _load_trainable(model, state: dict) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


def save_run(tmp: Path, config, model, tokenizer, task, metrics, state=None) -> None:
    """Rank 0 only. ``config.json`` is exactly the resolved config (it re-runs the run); what the run
    learned is in ``metrics.json``. ``state``: the trainable tensors gathered whole when FSDP shards them."""
    from ..modelcard import trained_layers, write_task_and_card
    from ..models import TINY_BASE, resolvable_name
    from ..rundir import learned_of, run_record
    from ..report import plot_run
    from ..report_html import write_report

    out = config.output.out
    base_name = resolvable_name(config.model.name, out)
    metrics["base_model_name"] = base_name
    adapter_lib.save_adapter(model, config.adapter, tmp / "adapter", state, task=task.name,
                             trained_layers=trained_layers(metrics), base_model_name=base_name)
    tokenizer.save_pretrained(tmp / "tokenizer")
    tokenizer.save_pretrained(tmp / "adapter")  # AutoPeftModel reads the tokenizer beside the adapter
    if config.model.name == "tiny":
        save_tiny_base(config, task, tmp / TINY_BASE, tokenizer)
    env = json.loads((tmp / "environment.json").read_text())  # written when the run started
    write_json(tmp / "config.json", config.to_dict())
    write_json(tmp / "metrics.json", metrics)
    write_task_and_card(tmp / "adapter", run_record(config, learned_of(metrics)), metrics, env, base_name,
                        merged=False)
    plot_run(tmp)
    shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
    write_report(tmp, tmp / "report.html", name=Path(out).name)


def save_tiny_base(config, task, folder: Path, tokenizer) -> None:
    """The tiny model's random base (rebuilt from its seed, as ``predict`` does), with the run's labels in
    its config: the base a tiny run's adapter names, so peft's auto classes can load it like any other."""
    base = load_model("tiny", task.model_task, task.splits.labels, task.splits.multi_label,
                      resolve_dtype(config.model.dtype), config.training.seed, config.model.tiny_layers)
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
