"""Intention-Tuning: intention-adaptive revision generation in two steps (METHODS.md §4).

Step 1 trains an intent predictor with ``ir`` (softmax + CE for single-intent corpora, sigmoid + BCE for
multi-intent ones; the intent task picks) and counts how often each layer was active: G_l. Step 2 splits
G_l once (``selection.frequency``) into S_gen and trains a causal-LM generator with adapters trainable on
S_gen only, those adapters starting from the predictor's adapter weights on the same module names (the
predictor's classification head is discarded).

Output directory ``OUT``, written atomically (all or nothing)::

    OUT/predictor/    the step-1 intent run directory (or a copy of ``--predictor RUN``)
    OUT/generator/    the step-2 revise run directory (``revtune revise --run OUT`` reads it)
    OUT/alignment/    with ``alignment``: an ``ir`` run on the generation task alone
    OUT/metrics.json  importance_frequency, generator_layers, init, alignment, and the generator's test
    OUT/intention.json  the options and the resolved run config
    OUT/selection.png   the layers trained per step: step 1 beside step 2 (and the alignment run)

Alignment (optional, it costs a third run): ``s_int`` is the layer set the split rule keeps from the
intent predictor's importance frequency (the very set the generator trains); ``s_gen`` is the set it keeps
from the importance frequency of ``ir`` run on the generation task alone (S_gen* in METHODS.md);
``ratio = |s_int & s_gen| / |s_gen|``.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .errors import RevtuneError
from .intention_options import IntentionOptions
from .rundir import atomic_path, building_resumable, partial_path, read_run, write_json
from .selection.base import NoSignal, Strategy
from .selection.frequency import FrequencyRule, generation_layers, read_frequency

ADAPTER_FILES = ("adapter_model.safetensors", "bottleneck.safetensors")


@dataclass
class IntentionResult:
    path: Path
    metrics: dict


def alignment_ratio(s_int, s_gen) -> float:
    """|S_int & S_gen*| / |S_gen*|: the share of the generation task's own layers that the intent
    predictor also found."""
    s_gen = set(s_gen)
    if not s_gen:
        raise ValueError("the generation layer set is empty")
    return len(set(s_int) & s_gen) / len(s_gen)


# --- adapter initialisation from the predictor ------------------------------------------------------

def predictor_tensors(run: Path) -> dict[str, torch.Tensor]:
    """Every adapter tensor the predictor saved, by saved name (peft's files and revtune's own)."""
    from safetensors.torch import load_file

    tensors = {}
    for name in ADAPTER_FILES:
        path = Path(run) / "adapter" / name
        if path.is_file():
            tensors.update(load_file(str(path)))
    if not tensors:
        raise RevtuneError("no adapter weights to start from", path=Path(run) / "adapter")
    return tensors


def _saved_names(param_name: str) -> list[str]:
    """Names a parameter may carry in a saved adapter: its own (revtune's file), peft's without the
    adapter name, and peft's DoRA magnitude without ``.weight``."""
    plain = param_name.replace(".default", "")
    return [param_name, plain, plain.removesuffix(".weight")]


def _module(param_name: str) -> str:
    parts = param_name.replace(".default", "").split(".")
    cut = next((i for i, p in enumerate(parts) if p.startswith("lora_") or p in ("down", "up")), len(parts))
    return ".".join(parts[:cut])


def saved_layers(run: Path, n_layers: int) -> list[int]:
    """The layers the predictor's adapter holds: all, or its ``layers_to_transform`` when some layers never
    trained (their adapters were the identity, so the generator's own initialisation is as good)."""
    path = Path(run) / "adapter" / "adapter_config.json"
    saved = json.loads(path.read_text()).get("layers_to_transform") if path.is_file() else None
    return list(saved) if saved else list(range(n_layers))


def transfer_adapters(model, tensors: dict[str, torch.Tensor], layers: list[int], source="predictor") -> int:
    """Copy the predictor's adapter tensors into the generator's adapter parameters of ``layers``, matched
    by name inside the decoder blocks; a missing tensor or a shape mismatch is an error naming the module.
    Returns the number of tensors copied."""
    from .adapters import layer_map

    blocks = layer_map(model)
    if layers and max(layers) >= blocks.n_layers:
        raise RevtuneError(f"the predictor has layer {max(layers)} but the generator only {blocks.n_layers} "
                           "layers", path=source)
    copied = 0
    with torch.no_grad():
        for layer in layers:
            for name, param in zip(blocks.names[layer], blocks.params[layer]):
                key = next((k for k in _saved_names(name) if k in tensors), None)
                if key is None:
                    raise RevtuneError(f"the predictor has no adapter tensor for {name}: both steps need the "
                                       "same model, adapter, rank and target modules", path=source)
                if tuple(tensors[key].shape) != tuple(param.shape):
                    raise RevtuneError(f"module {_module(name)}: the predictor's tensor has shape "
                                       f"{tuple(tensors[key].shape)}, the generator's {tuple(param.shape)}",
                                       path=source)
                param.copy_(tensors[key].to(device=param.device, dtype=param.dtype))
                copied += 1
    return copied


# --- the two steps ----------------------------------------------------------------------------------

def _finish_subrun(path: Path, final: Path) -> None:
    """A sub-run is trained under the temporary directory; its config must name where it will live."""
    config_path = path / "config.json"
    config = json.loads(config_path.read_text())
    config["output"]["out"] = str(final)
    write_json(config_path, config)


def _subrun(config, out: Path, **kwargs) -> dict:
    """One step's run inside the resumable ``OUT.partial``: a finished one is kept, an interrupted one
    with a checkpoint resumed, one stopped before its first checkpoint started over; returns metrics."""
    from .training.checkpoint import last_checkpoint
    from .training.run import train_run

    folder = Path(config.output.out)
    if (folder / "metrics.json").is_file():
        return json.loads((folder / "metrics.json").read_text())
    resume = last_checkpoint(partial_path(folder) / "checkpoints") is not None
    if not resume:
        shutil.rmtree(partial_path(folder), ignore_errors=True)
    return train_run(config, resume=resume, resume_hint=f"revtune intention-tune --resume {out}",
                     **kwargs).metrics


def train_predictor(config, options: IntentionOptions, folder: Path, final: Path, quiet: bool) -> dict:
    """Step 1, or a copy of the reused predictor; returns the predictor's metrics."""


    if options.predictor and not (folder / "metrics.json").is_file():
        check_predictor(options.predictor, config)
        shutil.copytree(options.predictor, folder)
    elif not options.predictor:
        steps = options.predictor_steps or config.training.max_steps
        step1 = config.override(task="intent", out=str(folder), overwrite=False, max_steps=steps)
        _subrun(step1, final.parent, quiet=quiet)
    _finish_subrun(folder, final)
    return json.loads((folder / "metrics.json").read_text())


def check_predictor(run, config) -> None:
    """The reused predictor must be an intent run on the generator's base model and adapter."""
    path, predictor, _ = read_run(run)
    wanted = {"task": (predictor.data.task, "intent"), "model": (predictor.model.name, config.model.name),
              "adapter": (predictor.adapter.kind, config.adapter.kind or "lora")}
    if config.model.name == "tiny":
        wanted["tiny_layers"] = (predictor.model.tiny_layers, config.model.tiny_layers)
    for key, (theirs, value) in wanted.items():
        if theirs != value:
            raise RevtuneError(f"the predictor has {key} '{theirs}', this run needs '{value}'", path=path, field=key)


def train_generator(config, options, predictor: Path, s_gen: list[int], folder: Path, final: Path,
                    final_predictor: Path, quiet: bool) -> tuple[dict, int]:
    """Step 2: the generator on S_gen, adapters initialised from the predictor's; returns
    (metrics, tensors copied)."""
    frequency = read_frequency(predictor)
    strategy = Strategy(f"frequency:{final_predictor}", NoSignal(),
                        FrequencyRule(s_gen, frequency, str(final_predictor)))
    init = {"selected": s_gen, "all": list(range(len(frequency))), "none": []}[options.init_layers]
    init = [layer for layer in init if layer in saved_layers(predictor, len(frequency))]
    tensors = predictor_tensors(predictor) if init else {}
    copied = []

    def start_from_predictor(model):
        copied.append(transfer_adapters(model, tensors, init, source=str(final_predictor)))

    step2 = config.override(task="revise", select=f"frequency:{final_predictor}", out=str(folder),
                            overwrite=False)
    progress = folder.parent / "intention.json"
    metrics = _subrun(step2, final.parent, strategy=strategy, prepare_model=start_from_predictor, quiet=quiet)
    _finish_subrun(folder, final)
    state = json.loads(progress.read_text())
    if copied:
        write_json(progress, {**state, "tensors_copied": copied[0]})
    return metrics, copied[0] if copied else state["tensors_copied"]


def run_alignment(config, folder: Path, final: Path, s_int: list[int], quiet: bool) -> dict:
    """``ir`` on the generation task alone, and how far its layer split agrees with the predictor's."""
    run = config.override(task="revise", out=str(folder), overwrite=False)
    metrics = _subrun(run, final.parent, quiet=quiet)
    _finish_subrun(folder, final)
    s_gen = generation_layers(metrics["importance_frequency"], run.selection.options)
    return {"s_int": s_int, "s_gen": s_gen, "ratio": alignment_ratio(s_int, s_gen),
            "generation_frequency": metrics["importance_frequency"], "run": "alignment"}


def intention_tune(config, options: IntentionOptions | None = None, quiet: bool = False,
                   resume: bool = False, announce: bool = True) -> IntentionResult:
    """Both steps (and the optional alignment run) into ``config.output.out``, built in ``OUT.partial``.
    Both steps select with ``ir`` and its options (the split settings also split G_l).

    With ``resume``, finished steps are kept and the interrupted one continues from its checkpoint
    (``OUT.partial/intention.json`` holds the options and config it was started with). ``announce``
    prints the summary line at the end (the CLI prints it itself, last)."""
    from .training.checkpoint import Interrupted, StopOnSignal

    config = config.override(select="ir")
    out = config.output.out
    stop = StopOnSignal().install()  # between the steps a signal stops at once, keeping finished steps
    try:
        return _intention_tune(config, options or IntentionOptions(), quiet, resume, announce)
    except Interrupted as exc:
        exc.resume = f"revtune intention-tune --resume {out}"
        if exc.checkpoint is None and partial_path(out).is_dir():
            exc.kept = partial_path(out)
        raise
    finally:
        stop.uninstall()


def _intention_tune(config, options: IntentionOptions, quiet: bool, resume: bool,
                    announce: bool) -> IntentionResult:
    from .environment import environment
    from .report_html import write_report
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    out = Path(config.output.out)
    with building_resumable(out, config.output.overwrite, resume) as tmp:
        if not resume:
            write_json(tmp / "intention.json", {"options": asdict(options), "config": config.to_dict()})
            write_json(tmp / "environment.json", environment())  # the command that started it
        say("revtune: Intention-Tuning step 1: intent predictor with ir"
            + (f" (reused from {options.predictor})" if options.predictor else ""))
        predictor = train_predictor(config, options, tmp / "predictor", out / "predictor", quiet)
        frequency = predictor["importance_frequency"]
        s_gen = generation_layers(frequency, config.selection.options)
        say(f"revtune: Intention-Tuning step 2: generator on layers {s_gen} (importance frequency {frequency})")
        generator, copied = train_generator(config, options, tmp / "predictor", s_gen, tmp / "generator",
                                            out / "generator", out / "predictor", quiet)
        alignment = {"s_int": s_gen, "s_gen": None, "ratio": None, "generation_frequency": None, "run": None}
        if options.alignment:
            say("revtune: alignment: ir on the generation task alone")
            alignment = run_alignment(config, tmp / "alignment", out / "alignment", s_gen, quiet)
        metrics = summarise(predictor, generator, s_gen, options, copied, alignment)
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "intention.json", {"options": asdict(options), "config": config.to_dict()})
        plot_steps(tmp, metrics["n_layers"], options.alignment)
        write_report(tmp, tmp / "report.html", name=out.name)
    result = IntentionResult(out, metrics)
    if announce:
        say(intention_line(result))
    return result


