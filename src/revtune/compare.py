"""Several strategies trained at equal steps and seeds, each run in its own process, in one table.

A separate process per strategy is what makes peak memory a fair comparison (CPU peak RSS cannot be
reset below what an earlier model left behind) and keeps one strategy's crash out of the others' rows.
Every child is an ordinary ``revtune train`` (or ``python -m revtune.tfidf``) reading one shared config
file, so any row can be re-run alone. The output directory is built aside and renamed into place.
With ``seeds`` every strategy runs once per seed (``<strategy>/seed<N>/``); ``aggregate.py`` turns the
runs into mean, spread, intervals and paired tests.
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import RevtuneError, did_you_mean
from .rundir import atomic_path, building, write_json, write_text

METRIC_COLUMNS = {"intent": ("macro_f1", "accuracy", "au_prc"),
                  "revise": ("sari", "gleu", "update_r", "copy_rate")}
HEADLINE = {"intent": "macro_f1", "revise": "sari"}
CLASSICAL = {"tfidf": "revtune.tfidf"}  # not layer-selection strategies: own module, no model
ADAM_BYTES_PER_PARAM = 2 * 4  # AdamW keeps exp_avg and exp_avg_sq, fp32, for every trainable parameter


@dataclass
class CompareResult:
    path: Path
    rows: list[dict]


@dataclass
class Job:
    """One child process: a strategy at a seed, into ``folder`` (relative to the comparison)."""

    spec: str
    seed: int
    folder: str


def plan_jobs(specs: list[str], config, settings=None) -> list[Job]:
    """Every strategy at every seed, seed by seed (an interrupted comparison holds complete seeds); a
    classical strategy once when its data do not change with the seed (it has no weights to initialise
    and no order to draw). Without ``seeds`` the layout is one directory per strategy, at ``seed``."""
    from .training.data import seed_changes_splits

    seeds = settings.seeds if settings is not None else []
    if not seeds:
        return [Job(spec, config.training.seed, run_name(spec)) for spec in specs]
    once = {spec for spec in specs if spec in CLASSICAL and not seed_changes_splits(config.data)}
    return [Job(spec, seed, f"{run_name(spec)}/seed{seed}") for number, seed in enumerate(seeds)
            for spec in specs if not (spec in once and number)]


def run_name(spec: str) -> str:
    """A directory name for a spec: 'random:4' -> 'random_4', 'replay:runs/ir' -> 'replay_runs_ir'."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", spec).strip("_.") or "strategy"


def check_specs(specs: list[str], config, option_values: dict | None = None) -> list[tuple[str, object]]:
    """(spec, options) of every row, failing before any training on what needs no model: unknown names,
    bad arguments, duplicates, an option no listed strategy has. Each strategy gets the options of
    ``option_values`` (flat names) it has, on top of those it shares with ``config.selection.options``;
    ``tfidf`` gets None."""
    from .selection.registry import STRATEGIES, option_flags, parse_spec, split_spec

    specs = [s.strip() for s in specs if s.strip()]
    if not specs:
        raise RevtuneError("give at least one strategy, e.g. --select ir,all,tfidf", field="select")
    base = dataclasses.asdict(config.selection.options)
    users = option_flags()
    names, rows, used = {}, [], set()
    for spec in specs:
        name, _ = split_spec(spec)
        options = None
        if spec in CLASSICAL and config.data.task != "intent":
            raise RevtuneError(f"{spec} classifies intents; it has no {config.data.task} variant", field="select")
        if spec not in CLASSICAL:
            if name not in STRATEGIES:
                valid = did_you_mean(name, [*STRATEGIES, *CLASSICAL])
                raise RevtuneError(f"unknown strategy '{name}': {valid}", field="select")
            mine = {k: v for k, v in (option_values or {}).items() if name in {s for s, _ in users.get(k, [])}}
            used |= set(mine)
            options = parse_spec(spec, mine, base)
        if run_name(spec) in names:
            raise RevtuneError(f"'{spec}' and '{names[run_name(spec)]}' would share one run directory",
                               field="select")
        names[run_name(spec)] = spec
        rows.append((spec, options))
    for key in set(option_values or {}) - used:
        raise RevtuneError(f"no listed strategy has this option (it applies to "
                           f"{', '.join(s for s, _ in users.get(key, []))})", field=key)
    return rows


