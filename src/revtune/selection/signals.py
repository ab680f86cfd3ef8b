"""Signals that score layers from the model itself: gradient norms, weight norms, input/output cosine."""
from __future__ import annotations

import numpy as np
import torch

from ..distributed import tensor_norms
from ..models import decoder_blocks
from ..statejson import array_from_json, array_to_json, tensor_from_json, tensor_to_json
from .base import NoSignal, SelectionContext
from .options import COSINE_REDUCTIONS, GRAD_ACCUM_MODES
from .rules import SENTINEL

class GradNormSignal(NoSignal):
    """IR-Tuning's score: the gradient norm of each active layer's adapter tensors, stale for frozen ones.

    ``grad_accum`` says which gradients are normed when a step accumulates several micro-batches:
    ``per-backward`` (the reference: its hooks see every backward pass, so the per-tensor terms are summed
    over micro-batches, s_l = sqrt(sum_m sum_p sqrt(||g_p^(m)||))) or ``accumulated`` (the step's summed
    gradient, normed once). Either way the gradient is the one the backward produced: the Trainer's
    micro-batch loss already carries its 1/grad_accum factor, as it did in the reference. With one
    micro-batch both modes give the same scores. A non-finite tensor norm counts as 1000, per tensor.

    Norms stay on the device (per-backward: a tensor hook norms each incoming gradient; accumulated: one
    ``torch._foreach_norm`` per step); the only host transfer is the copy the rule reads next step.
    """

    def __init__(self, aggregation: str = "authors", grad_accum: str = "per-backward"):
        if grad_accum not in GRAD_ACCUM_MODES:
            raise ValueError(f"grad_accum must be one of {GRAD_ACCUM_MODES}, got {grad_accum!r}")
        self.aggregation = aggregation
        self.grad_accum = grad_accum
        self.values: torch.Tensor | None = None
        self.handles = []
        self.pending: list[tuple[int, torch.Tensor]] = []

    def setup(self, ctx: SelectionContext) -> None:
        device = next(p for group in ctx.layers.params for p in group).device
        self.values = torch.full((ctx.n_layers,), SENTINEL, dtype=torch.float32, device=device)
        if self.grad_accum == "per-backward":
            for layer, params in enumerate(ctx.layers.params):
                for param in params:
                    self.handles.append(param.register_hook(self._recorder(layer)))

    def _recorder(self, layer: int):
        def record(grad):
            self.pending.append((layer, torch.linalg.vector_norm(grad.detach(), dtype=torch.float32)))
        return record

    def scores(self, step, ctx):
        return self.values.double().cpu().numpy()  # the one host synchronisation of the step

    def observe(self, step, active, ctx):
        grads, owners = [], []
        for layer in active:
            for param in ctx.layers.params[layer]:
                if param.grad is not None:
                    grads.append(param.grad)
                    owners.append(layer)
        if self.grad_accum == "per-backward" and len(self.pending) > len(grads):
            # Several backwards this step: the reference's per-micro-batch terms (local to a rank under
            # DDP; the callback averages the scores over ranks). With one backward the accumulated
            # gradient is that backward's, and reading it after DDP's all-reduce keeps ranks exact.
            owners = [layer for layer, _ in self.pending]
            norms = torch.stack([norm for _, norm in self.pending])
        else:
            norms = tensor_norms(grads).float() if grads else None
        self.pending = []
        if norms is None:
            return
        norms = norms.to(self.values.device)
        norms = torch.where(torch.isfinite(norms), norms, torch.full_like(norms, SENTINEL))
        terms = norms.sqrt() if self.aggregation == "authors" else norms.square()
        index = torch.tensor(owners, device=self.values.device)
        layer_scores = torch.zeros_like(self.values).index_add_(0, index, terms).sqrt()
        measured = torch.zeros_like(self.values, dtype=torch.bool)
        measured[index] = True
        self.values = torch.where(measured, layer_scores, self.values)

    def state_dict(self) -> dict:
        return {"values": tensor_to_json(self.values)}

    def load_state_dict(self, state, ctx) -> None:
        self.values = tensor_from_json(state["values"], self.values.device)

    def close(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []
        self.pending = []


class PerturbedSignal:
    """Another signal whose measured scores are multiplied by ``1 + relative * N(0, 1)``.

    A probe, not a method: ``relative=1e-6`` is about the difference another CPU's kernels (or another
    thread count) make to a float32 gradient norm, so comparing a run with its perturbed twin shows how
    much of a rule's choices is decided by float noise. Sentinel scores (never measured) stay exact, and
    the noise has its own generator, so the selection draws of the run are untouched.
    """

    def __init__(self, inner, relative: float = 1e-6, seed: int = 0):
        self.inner, self.relative = inner, relative
        self.rng = np.random.default_rng(seed)

    def setup(self, ctx):
        self.inner.setup(ctx)

    def scores(self, step, ctx):
        values = self.inner.scores(step, ctx)
        if values is None:
            return None
        values = np.asarray(values, dtype=np.float64)
        noise = 1 + self.relative * self.rng.standard_normal(len(values))
        return np.where(values == SENTINEL, values, values * noise)

    def observe(self, step, active, ctx):
        self.inner.observe(step, active, ctx)

    def close(self):
        self.inner.close()

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

    ``reduction`` ``batch-mean`` (the reference's, default): average the input and the output states over
    the batch, take the cosine per position and average it over positions, pads included. ``token``:
    the cosine of every real token (pads excluded through the attention mask), averaged. Hooks read the
    states during the step's own forward (no extra pass); the first training forward of a step counts
    (with gradient accumulation the first micro-batch, as in the reference), and every layer is
    re-scored every step.
    """

    def __init__(self, reduction: str = "batch-mean"):
        if reduction not in COSINE_REDUCTIONS:
            raise ValueError(f"reduction must be one of {COSINE_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
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
            if not module.training or self.pending[index] is not None:
                return
            hidden_in = args[0] if args else kwargs.get("hidden_states")
            hidden_out = output[0] if isinstance(output, tuple) else output
            with torch.no_grad():
                self.pending[index] = self.similarity(hidden_in, hidden_out,
                                                      (self.ctx.last_batch or {}).get("attention_mask"))
        return record

    def similarity(self, hidden_in: torch.Tensor, hidden_out: torch.Tensor, mask: torch.Tensor | None):
        """One block's score from its (batch, positions, hidden) input and output states."""
        cosine = torch.nn.functional.cosine_similarity
        if self.reduction == "batch-mean":
            return cosine(hidden_in.float().mean(0), hidden_out.float().mean(0), dim=-1).mean()
        cos = cosine(hidden_in.float(), hidden_out.float(), dim=-1)
        if mask is not None and mask.shape == cos.shape:
            mask = mask.to(cos.device, cos.dtype)
            return (cos * mask).sum() / mask.sum().clamp(min=1)
        return cos.mean()

    def scores(self, step, ctx):
        return self.values

    def observe(self, step, active, ctx):
        if all(v is not None for v in self.pending):
            self.values = torch.stack(self.pending).double().cpu().numpy()
        self.pending = [None] * len(self.pending)

    def state_dict(self) -> dict:
        return {"values": array_to_json(np.asarray(self.values, dtype=np.float64))}

    def load_state_dict(self, state, ctx) -> None:
        self.values = array_from_json(state["values"])

    def close(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []
