"""Measured quality columns: a short fine-tune of each block alone and of the standard placements.

Every probe is an ordinary ``train_run`` with a ``fixed:`` strategy, so it trains exactly as
``revtune train --select fixed:...`` would (same adapter, schedule and head); its run directory goes
to a temporary folder and is deleted. Identical layer sets (top-k and a block alone when k = 1, say)
are trained once.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

PLACEMENT_NAMES = ("top", "bottom", "mid", "uniform", "random")


def standard_placements(n: int, k: int, seed: int) -> dict[str, list[int]]:
    """top-k, bottom-k, middle-k (as ``fixed:midK``), k spread evenly, and k drawn with ``seed``."""
    k = min(max(1, k), n)
    start = (n - k) // 2
    uniform = sorted({int(i) for i in np.linspace(0, n - 1, k).round()})
    drawn = sorted(int(i) for i in np.random.default_rng(seed).choice(n, k, replace=False))
    return {f"top{k}": list(range(n - k, n)), f"bottom{k}": list(range(k)),
            f"mid{k}": list(range(start, start + k)), f"uniform{k}": uniform, f"random{k}": drawn}


def dev_loss(model, dataset, collator, loss_fn: Callable, batch_size: int, device) -> float:
    """Mean loss over the dev split (per example for intent, per target token for LM losses)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            loss, n = loss_fn(model, {k: v.to(device) for k, v in batch.items()})
            total, count = total + float(loss), count + n
    model.train(was_training)
    return total / max(count, 1)


def probe_runs(config, sets: dict[str, list[int]], steps: int, evaluate: Callable, headline: str,
               say: Callable = print) -> dict[str, dict]:
    """{name: {layers, dev_loss, dev_metric}} after ``steps`` steps of each set alone."""
    from ..training.run import train_run

    work = Path(tempfile.mkdtemp(prefix="revtune-card-probes-"))
    done: dict[tuple, dict] = {}
    results = {}
    try:
        for number, (name, layers) in enumerate(sets.items(), 1):
            key = tuple(sorted(layers))
            if key not in done:
                held = {}
                run_config = config.override(select="fixed:" + ",".join(map(str, key)), max_steps=steps,
                                             eval_every=steps, out=str(work / f"probe{number}"), overwrite=True)
                result = train_run(run_config, prepare_model=lambda model: held.setdefault("model", model),
                                   quiet=True)
                done[key] = {"dev_loss": evaluate(held.pop("model")),
                             "dev_metric": (result.metrics.get("final_dev") or {}).get(headline)}
                shutil.rmtree(result.path, ignore_errors=True)
            results[name] = {"layers": list(key), **done[key]}
            say(f"revtune: card probe {number}/{len(sets)} {name}: dev loss {done[key]['dev_loss']:.4f}, "
                f"{headline} {done[key]['dev_metric']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results
