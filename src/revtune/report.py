"""Plots of a run: which layers trained at which step, and the loss curve."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .jsonsafe import parse_json, read_json_file
from .rundir import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_selection(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [parse_json(line, path, number) for number, line in enumerate(path.read_text().splitlines(), 1)
            if line.strip()]


def selection_matrix(records: list[dict], n_layers: int) -> np.ndarray:
    """layers x steps, 1 where the layer was active."""
    matrix = np.zeros((n_layers, len(records)))
    for column, record in enumerate(records):
        matrix[record["active"], column] = 1
    return matrix


def draw_heatmap(ax, records: list[dict], n_layers: int, title: str) -> None:
    ax.imshow(selection_matrix(records, n_layers), aspect="auto", origin="lower", cmap="Greys",
              interpolation="nearest", vmin=0, vmax=1)
    ax.set_xlabel("step")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=9)


def plot_run(run: Path) -> None:
    """selection.png (layers x steps) and loss.png in the run directory."""
    run = Path(run)
    plt = _pyplot()
    metrics = read_json_file(run / "metrics.json")
    records = read_selection(run / "selection.jsonl")
    if records:
        fig, ax = plt.subplots(figsize=(8, 4))
        draw_heatmap(ax, records, metrics["n_layers"], f"layers trained per step ({metrics['strategy']})")
        fig.tight_layout()
        with atomic_path(run / "selection.png") as path:
            fig.savefig(path, dpi=100)
        plt.close(fig)
    losses = metrics.get("train_loss") or []
    if losses:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([e["step"] for e in losses], [e["loss"] for e in losses], label="train loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(f"training loss ({metrics['strategy']})", fontsize=9)
        fig.tight_layout()
        with atomic_path(run / "loss.png") as path:
            fig.savefig(path, dpi=100)
        plt.close(fig)
