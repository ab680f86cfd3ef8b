"""Coupling: how much two blocks' best corrections overlap in what they do to the final hidden state.

Ours (LAYERCARD.md): block l's direction D_l = -G Sigma_lam^-1 on each of its modules, scaled to unit
Frobenius norm over the block; its effect phi_l on the final hidden state is a central finite difference
(h(W + eps D) - h(W - eps D)) / (2 eps) at every non-pad token; R_lk = <phi_l, phi_k> / (|phi_l| |phi_k|),
with the inner products summed over tokens and batches ("pooled") or the cosine taken per token and
averaged ("token"); rho = ||R - I||_op.

Perturbing block l changes nothing below it, so each difference reruns only blocks l and above: the
blocks below are swapped for a stand-in that returns the cached output of block l-1. The perturbation
is added to the module's output (eps * x D^T), so no weight is ever modified.

The differences are always taken in fp32: a 1e-3 step is below bf16's resolution (2^-8 relative), so in
the model's own half precision the effect would be rounding noise. A half-precision model is upcast in
place for the coupling and every tensor is given back its own dtype afterwards (exact: bf16 and fp16
values are representable in fp32).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..models import decoder_blocks
from .probe import ProbeBatch
from .options import COUPLING_MODES

LOW_PRECISION = (torch.float16, torch.bfloat16)


@contextmanager
def computed_in_fp32(model: nn.Module):
    """Upcast the model's half-precision parameters and buffers to fp32 in place, restore them after."""
    saved = []
    for module in model.modules():
        for store in (module._parameters, module._buffers):
            for name, tensor in store.items():
                if tensor is not None and tensor.dtype in LOW_PRECISION:
                    saved.append((tensor, tensor.dtype) if store is module._parameters
                                 else (module, name, tensor.dtype))
    try:
        for entry in saved:
            if len(entry) == 2:
                entry[0].data = entry[0].data.float()
            else:
                module, name, _ = entry
                module._buffers[name] = module._buffers[name].float()
        yield model
    finally:
        for entry in saved:
            if len(entry) == 2:
                entry[0].data = entry[0].data.to(entry[1])
            else:
                module, name, dtype = entry
                module._buffers[name] = module._buffers[name].to(dtype)


class CouplingSums:
    """Streaming L x L sums of inner products of the blocks' effects."""

    def __init__(self, n_blocks: int, mode: str = "pooled"):
        if mode not in COUPLING_MODES:
            raise ValueError(f"coupling mode must be one of {COUPLING_MODES}, got {mode!r}")
        self.mode = mode
        self.gram = torch.zeros(n_blocks, n_blocks, dtype=torch.float64)
        self.tokens = 0

    def add(self, phis: torch.Tensor) -> None:
        """``phis``: (L, tokens, hidden) effects of every block on one batch's tokens."""
        phis = phis.double()
        if self.mode == "token":
            phis = phis / phis.norm(dim=-1, keepdim=True).clamp(min=1e-300)
        flat = phis.reshape(len(phis), -1)
        self.gram += (flat @ flat.T).cpu()
        self.tokens += phis.shape[1]

    def matrix(self) -> np.ndarray:
        gram = self.gram.numpy()
        if self.mode == "token":
            r = gram / max(self.tokens, 1)
        else:
            scale = np.sqrt(np.clip(np.diag(gram), 0, None))
            r = np.divide(gram, np.outer(scale, scale), out=np.zeros_like(gram),
                          where=np.outer(scale, scale) > 0)
        np.fill_diagonal(r, 1.0)
        return r


def rho(r: np.ndarray) -> float:
    """||R - I||_op of the symmetric coupling matrix."""
    off = np.asarray(r, dtype=np.float64) - np.eye(len(r))
    return float(np.abs(np.linalg.eigvalsh((off + off.T) / 2)).max()) if len(r) else 0.0


class _Replay(nn.Module):
    """Stands in for the blocks below the perturbed one: returns block l-1's cached output."""

    def __init__(self, output):
        super().__init__()
        self.output = output

    def forward(self, *args, **kwargs):
        return self.output


def _final_hidden(model, batch: ProbeBatch) -> torch.Tensor:
    out = model.base_model(input_ids=batch.inputs["input_ids"], attention_mask=batch.inputs["attention_mask"])
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    return hidden.reshape(-1, hidden.shape[-1])[batch.rows]


def _shifted(model, batch, perturbation: list[tuple[nn.Module, torch.Tensor]], step: float) -> torch.Tensor:
    def add(direction):
        def hook(module, args, output):
            return output + step * (args[0] @ direction.T.to(args[0].dtype)).to(output.dtype)
        return hook

    handles = [module.register_forward_hook(add(d)) for module, d in perturbation]
    try:
        return _final_hidden(model, batch)
    finally:
        for handle in handles:
            handle.remove()


def block_effects(model, batch: ProbeBatch, perturbations: list[list[tuple[nn.Module, torch.Tensor]]],
                  eps: float = 1e-3) -> torch.Tensor:
    """(L, tokens, hidden): phi_l for every block on one batch. ``perturbations[l]`` lists (module,
    direction) pairs already scaled so the block's directions have unit norm together."""
    blocks = decoder_blocks(model)
    outputs: dict[int, object] = {}
    handles = [block.register_forward_hook(lambda m, a, o, i=i: outputs.__setitem__(i, o))
               for i, block in enumerate(blocks)]
    with torch.no_grad():
        try:
            _final_hidden(model, batch)
        finally:
            for handle in handles:
                handle.remove()
        hidden = model.config.hidden_size
        phis = torch.zeros(len(blocks), batch.n_tokens, hidden, dtype=torch.float64)
        originals = list(blocks)
        for index, perturbation in enumerate(perturbations):
            if not perturbation:
                continue
            replay = _Replay(outputs[index - 1]) if index else None
            try:
                for below in range(index):
                    blocks[below] = replay
                plus = _shifted(model, batch, perturbation, eps)
                minus = _shifted(model, batch, perturbation, -eps)
            finally:
                for below in range(index):
                    blocks[below] = originals[below]
            phis[index] = ((plus - minus).double() / (2 * eps)).cpu()
    return phis


def unit_perturbations(per_block, directions: dict[tuple[int, str], torch.Tensor], device
                       ) -> list[list[tuple[nn.Module, torch.Tensor]]]:
    """Scale each block's directions to unit Frobenius norm over the block (empty for a zero block)."""
    result = []
    for index, modules in enumerate(per_block):
        pairs = [(module, directions[(index, name)]) for name, module in modules if (index, name) in directions]
        norm = float(sum(float((d.double() ** 2).sum()) for _, d in pairs)) ** 0.5
        result.append([] if norm == 0 else
                      [(module, (d.double() / norm).float().to(device)) for module, d in pairs])
    return result


def coupling_matrix(model, batches: list[ProbeBatch], perturbations, eps: float = 1e-3,
                    mode: str = "pooled") -> tuple[np.ndarray, int]:
    """(R, tokens used), accumulated batch by batch, in fp32 whatever the model's dtype."""
    sums = CouplingSums(len(perturbations), mode)
    with computed_in_fp32(model):
        for batch in batches:
            sums.add(block_effects(model, batch, perturbations, eps))
    return sums.matrix(), sums.tokens
