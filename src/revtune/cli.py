"""``revtune``: a table from subcommand to the module that runs it; each module parses its own flags.

User errors (:class:`RevtuneError`) print one line and exit with code 2; nothing else is caught.
"""
from __future__ import annotations

import argparse
import sys

from .commands import compare, demo, diff_runs, intention_tune, layer_card, predict, revise, score, train
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
    "diff-runs": diff_runs,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="revtune", description="Layer-wise fine-tuning of language models for "
                                     "text revision: IR-Tuning, Intention-Tuning, Layer Card.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
        print(f"revtune {args.command}: interrupted; no partial output was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
