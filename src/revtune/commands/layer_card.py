"""revtune layer-card: per-layer diagnostics of a frozen model, for --select card:PATH."""
HELP = "measure a layer card (resnorm, activation energy, coupling, cost) for budgeted layer placement"

# Run flags that make no sense for a card: selection, evaluation schedule and the run directory.
EXCLUDED = ("select", "select_interval", "ir_aggregation", "split_num", "ir_boundary", "ir_window",
            "objective", "budget", "eval_every", "grad_accum", "gradient_checkpointing", "out", "overwrite")


def add_arguments(parser):
    import dataclasses
    import typing

    from ..config import RunConfig, add_config_arguments
    from ..layercard.options import CardOptions

    add_config_arguments(parser, only=tuple(f.name for f in dataclasses.fields(RunConfig)
                                            if f.name not in EXCLUDED))
    parser.add_argument("--out", required=True, help="card directory to create (card.json, card.md, card.png)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing card directory")
    hints = typing.get_type_hints(CardOptions)
    for f in dataclasses.fields(CardOptions):
        flag = "--" + f.name.replace("_", "-")
        kw = dict(dest=f"card_{f.name}", default=f.default, help=f.metadata["help"].replace("%", "%%"))
        if hints[f.name] is bool:
            parser.add_argument(flag, action="store_true", **kw)
        else:
            parser.add_argument(flag, type=hints[f.name], metavar=f.name.upper(), **kw)


def run(args) -> int:
    from ..config import config_from_args
    from ..layercard.build import build_card
    from ..layercard.options import CardOptions

    options = CardOptions(**{k[len("card_"):]: v for k, v in vars(args).items() if k.startswith("card_")})
    card = build_card(config_from_args(args), options, args.out, overwrite=args.overwrite)
    return {"line": f"revtune layer-card: {card.n_layers} blocks -> {args.out} (card.json, card.md, card.png)",
            "card": str(args.out), "blocks": card.n_layers}
