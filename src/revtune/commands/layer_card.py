"""revtune layer-card: per-layer diagnostics of a frozen model, for --select card:PATH."""
HELP = "measure a layer card (resnorm, activation energy, coupling, cost) for budgeted layer placement"

# Run settings that make no sense for a card: selection, evaluation schedule and the run directory
# (the card's own --out and --overwrite replace the latter).
EXCLUDED = ("select", "select_interval", "eval_every", "grad_accum", "gradient_checkpointing", "out", "overwrite")


def parts():
    from ..config import PARTS
    from ..layercard.options import CardOptions

    return {**PARTS, "card": CardOptions}


def add_arguments(parser):
    from ..config import add_config_arguments

    add_config_arguments(parser, skip=EXCLUDED, parts=parts(), strategy_options=False)
    parser.add_argument("--out", required=True, help="card directory to create (card.json, card.md, card.png)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing card directory")


def run(args) -> dict:
    from ..config import PARTS, RunConfig, build_parts, merged_values
    from ..layercard.build import build_card

    nested, source = merged_values(args, parts(), {})
    options = build_parts({"card": parts()["card"]}, nested, source)["card"]
    nested.pop("card")
    nested["output"] = {}
    config = RunConfig(**build_parts(PARTS, nested, source))
    card = build_card(config, options, args.out, overwrite=args.overwrite)
    return {"line": f"revtune layer-card: {card.n_layers} blocks -> {args.out} (card.json, card.md, card.png)",
            "card": str(args.out), "blocks": card.n_layers}
