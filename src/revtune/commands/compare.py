"""revtune compare: several strategies at equal steps and seed, one table."""
HELP = "train several strategies (and the tfidf floor), each in its own process, and tabulate them"
DEFAULT_SELECT = "ir,all,full,random,lisa,ist,tfidf"
DEFAULT_OUT = "runs/compare"


def add_arguments(parser):
    import argparse

    from ..config import add_config_arguments

    from ..config import CompareConfig
    from ..knobs import add_flags

    add_config_arguments(parser, skip=("select", "out"))
    add_flags(parser, CompareConfig)
    parser.add_argument("--select", dest="select", default=argparse.SUPPRESS,
                        help=f"comma list of strategies and tfidf (default: {DEFAULT_SELECT}); every strategy "
                             "option below goes to the listed strategies that have it")
    parser.add_argument("--out", dest="out", default=argparse.SUPPRESS,
                        help=f"comparison directory to create (default: {DEFAULT_OUT})")


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
    from ..config import config_and_strategies, load_yaml

    in_yaml = load_yaml(args.config) if getattr(args, "config", None) else {}
    defaults = {} if "out" in vars(args) or "out" in in_yaml or "out" in (in_yaml.get("output") or {}) \
        else {"out": DEFAULT_OUT}
    config, specs, option_values, settings = config_and_strategies(args, DEFAULT_SELECT, **defaults)
    result = compare(config, specs, command=command_line(args), option_values=option_values, settings=settings)
    print(compare_table(result.rows, config.data.task))
    print(statistics_markdown(result.rows, config, settings))
    print(f"revtune compare: {len(result.rows)} strategies -> {result.path}/compare.md")
    return 0
