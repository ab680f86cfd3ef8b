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
        if key in ("command", "stdout", "quiet", "json") or value is None:
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
    result = compare(config, specs, command=command_line(args), option_values=option_values, settings=settings,
                     quiet=args.quiet or args.json)
    print(compare_table(result.rows, config.data.task))
    print(statistics_markdown(result.rows, config, settings))
    return compare_summary("compare", result, config.data.task)


def compare_summary(command: str, result, task: str) -> dict:
    """One line (the best row's headline metric, where the table and report are) and the rows as data."""
    from ..compare import HEADLINE

    headline = HEADLINE[task]
    done = [row for row in result.rows if row.get("error") is None and row.get(headline) is not None]
    best = max(done, key=lambda row: row[headline]) if done else None
    failed = len(result.rows) - len([row for row in result.rows if row.get("error") is None])
    best_text = f"best {headline} {best[headline]:.4f} ({best['strategy']})" if best else "no finished run"
    return {"line": f"revtune {command}: {len(result.rows)} runs, {best_text}"
                    + (f", {failed} failed" if failed else "")
                    + f" -> {result.path}/compare.md, {result.path}/report.html",
            "compare": str(result.path), "report": str(result.path / "report.html"), "headline": headline,
            "rows": result.rows, "exit_code": 0}
