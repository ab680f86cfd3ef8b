"""What adapting a block costs: analytic adapter size and FLOPs, and measured step time and memory.

Training cost is not additive over blocks: backward runs down to the lowest adapted block, so a set
costs about what its lowest block costs alone plus the other blocks' own adapter work. :func:`set_flops`
is that model per token; the placement scales a measured single-block time with it.
"""
from __future__ import annotations

import time
from itertools import cycle

import torch

from ..adapters import AdapterConfig, attach, layer_map
from ..models import decoder_blocks
from ..runtime import PeakMemory
from ..adapters import is_linear, linear_dims

ADAM_BYTES_PER_PARAM = 16  # fp32 weight, gradient and two AdamW moments


def analytic_costs(model, per_block, adapter: AdapterConfig) -> list[dict]:
    """Per block: trainable parameters (the whole block for ``none``), their forward FLOPs per token
    (2 per parameter: one multiply-add per token) and the block's own linear forward FLOPs per token
    (attention scores, which grow with sequence length, are left out)."""
    rows = []
    for block, modules in zip(decoder_blocks(model), per_block):
        params = (sum(p.numel() for p in block.parameters()) if adapter.kind == "none" else
                  sum(_adapter_params(adapter, *linear_dims(module)) for _, module in modules))
        linear = sum(m.weight.numel() for m in block.modules() if is_linear(m))
        rows.append({"params": params, "adapter_flops": 2 * params, "block_flops": 2 * linear})
    return rows


def _adapter_params(adapter: AdapterConfig, d_in: int, d_out: int) -> int:
    if adapter.kind == "lora":
        return adapter.r * (d_in + d_out)
    if adapter.kind == "dora":
        return adapter.r * (d_in + d_out) + d_out
    return adapter.bottleneck_dim * (d_in + d_out)


def set_flops(blocks: list[dict], layers) -> float:
    """Training FLOPs per token with ``layers`` adapted: every block's linear forward, their
    input-gradient backward from the top down to the lowest adapted block, and each adapted block's
    adapter forward and backward (3x its forward)."""
    if not layers:
        return float(sum(b["block_flops"] for b in blocks))
    low = min(layers)
    forward = sum(b["block_flops"] for b in blocks)
    backward = sum(b["block_flops"] for b in blocks[low:])
    return float(forward + backward + sum(3 * blocks[i]["adapter_flops"] for i in layers))


def measure_costs(model, adapter: AdapterConfig, task: str, batches, loss_fn, steps: int, lr: float,
                  device) -> tuple[torch.nn.Module, list[dict]]:
    """Step time (mean over ``steps`` after a warm-up step) and peak memory with one block adapted.

    In process, from the top block down: backward depth, and so memory, grows as the block gets lower,
    so memory the allocator kept from an earlier block never exceeds what the current one needs.
    Peak memory is the whole process's (model included), like a training run's ``peak_memory_bytes``.
    One extra untimed step first pays the one-off costs (allocations, lazy initialisation).
    Returns the adapted model (adapters are attached in place) and one row per block.
    """
    from ..selection.callback import apply_active

    model = attach(model, adapter, task).to(device)
    model.train()
    layers = layer_map(model)
    peak = PeakMemory(device)
    rows: list[dict] = [{} for _ in range(layers.n_layers)]
    data = cycle(batches)
    for index in reversed(range(layers.n_layers)):
        apply_active(layers, [index])
        optimizer = torch.optim.AdamW(layers.params[index] + layers.outside, lr=lr)
        peak.reset()
        warm = 2 if index == layers.n_layers - 1 else 1
        seconds = [_timed_step(model, optimizer, next(data), loss_fn, device) for _ in range(warm + steps)]
        rows[index] = {"step_seconds": sum(seconds[warm:]) / steps, "peak_bytes": peak.peak_bytes()}
    return model, rows


def _timed_step(model, optimizer, batch, loss_fn, device) -> float:
    started = time.perf_counter()
    loss, count = loss_fn(model, batch.inputs)
    (loss / count).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started
