"""The card on disk: ``card.json`` (versioned schema), ``card.md`` (one row per block), ``card.png``.

A card is computed once and read by placement, ``train --select card:PATH``, ``compare`` and the IR
cross-check; reading validates every field those need, so a broken or foreign file fails in one line.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RevtuneError
from ..rundir import atomic_path, write_json, write_text

SCHEMA = "revtune-layer-card"
VERSION = 1
CARD_FILE, MARKDOWN_FILE, FIGURE_FILE = "card.json", "card.md", "card.png"
SIGNAL_COLUMNS = ("res2", "res2_cf", "res2_rank", "energy", "cond", "eff_rank", "gain", "gain_cf")
COST_COLUMNS = ("params", "adapter_flops", "block_flops")
MEASURED_COLUMNS = ("step_seconds", "peak_bytes", "probe_dev_loss", "probe_dev_metric", "probe_gain")
TOP_KEYS = ("model", "adapter", "task", "probe", "coupling", "blocks")


@dataclass
class Card:
    """A validated card. ``data`` is the JSON document; the properties are what placement reads."""

    data: dict
    path: Path

    @property
    def n_layers(self) -> int:
        return self.data["model"]["n_layers"]

    @property
    def blocks(self) -> list[dict]:
        return self.data["blocks"]

    @property
    def coupling(self) -> np.ndarray:
        return np.asarray(self.data["coupling"]["R"], dtype=np.float64)

    def column(self, name: str) -> np.ndarray | None:
        """One value per block, or None when the card lacks it for any block (not measured)."""
        values = [block.get(name) for block in self.blocks]
        if any(v is None for v in values):
            return None
        return np.asarray(values, dtype=np.float64)

    def describe(self) -> str:
        model, adapter = self.data["model"], self.data["adapter"]
        return (f"{model['spec']} ({model['n_layers']} layers, hidden {model['hidden_size']}), adapter "
                f"{adapter['kind']} r={adapter['r']} on {','.join(adapter['targets'])}")


def read_card(path: str | Path) -> Card:
    """A card directory (or its card.json), validated; anything else is one RevtuneError line."""
    path = Path(path)
    file = path / CARD_FILE if path.is_dir() else path
    if not file.is_file():
        raise RevtuneError("layer card not found (give the directory written by revtune layer-card)",
                           path=path)
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise RevtuneError(f"not a layer card: invalid JSON ({exc.msg})", path=file, line=exc.lineno) from None
    except RecursionError:
        raise RevtuneError("not a layer card: JSON nested too deeply", path=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RevtuneError(f"cannot read the layer card: {exc}", path=file) from None
    validate(data, file)
    return Card(data, file.parent)


def validate(data, file: Path) -> None:
    def fail(message: str, field: str | None = None):
        raise RevtuneError(f"not a usable layer card: {message}", path=file, field=field)

    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        fail(f"'schema' must be '{SCHEMA}'", "schema")
    if data.get("version") != VERSION:
        fail(f"version {data.get('version')!r} is not supported (this revtune reads version {VERSION})",
             "version")
    for key in TOP_KEYS:
        if not isinstance(data.get(key), (dict, list)):
            fail("missing or malformed", key)
    n = data["model"].get("n_layers")
    if not isinstance(n, int) or n < 1:
        fail("expected a positive integer", "model.n_layers")
    for key in ("hidden_size",):
        if not isinstance(data["model"].get(key), int):
            fail("expected an integer", f"model.{key}")
    if not isinstance(data["model"].get("block_norms"), list) or len(data["model"]["block_norms"]) != n:
        fail(f"expected {n} numbers", "model.block_norms")
    if not isinstance(data["adapter"].get("targets"), list) or not isinstance(data["adapter"].get("r"), int):
        fail("expected kind, r and a list of targets", "adapter")
    blocks = data["blocks"]
    if not isinstance(blocks, list) or len(blocks) != n:
        fail(f"expected {n} blocks, got {len(blocks) if isinstance(blocks, list) else 'none'}", "blocks")
    for index, block in enumerate(blocks):
        if not isinstance(block, dict):
            fail("expected an object", f"blocks[{index}]")
        for name in SIGNAL_COLUMNS + COST_COLUMNS:
            if not _number(block.get(name)):
                fail("expected a number", f"blocks[{index}].{name}")
        for name in MEASURED_COLUMNS:
            if block.get(name) is not None and not _number(block[name]):
                fail("expected a number or null", f"blocks[{index}].{name}")
    r = data["coupling"].get("R")
    if (not isinstance(r, list) or len(r) != n
            or any(not isinstance(row, list) or len(row) != n or not all(_number(v) for v in row) for row in r)):
        fail(f"expected a {n}x{n} matrix of numbers", "coupling.R")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def write_card(folder: Path, data: dict) -> None:
    """card.json, card.md and card.png into ``folder``."""
    validate(json.loads(json.dumps(data)), folder / CARD_FILE)
    write_json(folder / CARD_FILE, data)
    write_text(folder / MARKDOWN_FILE, card_markdown(data))
    plot_card(folder / FIGURE_FILE, data)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e7):
        return f"{int(value):,}"
    return f"{value:.3g}"


def card_markdown(data: dict) -> str:
    model, adapter, probe, coupling = data["model"], data["adapter"], data["probe"], data["coupling"]
    lines = [
        f"# Layer card: {model['spec']}",
        "",
        f"- model: {model['spec']} ({model.get('source', '')}), {model['n_layers']} blocks, hidden "
        f"{model['hidden_size']}",
        f"- adapter: {adapter['kind']} r={adapter['r']} alpha={adapter.get('alpha')} on "
        f"{', '.join(adapter['targets'])}",
        f"- task: {data['task'].get('name')}; probe: {probe.get('sequences')} sequences, "
        f"{probe.get('tokens')} tokens, seed {probe.get('seed')}, data {probe.get('data_hash')}; "
        f"budgeted gain for T = {probe.get('planned_steps')} steps",
        f"- coupling: rho = {coupling.get('rho', float('nan')):.3f} ({coupling.get('mode')}, "
        f"{coupling.get('tokens')} tokens); {coupling_bounds_text(coupling.get('rho', float('nan')))}",
        "",
        "Our definitions (LAYERCARD.md): res2 = tr(G Sigma_lam^-1 G^T) per block (cf = cross-fitted by "
        "sequence halves), energy = tr(Sigma), gain = budgeted gain after T steps of gradient descent.",
        "",
    ]
    columns = [c for c in SIGNAL_COLUMNS + COST_COLUMNS + MEASURED_COLUMNS
               if any(block.get(c) is not None for block in data["blocks"])]
    lines.append("| block | " + " | ".join(columns) + " |")
    lines.append("|---:|" + "---:|" * len(columns))
    for index, block in enumerate(data["blocks"]):
        lines.append(f"| {index} | " + " | ".join(_fmt(block.get(c)) for c in columns) + " |")
    placements = data.get("placements") or []
    if placements:
        lines += ["", "## Standard placements (short fine-tunes)", "",
                  "| placement | layers | dev loss | dev metric | predicted gain ratio |", "|---|---|---:|---:|---:|"]
        for row in placements:
            lines.append(f"| {row['name']} | {','.join(map(str, row['layers']))} | {_fmt(row.get('dev_loss'))} "
                         f"| {_fmt(row.get('dev_metric'))} | {_fmt(row.get('predicted_ratio'))} |")
    if data.get("baseline"):
        lines += ["", f"Frozen model (step 0) dev loss: {_fmt(data['baseline'].get('dev_loss'))}; probe_gain = that "
                  "minus a block's probe dev loss, floored at 0."]
    timing = data.get("timing") or {}
    if timing:
        lines += ["", "Computed in " + ", ".join(f"{k} {_fmt(v)}" for k, v in timing.items()) + "."]
    return "\n".join(lines) + "\n"


def coupling_bounds_text(rho: float) -> str:
    """What rho says about adding up block gains (LAYERCARD.md): bounds when rho < 1, else that there are none."""
    if rho < 1:
        return (f"a set's predicted gain lies between {1 / (1 + rho):.3g} and {1 / (1 - rho):.3g} times the sum "
                "of its blocks' gains")
    return ("rho >= 1: the bounds sum/(1+rho) .. sum/(1-rho) on a set's gain are vacuous (gains do not add "
            "up); placement relies on the coupling-aware prediction u^T R^-1 u alone")


def plot_card(path: Path, data: dict) -> None:
    from ..report import _pyplot

    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    blocks = data["blocks"]
    depth = np.arange(len(blocks))

    def col(name):
        return np.array([np.nan if b.get(name) is None else b[name] for b in blocks], dtype=float)

    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    panels = [
        (axes[0, 0], ("res2", "res2_cf", "res2_rank"), "projected residual norm^2"),
        (axes[0, 1], ("energy", "cond", "eff_rank"), "activation energy, condition, eff. rank"),
        (axes[0, 2], ("gain", "gain_cf", "probe_gain"), "budgeted gain (and probe gain)"),
        (axes[1, 0], ("params", "adapter_flops"), "adapter params, FLOPs/token"),
        (axes[1, 1], ("step_seconds",), "measured s/step (left), peak GiB (right)"),
    ]
    for ax, names, title in panels:
        _draw(ax, depth, {name: col(name) for name in names})
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("block")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _draw(axes[1, 1].twinx(), depth, {"peak GiB": col("peak_bytes") / 2**30}, color="tab:red")
    image = axes[1, 2].imshow(np.asarray(data["coupling"]["R"]), cmap="RdBu_r", vmin=-1, vmax=1,
                              origin="lower")
    axes[1, 2].set_title(f"coupling R (rho = {data['coupling'].get('rho', float('nan')):.2f})", fontsize=9)
    fig.colorbar(image, ax=axes[1, 2], fraction=0.046)
    fig.suptitle(f"layer card: {data['model']['spec']}", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _draw(ax, depth, columns: dict, color=None) -> None:
    """Columns that were measured, on a log axis (symlog when a value is 0 or negative)."""
    plotted = []
    for name, values in columns.items():
        if np.isfinite(values).any():
            ax.plot(depth, values, marker="o", markersize=3, label=name, color=color)
            plotted.append(values[np.isfinite(values)])
    if not plotted:
        return
    values = np.concatenate(plotted)
    if (values > 0).all():
        ax.set_yscale("log")
    elif np.abs(values).max() > 0:
        ax.set_yscale("symlog", linthresh=1e-3 * np.abs(values).max())
    ax.legend(fontsize=7, loc="best")
