"""revtune revise: revise texts for given intentions with a finished generation run (never retrains)."""
from dataclasses import dataclass

from ..knobs import knob

HELP = "revise texts for one or more intentions with a trained revise or intention-tune run"


@dataclass
class ReviseOptions:
    run: str = knob(help_text="intention-tune output or a revise run directory")
    intent: str = knob(help_text="intention(s), comma-separated, e.g. clarity,fluency")
    input: str | None = knob(None, "JSONL/CSV with a 'text' (or 'before') field; unset: stdin lines")
    out: str | None = knob(None, "JSONL to write ({text: revision, source, intents}); unset: print one revised "
                                 "text per line")
    batch_size: int = knob(16, "texts generated together")
    device: str = knob("auto", "auto, cpu, cuda, cuda:1, mps")

    def __post_init__(self):
        from ..cli_types import check_positive

        check_positive("batch_size", self.batch_size)


def add_arguments(parser):
    from ..config import DecodingConfig
    from ..knobs import add_flag, add_flags, cli_fields

    add_flags(parser, ReviseOptions, keep_defaults=True)
    for f in cli_fields(DecodingConfig):  # unset: the run's own decoding
        add_flag(parser, DecodingConfig, f, extra_help="; overrides the run's")


def run(args) -> dict:
    import contextlib
    import dataclasses
    import sys
    import warnings
    from pathlib import Path

    from ..config import DecodingConfig
    from ..errors import RevtuneError
    from ..intention import generator_run
    from ..knobs import cli_fields, flat_name, from_namespace
    from ..predict import load_run_model
    from ..rundir import check_output_file, read_run, write_jsonl
    from ..training.revise import revise_texts

    options = from_namespace(ReviseOptions, args)
    sources = read_sources(options.input)
    run_dir = generator_run(options.run)
    _, config, learned = read_run(run_dir)
    if config.data.task != "revise":  # checked before the intents, which an intent run also has
        raise RevtuneError(f"this run was trained for task '{config.data.task}', not 'revise'",
                           path=run_dir, field="task")
    intents = parse_intents(options.intent, learned["labels"] or [])
    if options.out:
        check_output_file(Path(options.out))
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the revisions
        model, tokenizer, config, _ = load_run_model(run_dir, "revise", options.device)
    changed_decoding = {f.name: getattr(args, flat_name(f)) for f in cli_fields(DecodingConfig)
                        if hasattr(args, flat_name(f))}
    decoding = dataclasses.replace(config.decoding, **changed_decoding)
    revisions = revise_texts(model, tokenizer, sources, [intents] * len(sources), decoding, options.batch_size,
                             config.training.seed, config.data.max_length)
    changed = sum(r.strip() != s.strip() for s, r in zip(sources, revisions))
    summary = {"n": len(revisions), "changed": changed, "intents": intents}
    if options.out:
        write_jsonl(Path(options.out), [{"text": r, "source": s, "intents": intents}
                                        for s, r in zip(sources, revisions)])
        return {"line": f"revtune revise: {len(revisions)} revisions ({changed} changed) -> {options.out}",
                "revisions": options.out, **summary}
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
