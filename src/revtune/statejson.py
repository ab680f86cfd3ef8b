"""Exact JSON encodings of the state a checkpoint keeps: tensors, arrays and numpy generators.

JSON floats are written with ``repr`` (the shortest string that reads back to the same double), so a
float32 or float64 value survives a round trip bit for bit; NaN and infinities use Python's JSON
extensions. Nothing here unpickles: a checkpoint handed over by someone else is read as data only.
"""
from __future__ import annotations

import numpy as np
import torch


def tensor_to_json(value: torch.Tensor) -> dict:
    value = value.detach().cpu()
    return {"dtype": str(value.dtype).removeprefix("torch."), "shape": list(value.shape),
            "data": value.reshape(-1).tolist()}


def tensor_from_json(data: dict, device=None) -> torch.Tensor:
    dtype = getattr(torch, data["dtype"])
    return torch.tensor(data["data"], dtype=dtype, device=device).reshape(data["shape"])


def array_to_json(value: np.ndarray) -> dict:
    return {"dtype": str(value.dtype), "shape": list(value.shape), "data": value.reshape(-1).tolist()}


def array_from_json(data: dict) -> np.ndarray:
    return np.array(data["data"], dtype=data["dtype"]).reshape(data["shape"])


def batch_to_json(batch: dict | None) -> dict | None:
    if batch is None:
        return None
    return {key: tensor_to_json(value) for key, value in batch.items() if torch.is_tensor(value)}


def batch_from_json(data: dict | None, device=None) -> dict | None:
    if data is None:
        return None
    return {key: tensor_from_json(value, device) for key, value in data.items()}


def generator_state(rng: np.random.Generator) -> dict:
    """The bit generator's state (PCG64: plain integers), enough to continue its stream exactly."""
    return rng.bit_generator.state


def set_generator_state(rng: np.random.Generator, state: dict) -> None:
    if state["bit_generator"] != type(rng.bit_generator).__name__:
        raise ValueError(f"checkpoint holds a {state['bit_generator']} generator, the run uses "
                         f"{type(rng.bit_generator).__name__}")
    rng.bit_generator.state = state


def exported(attributes: dict) -> dict:
    """A callback's ``ExportableState.state()``: its JSON state under one key, no constructor args (the
    Trainer's own restore, which rebuilds callbacks from args, stays off)."""
    return {"args": {}, "attributes": {"revtune": attributes}}


def restored(callback, state) -> dict | None:
    """What :func:`exported` wrote for ``callback`` into the checkpoint a run resumes from, else None."""
    if state.global_step == 0:
        return None
    saved = (state.stateful_callbacks or {}).get(type(callback).__name__, {})
    return saved.get("attributes", {}).get("revtune")
