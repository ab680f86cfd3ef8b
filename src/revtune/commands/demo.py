"""revtune demo: IR-Tuning against adapters on every layer, on the embedded model and shipped corpus."""
HELP = "train the default model on the shipped corpus with ir and with all, side by side (no network)"

DEFAULT_SELECT = "ir,all"
# Short enough for a 2-core CPU in under 10 minutes, long enough for both runs to learn the task. Flags and
# --config YAML override each of them.
DEMO_SETTINGS = dict(max_steps=40, batch_size=8, max_length=128, learning_rate=5e-4, eval_every=10,
                     out="runs/demo", overwrite=True)


def add_arguments(parser):
    import argparse

    from ..config import CompareConfig, add_config_arguments
    from ..knobs import add_flags

    add_config_arguments(parser, skip=("select",))
    add_flags(parser, CompareConfig)
    parser.add_argument("--select", "--strategies", dest="select", default=argparse.SUPPRESS,
                        help=f"comma list of strategies to compare (default: {DEFAULT_SELECT})")


def run(args) -> int:
    from ..aggregate import statistics_markdown
    from ..compare import compare, compare_table
    from ..config import FLAT, PARTS, CompareConfig, config_and_strategies, load_yaml, nest

    in_yaml = {k: v for k, v in load_yaml(args.config).items() if k != "preset"} \
        if getattr(args, "config", None) else {}
    given = nest({**PARTS, "compare": CompareConfig}, in_yaml, args.config)
    unset = {key: value for key, value in DEMO_SETTINGS.items()
             if key not in vars(args) and FLAT[key][1].name not in given.get(FLAT[key][0], {})}
    config, specs, option_values, settings = config_and_strategies(args, DEFAULT_SELECT, **unset)
    training = config.training
    seeds = settings.seeds or [training.seed]
    print(f"revtune demo: model {config.model.name}, {config.data.train or 'shipped corpus'}, "
          f"{training.max_steps} steps of batch {training.batch_size}, seed{'s' if len(seeds) > 1 else ''} "
          f"{','.join(map(str, seeds))}; each run trains in its own process" + ("" if settings.seeds else
          " (one seed: --seeds 0,1,2 gives mean ± std; the intervals below are over the 40 test items only)"),
          flush=True)
    command = f"revtune demo --select {specs}" + \
        (f" --seeds {','.join(map(str, settings.seeds))}" if settings.seeds else "")
    result = compare(config, specs, config.output.out, command=command, option_values=option_values,
                     settings=settings, quiet=args.quiet or args.json)
    from .compare import compare_summary

    print(compare_table(result.rows, config.data.task))
    print(statistics_markdown(result.rows, config, settings))
    summary = compare_summary("demo", result, config.data.task)
    summary["exit_code"] = 0 if all(row.get("error") is None for row in result.rows) else 1
    return summary
