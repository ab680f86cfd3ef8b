"""revtune score: SARI, GLEU, Update-R and friends of predictions against references."""
HELP = "score revisions: SARI, GLEU, Update-R, ROUGE-1/2 of additions, exact match, copy rate"


def add_arguments(parser):
    from ..metrics.sari import VARIANTS

    parser.add_argument("--src", required=True, help="JSONL, one {\"text\": source} per line")
    parser.add_argument("--pred", required=True, help="JSONL, one {\"text\": prediction} per line")
    parser.add_argument("--ref", required=True,
                        help="JSONL, one {\"references\": [...]} or {\"text\": reference} per line")
    parser.add_argument("--out", help="also write the scores as JSON to this file (atomically)")
    parser.add_argument("--per-item", action="store_true", help="also give every item's scores")
    parser.add_argument("--sari-variant", choices=VARIANTS, default="iterater",
                        help="how SARI counts empty ratios: iterater (0/0 = 0, default), hf (0/0 = 1), "
                             "easse (corpus counts, deletion F1)")


def run(args) -> dict:
    from ..metrics.generation import read_score_files, score_generation
    from ..rundir import check_output_file, write_json

    if args.out:
        check_output_file(args.out)
    sources, predictions, references = read_score_files(args.src, args.pred, args.ref)
    scores = score_generation(sources, predictions, references, args.sari_variant, per_item=args.per_item)
    if args.out:
        write_json(args.out, scores)
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
