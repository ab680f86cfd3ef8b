"""revtune diff-runs: are two run directories the same run, bit for bit (timings aside)?"""
HELP = ("compare two run directories: selection log, adapter tensors bit for bit, metrics (timings "
        "aside), config; exit 0 when the same, 1 when not")


def add_arguments(parser):
    parser.add_argument("a", help="a run directory (or an intention-tune output)")
    parser.add_argument("b", help="the run directory to compare it with")


def run(args) -> dict:
    from ..rundiff import diff_runs

    found = diff_runs(args.a, args.b)
    for line in found:
        print(line)
    verdict = "same run" if not found else f"{len(found)} difference(s)"
    return {"line": f"revtune diff-runs: {verdict}: {args.a} vs {args.b}", "same": not found,
            "differences": found, "exit_code": 1 if found else 0}
