"""``revtune``: a table from subcommand to the module that runs it; each module parses its own flags.

Every command returns its summary: a dict with ``line`` (the one line printed last: where the outputs
are, the headline metric) and the same facts as data; ``--json`` prints the data as one JSON object
instead, ``--quiet`` prints only the line (no progress bars, no chatter). A ``line_to_stderr`` summary
keeps stdout for the command's own output (``revise`` printing revisions).

User errors (:class:`RevtuneError`) print one line and exit with code 2; nothing else is caught.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from . import __version__
from .commands import (compare, config, demo, export, intention_tune, layer_card, output_flags, predict, report,
                       revise, score, train)
from .errors import RevtuneError

COMMANDS = {
    "demo": demo,
    "train": train,
    "predict": predict,
    "intention-tune": intention_tune,
    "revise": revise,
    "score": score,
    "compare": compare,
    "layer-card": layer_card,
    "report": report,
    "export": export,
    "config": config,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="revtune", description="Layer-wise fine-tuning of language models for "
                                     "text revision: IR-Tuning, Intention-Tuning, Layer Card.")
    parser.add_argument("--version", action="version", version=f"revtune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    common = output_flags()
    for name, module in COMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP, parents=[common]))
    return parser


def main(argv: list[str] | None = None) -> int:
    from .environment import set_command

    argv = sys.argv[1:] if argv is None else list(argv)
    if "--quiet" in argv or "--json" in argv:
        os.environ["TQDM_DISABLE"] = "1"  # read once, when tqdm is imported: before any command module is
    parser = build_parser()
    args = parser.parse_args(argv)
    set_command(argv)
    scripted = args.quiet or args.json
    stdout = args.stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(open(os.devnull, "w")) if scripted else contextlib.nullcontext():
            summary = COMMANDS[args.command].run(args)
    except RevtuneError as exc:
        print(f"revtune {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"revtune {args.command}: interrupted; no partial output was kept", file=sys.stderr)
        return 130
    summary = dict(summary or {})
    code = summary.pop("exit_code", 0)
    line = summary.pop("line", None)
    to_stderr = summary.pop("line_to_stderr", False)
    if args.json:
        print(json.dumps(summary, indent=2, default=str), file=stdout)
    elif line:
        print(line, file=sys.stderr if to_stderr else stdout, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
