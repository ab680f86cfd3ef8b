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


def run(args) -> int:
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
    print(f"revtune: {len(rows)} predictions -> {out}")
    return 0
