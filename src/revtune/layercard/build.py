"""Make a layer card, top to bottom: data and frozen model -> signals -> coupling -> costs -> card files.

The model, data, adapter and seed come from the same :class:`RunConfig` a training run reads, so the
card describes exactly the run it plans (same targets, same head initialisation, same planned steps).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import torch

from ..adapters import resolve_targets
from ..models import load_model, prepare_tokenizer
from ..rundir import building
from ..runtime import PeakMemory, resolve_device, resolve_dtype, seed_everything
from ..selection.registry import build_strategy
from ..training.data import load_splits
from ..training.run import make_task, planned_steps, resolve_adapter
from .card import SCHEMA, VERSION, Card, coupling_bounds_text, read_card, write_card
from .cost import analytic_costs, measure_costs
from .coupling import coupling_matrix, rho, unit_perturbations
from .options import CardOptions
from .performance import dev_loss, probe_runs, standard_placements
from .placement import GainModel, signal_gains
from .probe import (ProbeBatch, block_groups, block_norms, probe_batches, stream_pass, target_modules,
                    task_loss)
from .stats import ModuleSignals, direction, module_signals

EIG_DTYPES = {"float32": torch.float32, "float64": torch.float64}  # names: options.EIG_DTYPE_NAMES


@dataclass
class Probe:
    """The frozen model and probe data a card is measured on."""

    model: torch.nn.Module
    source: str
    task: object
    adapter: object
    targets: list[str]
    per_block: list
    batches: list[ProbeBatch]
    steps: int
    loss_fn: object
    device: torch.device
    seed: int


def build_card(config, options: CardOptions, out: str | Path, overwrite: bool = False,
               quiet: bool = False) -> Card:
    """Measure a card for ``config``'s model, data and adapter and write it to ``out``."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    seed_everything(config.training.seed)
    splits = load_splits(config.data, config.training.seed)
    with building(out, overwrite) as tmp:
        probe = prepare_probe(config, options, splits)
        say(f"revtune: layer card of {config.model.name}: {len(probe.per_block)} blocks, targets "
            f"{','.join(probe.targets)}, {len(probe.batches)} probe batches "
            f"({sum(b.n_tokens for b in probe.batches)} tokens), T = {probe.steps} steps")
        rows, coupling, timing = measure(probe, options)
        say(f"revtune: signals {timing['signals_seconds']:.1f} s, coupling {timing['coupling_seconds']:.1f} s "
            f"(rho {coupling['rho']:.3f}), peak {timing['card_peak_bytes'] / 2**30:.2f} GiB\n"
            f"revtune: {coupling_bounds_text(coupling['rho'])}")
        data = card_document(config, options, probe, splits, rows, coupling, timing)
        if options.measure_performance:
            data["baseline"] = {"dev_loss": dev_loss(probe.model, probe.task.datasets["dev"], probe.task.collator,
                                                     probe.loss_fn, config.training.batch_size, probe.device)}
        if options.measure_cost:
            say("revtune: measuring step time and memory per block")
            _, measured = measure_costs(probe.model, probe.adapter, probe.task.name, probe.batches, probe.loss_fn,
                                        options.cost_steps, config.training.learning_rate, probe.device)
            for row, extra in zip(rows, measured):
                row.update(extra)
        probe.model = None  # the probe fine-tunes load their own
        if options.measure_performance:
            add_performance(data, config, options, probe, say)
        write_card(tmp, data)
    return read_card(out)


def prepare_probe(config, options: CardOptions, splits) -> Probe:
    """Load the model exactly as ``train_run`` would (same seed, so the same new head) and frozen."""
    device, dtype = resolve_device(config.model.device), resolve_dtype(config.model.dtype)
    task = make_task(config, splits)
    adapter = resolve_adapter(config.adapter, build_strategy("all"))
    loaded = load_model(config.model.name, task.model_task, splits.labels, splits.multi_label, dtype,
                        config.training.seed, config.model.tiny_layers)
    tokenizer = prepare_tokenizer(loaded.tokenizer, loaded.model, pad_token_id=config.model.pad_token_id)
    model = loaded.model.to(device).eval()
    task.prepare(tokenizer, device)
    targets = resolve_targets(model, adapter.targets)
    batches = probe_batches(task.train_dataset.rows, task.collator, config.training.batch_size,
                            options.probe_batches, config.training.seed, device)
    return Probe(model, loaded.source, task, adapter, targets, target_modules(model, targets), batches,
                 planned_steps(config.training, len(splits.train)),
                 partial(task_loss, task=task.name, multi_label=splits.multi_label), device, config.training.seed)


