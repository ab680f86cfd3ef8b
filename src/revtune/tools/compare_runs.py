"""``python -m revtune.tools.compare_runs A B``: the same as ``revtune diff-runs A B``."""
import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["diff-runs", *sys.argv[1:]]))
