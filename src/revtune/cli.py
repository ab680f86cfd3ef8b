"""``revtune``: a table from subcommand to the module that runs it; each module parses its own flags.

Every command returns its summary: a dict with ``line`` (the one line printed last: where the outputs
are, the headline metric) and the same facts as data; ``--json`` prints the data as one JSON object
instead, ``--quiet`` prints only the line (no progress bars, no chatter). A ``line_to_stderr`` summary
keeps stdout for the command's own output (``revise`` printing revisions); ``exit_code`` sets the code.

User errors (:class:`RevtuneError`) print one line and exit with code 2. SIGTERM is turned into an
interrupt, like Ctrl-C, so that output being built is removed (and ``compare`` stops its child) instead
of the process vanishing mid-write; it exits with 143, Ctrl-C with 130. Nothing else is caught.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys

from . import __version__
from .commands import (compare, config, demo, diff_runs, export, intention_tune, layer_card, output_flags, plan,
                       predict, report, revise, score, train)
from .errors import RevtuneError

COMMANDS = {
    "demo": demo,
    "train": train,
    "plan": plan,
    "predict": predict,
    "intention-tune": intention_tune,
    "revise": revise,
    "score": score,
    "compare": compare,
    "layer-card": layer_card,
    "diff-runs": diff_runs,
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so that every cleanup on the way out runs."""


def _terminate(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
    raise Terminated()


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
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with contextlib.redirect_stdout(open(os.devnull, "w")) if scripted else contextlib.nullcontext():
            summary = COMMANDS[args.command].run(args)
        return _finish(args, summary, stdout)
    except RevtuneError as exc:
        print(f"revtune {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        from .training.checkpoint import Interrupted

        if isinstance(exc, Interrupted):
            print(f"revtune {args.command}: {exc.line()}", file=sys.stderr)
            return exc.exit_code
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"revtune {args.command}: {how}; no partial output was kept", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:  # `revtune revise ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _finish(args, summary, stdout) -> int:
    """Print the command's summary (its JSON, or its one line) and return its exit code."""
    summary = {"exit_code": summary} if isinstance(summary, int) else dict(summary or {})
    code = summary.pop("exit_code", 0)
    line = summary.pop("line", None)
    to_stderr = summary.pop("line_to_stderr", False)
    if args.json and summary:  # nothing from ranks other than 0
        print(json.dumps(summary, indent=2, default=str), file=stdout, flush=True)
    elif line and not args.json:
        print(line, file=sys.stderr if to_stderr else stdout, flush=True)
    return code

if __name__ == "__main__":
    sys.exit(main())
