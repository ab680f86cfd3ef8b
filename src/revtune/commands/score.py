"""revtune score: SARI, GLEU, Update-R and friends of predictions against references."""
from dataclasses import dataclass

from ..knobs import knob
from ..metrics.sari import VARIANTS

HELP = "score revisions: SARI, GLEU, Update-R, ROUGE-1/2 of additions, exact match, copy rate"


@dataclass
class ScoreOptions:
    src: str = knob(help_text='JSONL, one {"text": source} per line')
    pred: str = knob(help_text='JSONL, one {"text": prediction} per line')
    ref: str = knob(help_text='JSONL, one {"references": [...]} or {"text": reference} per line')
    out: str | None = knob(None, "also write the scores as JSON to this file (atomically)")
    per_item: bool = knob(False, "also give every item's scores")
    sari_variant: str = knob("iterater", "how SARI counts empty ratios: iterater (0/0 = 0), hf (0/0 = 1), "
                             "easse (corpus counts, deletion F1)", choices=VARIANTS)

    def __post_init__(self):
        from ..knobs import check_choices

        check_choices(self)


def add_arguments(parser):
    from ..knobs import add_flags

    add_flags(parser, ScoreOptions, keep_defaults=True)


def run(args) -> dict:
    from ..knobs import from_namespace
    from ..metrics.generation import read_score_files, score_generation
    from ..rundir import check_output_file, write_json

    options = from_namespace(ScoreOptions, args)
    if options.out:
        check_output_file(options.out)
    sources, predictions, references = read_score_files(options.src, options.pred, options.ref)
    scores = score_generation(sources, predictions, references, options.sari_variant, per_item=options.per_item)
    if options.out:
        write_json(options.out, scores)
    if not args.json:
        print(format_scores(scores))
    return {"line": f"revtune score: {scores['n']} items, SARI {scores['sari']:.2f}, GLEU {scores['gleu']:.4f}, "
                    f"Update-R {scores['update_r']:.4f}", **scores}


def format_scores(scores: dict) -> str:
    names = [k for k in scores if k not in ("items", "n")]
    lines = [f"{name:<12} {scores[name]:.4f}" for name in names] + [f"{'n':<12} {scores['n']}"]
    for index, item in enumerate(scores.get("items", []), start=1):
        if index == 1:
            lines += ["", "item  " + "  ".join(f"{name:>11}" for name in item)]
        lines.append(f"{index:<4}  " + "  ".join(f"{value:>11.4f}" for value in item.values()))
    return "\n".join(lines)
