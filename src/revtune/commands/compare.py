"""revtune compare: several strategies at equal steps and seed, one table."""
HELP = "train several strategies (and the tfidf floor), each in its own process, and tabulate them"
DEFAULT_SELECT = "ir,all,full,random,lisa,ist,tfidf"
DEFAULT_OUT = "runs/compare"


def add_arguments(parser):
    import argparse
    import dataclasses

    from ..config import RunConfig, add_config_arguments

    shared = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in ("select", "out"))
    add_config_arguments(parser, only=shared, compare=True)
    parser.add_argument("--select", dest="select", default=argparse.SUPPRESS,
                        help=f"comma list of strategies and tfidf (default {DEFAULT_SELECT})")
    parser.add_argument("--out", dest="out", default=argparse.SUPPRESS,
                        help=f"comparison directory to create (default {DEFAULT_OUT})")


def command_line(args) -> str:
    """The invocation, rebuilt from the parsed flags, for compare.md."""
    import shlex

    parts = ["revtune", "compare"]
    for key, value in vars(args).items():
        if key == "command" or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + key.replace("_", "-"))
            continue
        if isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        parts += [flag, str(value)]
    return shlex.join(parts)


def run(args) -> int:
    from ..aggregate import statistics_markdown
    from ..compare import compare, compare_table
    from ..config import config_from_args, load_yaml

    in_yaml = load_yaml(args.config) if getattr(args, "config", None) else {}
    defaults = {key: value for key, value in (("select", DEFAULT_SELECT), ("out", DEFAULT_OUT))
                if key not in vars(args) and key not in in_yaml}
    config = config_from_args(args, **defaults)
    result = compare(config, config.select, command=command_line(args))
    print(compare_table(result.rows, config.task))
    print(statistics_markdown(result.rows, config))
    print(f"revtune compare: {len(result.rows)} strategies -> {result.path}/compare.md")
    return 0
