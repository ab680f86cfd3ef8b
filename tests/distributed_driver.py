"""Runs revtune training under a real ``torchrun`` (or as one plain process) for tests/test_distributed.py.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/distributed_driver.py runs JOB.json
    python tests/distributed_driver.py invariants JOB.json

``runs``: ``train_run`` for each config in the job, one after another in the same process group (the
strategies' selection logs and metrics are what the test compares). ``invariants``: a plain
``Trainer`` with the ``LayerSelectionCallback`` and a checking callback, writing what it saw per rank.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)


class ByRank:
    """Each rank trains the layer numbered like itself."""

    def select(self, step, scores, ctx):
        from revtune import distributed

        return [distributed.rank()], None


def disagreeing(options):
    from revtune.selection.base import NoSignal, Strategy

    return Strategy("disagree", NoSignal(), ByRank())


def register_disagreeing_strategy() -> None:
    """``disagree``: each rank trains the layer numbered like itself, so the agreement check must fire."""
    from dataclasses import dataclass

    from revtune.selection.registry import StrategyOptions, register

    @register
    @dataclass
    class DisagreeOptions(StrategyOptions):
        name = "disagree"
        help = "test only"
        factory = "__main__:disagreeing"


def runs(job: dict) -> None:
    from revtune.config import RunConfig
    from revtune.training.run import train_run

    register_disagreeing_strategy()
    for values in job["configs"]:
        train_run(RunConfig.from_values(values), quiet=True)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of an FSDP parameter, or the tensor itself."""
    from torch.distributed.tensor import DTensor

    return (tensor.to_local() if isinstance(tensor, DTensor) else tensor).detach()


class Checker:
    """Per step: frozen layers' tensors must not move; active layers must get non-zero gradients."""

    def __init__(self, selector, out: Path):
        from transformers import TrainerCallback

        self.selector, self.out, self.records = selector, out, []
        checker = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                layers = checker.selector.ctx.layers
                checker.before = [[local(p).clone() for p in group] for group in layers.params]

            def on_pre_optimizer_step(self, args, state, control, **kwargs):
                layers = checker.selector.ctx.layers
                checker.grads = {i: [None if p.grad is None else float(p.grad.norm()) for p in layers.params[i]]
                                 for i in range(layers.n_layers)}

            def on_step_end(self, args, state, control, **kwargs):
                layers = checker.selector.ctx.layers
                active = set(checker.selector.active)
                moved = [i for i in range(layers.n_layers) if i not in active
                         and any(not torch.equal(a, local(p)) for a, p in zip(checker.before[i], layers.params[i]))]
                # lora_A's gradient is 0 while lora_B is still 0 at init: a layer counts by its total norm
                zero = [i for i in active if not sum(g or 0.0 for g in checker.grads[i]) > 0]
                stale = [i for i in range(layers.n_layers) if i not in active
                         and any(g is not None for g in checker.grads[i])]
                checker.records.append({"step": state.global_step, "active": sorted(active),
                                        "frozen_moved": moved, "active_zero_grad": zero,
                                        "frozen_with_grad": stale})

        self.callback = _Callback()

    def write(self, wrapped, optimizer):
        from torch.distributed.tensor import DTensor

        from revtune import distributed

        states = [v for state in optimizer.state.values() for v in state.values()
                  if torch.is_tensor(v) and v.dim() > 0]
        payload = {"rank": distributed.rank(), "world_size": distributed.world_size(),
                   "wrapped": type(wrapped).__name__, "records": self.records,
                   "optimizer_state_sharded": bool(states) and all(isinstance(v, DTensor) for v in states),
                   "optimizer_state_local_share": sum(local(v).numel() for v in states) / max(1, sum(
                       v.numel() for v in states))}
        (self.out / f"rank{distributed.rank()}.json").write_text(json.dumps(payload))


def invariants(job: dict) -> None:
    for case in job["cases"]:
        invariant_case(case)


def invariant_case(job: dict) -> None:
    from transformers import Trainer, TrainingArguments

    from revtune import adapters
    from revtune.models import load_model
    from revtune.selection.callback import LayerSelectionCallback

    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_model("tiny", "intent", ["a", "b"], seed=0, tiny_layers=6)
    model = adapters.attach(loaded.model, adapters.AdapterConfig(kind="lora", r=4, alpha=8, dropout=0.0),
                            "intent")
    if job.get("fsdp"):
        from revtune.distributed import shard_model
        from revtune.models import decoder_blocks

        shard_model(model, decoder_blocks(model))
    generator = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(3, 200, (12,), generator=generator),
             "attention_mask": torch.ones(12, dtype=torch.long), "labels": i % 2} for i in range(64)]
    selector = LayerSelectionCallback(job["select"], seed=0)
    checker = Checker(selector, out)
    checkpointing = dict(gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False}) \
        if job.get("gradient_checkpointing") else {}
    args = TrainingArguments(output_dir=str(out / f"trainer{os.environ.get('RANK', '0')}"),
                             per_device_train_batch_size=4, max_steps=job.get("steps", 6), learning_rate=1e-2,
                             logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                             weight_decay=0.1, ddp_find_unused_parameters=True,  # as training/run.py sets it
                             disable_tqdm=True,
                             **checkpointing)
    trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[selector, checker.callback])
    trainer.train()
    checker.write(trainer.model_wrapped, trainer.optimizer)


if __name__ == "__main__":
    mode, path = sys.argv[1], Path(sys.argv[2])
    {"runs": runs, "invariants": invariants}[mode](json.loads(path.read_text()))