def option_arguments(options) -> list[str]:
    """The flags that give ``options`` their non-default values on a ``revtune train`` command line."""
    from .knobs import cli_fields, default_of, flat_name

    arguments = []
    for f in cli_fields(type(options)):
        value = getattr(options, f.name)
        if value == default_of(f):
            continue
        flag = "--" + flat_name(f).replace("_", "-")
        if isinstance(value, bool):
            arguments.append(flag if value else "--no-" + flag[2:])
        else:
            arguments += [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return arguments


def child_command(spec: str, options, config_file: Path, folder: Path, config, seed: int | None = None) -> list[str]:
    """The command that trains one row: every shared setting from the shared file, the strategy, its
    options, seed and output on the command line, and the adapter a strategy insists on (``full`` trains
    the weights themselves)."""
    seeded = [] if seed is None else ["--seed", str(seed)]
    if spec in CLASSICAL:
        return [sys.executable, "-m", CLASSICAL[spec], "--config", str(config_file), "--out", str(folder),
                *seeded]
    command = [sys.executable, "-m", "revtune.cli", "train", "--config", str(config_file),
               "--select", options.spec(), *option_arguments(options), "--out", str(folder), *seeded]
    forced = options.adapter
    if forced and forced != config.adapter.kind:
        command += ["--adapter", forced]
    return command


def run_child(command: list[str], log: Path, progress=None) -> str | None:
    """Run one row's process with its output in ``log``; None on success, else its one-line error.

    ``progress`` (a tqdm bar) follows the child's own step counter, read from the log as it grows."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("TQDM_DISABLE", None)  # the child's bar is what the log is read for
    with log.open("w") as handle:
        child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
        try:
            while child.poll() is None:
                try:
                    child.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    pass
                if progress is not None:
                    _follow(log, progress)
        except BaseException:  # SIGTERM/SIGINT of compare: the child stops too, and cleans up its output
            stop_child(child)
            raise
        code = child.returncode
    if progress is not None:
        _follow(log, progress)
    if code == 0:
        return None
    text = log.read_text(errors="replace")
    errors = re.findall(r"revtune [\w-]+: error: ([^\r\n]*)", text)
    lines = [line.strip() for line in re.split(r"[\r\n]", text) if line.strip() and "%|" not in line]
    message = errors[-1] if errors else (lines[-1] if lines else "")
    return (message or f"exit code {code}")[:400]


def stop_child(child: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM (the child removes its half-built run), then SIGKILL if it has not exited in ``grace`` s."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


STEP_COUNTER = re.compile(rb"[\r\n] *\d+%\|[^|\r\n]*\| *(\d+)/(\d+) \[")


def _follow(log: Path, progress) -> None:
    """Move ``progress`` to the last 'N/M [' counter of the child's training bar.

    Only a bar with no description counts: the Trainer's steps bar has none, while the bars that
    come after it (``Writing model shards: 1/1``) would otherwise pull the steps back to 1/1."""
    with log.open("rb") as handle:
        handle.seek(max(0, log.stat().st_size - 65536))
        found = STEP_COUNTER.findall(handle.read())
    if found:
        done, total = (int(v) for v in found[-1])
        if progress.total != total:
            progress.reset(total=total)
        progress.n = done
        progress.refresh()


def steps_to_fraction(history: list[dict], key: str, fraction: float = 0.95) -> int | None:
    """The first dev-evaluation step whose ``key`` reaches ``fraction`` of the run's best."""
    points = [(entry["step"], entry[key]) for entry in history
              if isinstance(entry.get(key), (int, float)) and not math.isnan(entry[key])]
    if not points:
        return None
    best = max(value for _, value in points)
    return next((step for step, value in points if value >= fraction * best), None)


def read_row(spec: str, folder: Path, task: str, error: str | None, run: str | None = None,
             seed: int | None = None) -> dict:
    """One table row from a finished run directory (or only the error of a failed one)."""
    columns = METRIC_COLUMNS[task]
    row = {"strategy": spec, "run": run or folder.name, "seed": seed, "adapter": None,
           **{c: None for c in columns},
           "peak_memory_bytes": None, "mean_step_seconds": None, "trainable_params": None,
           "mean_active_layers": None, "steps": None, "steps_to_95": None, "optimizer_state_bytes": None,
           "outside_share": None, "median_step_peak_memory_bytes": None, "lowest_layer": None,
           "error": error}
    if error is not None:
        return row
    metrics = json.loads((folder / "metrics.json").read_text())
    scores = metrics.get("test") or metrics.get("final_dev") or {}
    row.update({c: scores.get(c) for c in columns})
    for key in ("adapter", "peak_memory_bytes", "mean_step_seconds", "trainable_params",
                "mean_active_layers", "steps", "median_step_peak_memory_bytes"):
        row[key] = metrics.get(key)
    lowest = metrics.get("lowest_layer_per_step")
    if lowest:
        row["lowest_layer"] = f"{min(lowest)} / {statistics.median(lowest):g}"
    history = metrics.get("dev_history") or []
    headline = HEADLINE[task] if any(HEADLINE[task] in e for e in history) else \
        next((c for c in columns if any(c in e for e in history)), HEADLINE[task])
    row["steps_to_95"] = steps_to_fraction(history, headline)
    trainable = metrics.get("trainable_params") or 0
    row["optimizer_state_bytes"] = ADAM_BYTES_PER_PARAM * trainable
    inside = sum(metrics.get("layer_sizes") or [])
    if metrics.get("n_layers") and "layer_sizes" in metrics and trainable:
        row["outside_share"] = max(0, trainable - inside) / trainable
    return row


def compare(config, strategies: list[str] | str, out: str | Path | None = None, command: str | None = None,
            quiet: bool = False, option_values: dict | None = None, settings=None) -> CompareResult:
    """Train every strategy of ``strategies`` with ``config`` into ``out``/<strategy>/ and tabulate them.

    A strategy that fails leaves its one-line error in its row; the others still run. Writes
    ``compare.json``, ``compare.md``, ``config.yaml`` (the settings every row shares), ``logs/`` and plots.
    ``settings`` (:class:`~revtune.config.CompareConfig`): the seeds, the paired tests' reference and
    the intervals' level.
    """
    from tqdm.auto import tqdm

    from .config import CompareConfig
    from .aggregate import reference_strategy, summarize, write_summary
    from .environment import environment
    from .report_html import write_report

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    settings = settings or CompareConfig()
    rows_options = check_specs(strategies.split(",") if isinstance(strategies, str) else list(strategies), config,
                               option_values)
    specs = [spec for spec, _ in rows_options]
    options_of = dict(rows_options)
    reference_strategy(specs, settings.against)
    out = Path(out or config.output.out)
    shared = {k: v for k, v in config.to_dict().items() if k not in ("selection", "output")}
    shared["selection"] = {"interval": config.selection.interval}
    shared["output"] = {k: v for k, v in config.to_dict()["output"].items() if k not in ("out", "overwrite")}
    jobs = plan_jobs(specs, config, settings)
    runs = []
    with building(out, config.output.overwrite) as tmp:
        config_file = tmp / "config.yaml"
        write_text(config_file, yaml.safe_dump(shared, sort_keys=False))
        (tmp / "logs").mkdir()
        overall = tqdm(total=len(jobs), desc="compare", unit="run", position=0, disable=quiet)
        for number, job in enumerate(jobs, 1):
            log = f"logs/{job.folder.replace('/', '-')}.log"
            overall.set_postfix_str(job.folder)
            say(f"revtune compare: [{number}/{len(jobs)}] {job.spec} (seed {job.seed}) -> {out / job.folder} "
                f"(log: {log})")
            started = time.perf_counter()
            child = child_command(job.spec, options_of[job.spec], config_file, tmp / job.folder, config,
                                  job.seed if settings.seeds else None)
            max_steps = config.training.max_steps
            steps = tqdm(total=max_steps if max_steps > 0 else None, desc=f"  {job.folder}",
                         unit="step", position=1, leave=False, disable=quiet)
            error = run_child(child, tmp / log, steps)
            steps.close()
            if error is None and not (tmp / job.folder / "metrics.json").is_file():
                error = "the run finished without a metrics.json"
            runs.append(read_row(job.spec, tmp / job.folder, config.data.task, error, job.folder, job.seed))
            overall.update(1)
            say(f"revtune compare:   {'failed: ' + error if error else 'done'} "
                f"({time.perf_counter() - started:.0f} s)")
        overall.close()
        task = config.data.task
        command = command or f"revtune compare --task {task} --select {','.join(specs)} --out {out}"
        rows = summarize(tmp, runs, specs, _split_config(config, option_values), settings)
        write_summary(tmp, rows, config, settings, command)
        write_json(tmp / "environment.json", {**environment(), "command": command, "task": task})
        write_report(tmp, tmp / "report.html", name=out.name)
    return CompareResult(out, rows)


def _split_config(config, option_values: dict | None):
    """The run config with the split options given on the command line (``--split-num 2``): the
    stability section splits each seed's importance frequency with them, as the rows' ir runs did."""
    from .knobs import cli_fields, flat_name
    from .selection.options import IrOptions

    split = {flat_name(f) for f in cli_fields(IrOptions)}
    given = {k: v for k, v in (option_values or {}).items() if k in split}
    return config.override(select="ir", **given) if given else config


def _cell(value, kind: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "count":
        return str(len(value))
    if kind == "steps":
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    if kind == "mib":
        return f"{value / 2**20:,.{0 if value >= 100 * 2**20 else 1}f}"
    if kind == "int":
        return f"{value:,.0f}"
    if kind == "share":
        return f"{100 * value:.1f}%"
    if kind == "s":
        return f"{value:.3f}"
    if kind == "layers":
        return f"{value:.1f}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def table_columns(task: str) -> list[tuple[str, str, str]]:
    """(row key, header, format) of the table, the task's metric columns first."""
    return ([("strategy", "strategy", ""), ("adapter", "adapter", ""), ("seeds", "seeds", "count")]
            + [(c, c, "") for c in METRIC_COLUMNS[task]]
            + [("peak_memory_bytes", "peak MiB", "mib"),
               ("median_step_peak_memory_bytes", "median step peak MiB", "mib"),
               ("lowest_layer", "lowest layer (min / median)", ""), ("mean_step_seconds", "s/step", "s"),
               ("trainable_params", "trainable", "int"), ("optimizer_state_bytes", "AdamW state MiB", "mib"),
               ("outside_share", "outside blocks", "share"), ("steps_to_95", "steps to 95%", "steps"),
               ("mean_active_layers", "layers/step", "layers")])


def compare_table(rows: list[dict], task: str) -> str:
    """The rows as a markdown table, mean ± standard deviation over seeds where there are several;
    failed strategies keep their row, with the error at the end."""
    columns = table_columns(task)
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " | error |",
             "|" + "---|" * (len(columns) + 1)]
    for row in rows:
        spread = row.get("std") or {}
        cells = [_cell(row.get(key), kind) + (f" ± {_cell(spread[key], kind)}" if spread.get(key) is not None
                                              else "") for key, _, kind in columns]
        lines.append("| " + " | ".join(cells) + f" | {(row['error'] or '').replace('|', '/')} |")
    return "\n".join(lines)


def compare_markdown(rows: list[dict], task: str, command: str, statistics: str = "") -> str:
    headline = HEADLINE[task]
    return (f"# revtune compare ({task})\n\n```\n{command}\n```\n\n{compare_table(rows, task)}\n\n"
            "Metrics: the test split at the final step (dev when there is no test split), the mean over "
            "seeds ± their standard deviation when there are several. Peak memory: the "
            "training phase of each strategy's own process (CPU peak RSS, CUDA max allocated); median step "
            "peak: the median over steps of each step's own peak; lowest layer: the lowest layer trained in "
            "any step and in the median step (backward reaches down to it). AdamW state: "
            f"{ADAM_BYTES_PER_PARAM} bytes per trainable parameter (fp32 exp_avg + exp_avg_sq), the most it "
            "can reach. Steps to 95%: the first dev evaluation reaching 95% of the run's best dev "
            f"{headline}. Layers/step: decoder blocks trained per step (tfidf has none).\n\n"
            "Plots: compare_metrics.png, compare_loss.png, compare_selection.png. One run directory per "
            "strategy (<strategy>/seed<N>/ with several seeds); their shared settings: config.yaml; "
            "their output: logs/.\n" + statistics)


def plot_compare(out: Path, rows: list[dict], task: str) -> None:
    """compare_metrics.png (the table as bars), compare_loss.png, compare_selection.png (heatmaps)."""
    from .report import _pyplot, draw_heatmap, read_selection

    plt = _pyplot()
    done = [row for row in rows if row["error"] is None]
    if not done:
        return
    panels = [(c, c, 1) for c in METRIC_COLUMNS[task]] + [
        ("peak_memory_bytes", "peak memory (MiB)", 2**20), ("mean_step_seconds", "seconds per step", 1),
        ("trainable_params", "trainable parameters (M)", 1e6)]
    names = [row["strategy"] for row in done]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 0.35 * len(done) + 1.6),
                             sharey=True)
    for ax, (key, title, unit) in zip(axes, panels):
        values = [(row.get(key) or 0) / unit for row in done]
        ax.barh(range(len(done)), values, color="tab:blue")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(range(len(done)), names)
    axes[0].invert_yaxis()
    fig.tight_layout()
    with atomic_path(out / "compare_metrics.png") as path:
        fig.savefig(path, dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for row in done:
        losses = json.loads((out / row["run"] / "metrics.json").read_text()).get("train_loss") or []
        if losses:
            ax.plot([e["step"] for e in losses], [e["loss"] for e in losses], label=row["strategy"])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out / "compare_loss.png") as path:
        fig.savefig(path, dpi=100)
    plt.close(fig)

    selected = [(row, read_selection(out / row["run"] / "selection.jsonl")) for row in done]
    selected = [(row, records) for row, records in selected if records]
    if selected:
        fig, axes = plt.subplots(1, len(selected), figsize=(3.2 * len(selected), 3.2), squeeze=False)
        for ax, (row, records) in zip(axes[0], selected):
            n_layers = json.loads((out / row["run"] / "metrics.json").read_text())["n_layers"]
            draw_heatmap(ax, records, n_layers, row["strategy"])
        fig.tight_layout()
        with atomic_path(out / "compare_selection.png") as path:
            fig.savefig(path, dpi=100)
        plt.close(fig)
