"""``revtune``: a table from subcommand to the module that runs it; each module parses its own flags.

User errors (:class:`RevtuneError`) print one line and exit with code 2. SIGTERM is turned into an
interrupt, like Ctrl-C, so that output being built is removed (and ``compare`` stops its child) instead
of the process vanishing mid-write; it exits with 143, Ctrl-C with 130. Nothing else is caught.
"""
from __future__ import annotations

import argparse
import signal
import sys

from .commands import compare, demo, diff_runs, intention_tune, layer_card, plan, predict, revise, score, train
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
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="revtune", description="Layer-wise fine-tuning of language models for "
                                     "text revision: IR-Tuning, Intention-Tuning, Layer Card.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so that every cleanup on the way out runs."""


def _terminate(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return COMMANDS[args.command].run(args) or 0
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
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
