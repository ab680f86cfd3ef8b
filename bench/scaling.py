"""How step time and peak memory grow with depth, sequence length and batch, for all, ir and ir's replay.

Random Llama-shaped models are built from configs (no download), saved once per depth as a model
directory, and trained through ``revtune train`` in a process of their own per run (so each peak is its
own). ``ir`` runs first; ``replay`` of its own selection.jsonl then trains the same layers without
scoring them, so ``ir / replay`` step time is the cost of selection alone. Each axis varies around one
base point (depth 16, sequence 128, batch 8). Writes a table (markdown + JSON) and a plot.

    OMP_NUM_THREADS=1 .venv/bin/python bench/scaling.py --out bench/results/scaling [--quick]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from _common import WORDS, corpus_flags, train_metrics, write_corpus

BASE = {"depth": 16, "seq": 128, "batch": 8}
AXES = {"depth": [8, 16, 32, 64], "seq": [64, 128, 256, 512], "batch": [1, 4, 8, 16]}
QUICK_AXES = {"depth": [4, 8], "seq": [32, 64], "batch": [2, 4]}
STRATEGIES = ("all", "ir", "replay")


def build_model(folder: Path, depth: int, hidden: int) -> Path:
    """A random Llama of ``depth`` blocks (width ``hidden``) with the byte tokenizer, as a model dir."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from revtune.models import byte_tokenizer

    target = folder / f"llama-{depth}x{hidden}"
    if (target / "config.json").exists():
        return target
    tokenizer = byte_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 8 // 3,
                         num_hidden_layers=depth, num_attention_heads=max(1, hidden // 64),
                         num_key_value_heads=max(1, hidden // 128), max_position_embeddings=1024,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def long_corpus(folder: Path, chars: int) -> dict:
    """Examples longer than any sequence length measured: the byte tokenizer makes one id per byte."""
    return write_corpus(folder, {"train": 64, "dev": 4, "test": 4},
                        lambda rng: " ".join(rng.choice(WORDS) for _ in range(chars // 5))[:chars],
                        lambda before: before[::-1])


def train(args, model: Path, files: dict, point: dict, select: str, out: Path) -> dict:
    metrics = train_metrics("--model", model, "--select", select, *corpus_flags(files),
                            "--max-steps", args.steps, "--batch-size", point["batch"], "--max-length", point["seq"],
                            "--eval-every", args.steps, "--lora-r", 8, "--lora-alpha", 16, "--learning-rate", 5e-4,
                            "--overwrite", out=out, threads=args.threads, what=f"{select} at {point}")
    return {"step_seconds": metrics["mean_step_seconds"], "peak": metrics["peak_memory_bytes"],
            "predicted": metrics["predicted_peak_memory_bytes"],
            "tokens_per_second": point["batch"] * point["seq"] / metrics["mean_step_seconds"]}


def measure_point(args, work: Path, files: dict, point: dict) -> dict:
    model = build_model(work / "models", point["depth"], args.hidden)
    tag = "-".join(f"{k}{v}" for k, v in point.items())
    row = dict(point)
    ir_runs, replay_runs = [], []
    row["all"] = train(args, model, files, point, "all", work / f"all-{tag}")
    ir_dir = work / f"ir-{tag}"
    ir_runs.append(train(args, model, files, point, "ir", ir_dir))
    for repeat in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        replay_runs.append(train(args, model, files, point, f"replay:{ir_dir}", work / f"replay-{tag}"))
        if repeat + 1 < args.repeats:
            ir_runs.append(train(args, model, files, point, "ir", work / f"ir2-{tag}"))
    row["ir"] = min(ir_runs, key=lambda r: r["step_seconds"])
    row["replay"] = min(replay_runs, key=lambda r: r["step_seconds"])
    row["overhead_ir_vs_replay"] = row["ir"]["step_seconds"] / row["replay"]["step_seconds"]
    row["memory_ir_vs_all"] = row["ir"]["peak"] / row["all"]["peak"]
    row["planner_error"] = max(abs(row[s]["predicted"] / row[s]["peak"] - 1) for s in STRATEGIES)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| axis | depth | seq | batch | s/step all | s/step ir | s/step replay | ir/replay | "
             "peak MiB all | peak MiB ir | predicted MiB all | planner error |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['axis']} | {r['depth']} | {r['seq']} | {r['batch']} | "
                     f"{r['all']['step_seconds']:.3f} | {r['ir']['step_seconds']:.3f} | "
                     f"{r['replay']['step_seconds']:.3f} | {r['overhead_ir_vs_replay']:.3f} | "
                     f"{r['all']['peak'] / 2**20:,.0f} | {r['ir']['peak'] / 2**20:,.0f} | "
                     f"{r['all']['predicted'] / 2**20:,.0f} | {100 * r['planner_error']:.1f}% |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for column, axis in enumerate(AXES):
        points = [r for r in rows if r["axis"] == axis]
        xs = [r[axis] for r in points]
        for strategy in STRATEGIES:
            axes[0][column].plot(xs, [r[strategy]["step_seconds"] for r in points], "o-", label=strategy)
            axes[1][column].plot(xs, [r[strategy]["peak"] / 2**20 for r in points], "o-", label=strategy)
        axes[1][column].plot(xs, [r["all"]["predicted"] / 2**20 for r in points], "k--",
                             label="planner (all)")
        axes[0][column].set_title(f"step time vs {axis}")
        axes[1][column].set_title(f"peak memory vs {axis}")
        axes[1][column].set_xlabel(axis)
        for row in axes:
            row[column].set_xscale("log", base=2)
    axes[0][0].set_ylabel("seconds per step")
    axes[1][0].set_ylabel("peak MiB")
    axes[0][0].legend()
    axes[1][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/scaling")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="replay (and ir) runs per point")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a small grid, for a smoke test")
    args = parser.parse_args()
    axes = QUICK_AXES if args.quick else AXES
    base = {"depth": 4, "seq": 32, "batch": 2} if args.quick else BASE
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = long_corpus(work, max(max(axes["seq"]), base["seq"]) * 2)
        seen = set()
        for axis, values in axes.items():
            for value in values:
                point = {**base, axis: value}
                key = tuple(point.values())
                row = {"axis": axis, **measure_point(args, work, files, point)} if key not in seen else \
                    {**next(r for r in rows if tuple(r[k] for k in base) == key), "axis": axis}
                seen.add(key)
                rows.append(row)
                print(table([row]).splitlines()[-1], flush=True)
    (out / "scaling.json").write_text(json.dumps(rows, indent=2))
    (out / "scaling.md").write_text(table(rows) + "\n")
    plot(rows, out / "scaling.png")
    worst = max(r["overhead_ir_vs_replay"] for r in rows)
    print(table(rows))
    print(f"selection overhead: worst ir/replay {worst:.3f} (target <= 1.03: "
          f"{'met' if worst <= 1.03 else 'missed'}); median "
          f"{statistics.median(r['overhead_ir_vs_replay'] for r in rows):.3f}")
    print(f"planner: worst error {max(r['planner_error'] for r in rows) * 100:.1f}% over every run")
    print(f"wrote {out}/scaling.md, scaling.json, scaling.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
