"""Device, dtype, seeding and peak-memory measurement, the same way on CPU and GPU."""
from __future__ import annotations

import os
import random
import resource

import numpy as np
import torch

from .errors import RevtuneError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RevtuneError(f"unknown device '{name}'", field="device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RevtuneError(f"device '{name}' asked for but CUDA is not available", field="device")
    return device


def resolve_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def status_bytes(key: str) -> int:
    """A size field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes; 0 where it cannot be read."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakMemory:
    """Peak memory of a phase: max allocated on CUDA, peak resident set size on CPU.

    On Linux the RSS high-water mark can be reset (``/proc/self/clear_refs``), so the figure covers only
    the phase, not model loading; elsewhere it falls back to the process lifetime peak.
    """

    def __init__(self, device: torch.device):
        self.device = device

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            pass

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        return status_bytes("VmHWM") or int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def cpu_threads() -> int:
    return int(os.environ.get("OMP_NUM_THREADS", 0)) or torch.get_num_threads()


def mixed_precision(dtype: str, device: torch.device) -> dict:
    """The Trainer's mixed-precision switches for a run's ``--dtype``.

    bfloat16: bf16 autocast (CUDA, and CPU, where torch autocasts to bf16 too). float16: fp16 autocast
    with a gradient scaler, CUDA only: on CPU fp16 matmuls are slow or missing, so it is refused.
    The base weights are loaded in ``dtype``; trainable tensors stay float32 (``upcast_trainable``).
    """
    if dtype == "float16" and device.type != "cuda":
        raise RevtuneError(f"--dtype float16 needs a CUDA GPU (mixed precision with a gradient scaler); "
                           f"on {device.type} use --dtype bfloat16 or float32", field="dtype")
    return {"bf16": dtype == "bfloat16", "fp16": dtype == "float16"}


def use_deterministic_algorithms(device: torch.device) -> None:
    """``--deterministic``: torch's deterministic kernels, set before any CUDA work so cuBLAS sees its
    workspace setting; an op with no deterministic kernel then raises instead of varying."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)


def _git_commit() -> dict:
    """The commit of the revtune source that runs, when it is a git checkout (editable install)."""
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--", "."],
                                capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment(device: torch.device, dtype: str, deterministic: bool = False) -> dict:
    """What a run's bits depend on besides its config: ``environment.json`` of every run directory."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(), "platform": platform.platform(),
        **{name: installed(name) for name in ("torch", "transformers", "peft", "accelerate", "numpy",
                                              "safetensors", "revtune")},
        "git": _git_commit(), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "cuda": torch.version.cuda, "dtype": dtype, "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "deterministic": deterministic,
    }