def intention_line(result: IntentionResult) -> str:
    metrics, alignment = result.metrics, result.metrics.get("alignment") or {}
    return (f"revtune: done: generator test sari {metrics['test'].get('sari', float('nan')):.2f}, "
            f"layers {metrics['generator_layers']}"
            + (f", alignment {alignment['ratio']:.2f}" if alignment.get("ratio") is not None else "")
            + f" -> {result.path} (report: {result.path / 'report.html'})")


def summarise(predictor: dict, generator: dict, s_gen, options, copied: int, alignment: dict) -> dict:
    keep = ("steps", "mean_step_seconds", "peak_memory_bytes", "train_seconds", "trainable_params",
            "mean_trainable_params_per_step", "mean_active_layers", "strategy", "adapter")
    return {
        "method": "intention-tuning",
        "test": generator.get("test", {}),
        "test_at_best_dev": generator.get("test_at_best_dev", {}),
        "best_dev": generator.get("best_dev", {}),
        "importance_frequency": predictor["importance_frequency"],
        "generator_layers": s_gen,
        "n_layers": generator["n_layers"],
        "init": {"layers": options.init_layers, "tensors_copied": copied},
        "alignment": alignment,
        "predictor": {"run": "predictor", "test": predictor.get("test", {}),
                      **{k: predictor.get(k) for k in keep}},
        "generator": {"run": "generator", **{k: generator.get(k) for k in keep}},
    }


def plot_steps(out: Path, n_layers: int, with_alignment: bool) -> None:
    """``selection.png``: step 1's layers per step beside step 2's (and the alignment run's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import draw_heatmap, read_selection

    panels = [("predictor", "step 1: intent predictor (ir)"), ("generator", "step 2: generator (S_gen, fixed)")]
    if with_alignment:
        panels.append(("alignment", "alignment: ir on generation alone"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (name, title) in zip(axes[0], panels):
        draw_heatmap(ax, read_selection(out / name / "selection.jsonl"), n_layers, title)
    fig.tight_layout()
    with atomic_path(out / "selection.png") as path:
        fig.savefig(path, dpi=100)
    plt.close(fig)


def generator_run(run: str | Path) -> Path:
    """The run directory that generates: ``run`` itself, or ``run/generator`` of an intention-tune output."""
    run = Path(run)
    if not (run / "config.json").is_file() and (run / "generator" / "config.json").is_file():
        return run / "generator"
    return run
