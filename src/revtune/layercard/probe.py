"""Probe passes over the frozen model: hooks on the adapter targets feed the streaming sums.

One pass = every probe batch forward and backward once. Forward hooks on the target modules keep each
module's input; a hook on the module's output tensor receives d(sum of losses)/d(output) in backward,
and the sums of :mod:`.stats` are updated there and then, so nothing grows with the number of batches.
No weight gets a gradient: only the input of the lowest block being measured requires grad, which
also stops backward there. Blocks whose sums would not fit ``max_bytes`` together are measured in
groups, one pass per group.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..adapters import is_linear, linear_dims
from ..models import decoder_blocks
from .stats import InputSums, ModuleSums, StreamStats


@dataclass
class ProbeBatch:
    """A collated batch on the device, its non-pad token rows (flat B*T indices), and which of those
    rows belong to sequence half A (even sequences, counted over the whole probe set)."""

    inputs: dict
    rows: torch.Tensor
    half_a: torch.Tensor

    @property
    def n_tokens(self) -> int:
        return len(self.rows)


def probe_batches(rows: list[dict], collator, batch_size: int, n_batches: int, seed: int, device
                  ) -> list[ProbeBatch]:
    """``n_batches`` batches drawn without replacement from ``rows`` with the card's seed."""
    order = np.random.default_rng(seed).permutation(len(rows))[:batch_size * n_batches]
    batches, seen = [], 0
    for start in range(0, len(order), batch_size):
        chunk = [rows[i] for i in order[start:start + batch_size]]
        inputs = {k: v.to(device) for k, v in collator(chunk).items()}
        mask = inputs["attention_mask"]
        sequence = torch.arange(seen, seen + len(chunk), device=device)[:, None].expand_as(mask)
        flat = mask.reshape(-1).bool()
        batches.append(ProbeBatch(inputs, flat.nonzero().squeeze(1), (sequence.reshape(-1)[flat] % 2) == 0))
        seen += len(chunk)
    return batches


def task_loss(model, batch: dict, task: str, multi_label: bool = False) -> tuple[torch.Tensor, int]:
    """(sum of losses, count): per example for intent (CE, or BCE averaged over labels), per target
    token for the LM loss of ``revise`` (labels -100 ignored). The sum is what the card differentiates."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    labels = batch["labels"]
    if task == "intent":
        if multi_label:
            loss = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none").mean(-1)
            return loss.sum(), len(labels)
        return F.cross_entropy(logits, labels, reduction="sum"), len(labels)
    shifted, targets = logits[:, :-1], labels[:, 1:]
    loss = F.cross_entropy(shifted.reshape(-1, shifted.shape[-1]), targets.reshape(-1), ignore_index=-100,
                           reduction="sum")
    return loss, int((targets != -100).sum())




def target_modules(model: nn.Module, targets: list[str]) -> list[list[tuple[str, nn.Module]]]:
    """Per block, the (name, module) pairs an adapter would wrap, in the block's module order."""
    return [[(name, module) for name, module in block.named_modules()
             if name.rsplit(".", 1)[-1] in targets and is_linear(module)] for block in decoder_blocks(model)]


def block_bytes(modules: list[tuple[str, nn.Module]]) -> int:
    """Upper bound of a block's fp32 sums (as if no two modules shared an input) plus its direction."""
    total = 0
    for _, module in modules:
        d_in, d_out = linear_dims(module)
        total += d_in * d_in + 3 * d_out * d_in
    return 4 * total


def block_groups(per_block: list[list[tuple[str, nn.Module]]], max_bytes: int) -> list[list[int]]:
    """Consecutive blocks whose sums fit ``max_bytes`` together (at least one block per group)."""
    groups, current, used = [], [], 0
    for index, modules in enumerate(per_block):
        size = block_bytes(modules)
        if current and used + size > max_bytes:
            groups.append(current)
            current, used = [], 0
        current.append(index)
        used += size
    if current:
        groups.append(current)
    return groups


