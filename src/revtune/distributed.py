"""Rank and world helpers, and the few collectives layer selection needs under ``torch.distributed``.

revtune never builds a distribution layer of its own: ``torchrun`` / ``accelerate launch`` start the
processes, the ``Trainer`` (through Accelerate) initialises the process group and wraps the model in DDP.
What is new is only what per-step layer selection adds on top: every rank must see the same scores, draw
the same layers and agree on the active set, and only one rank may write the run directory. Every helper
is a no-op in a single process, so the same code runs unchanged on one CPU and on eight GPUs.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist

from .errors import RevtuneError


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def launched_world_size() -> int:
    """World size as the launcher announced it, readable before any process group exists."""
    return world_size() if is_distributed() else int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    return rank() if is_distributed() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return launched_rank() == 0


def _device() -> torch.device:
    """Where tensors for collectives must live: the current GPU under nccl, the CPU under gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def mean_across_ranks(values):
    """Element-wise mean of a float array over the ranks (float64), returned as a numpy array.

    Identical inputs come back unchanged bit for bit ((a + a) / 2 == a), so scores already computed from
    all-reduced gradients are untouched, while scores from local terms become one shared value.
    """
    array = np.asarray(values, dtype=np.float64)
    if not is_distributed():
        return array
    tensor = torch.from_numpy(array.copy()).to(_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return (tensor / dist.get_world_size()).cpu().numpy()


def gather_objects(value) -> list:
    """Every rank's ``value``, in rank order (``[value]`` in a single process)."""
    if not is_distributed():
        return [value]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value, src: int = 0):
    """``src``'s value on every rank."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def check_agreement(step: int, active: list[int]) -> None:
    """Stop, on every rank, if the ranks chose different active sets for ``step``.

    Ranks that disagree would train different layers and hang or silently diverge in the all-reduce;
    one all-gather of a few integers per step is cheap next to a training step.
    """
    if not is_distributed():
        return
    sets = gather_objects(list(active))
    if any(s != sets[0] for s in sets):
        groups: dict[str, list[int]] = {}
        for index, chosen in enumerate(sets):
            groups.setdefault(str(chosen), []).append(index)
        detail = "; ".join(f"ranks {', '.join(map(str, ranks))} chose {chosen}" for chosen, ranks in groups.items())
        raise RevtuneError(f"ranks disagree on the active layers at step {step}: {detail}", field="select")


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shard_of(n: int) -> tuple[list[int], int]:
    """This rank's indices of ``range(n)`` (``rank::world``) and the common shard length, so every rank
    runs the same number of forwards (FSDP needs every rank in every forward)."""
    world, me = world_size(), rank()
    return list(range(me, n, world)), -(-n // world)


def gather_in_order(local: np.ndarray, n: int) -> np.ndarray:
    """Reassemble rows computed on ``shard_of(n)`` shards into ``range(n)`` order on every rank."""
    if not is_distributed():
        return local
    world = world_size()
    parts = gather_objects(local)
    rows = [None] * n
    for owner, part in enumerate(parts):
        for position, index in enumerate(range(owner, n, world)):
            rows[index] = part[position]
    return np.stack(rows) if rows else local


def refuse_untested_engines(deepspeed_config: str | None = None) -> None:
    """Refuse, before any model loads, the engines no test covers here: DeepSpeed (``--deepspeed`` or
    ``accelerate launch --use_deepspeed``) and Accelerate's own FSDP plugin (``--use_fsdp``), both
    pointing at ``--fsdp``, revtune's FSDP2 path."""
    if deepspeed_config or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        raise RevtuneError("DeepSpeed is not supported (its optimizer state covers every layer from init); "
                           "use FSDP: --fsdp under torchrun or accelerate launch", field="deepspeed")
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        raise RevtuneError("Accelerate's FSDP plugin (--use_fsdp) is not supported: launch without it and "
                           "pass --fsdp (FSDP2, each decoder block its own unit)", field="fsdp")


def tensor_norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of each tensor, exact for FSDP-sharded (DTensor) gradients too.

    A sharded tensor's norm is the square root of its shards' squared norms summed over the ranks, so
    every per-layer aggregation built on top (IR's sum of square roots) matches the unsharded value to
    float precision; plain tensors (already all-reduced by DDP, or a single process) are used as they are.
    """
    from torch.distributed.tensor import DTensor

    sharded = [isinstance(t, DTensor) for t in tensors]
    if not any(sharded):
        return torch.stack(torch._foreach_norm(tensors))
    local = [t.to_local() if s else t for t, s in zip(tensors, sharded)]
    squares = torch.stack(torch._foreach_norm(local)).float().square()
    mask = torch.tensor(sharded, device=squares.device)
    partial = torch.where(mask, squares, torch.zeros_like(squares))
    dist.all_reduce(partial, op=dist.ReduceOp.SUM, group=tensors[sharded.index(True)].device_mesh.get_group())
    return torch.where(mask, partial, squares).sqrt()


def shard_model(model: torch.nn.Module, blocks: torch.nn.ModuleList) -> torch.nn.Module:
    """FSDP2 (``fully_shard``): every decoder block its own unit, then the root for what lies outside the
    blocks (embeddings, final norm, head), so switching a block's layers on or off keeps each unit's
    parameters uniform. Marked as sharded at load, so the ``Trainer`` neither wraps it in DDP nor shards
    it again, and its optimizer (built from the sharded parameters) holds sharded state."""
    from accelerate import PartialState
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    device = next(model.parameters()).device
    PartialState(cpu=device.type == "cpu")  # the process group the Trainer would create, created now
    if not is_distributed():
        raise RevtuneError("--fsdp shards over several processes: launch with torchrun --nproc_per_node N "
                           "or accelerate launch", field="fsdp")
    mesh = init_device_mesh(device.type, (world_size(),))
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    target = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft -> transformers
    target._is_distributed_loading_by_transformers = True  # the Trainer's path for pre-sharded models
    return model


def full_trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """Every trainable tensor whole, on the CPU (FSDP shards all-gathered: every rank must call it, and
    all walk the parameters in the same order), or None when nothing is sharded."""
    from torch.distributed.tensor import DTensor

    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not any(isinstance(p, DTensor) for _, p in trainable):
        return None
    return {name: (p.full_tensor() if isinstance(p, DTensor) else p).detach().cpu().clone()
            for name, p in trainable}