def measure(probe: Probe, options: CardOptions) -> tuple[list[dict], dict, dict]:
    """Signals and coupling: the card's own cost, timed and with its peak memory."""
    peak = PeakMemory(probe.device)
    peak.reset()
    started = time.perf_counter()
    signals, directions = measure_signals(probe.model, probe.per_block, probe.batches, probe.loss_fn, options,
                                          probe.steps, probe.adapter.r)
    signal_seconds = time.perf_counter() - started
    coupling_data = probe_batches(probe.task.train_dataset.rows, probe.task.collator, options.coupling_sequences,
                                  options.coupling_batches, probe.seed, probe.device)
    r, tokens = coupling_matrix(probe.model, coupling_data,
                                unit_perturbations(probe.per_block, directions, probe.device),
                                options.coupling_eps, options.coupling_mode)
    total = time.perf_counter() - started
    timing = {"signals_seconds": signal_seconds, "coupling_seconds": total - signal_seconds,
              "card_seconds": total, "card_peak_bytes": peak.peak_bytes()}
    costs = analytic_costs(probe.model, probe.per_block, probe.adapter)
    rows = [{**block_row(block), **cost} for block, cost in zip(signals, costs)]
    coupling = {"R": r.tolist(), "rho": rho(r), "mode": options.coupling_mode, "eps": options.coupling_eps,
                "tokens": tokens, "bounds_vacuous": bool(rho(r) >= 1), "dtype": "float32"}
    return rows, coupling, timing


def card_document(config, options: CardOptions, probe: Probe, splits, rows, coupling, timing) -> dict:
    batches = probe.batches
    return {
        "schema": SCHEMA, "version": VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"spec": config.model.name, "source": probe.source, "n_layers": len(probe.per_block),
                  "hidden_size": int(probe.model.config.hidden_size), "dtype": config.model.dtype,
                  "block_norms": block_norms(probe.model, probe.targets)},
        "adapter": {**asdict(probe.adapter), "targets": probe.targets},
        "task": {"name": probe.task.name, "labels": list(splits.labels), "multi_label": splits.multi_label,
                 "headline": probe.task.headline},
        "probe": {"sequences": sum(len(b.inputs["input_ids"]) for b in batches), "batches": len(batches),
                  "batch_size": config.training.batch_size, "tokens": sum(b.n_tokens for b in batches),
                  "data_hash": data_hash(batches), "seed": config.training.seed, "max_length": config.data.max_length,
                  "planned_steps": probe.steps, "train": config.data.train or "shipped sample"},
        "options": asdict(options), "coupling": coupling, "blocks": rows, "placements": [], "baseline": None,
        "timing": timing,
    }


def measure_signals(model, per_block, batches, loss_fn, options: CardOptions, steps: int, rank: int):
    """Per block {module: ModuleSignals}, and each module's adapter direction for the coupling."""
    dtype = EIG_DTYPES[options.eig_dtype]
    signals: list[dict[str, ModuleSignals]] = [{} for _ in per_block]
    directions = {}
    for group in block_groups(per_block, int(options.max_bytes)):
        stats = stream_pass(model, per_block, group, batches, loss_fn, options.gram)
        bases = {id(source): source.spectrum_basis(dtype) for source in stats.inputs}
        for (index, name), sums in stats.modules.items():
            spectrum = sums.spectrum(bases[id(sums.source)], dtype)
            signals[index][name] = module_signals(spectrum, options.ridge, steps, rank)
            directions[(index, name)] = direction(spectrum, options.ridge).float()
    return signals, directions


def block_row(modules: dict[str, ModuleSignals]) -> dict:
    """A block's values: sums over its modules (the condition number is the worst module's and the
    effective rank the modules' mean), with every module's own values beside them."""
    values = [m.as_dict() for m in modules.values()]
    row = {key: sum(v[key] for v in values)
           for key in ("res2", "res2_cf", "res2_rank", "energy", "gain", "gain_cf")}
    row["cond"] = max(v["cond"] for v in values)
    row["eff_rank"] = sum(v["eff_rank"] for v in values) / len(values)
    row["modules"] = {name: m.as_dict() for name, m in modules.items()}
    return row


def data_hash(batches) -> str:
    digest = hashlib.sha1()
    for batch in batches:
        for key in ("input_ids", "attention_mask", "labels"):
            digest.update(batch.inputs[key].cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def add_performance(data: dict, config, options: CardOptions, probe: Probe, say) -> None:
    """Probe fine-tunes of every block and the standard placements; their gains over the frozen
    model's dev loss become the blocks' ``probe_gain`` (what placement prefers when present)."""
    n = data["model"]["n_layers"]
    k = options.placement_k or max(1, round(0.2 * n))
    placements = standard_placements(n, k, config.training.seed)
    sets = {f"block{i}": [i] for i in range(n)} | placements
    task = probe.task

    def evaluate(model):
        return dev_loss(model, task.datasets["dev"], task.collator, probe.loss_fn, config.training.batch_size, probe.device)

    results = probe_runs(config.override(device=str(probe.device)), sets, options.probe_steps,
                         evaluate, task.headline, say)
    base = data["baseline"]["dev_loss"]
    for index, row in enumerate(data["blocks"]):
        measured = results[f"block{index}"]
        row.update(probe_dev_loss=measured["dev_loss"], probe_dev_metric=measured["dev_metric"],
                   probe_gain=max(0.0, base - measured["dev_loss"]))
    card = Card(data, Path("."))
    model = GainModel(signal_gains(card)[0], card.coupling)
    full = model.predicted(range(n))
    data["placements"] = [{"name": name, "layers": layers, "dev_loss": results[name]["dev_loss"],
                           "dev_metric": results[name]["dev_metric"],
                           "predicted_ratio": model.predicted(layers) / full if full > 0 else None}
                          for name, layers in placements.items()]
