import json
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models run several times faster on one thread than on two contended ones; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

INTENTS = ("clarity", "fluency", "coherence", "style", "meaning-changed")
# Each intent gets a different edit, so even a tiny model can separate them in a few steps.
EDITS = {
    "clarity": ("the thing was done by them", "the committee approved the budget"),
    "fluency": ("they was going their", "they were going there"),
    "coherence": ("It rained. We stayed.", "It rained, so we stayed."),
    "style": ("kids got super mad", "the children became very upset"),
    "meaning-changed": ("the price was 10 dollars", "the price was 12 dollars"),
}


def write_iterater(path: Path, per_intent: int, offset: int = 0) -> Path:
    with open(path, "w") as handle:
        for i in range(per_intent):
            for intent in INTENTS:
                before, after = EDITS[intent]
                handle.write(json.dumps({"before_sent": f"{before} (item {i + offset})",
                                         "after_sent": f"{after} (item {i + offset})",
                                         "labels": intent}) + "\n")
    return path


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """train/dev/test files in IteraTeR sentence format."""
    folder = tmp_path_factory.mktemp("corpus")
    return {"train": write_iterater(folder / "train.jsonl", 6),
            "dev": write_iterater(folder / "dev.jsonl", 2, 100),
            "test": write_iterater(folder / "test.jsonl", 2, 200)}


def tiny_args(corpus, out, *extra):
    """CLI arguments for a short, cheap training run on the tiny model."""
    return ["--model", "tiny", "--train", str(corpus["train"]), "--dev", str(corpus["dev"]),
            "--test", str(corpus["test"]), "--max-steps", "4", "--batch-size", "4",
            "--max-length", "64", "--lora-r", "4", "--lora-alpha", "8", "--out", str(out), *extra]


def run_cli(*args, timeout=300):
    import subprocess

    return subprocess.run([sys.executable, "-m", "revtune.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})
