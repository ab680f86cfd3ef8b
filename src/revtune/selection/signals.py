"""Signals that score layers from the model itself: gradient norms, weight norms, input/output cosine."""
from __future__ import annotations

import numpy as np
import torch

from ..models import decoder_blocks
from .base import NoSignal, SelectionContext
from .rules import SENTINEL


class GradNormSignal(NoSignal):
    """IR-Tuning's score: the gradient norm of each active layer's adapter tensors, stale for frozen ones.

    All norms of a step come from one ``torch._foreach_norm`` over the active layers' gradients and stay
    on the device; the only host transfer is the copy the rule reads at the start of the next step.
    """

    def __init__(self, aggregation: str = "authors"):
        self.aggregation = aggregation
        self.values: torch.Tensor | None = None

    def setup(self, ctx: SelectionContext) -> None:
        device = next(p for group in ctx.layers.params for p in group).device
        self.values = torch.full((ctx.n_layers,), SENTINEL, dtype=torch.float32, device=device)

    def scores(self, step, ctx):
        return self.values.double().cpu().numpy()  # the one host synchronisation of the step

    def observe(self, step, active, ctx):
        grads, owners = [], []
        for layer in active:
            for param in ctx.layers.params[layer]:
                if param.grad is not None:
                    grads.append(param.grad)
                    owners.append(layer)
        if not grads:
            return
        norms = torch.stack(torch._foreach_norm(grads)).float().to(self.values.device)
        terms = norms.sqrt() if self.aggregation == "authors" else norms.square()
        index = torch.tensor(owners, device=self.values.device)
        sums = torch.zeros_like(self.values).index_add_(0, index, terms)
        layer_scores = sums.sqrt()
        layer_scores = torch.where(torch.isfinite(layer_scores), layer_scores,
                                   torch.full_like(layer_scores, SENTINEL))
        measured = torch.zeros_like(self.values, dtype=torch.bool)
        measured[index] = True
        self.values = torch.where(measured, layer_scores, self.values)


class WeightNormSignal(NoSignal):
    """Static score: Frobenius norm of each block's frozen pretrained attention output projection."""

    def setup(self, ctx):
        self.values = np.array([self._norm(block) for block in decoder_blocks(ctx.model)])

    @staticmethod
    def _norm(block) -> float:
        for name, module in block.named_modules():
            leaf = name.rsplit(".", 1)[-1]
            in_attention = "attn" in name.lower() or "attention" in name.lower()
            if leaf in ("o_proj", "out_proj") or (leaf in ("dense", "c_proj") and in_attention):
                weight = getattr(module, "base_layer", module).weight
                return float(weight.detach().float().norm())
        raise ValueError(f"no attention output projection found in {type(block).__name__}")

    def scores(self, step, ctx):
        return self.values


class CosineSignal(NoSignal):
    """Mean cosine between each block's input and output hidden states on the training batch.

    Hooks read the states during the step's own forward (no extra pass); every layer is re-scored
    every step. Pad positions are excluded through the batch's attention mask.
    """

    def __init__(self):
        self.handles = []
        self.values = None
        self.pending = None

    def setup(self, ctx):
        blocks = decoder_blocks(ctx.model)
        self.values = np.full(len(blocks), SENTINEL)
        self.pending = [None] * len(blocks)
        self.ctx = ctx
        for index, block in enumerate(blocks):
            self.handles.append(block.register_forward_hook(self._hook(index), with_kwargs=True))

    def _hook(self, index):
        def record(module, args, kwargs, output):
            if not module.training:
                return
            hidden_in = args[0] if args else kwargs.get("hidden_states")
            hidden_out = output[0] if isinstance(output, tuple) else output
            with torch.no_grad():
                cos = torch.nn.functional.cosine_similarity(hidden_in.float(), hidden_out.float(), dim=-1)
                mask = (self.ctx.last_batch or {}).get("attention_mask")
                if mask is not None and mask.shape == cos.shape:
                    mask = mask.to(cos.device, cos.dtype)
                    value = (cos * mask).sum() / mask.sum().clamp(min=1)
                else:
                    value = cos.mean()
            self.pending[index] = value
        return record

    def scores(self, step, ctx):
        return self.values

    def observe(self, step, active, ctx):
        if all(v is not None for v in self.pending):
            self.values = torch.stack(self.pending).double().cpu().numpy()
        self.pending = [None] * len(self.pending)

    def close(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []
