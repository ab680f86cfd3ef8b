"""``report.html``: one self-contained page for a run, a compare or an intention-tune directory.

Self-contained means it opens from a laptop, an e-mail or an artefact store with no network: figures are
PNGs inlined as base64 data URIs, styles are inline, there is no script. Everything is read from the
files a directory already holds (metrics.json, selection.jsonl, trainable.txt, predictions.jsonl,
compare.json, environment.json), so a report can be rebuilt at any time with ``revtune report PATH``.
"""
from __future__ import annotations

import base64
import difflib
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from .errors import RevtuneError
from .report import _pyplot, read_selection, selection_matrix
from .rundir import write_text

SAMPLE_SIZE = 8
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1180px;
color:#1d232a;padding:0 1em;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #d0d7de;padding-bottom:.2em;
margin-top:1.8em}h3{font-size:1.02em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #d0d7de;padding:3px 8px;
text-align:right}th{background:#f3f5f7}td.t,th.t{text-align:left}
img{max-width:100%;height:auto;border:1px solid #eaeef2}
.facts{color:#57606a}.err{color:#b42318}
del{background:#ffd7d5;text-decoration:line-through}ins{background:#ccffd8;text-decoration:none}
pre{background:#f6f8fa;padding:.7em;overflow-x:auto;font-size:.85em;white-space:pre-wrap}
.sample td{text-align:left;vertical-align:top;max-width:360px}
"""


# --- which directory is this ------------------------------------------------------------------------

def report_kind(path: Path) -> str:
    """``compare``, ``intention`` or ``run``, from the files the directory holds."""
    if (path / "compare.json").is_file():
        return "compare"
    if (path / "intention.json").is_file():
        return "intention"
    if (path / "metrics.json").is_file() and (path / "config.json").is_file():
        return "run"
    raise RevtuneError("not a run, compare or intention-tune directory (no metrics.json, compare.json or "
                       "intention.json)", path=path, field="path")


def write_report(path: str | Path, out: str | Path | None = None, name: str | None = None) -> Path:
    """Build the report of ``path`` and write it (atomically) to ``out`` (default ``path/report.html``).

    ``name`` titles it (a directory still being built has a temporary name)."""
    path = Path(path)
    if not path.is_dir():
        raise RevtuneError("directory not found", path=path, field="path")
    out = Path(out) if out else path / "report.html"
    write_text(out, build_report(path, name))
    return out


def build_report(path: Path, name: str | None = None) -> str:
    kind = report_kind(path)
    sections = {"run": run_sections, "compare": compare_sections, "intention": intention_sections}[kind]
    title, body = sections(path, name or path.resolve().name)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n<h1>{esc(title)}</h1>\n"
            + "\n".join(body) + "\n</body></html>\n")


# --- small HTML pieces ------------------------------------------------------------------------------

def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _read_json(path: Path, default=None):
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RevtuneError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from None


def fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table(headers: list[str], rows: list[list], first_left: bool = True, css: str = "") -> str:
    def cell(tag, value, index):
        left = ' class="t"' if first_left and index == 0 or isinstance(value, str) and not _numeric(value) else ""
        return f"<{tag}{left}>{value if isinstance(value, Markup) else esc(fmt(value))}</{tag}>"

    head = "".join(cell("th", h, i) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", v, i) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f'<table{f" class={css!r}" if css else ""}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class Markup(str):
    """HTML already escaped."""


def _numeric(text: str) -> bool:
    return text.replace(",", "").replace(".", "").replace("-", "").replace("%", "").isdigit()


def figure(fig, element_id: str, alt: str) -> str:
    """A matplotlib figure as an inline PNG (closed afterwards)."""
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img id="{element_id}" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def section(title: str, *parts: str) -> str:
    return f"<h2>{esc(title)}</h2>\n" + "\n".join(p for p in parts if p)


def word_diff(before: str, after: str) -> Markup:
    """``after`` with the words it removed from ``before`` struck through and the ones it added marked."""
    old, new = before.split(), after.split()
    pieces = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op == "equal":
            pieces.append(esc(" ".join(old[i1:i2])))
            continue
        if i2 > i1:
            pieces.append(f"<del>{esc(' '.join(old[i1:i2]))}</del>")
        if j2 > j1:
            pieces.append(f"<ins>{esc(' '.join(new[j1:j2]))}</ins>")
    return Markup(" ".join(pieces))


# --- figures ------------------------------------------------------------------------------------------

def heatmaps(panels: list[tuple[str, list[dict], int]], element_id: str = "selection-heatmap") -> str:
    """Layers x steps, one panel per (title, selection records, n_layers), side by side."""
    panels = [p for p in panels if p[1]]
    if not panels:
        return "<p>No selection log.</p>"
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(min(16, 4.2 * len(panels) + 1), 3.6), squeeze=False)
    for ax, (title, records, n_layers) in zip(axes[0], panels):
        ax.imshow(selection_matrix(records, n_layers), aspect="auto", origin="lower", cmap="Blues",
                  interpolation="nearest", vmin=0, vmax=1)
        ax.set_xlabel("step")
        ax.set_ylabel("layer")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return figure(fig, element_id, "layers x steps: the layers trained at each step")


def frequency_bars(panels: list[tuple[str, list[float], list[float] | None, list[int] | None]]) -> str:
    """Importance frequency per layer: (title, mean counts, spread or None, highlighted layers or None)."""
    panels = [p for p in panels if p[1]]
    if not panels:
        return ""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(min(16, 4.2 * len(panels) + 1), 3.0), squeeze=False)
    for ax, (title, counts, spread, highlight) in zip(axes[0], panels):
        colors = ["tab:orange" if highlight and i in highlight else "tab:blue" for i in range(len(counts))]
        ax.bar(range(len(counts)), counts, yerr=spread, color=colors, capsize=2)
        ax.set_xlabel("layer")
        ax.set_ylabel("steps active")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return figure(fig, "importance-frequency", "how many steps each layer was trained")


def curves(runs: list[tuple[str, dict]], headline: str) -> str:
    """Training loss, and the dev headline metric at each evaluation, one line per run."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
    for name, metrics in runs:
        losses = metrics.get("train_loss") or []
        if losses:
            left.plot([e["step"] for e in losses], [e["loss"] for e in losses], label=name)
        dev = [e for e in metrics.get("dev_history") or [] if isinstance(e.get(headline), (int, float))]
        if dev:
            right.plot([e["step"] for e in dev], [e[headline] for e in dev], marker="o", label=name)
    left.set(xlabel="step", ylabel="training loss", title="training loss")
    right.set(xlabel="step", ylabel=f"dev {headline}", title=f"dev {headline}")
    for ax in (left, right):
        if len(ax.lines) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return figure(fig, "curves", "training loss and dev metric per step")


def cost_bars(names: list[str], peak: list[float | None], step: list[float | None],
              peak_spread=None, step_spread=None) -> str:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(names) + 1.5), sharey=True)
    for ax, values, spread, title in ((axes[0], [(p or 0) / 2**20 for p in peak],
                                       None if peak_spread is None else [s / 2**20 for s in peak_spread],
                                       "peak memory (MiB)"),
                                      (axes[1], [s or 0 for s in step], step_spread, "seconds per step")):
        ax.barh(range(len(names)), values, xerr=spread, color="tab:blue", capsize=2)
        ax.set_title(title, fontsize=9)
    axes[0].set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    fig.tight_layout()
    return figure(fig, "cost-bars", "peak memory and step time")


def confusion_section(confusion: dict | None) -> str:
    if not confusion:
        return ""
    labels, matrix = confusion["labels"], np.asarray(confusion["matrix"])
    plt = _pyplot()
    if confusion["kind"] == "multiclass":
        fig, ax = plt.subplots(figsize=(0.55 * len(labels) + 2.2, 0.45 * len(labels) + 1.6))
        ax.imshow(matrix, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=8,
                    color="white" if value > matrix.max() / 2 else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set(xlabel="predicted", ylabel="true")
        fig.tight_layout()
        rows = [[name, *row] for name, row in zip(labels, matrix.tolist())]
        return figure(fig, "confusion-matrix", "confusion matrix of the test split") + \
            table(["true \\ predicted", *labels], rows)
    rows = [[name, m[1][1], m[0][1], m[1][0], m[0][0]] for name, m in zip(labels, matrix.tolist())]
    return "<p>Multi-label: one confusion matrix per intent.</p>" + table(["intent", "TP", "FP", "FN", "TN"], rows)


# --- sections shared by every kind -------------------------------------------------------------------

def metric_rows(metrics: dict) -> tuple[list[str], list[list]]:
    """One row per evaluation of a run (test, test at the best dev step, best and final dev)."""
    evaluations = [("test (final step)", metrics.get("test")), ("test (best dev step)", metrics.get("test_at_best_dev")),
                   ("dev (best)", metrics.get("best_dev")), ("dev (final)", metrics.get("final_dev"))]
    evaluations = [(n, e) for n, e in evaluations if e]
    keys = []
    for _, scores in evaluations:
        keys += [k for k, v in scores.items() if isinstance(v, (int, float)) and k not in keys and k != "neg_loss"]
    return ["evaluation", *keys], [[name, *[scores.get(k) for k in keys]] for name, scores in evaluations]


def metrics_table(metrics: dict) -> str:
    headers, rows = metric_rows(metrics)
    if not rows:
        return "<p>No evaluation.</p>"
    per_class = (metrics.get("test") or {}).get("per_class")
    extra = ""
    if per_class:
        extra = "<h3>Per class (test, final step)</h3>" + table(
            ["intent", "precision", "recall", "F1", "support"],
            [[name, v["precision"], v["recall"], v["f1"], v["support"]] for name, v in per_class.items()])
    return table(headers, rows) + extra


def trainable_table(run: Path) -> str:
    path = run / "trainable.txt"
    if not path.is_file():
        return ""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for line in lines[1:]:
        parts = line.split(None, 2)
        rows.append([parts[0], int(parts[1].replace(",", "")) if parts[1].replace(",", "").isdigit() else parts[1],
                     parts[2] if len(parts) > 2 else ""])
    return table(["layer", "trainable parameters", "modules"], rows)


def sample_section(run: Path) -> str:
    rows = []
    path = run / "predictions.jsonl"
    if not path.is_file():
        return ""
    for line in path.read_text().splitlines()[:SAMPLE_SIZE]:
        item = json.loads(line)
        source, prediction = item.get("source", ""), item.get("prediction", "")
        reference = (item.get("references") or [""])[0]
        rows.append([", ".join(item.get("intents") or []), source, word_diff(source, prediction),
                     word_diff(source, reference)])
    return (f"<p>The first {len(rows)} test items; edits against the source: <del>removed</del> "
            "<ins>added</ins>.</p>" + table(["intents", "source", "prediction", "reference"], rows, css="sample"))


def provenance(folder: Path, config: dict | None) -> str:
    env = _read_json(folder / "environment.json", {})
    parts = []
    if env:
        parts.append(f"<pre>{esc(env.get('command', ''))}</pre>")
        packages = ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items() if v)
        parts.append(table(["", ""], [["python", env.get("python")], ["platform", env.get("platform")],
                                      ["accelerator", env.get("accelerator")], ["packages", packages],
                                      ["written at", env.get("written_at")]]))
    else:
        parts.append("<p>No environment.json (written by revtune 0.1 before reports existed).</p>")
    if config:
        parts.append("<details><summary>Resolved config</summary><pre>"
                     f"{esc(json.dumps(config, indent=2))}</pre></details>")
    return section("Command and environment", *parts)


def _run_record(run: Path) -> dict:
    """The run's flat settings and what it learned (``rundir.run_record``); {} for a run that cannot be read."""
    from .errors import RevtuneError
    from .rundir import read_run_record

    try:
        return read_run_record(run)[1]
    except RevtuneError:
        return {}


def _frequency(metrics: dict, records: list[dict]) -> list[int]:
    if metrics.get("importance_frequency"):
        return metrics["importance_frequency"]
    counts = [0] * int(metrics.get("n_layers") or 0)
    for record in records:
        for layer in record["active"]:
            counts[layer] += 1
    return counts


# --- a run ---------------------------------------------------------------------------------------------

def run_sections(run: Path, name: str) -> tuple[str, list[str]]:
    config = _run_record(run)
    metrics = _read_json(run / "metrics.json", {})
    records = read_selection(run / "selection.jsonl")
    task = config.get("task", "intent")
    headline = "macro_f1" if task == "intent" else "sari"
    facts = (f"{task} run &middot; model {esc(config.get('model'))} &middot; strategy "
             f"{esc(metrics.get('strategy', config.get('select')))} &middot; adapter {esc(metrics.get('adapter'))}"
             f" &middot; {fmt(metrics.get('steps'))} steps &middot; device {esc(metrics.get('device'))}")
    body = [f'<p class="facts">{facts}</p>', section("Metrics", metrics_table(metrics))]
    body.append(section("Loss and dev curves", curves([(name, metrics)], headline)))
    body.append(section("Layers trained per step", heatmaps([(metrics.get("strategy", name), records,
                                                              int(metrics.get("n_layers") or 0))]),
                        f"<p>Mean {fmt(metrics.get('mean_active_layers'))} of {fmt(metrics.get('n_layers'))} "
                        "layers per step.</p>"))
    body.append(section("Importance frequency per layer",
                        frequency_bars([(metrics.get("strategy", name), _frequency(metrics, records), None, None)])))
    body.append(section("Peak memory and step time",
                        cost_bars([name], [metrics.get("peak_memory_bytes")], [metrics.get("mean_step_seconds")]),
                        table(["peak memory (MiB)", "s/step", "train seconds", "trainable", "mean trainable/step"],
                              [[(metrics.get("peak_memory_bytes") or 0) / 2**20, metrics.get("mean_step_seconds"),
                                metrics.get("train_seconds"), metrics.get("trainable_params"),
                                metrics.get("mean_trainable_params_per_step")]], first_left=False)))
    body.append(section("Trainable parameters", trainable_table(run)))
    if task == "revise":
        body.append(section("Sample of revisions", sample_section(run)))
    else:
        body.append(section("Confusion matrix (test, final step)",
                            confusion_section((metrics.get("test") or {}).get("confusion"))))
    body.append(provenance(run, config))
    return f"revtune report: {name}", body


# --- a compare ------------------------------------------------------------------------------------------

def _grouped(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["strategy"], []).append(row)
    return groups


def _mean_spread(values) -> tuple[float | None, float | None]:
    values = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values)) if len(values) > 1 else None


def compare_runs(rows: list[dict]) -> list[dict]:
    """One entry per run directory: a row that aggregates several seeds lists its runs in ``per_seed``."""
    runs = []
    for row in rows:
        for run in row.get("per_seed") or [row]:
            runs.append({**run, "strategy": row["strategy"]})
    return runs


def compare_sections(folder: Path, name: str) -> tuple[str, list[str]]:
    from .compare import METRIC_COLUMNS  # the same columns as compare.md

    rows = compare_runs(_read_json(folder / "compare.json", []))
    env = _read_json(folder / "environment.json", {})
    task = env.get("task") or ("revise" if any("sari" in r for r in rows) else "intent")
    columns = METRIC_COLUMNS[task]
    headline = "macro_f1" if task == "intent" else "sari"
    done = [row for row in rows if row.get("error") is None]
    runs = {row["run"]: _read_json(folder / row["run"] / "metrics.json", {}) for row in done}
    body = [f'<p class="facts">compare of {len(_grouped(rows))} strategies ({task}), {len(rows)} runs</p>']
    table_rows = []
    seeded = any(row.get("seed") is not None for row in rows)
    for row in rows:
        link = Markup(f'<a href="{esc(row["run"])}/report.html">{esc(row["strategy"])}</a>') \
            if row.get("error") is None and (folder / row["run"] / "report.html").is_file() else row["strategy"]
        table_rows.append([link, *([row.get("seed")] if seeded else []), row.get("adapter"), *[row.get(c) for c in columns],
                           (row.get("peak_memory_bytes") or 0) / 2**20 if row.get("peak_memory_bytes") else None,
                           row.get("mean_step_seconds"), row.get("trainable_params"),
                           (row.get("optimizer_state_bytes") or 0) / 2**20 if row.get("optimizer_state_bytes") else None,
                           row.get("mean_active_layers"), row.get("steps_to_95"),
                           Markup(f'<span class="err">{esc(row["error"])}</span>') if row.get("error") else ""])
    body.append(section("Metrics", table(["strategy", *(["seed"] if seeded else []), "adapter", *columns, "peak MiB", "s/step", "trainable",
                                          "AdamW state MiB", "layers/step", "steps to 95%", "error"], table_rows)))
    groups = _grouped(done)
    several = any(len(g) > 1 for g in groups.values())
    if several:
        spread_rows = []
        for strategy, group in groups.items():
            cells = []
            for column in columns:
                mean, spread = _mean_spread([r.get(column) for r in group])
                cells.append(None if mean is None else f"{mean:.4f}" + (f" ± {spread:.4f}" if spread else ""))
            spread_rows.append([strategy, len(group), *cells])
        body.append(section("Seeds' spread (mean ± standard deviation)",
                            table(["strategy", "seeds", *columns], spread_rows)))
    if done:
        body.append(section("Loss and dev curves", curves([(r["run"], runs[r["run"]]) for r in done], headline)))
    panels, frequencies = [], []
    for strategy, group in groups.items():
        first = group[0]
        n_layers = int(runs[first["run"]].get("n_layers") or 0)
        records = read_selection(folder / first["run"] / "selection.jsonl")
        if not records:
            continue
        title = strategy + (f" (seed {first.get('seed')})" if len(group) > 1 else "")
        panels.append((title, records, n_layers))
        counts = [_frequency(runs[r["run"]], read_selection(folder / r["run"] / "selection.jsonl")) for r in group]
        counts = np.asarray([c for c in counts if len(c) == n_layers] or [[0] * n_layers], dtype=float)
        frequencies.append((strategy, counts.mean(axis=0).tolist(),
                            counts.std(axis=0).tolist() if len(counts) > 1 else None, None))
    body.append(section("Layers trained per step, per strategy", heatmaps(panels)))
    body.append(section("Importance frequency per layer, per strategy"
                        + (" (mean, bars: spread over seeds)" if several else ""), frequency_bars(frequencies)))
    if done:
        strategies = list(groups)
        peaks = [_mean_spread([r.get("peak_memory_bytes") for r in groups[n]]) for n in strategies]
        steps = [_mean_spread([r.get("mean_step_seconds") for r in groups[n]]) for n in strategies]
        body.append(section("Peak memory and step time", cost_bars(
            strategies, [p[0] for p in peaks], [s[0] for s in steps],
            [p[1] or 0 for p in peaks] if several else None, [s[1] or 0 for s in steps] if several else None)))
        body.append(section("Trainable parameters", table(
            ["strategy", "trainable", "mean trainable/step", "AdamW state MiB", "outside blocks"],
            [[r["strategy"], r.get("trainable_params"), runs[r["run"]].get("mean_trainable_params_per_step"),
              (r.get("optimizer_state_bytes") or 0) / 2**20, f"{100 * r['outside_share']:.1f}%"
              if r.get("outside_share") is not None else None] for r in done])))
        first = done[0]
        if task == "revise":
            body.append(section(f"Sample of revisions ({first['strategy']})", sample_section(folder / first["run"])))
        else:
            best = max(done, key=lambda r: r.get(headline) or -1)
            body.append(section(f"Confusion matrix (test, {best['strategy']}, the best {headline})",
                                confusion_section((runs[best["run"]].get("test") or {}).get("confusion"))))
    body.append(provenance(folder, {"shared settings": (folder / "config.yaml").read_text()}
                           if (folder / "config.yaml").is_file() else None))
    return f"revtune compare report: {name}", body


# --- an intention-tune output -------------------------------------------------------------------------

def intention_sections(folder: Path, name: str) -> tuple[str, list[str]]:
    metrics = _read_json(folder / "metrics.json", {})
    saved = _read_json(folder / "intention.json", {})
    parts = [name for name in ("predictor", "generator", "alignment") if (folder / name / "metrics.json").is_file()]
    runs = {name: _read_json(folder / name / "metrics.json", {}) for name in parts}
    n_layers = int(metrics.get("n_layers") or 0)
    alignment = metrics.get("alignment") or {}
    body = [f'<p class="facts">Intention-Tuning &middot; generator layers {esc(metrics.get("generator_layers"))}'
            f' &middot; adapters initialised from the predictor: {esc((metrics.get("init") or {}).get("layers"))}'
            + (f' &middot; alignment ratio {alignment["ratio"]:.2f}' if alignment.get("ratio") is not None else "")
            + "</p>"]
    rows = []
    for part in parts:
        test = runs[part].get("test") or {}
        rows.append([part, runs[part].get("strategy"), *[test.get(k) for k in ("macro_f1", "accuracy", "sari", "gleu",
                                                                                 "update_r", "copy_rate")]])
    body.append(section("Metrics (test, final step)", table(["step", "strategy", "macro_f1", "accuracy", "sari",
                                                             "gleu", "update_r", "copy_rate"], rows)))
    if "generator" in runs:
        body.append(section("Generator: loss and dev curves", curves([("generator", runs["generator"])], "sari")))
    body.append(section("Layers trained per step", heatmaps(
        [(name, read_selection(folder / name / "selection.jsonl"), n_layers) for name in parts])))
    frequencies = [("predictor (step 1) G_l; orange: S_gen", metrics.get("importance_frequency") or [], None,
                    metrics.get("generator_layers"))]
    if alignment.get("generation_frequency"):
        frequencies.append(("ir on generation alone", alignment["generation_frequency"], None, alignment.get("s_gen")))
    body.append(section("Importance frequency per layer", frequency_bars(frequencies)))
    body.append(section("Peak memory and step time", cost_bars(
        parts, [runs[n].get("peak_memory_bytes") for n in parts], [runs[n].get("mean_step_seconds") for n in parts])))
    body.append(section("Trainable parameters", *[f"<h3>{esc(n)}</h3>" + trainable_table(folder / n) for n in parts]))
    if "generator" in runs:
        body.append(section("Sample of revisions (generator)", sample_section(folder / "generator")))
    if "predictor" in runs:
        body.append(section("Confusion matrix (predictor, test)",
                            confusion_section((runs["predictor"].get("test") or {}).get("confusion"))))
    body.append(provenance(folder, saved))
    return f"revtune intention-tune report: {name}", body
