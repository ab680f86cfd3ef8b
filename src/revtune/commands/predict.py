"""revtune predict: classify revision pairs with a finished intent run."""
from dataclasses import dataclass

from ..knobs import knob

HELP = "predict the intentions of (before, after) pairs with a trained run (never retrains)"


@dataclass
class PredictOptions:
    run: str = knob(help_text="run directory written by revtune train")
    input: str = knob(help_text="JSONL/CSV with before and after fields")
    out: str = knob(help_text="JSONL file to write")
    batch_size: int = knob(16, "pairs classified together")
    device: str = knob("auto", "auto, cpu, cuda, cuda:1, mps")

    def __post_init__(self):
        from ..cli_types import check_positive

        check_positive("batch_size", self.batch_size)


def add_arguments(parser):
    from ..knobs import add_flags

    add_flags(parser, PredictOptions, keep_defaults=True)


def run(args) -> dict:
    from pathlib import Path

    from ..knobs import from_namespace
    from ..predict import load_run_model, predict_intents, read_pairs
    from ..rundir import check_output_file, write_jsonl

    options = from_namespace(PredictOptions, args)
    records = read_pairs(options.input)
    out = Path(options.out)
    check_output_file(out)
    model, tokenizer, config, learned = load_run_model(options.run, "intent", options.device)
    rows = predict_intents(model, tokenizer, config, learned, records, options.batch_size)
    write_jsonl(out, rows)
    counts = {}
    for row in rows:
        for name in row["intents"]:
            counts[name] = counts.get(name, 0) + 1
    top = ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1])[:3])
    return {"line": f"revtune predict: {len(rows)} predictions -> {out} (most predicted: {top or 'none'})",
            "predictions": str(out), "n": len(rows), "intent_counts": counts}
