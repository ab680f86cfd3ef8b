"""How one run is spread over processes and precisions: checks before anything loads, the run directory
on rank 0 only, evaluation done once for all ranks, and trainable tensors kept in float32.

``training/run.py`` calls these at fixed points; everything here is a no-op in one float32 process.
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from .. import distributed as dist_lib
from ..errors import RevtuneError
from ..models import quantization_config
from ..rundir import building_resumable
from ..runtime import mixed_precision
from ..selection.base import Strategy

FSDP_STRATEGIES = ("ir", "all", "fixed", "full", "random", "lisa", "replay")  # tests/test_distributed.py


def check_engine(config, strategy: Strategy, adapters, device: torch.device) -> None:
    """Refuse, before any weight loads, what cannot run here: DeepSpeed, Accelerate's FSDP plugin, fp16
    off CUDA, quantized bases without bitsandbytes on CUDA, and FSDP combinations no test covers."""
    dist_lib.refuse_untested_engines(config.model.deepspeed)
    mixed_precision(config.model.dtype, device)
    check_quantize(config.model.quantize, strategy, adapters, device)
    check_fsdp(config, strategy)


def check_fsdp(config, strategy: Strategy) -> None:
    """FSDP (the model part's ``fsdp``) with what the tests cover: the task, precision and training
    settings it is known to work with."""
    model = config.model
    if not model.fsdp:
        return
    if strategy.name.split(":")[0] not in FSDP_STRATEGIES:
        raise RevtuneError(f"--fsdp supports the strategies {', '.join(FSDP_STRATEGIES)}; "
                           f"'{strategy.name}' is untested under FSDP: use DDP (drop --fsdp)", field="fsdp")
    if not dist_lib.launched_world_size() > 1:
        raise RevtuneError("--fsdp shards over several processes: launch with torchrun --nproc_per_node N "
                           "or accelerate launch", field="fsdp")
    unsupported = [(config.data.task != "intent", "the revise task (its generation runs on rank 0 only)"),
                   (model.dtype != "float32", f"--dtype {model.dtype} (FSDP mixed precision is untested here)"),
                   (config.training.gradient_checkpointing, "--gradient-checkpointing"),
                   (bool(model.quantize), "--quantize")]
    for bad, what in unsupported:
        if bad:
            raise RevtuneError(f"--fsdp does not support {what}: use DDP (drop --fsdp)", field="fsdp")


def check_quantize(quantize: str | None, strategy: Strategy, adapters, device: torch.device) -> None:
    if not quantize:
        return
    if adapters.kind == "none":
        raise RevtuneError(f"--quantize {quantize} trains adapters on a frozen quantized base: strategy "
                           f"'{strategy.name}' with adapter none trains the base weights itself", field="quantize")
    quantization_config(quantize, device)
    if strategy.name == "weight":
        raise RevtuneError("the weight signal reads base weight norms, which a quantized base does not hold "
                           "in full precision: use ir, cosine or another strategy with --quantize",
                           field="quantize")


def upcast_trainable(model: torch.nn.Module) -> None:
    """Trainable tensors (adapters, a head, full-weight blocks) in float32 whatever the base dtype: the
    Trainer's bf16/fp16 mixed precision then autocasts the compute, AdamW keeps fp32 state, and fp16's
    gradient scaler can unscale (it refuses fp16 gradients)."""
    for param in model.parameters():
        if param.requires_grad and param.is_floating_point() and param.dtype != torch.float32:
            param.data = param.data.float()


@contextmanager
def run_directory(out, overwrite: bool, resume: bool = False):
    """Rank 0 builds the run directory (``rundir.building_resumable``: ``OUT.partial``, renamed into place
    at the end, resumable from its checkpoints); the other ranks get a private
    scratch folder for the Trainer, removed at the end. The caller ends the block with a barrier every
    rank must reach, so a run where any rank failed is never renamed into place."""
    if dist_lib.is_main():
        with building_resumable(out, overwrite, resume) as tmp:
            yield tmp
        return
    scratch = Path(tempfile.mkdtemp(prefix="revtune-rank-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _once(task, compute):
    """``compute()`` where it belongs: on every rank for a task that shards its own evaluation
    (``shards_evaluation``), else on rank 0 with the result broadcast, so every rank holds the same."""
    if getattr(task, "shards_evaluation", False) or not dist_lib.is_distributed():
        return compute()
    return dist_lib.broadcast_object(compute() if dist_lib.is_main() else None)


def evaluate_split(task, model, split: str) -> dict:
    return _once(task, lambda: task.evaluate(model, split))


def tune_once(task, model) -> dict:
    decided = _once(task, lambda: task.tune(model))
    if "threshold" in decided:
        task.threshold = decided["threshold"]
    return decided
