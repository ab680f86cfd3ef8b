"""One comparison row per strategy from its runs at several seeds: mean and spread of every column,
bootstrap intervals and paired tests over the test items (``stats.py``), and how well dynamic
strategies' layer sets agree across seeds.

It reads only finished run directories (``metrics.json``, ``predictions.jsonl``, ``selection.jsonl``),
so a comparison can be summarised again without training anything.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np

from . import stats
from .errors import RevtuneError

# every numeric column of a run's row that is averaged over seeds
COST_COLUMNS = ("peak_memory_bytes", "mean_step_seconds", "trainable_params", "mean_active_layers", "steps",
                "steps_to_95", "optimizer_state_bytes", "outside_share")
TESTED = {"intent": stats.CLASSIFICATION, "revise": stats.GENERATION}  # metrics with intervals and tests


def reference_strategy(specs: list[str], against: str) -> str:
    """The strategy every other is tested against: ``against``, or the first one."""
    if against and against not in specs:
        raise RevtuneError(f"the reference '{against}' is not one of the compared strategies "
                           f"({', '.join(specs)})", field="against")
    return against or specs[0]


def summarize(out: Path, runs: list[dict], specs: list[str], config, settings) -> list[dict]:
    """One row per strategy (keys of a run's row, averaged over its successful seeds) with ``std``,
    ``per_seed`` (the runs' own rows), ``interval``, ``paired`` and, for dynamic strategies, ``stability``."""
    from .compare import METRIC_COLUMNS

    columns = METRIC_COLUMNS[config.data.task] + COST_COLUMNS
    rows = [seed_summary(spec, [r for r in runs if r["strategy"] == spec], columns) for spec in specs]
    add_statistics(Path(out), rows, config, settings)
    add_stability(Path(out), rows, config)
    return rows


def seed_summary(spec: str, runs: list[dict], columns) -> dict:
    """Mean over the seeds that finished and their sample standard deviation (None below two seeds);
    the row keeps its error only when every seed failed."""
    done = [r for r in runs if r["error"] is None]
    first = (done or runs)[0]
    row = {"strategy": spec, "run": first["run"], "adapter": first["adapter"],
           "seeds": [r["seed"] for r in done], "std": {}, "per_seed": runs,
           "failed_seeds": [{"seed": r["seed"], "error": r["error"]} for r in runs if r["error"] is not None],
           "error": None if done else first["error"]}
    for column in columns:
        values = [r[column] for r in done if isinstance(r.get(column), (int, float))
                  and not math.isnan(r[column])]
        row[column] = statistics.fmean(values) if values else None
        row["std"][column] = statistics.stdev(values) if len(values) >= 2 else None
    return row


def item_table(folder: Path, task: str) -> tuple[list, np.ndarray] | None:
    """(item keys, per-item statistics) of a run's test predictions; None when it has none."""
    path = folder / "predictions.jsonl"
    if not path.is_file():
        return None
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not items:
        return None
    if task == "revise":
        keys = [(item["source"], tuple(item["references"])) for item in items]
        return keys, stats.generation_items([i["source"] for i in items], [i["prediction"] for i in items],
                                            [i["references"] for i in items])
    labels = json.loads((folder / "metrics.json").read_text())["labels"]
    index = {name: i for i, name in enumerate(labels)}

    def indicator(names):
        row = np.zeros(len(labels))
        row[[index[n] for n in names]] = 1
        return row

    keys = [(item["before"], item["after"], tuple(item["gold"])) for item in items]
    return keys, stats.classification_items(np.array([indicator(i["gold"]) for i in items]),
                                            np.array([indicator(i["predicted"]) for i in items]))


def add_statistics(out: Path, rows: list[dict], config, settings) -> None:
    """Intervals per strategy and paired tests against the reference, into each row (and per seed)."""
    metrics = TESTED[config.data.task]
    level, samples = settings.confidence, settings.bootstrap_samples
    reference = reference_strategy([r["strategy"] for r in rows], settings.against)
    tables = {}
    for row in rows:
        tables[row["strategy"]] = {}
        for run in row["per_seed"]:
            table = item_table(out / run["run"], config.data.task) if run["error"] is None else None
            if table is not None:
                tables[row["strategy"]][run["seed"]] = table
        found = tables[row["strategy"]]
        if not found:
            continue
        for run in row["per_seed"]:
            if run["seed"] in found:
                run["interval"] = {name: stats.bootstrap_interval([found[run["seed"]][1]], metric, samples,
                                                                  level, config.training.seed)
                                   for name, metric in metrics.items()}
        row["interval"] = {name: stats.bootstrap_interval([t for _, t in found.values()], metric, samples,
                                                          level, config.training.seed)
                           for name, metric in metrics.items()}
    for row in rows:
        if row["strategy"] != reference and tables[row["strategy"]] and tables[reference]:
            row["paired"] = paired_tests(tables[row["strategy"]], tables[reference], reference, metrics,
                                         config, settings)


def paired_tests(mine: dict, theirs: dict, reference: str, metrics: dict, config, settings) -> dict:
    """Per metric: the mean difference over seed pairs, its pooled p-value, each pair's own, and how
    many pairs are significant in the pooled direction. A strategy run once (tfidf) is paired with
    every seed of the other side; otherwise seeds pair with the same seed."""
    if len(mine) == 1 or len(theirs) == 1:
        pairs = [(a, b) for a in mine for b in theirs]
    else:
        pairs = [(seed, seed) for seed in mine if seed in theirs]
    pairs = [(a, b) for a, b in pairs if mine[a][0] == theirs[b][0]]
    result = {"against": reference, "alpha": round(1 - settings.confidence, 10), "pairs": len(pairs)}
    if not pairs:
        result["note"] = "no seed pair scored the same test items"
        return result
    alpha = 1 - settings.confidence
    for name, metric in metrics.items():
        a, b = [mine[x][1] for x, _ in pairs], [theirs[y][1] for _, y in pairs]
        pooled = stats.paired_test(a, b, metric, settings.bootstrap_samples, config.training.seed)
        each = [{"seed": x, "against_seed": y,
                 **stats.paired_test([mine[x][1]], [theirs[y][1]], metric, settings.bootstrap_samples,
                                     config.training.seed)} for x, y in pairs]
        same_way = [e for e in each if e["p"] < alpha and np.sign(e["delta"]) == np.sign(pooled["delta"])]
        result[name] = {**pooled, "significant": pooled["p"] < alpha, "significant_pairs": len(same_way),
                        "per_seed": each}
    return result


def add_stability(out: Path, rows: list[dict], config) -> None:
    """For strategies whose layer set changes within a run: the share of steps each layer was active
    (mean and spread over seeds) and the mean pairwise Jaccard of the seeds' top sets.

    A seed's top set is the split of its importance frequency (how many steps each layer was active)
    by the same variance rule as IR-Tuning: the layers Intention-Tuning's step 2 would train.
    """
    from .report import read_selection
    from .selection.frequency import generation_layers
    from .selection.options import IrOptions, SplitOptions

    options = config.selection.options
    options = options if isinstance(options, SplitOptions) else IrOptions()
    for row in rows:
        shares, tops, seeds, dynamic = [], [], [], False
        for run in row["per_seed"]:
            if run["error"] is not None:
                continue
            records = read_selection(out / run["run"] / "selection.jsonl")
            n_layers = json.loads((out / run["run"] / "metrics.json").read_text()).get("n_layers") or 0
            if not records or not n_layers:
                continue
            dynamic = dynamic or len({tuple(r["active"]) for r in records}) > 1
            counts = np.zeros(n_layers)
            for record in records:
                counts[record["active"]] += 1
            shares.append(counts / len(records))
            tops.append(generation_layers(counts, options))
            seeds.append(run["seed"])
        if not dynamic:
            continue
        matrix = np.array(shares)
        row["stability"] = {
            "seeds": seeds, "top_sets": tops, "mean_jaccard": stats.mean_pairwise_jaccard(tops),
            "active_share": matrix.tolist(), "active_share_mean": matrix.mean(axis=0).tolist(),
            "active_share_std": matrix.std(axis=0, ddof=1).tolist() if len(seeds) >= 2 else None,
        }


def write_summary(out: Path, rows: list[dict], config, settings, command: str) -> None:
    """compare.json, compare.md and the plots."""
    from .compare import compare_markdown, plot_compare
    from .rundir import write_json, write_text

    write_json(out / "compare.json", rows)
    write_text(out / "compare.md",
               compare_markdown(rows, config.data.task, command, statistics_markdown(rows, config, settings)))
    plot_compare(out, rows, config.data.task)
    plot_stability(out, rows)


def _number(value: float, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _p_value(p: float, samples: int) -> str:
    """A randomization p-value cannot go below 2 / (samples + 1) two-sided: say so rather than print it."""
    floor = 2 / (samples + 1)
    return f"<= {floor:.4f}" if p <= floor + 1e-12 else f"{p:.4f}"


def statistics_markdown(rows: list[dict], config, settings) -> str:
    """The intervals and paired tests as a table, then the stability of dynamic strategies."""
    metrics = list(TESTED[config.data.task])
    reference = reference_strategy([r["strategy"] for r in rows], settings.against)
    level = f"{100 * settings.confidence:g}%"
    alpha = round(1 - settings.confidence, 10)
    header = ["strategy", "seeds"]
    for name in metrics:
        header += [f"{name} [{level} CI]", f"Δ {name} vs {reference}", "p", f"seeds p < {alpha:g}"]
    lines = ["", f"## Intervals and paired tests (reference: {reference})", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        interval, paired = row.get("interval") or {}, row.get("paired") or {}
        cells = [row["strategy"], str(len(row.get("seeds") or []))]
        for name in metrics:
            ci = interval.get(name)
            cells.append(f"{_number(ci['value'])} [{_number(ci['low'])}, {_number(ci['high'])}]"
                         if ci else "-")
            test = paired.get(name)
            if row["strategy"] == reference:
                cells += ["(reference)", "", ""]
            elif test:
                mark = " *" if test["significant"] else ""
                cells += [f"{test['delta']:+.4f}{mark}", _p_value(test["p"], settings.bootstrap_samples),
                          f"{test['significant_pairs']}/{len(test['per_seed'])}"]
            else:
                cells += ["-", "-", paired.get("note", "-")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Intervals: percentile bootstrap ({settings.bootstrap_samples} resamples of the test items, "
              "jointly across seeds when they share the test split) of the mean over seeds; they show how "
              "much the score depends on which items the test set holds, the ± above how much it depends "
              "on the seed. Paired tests: approximate randomization (each item's two predictions swapped "
              f"at random, {settings.bootstrap_samples} times), two-sided, of the mean difference over seed "
              f"pairs (the same seed on both sides; a strategy run once is paired with every seed); * marks "
              f"p < {alpha:g}. 'seeds p < {alpha:g}' counts the seed pairs that are significant alone in "
              "the same direction: the difference holds across seeds when it is every pair. No correction "
              "for testing several strategies."]
    stable = [row for row in rows if row.get("stability")]
    if stable:
        lines += ["", "## Selection stability across seeds", "",
                  "| strategy | seeds | mean Jaccard of top sets | top set per seed | share of steps active: "
                  "mean spread over layers (std over seeds) |", "|---|---|---|---|---|"]
        for row in stable:
            stability = row["stability"]
            tops = "; ".join(f"{seed}: {','.join(map(str, top))}"
                             for seed, top in zip(stability["seeds"], stability["top_sets"]))
            spread = stability["active_share_std"]
            lines.append(f"| {row['strategy']} | {len(stability['seeds'])} | "
                         f"{_number(stability['mean_jaccard'], 3)} | {tops} | "
                         f"{_number(float(np.mean(spread)) if spread else None, 3)} |")
        lines += ["", "Top set: the layers the variance split (IR-Tuning's rule, the run's window and "
                  "boundary) keeps from a run's importance frequency, i.e. what Intention-Tuning's step 2 "
                  "would train. Plot: compare_stability.png (layers x seeds, share of steps active)."]
    return "\n".join(lines) + "\n"


def plot_stability(out: Path, rows: list[dict]) -> None:
    """compare_stability.png: layers x seeds, the share of steps each layer trained, per dynamic strategy."""
    from .report import _pyplot

    shown = [row for row in rows if row.get("stability") and len(row["stability"]["seeds"]) >= 2]
    if not shown:
        return
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    most_seeds = max(len(r["stability"]["seeds"]) for r in shown)
    fig, axes = plt.subplots(1, len(shown), figsize=(1.2 + (0.5 * most_seeds + 1.5) * len(shown), 4),
                             squeeze=False)
    for ax, row in zip(axes[0], shown):
        stability = row["stability"]
        matrix = np.array(stability["active_share"]).T
        image = ax.imshow(matrix, aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=1,
                          interpolation="nearest")
        ax.set_xticks(range(len(stability["seeds"])), [str(s) for s in stability["seeds"]])
        ax.set_xlabel("seed")
        ax.set_ylabel("layer")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{row['strategy']}: share of steps active\nmean Jaccard of top sets "
                     f"{stability['mean_jaccard']:.2f}", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.08)
    fig.tight_layout()
    fig.savefig(out / "compare_stability.png", dpi=100)
    plt.close(fig)
