"""revtune report: one self-contained HTML page of a run, a compare or an intention-tune directory."""
HELP = "write report.html (no network needed to view it) for a run, compare or intention-tune directory"


def add_arguments(parser):
    parser.add_argument("path", help="run, compare or intention-tune directory")
    parser.add_argument("--out", help="HTML file to write (default PATH/report.html)")


def run(args):
    from ..report_html import write_report
    from ..rundir import check_output

    if args.out:
        check_output(args.out, overwrite=True)
    out = write_report(args.path, args.out)
    size = out.stat().st_size
    return {"line": f"revtune report: {out} ({size / 1024:.0f} KiB, self-contained)",
            "report": str(out), "bytes": size}
