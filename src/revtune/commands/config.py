"""revtune config: the fully resolved run config (show), and the recipes shipped with revtune (list)."""
HELP = "show the fully resolved config of a command line (YAML, defaults included) or list the shipped recipes"


def add_arguments(parser):
    from ..config import add_config_arguments
    from . import output_flags

    sub = parser.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="print every config field as resolved from --config and the flags",
                          parents=[output_flags()])
    add_config_arguments(show)
    sub.add_parser("list", help="list the recipes shipped inside the package (use: --config NAME)",
                   parents=[output_flags()])


def run(args):
    if args.action == "list":
        return list_recipes(args)
    return show_config(args)


def show_config(args):
    import yaml

    from ..config import config_from_args

    config = config_from_args(args)
    resolved = config.to_dict()
    if not args.json:
        print(yaml.safe_dump(resolved, sort_keys=False), end="")
    source = f"from {args.config} and the flags" if getattr(args, "config", None) else "from the flags"
    return {"line": f"# revtune config: {len(config.flat())} fields in {len(resolved)} parts resolved {source}, "
                    "defaults included",
            "config": resolved}


def list_recipes(args):
    from ..recipes import recipes_root, shipped_recipes

    recipes = shipped_recipes()
    if not args.json:
        width = max(len(r.name) for r in recipes)
        for recipe in recipes:
            where = "GPU+network" if recipe.needs_gpu else "CPU"
            print(f"{recipe.name:<{width}}  {where:<11}  {recipe.description}")
    gpu = sum(r.needs_gpu for r in recipes)
    return {"line": f"revtune config: {len(recipes)} recipes ({len(recipes) - gpu} CPU, {gpu} GPU) in "
                    f"{recipes_root()}; run one with --config NAME",
            "recipes": [{"name": r.name, "path": str(r.path), "command": r.command, "gpu": r.needs_gpu}
                        for r in recipes]}
