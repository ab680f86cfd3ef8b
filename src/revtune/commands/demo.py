"""revtune demo: IR-Tuning against adapters on every layer, on the embedded model and shipped corpus."""
HELP = "train the default model on the shipped corpus with ir and with all, side by side (no network)"

# Short enough for a 2-core CPU in under 10 minutes, long enough for both runs to learn the task.
DEMO_SETTINGS = dict(max_steps=40, batch_size=8, max_length=128, learning_rate=5e-4, eval_every=10,
                     out="runs/demo", overwrite=True)


def add_arguments(parser):
    from ..config import add_config_arguments

    add_config_arguments(parser, compare=True)
    parser.add_argument("--strategies", default="ir,all", help="comma-separated strategies to compare")


def run(args) -> int:
    from ..aggregate import statistics_markdown
    from ..compare import compare, compare_table
    from ..config import config_from_args

    for key, value in DEMO_SETTINGS.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    config = config_from_args(args)
    seeds = config.seeds or [config.seed]
    print(f"revtune demo: model {config.model}, shipped corpus, {config.max_steps} steps of batch "
          f"{config.batch_size}, seed{'s' if len(seeds) > 1 else ''} {','.join(map(str, seeds))}; each run "
          "trains in its own process" + ("" if config.seeds else
                                          " (one seed: --seeds 0,1,2 gives mean ± std; the intervals "
                                          "below are over the 40 test items only)"), flush=True)
    command = f"revtune demo --strategies {args.strategies}" + \
        (f" --seeds {','.join(map(str, config.seeds))}" if config.seeds else "")
    result = compare(config, args.strategies, config.out, command=command, quiet=args.quiet or args.json)
    from .compare import compare_summary

    print(compare_table(result.rows, config.task))
    print(statistics_markdown(result.rows, config))
    summary = compare_summary("demo", result, config.task)
    summary["exit_code"] = 0 if all(row.get("error") is None for row in result.rows) else 1
    return summary
