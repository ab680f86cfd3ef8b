"""revtune predict: classify revision pairs with a finished intent run."""
HELP = "predict the intentions of (before, after) pairs with a trained run (never retrains)"


def add_arguments(parser):
    from ..cli_types import positive_int

    parser.add_argument("--run", required=True, help="run directory written by revtune train")
    parser.add_argument("--input", required=True, help="JSONL/CSV with before and after fields")
    parser.add_argument("--out", required=True, help="JSONL file to write")
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--device", default="auto")


def run(args) -> int:
    from pathlib import Path

    from ..predict import load_run_model, predict_intents, read_pairs
    from ..rundir import check_output_file, write_jsonl

    records = read_pairs(args.input)
    out = Path(args.out)
    check_output_file(out)
    model, tokenizer, config = load_run_model(args.run, "intent", args.device)
    rows = predict_intents(model, tokenizer, config, records, args.batch_size)
    write_jsonl(out, rows)
    counts = {}
    for row in rows:
        for name in row["intents"]:
            counts[name] = counts.get(name, 0) + 1
    top = ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1])[:3])
    return {"line": f"revtune predict: {len(rows)} predictions -> {out} (most predicted: {top or 'none'})",
            "predictions": str(out), "n": len(rows), "intent_counts": counts}
