"""revtune export: a finished run as a transformers model directory (--merge) or a peft adapter."""
HELP = ("export a run for transformers/peft/vLLM: --merge writes a standard model directory, otherwise a peft "
        "adapter with its model card")


def add_arguments(parser):
    parser.add_argument("run", help="run directory (or an intention-tune output: its generator)")
    parser.add_argument("--out", required=True, help="directory to create")
    parser.add_argument("--merge", action="store_true",
                        help="merge the adapters into the base weights (a plain transformers model)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")


def run(args):
    from ..export import export_run

    out = export_run(args.run, args.out, merge=args.merge, overwrite=args.overwrite)
    what = "merged transformers model" if args.merge else "peft adapter"
    return {"line": f"revtune export: {what} -> {out} (README.md model card, task.json with labels and prompt)",
            "output": str(out), "merged": args.merge}