class _Recorder:
    """Hooks for one group of blocks. Modules fed the very same tensor (q, k and v) share one
    :class:`InputSums`; that is decided in the first batch, while the inputs seen are held alive so
    a freed tensor's memory cannot be mistaken for a shared input."""

    def __init__(self, model, per_block, group: list[int], gram: str, total_tokens: int):
        self.model = model
        self.stats = StreamStats()
        self.gram, self.total_tokens = gram, total_tokens
        self.batch: ProbeBatch | None = None
        self.first_inputs: list[tuple[int, torch.Tensor, InputSums]] = []
        self.added: dict[int, torch.Tensor] = {}  # this batch's token rows per shared input
        self.handles = []
        blocks = decoder_blocks(model)
        self.handles.append(blocks[group[0]].register_forward_pre_hook(_require_grad, with_kwargs=True))
        for index in group:
            for name, module in per_block[index]:
                self.handles.append(module.register_forward_hook(self._forward(index, name)))

    def _forward(self, index: int, name: str):
        def hook(module, args, output):
            if not output.requires_grad:
                return
            x = args[0]
            d_in, d_out = linear_dims(module)
            sums = self.stats.modules.get((index, name))
            if sums is None:
                source = next((s for i, seen, s in self.first_inputs if i == index and seen is x), None)
                if source is None:
                    source = InputSums(d_in, self._form(d_in))
                    self.stats.inputs.append(source)
                    self.first_inputs.append((index, x, source))
                sums = self.stats.modules[(index, name)] = ModuleSums(source, d_out)
            batch = self.batch
            rows_x = self.added.get(id(sums.source))
            if rows_x is None:
                rows_x = self.added[id(sums.source)] = x.detach().reshape(-1, d_in)[batch.rows]
                sums.source.add(rows_x, batch.half_a)
            output.register_hook(lambda g: sums.add(rows_x, g.reshape(-1, d_out)[batch.rows], batch.half_a))
        return hook

    def _form(self, d_in: int) -> str:
        """With the probe set's size known, 'auto' picks the final form at once (no conversion)."""
        if self.gram != "auto":
            return self.gram
        return "always" if self.total_tokens <= d_in else "never"

    def run(self, batches: list[ProbeBatch], loss_fn: Callable) -> StreamStats:
        try:
            for batch in batches:
                self.batch, self.added = batch, {}
                loss, _ = loss_fn(self.model, batch.inputs)
                loss.backward()
                self.first_inputs = []
                for source in self.stats.inputs:
                    source.settle()
        finally:
            for handle in self.handles:
                handle.remove()
        return self.stats


def _require_grad(module, args, kwargs):
    """Make the lowest measured block's input a leaf that requires grad: backward stops here."""
    if args:
        return (args[0].detach().requires_grad_(True), *args[1:]), kwargs
    kwargs = dict(kwargs)
    kwargs["hidden_states"] = kwargs["hidden_states"].detach().requires_grad_(True)
    return args, kwargs


def stream_pass(model, per_block, group: list[int], batches: list[ProbeBatch], loss_fn: Callable,
                gram: str = "auto") -> StreamStats:
    """One pass over ``batches`` measuring the blocks in ``group``; the model stays frozen."""
    for param in model.parameters():
        param.requires_grad_(False)
    return _Recorder(model, per_block, group, gram, sum(b.n_tokens for b in batches)).run(batches, loss_fn)


def block_norms(model: nn.Module, targets: list[str]) -> list[float]:
    """Per block, the Frobenius norm of its target weights together: the card's fingerprint of the
    base model. Reads through adapter wrappers (peft ``base_layer``, our bottleneck's ``base``)."""
    norms = []
    for block in decoder_blocks(model):
        total = 0.0
        for name, module in block.named_modules():
            if name.rsplit(".", 1)[-1] not in targets:
                continue
            base = getattr(module, "base_layer", None) or getattr(module, "base", None) or module
            weight = getattr(base, "weight", None)
            if weight is not None:
                total += float(weight.detach().float().pow(2).sum())
        norms.append(total ** 0.5)
    return norms
