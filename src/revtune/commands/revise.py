"""revtune revise: revise texts for given intentions with a finished generation run (never retrains)."""
HELP = "revise texts for one or more intentions with a trained revise or intention-tune run"


def add_arguments(parser):
    from ..cli_types import positive_int
    from ..config import DECODINGS

    parser.add_argument("--run", required=True, help="intention-tune output or a revise run directory")
    parser.add_argument("--input", help="JSONL/CSV with a 'text' (or 'before') field; default: stdin lines")
    parser.add_argument("--intent", required=True, help="intention(s), comma-separated, e.g. clarity,fluency")
    parser.add_argument("--out", help="JSONL to write ({text: revision, source, intents}); default: print "
                                      "one revised text per line")
    parser.add_argument("--decoding", choices=DECODINGS, help="override the run's decoding")
    parser.add_argument("--num-beams", type=positive_int, help="beams when decoding is beam")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="texts generated together")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")


def run(args) -> int:
    import contextlib
    import sys
    import warnings
    from pathlib import Path

    from ..errors import RevtuneError
    from ..intention import generator_run
    from ..predict import load_run_model
    from ..rundir import check_output_file, read_run, write_jsonl
    from ..training.revise import Decoding, revise_texts

    sources = read_sources(args.input)
    run_dir = generator_run(args.run)
    _, config = read_run(run_dir)
    if config.get("task") != "revise":  # checked before the intents, which an intent run also has
        raise RevtuneError(f"this run was trained for task '{config.get('task')}', not 'revise'",
                           path=run_dir, field="task")
    intents = parse_intents(args.intent, config.get("labels") or [])
    if args.out:
        check_output_file(Path(args.out))
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the revisions
        model, tokenizer, config = load_run_model(run_dir, "revise", args.device)
    decoding = Decoding.from_config(config, mode=args.decoding, num_beams=args.num_beams,
                                    batch_size=args.batch_size)
    revisions = revise_texts(model, tokenizer, sources, [intents] * len(sources), decoding)
    changed = sum(r.strip() != s.strip() for s, r in zip(sources, revisions))
    summary = {"n": len(revisions), "changed": changed, "intents": intents}
    if args.out:
        write_jsonl(Path(args.out), [{"text": r, "source": s, "intents": intents}
                                     for s, r in zip(sources, revisions)])
        return {"line": f"revtune revise: {len(revisions)} revisions ({changed} changed) -> {args.out}",
                "revisions": args.out, **summary}
    if not args.json:
        print("\n".join(r.replace("\n", " ") for r in revisions), file=getattr(args, "stdout", sys.stdout))
    return {"line": f"revtune revise: {len(revisions)} revisions ({changed} changed), for {', '.join(intents)}",
            "line_to_stderr": True, "texts": revisions, **summary}


def parse_intents(text: str, known: list[str]) -> list[str]:
    """Comma-separated names, matched case-insensitively against what the run was trained on."""
    from ..errors import RevtuneError, did_you_mean

    by_lower = {name.lower(): name for name in known}
    chosen = []
    for name in filter(None, (part.strip() for part in text.split(","))):
        if name.lower() not in by_lower:
            raise RevtuneError(f"unknown intent '{name}': the run never saw it in training; "
                               f"{did_you_mean(name, known)}", field="intent")
        chosen.append(by_lower[name.lower()])
    if not chosen:
        raise RevtuneError("give at least one intent, e.g. --intent clarity", field="intent")
    return chosen


def read_sources(path) -> list[str]:
    """Texts from a JSONL/CSV file (field 'text', else 'before') or from stdin, one per line."""
    import sys

    from ..corpora.tabular import read_rows, text
    from ..errors import RevtuneError

    if path:
        rows = read_rows(path)
        name = "text" if "text" in rows[0][1] else "before"
        where = [(str(path), row[0], text(row, name, str(path))) for row in rows]
    else:
        if sys.stdin.isatty():
            raise RevtuneError("no input: give --input FILE or pipe text on stdin", field="input")
        data = sys.stdin.buffer.read()
        try:
            lines = data.decode("utf-8-sig").splitlines()
        except UnicodeDecodeError as e:
            column = e.start - data.rfind(b"\n", 0, e.start)
            raise RevtuneError(f"not UTF-8 text (byte {column} of the line)", path="<stdin>",
                               line=data[:e.start].count(b"\n") + 1) from None
        while lines and not lines[-1].strip():
            lines.pop()
        name = "text"
        where = [("<stdin>", number, line.strip()) for number, line in enumerate(lines, start=1)]
    if not where:
        raise RevtuneError("no text to revise", path=path or "<stdin>", field="input")
    for source, line, value in where:
        if not value:
            raise RevtuneError("empty source text", path=source, line=line, field=name)
    return [value for _, _, value in where]
