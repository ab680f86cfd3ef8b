"""``revtune compare``: one process per strategy, a row per strategy, failures kept in their row."""
from __future__ import annotations

import json
import random

import pytest
import yaml

from revtune.cli import main
from revtune.compare import compare, run_name, steps_to_fraction
from revtune.config import RunConfig
from revtune.errors import RevtuneError

EDITS = {"clarity": ("thing", "device"), "fluency": ("teh", "the"), "style": ("big", "large")}
FILLER = "we should check the numbers before the meeting".split()


def write_corpus(path, per_class: int, seed: int) -> None:
    rng = random.Random(seed)
    rows = []
    for label, (old, new) in EDITS.items():
        for _ in range(per_class):
            words = [w for w in FILLER if rng.random() > 0.2]
            spot = rng.randrange(len(words) + 1)
            rows.append({"before_sent": " ".join(words[:spot] + [old] + words[spot:]),
                         "after_sent": " ".join(words[:spot] + [new] + words[spot:]), "labels": label})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    for name, per_class, seed in (("train", 4, 0), ("dev", 1, 1), ("test", 2, 2)):
        write_corpus(folder / f"{name}.jsonl", per_class, seed)
    return folder


def flags(corpus) -> list[str]:
    return ["--model", "tiny", "--tiny-layers", "4", "--train", str(corpus / "train.jsonl"),
            "--dev", str(corpus / "dev.jsonl"), "--test", str(corpus / "test.jsonl"), "--max-steps", "2",
            "--batch-size", "4", "--max-length", "40"]


def test_compare_runs_each_strategy_and_keeps_a_failure_in_its_row(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the tiny model gains nothing from threads
    out = tmp_path / "cmp"
    assert main(["compare", *flags(corpus), "--select", "all,fixed:99,tfidf", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = {row["strategy"]: row for row in json.loads((out / "compare.json").read_text())}
    assert list(rows) == ["all", "fixed:99", "tfidf"]
    assert "99" in rows["fixed:99"]["error"] and rows["fixed:99"]["macro_f1"] is None
    for name in ("all", "tfidf"):
        row = rows[name]
        assert row["error"] is None and (out / row["run"] / "metrics.json").is_file()
        assert 0 <= row["macro_f1"] <= 1 and row["peak_memory_bytes"] > 0 and row["steps_to_95"] >= 1
        assert row["optimizer_state_bytes"] == 8 * row["trainable_params"] > 0
        assert f"| {name} |" in printed
    assert rows["all"]["adapter"] == "lora" and rows["all"]["mean_active_layers"] == 4
    assert 0 < rows["all"]["outside_share"] < 0.01  # only the head, beside the LoRA adapters
    assert rows["tfidf"]["mean_active_layers"] == 0 and rows["tfidf"]["outside_share"] is None
    markdown = (out / "compare.md").read_text()
    assert markdown.count("\n| ") == 4 and "layer '99' is outside" in markdown
    assert "--select all,fixed:99,tfidf" in markdown
    for plot in ("compare_metrics.png", "compare_loss.png", "compare_selection.png"):
        assert (out / plot).stat().st_size > 0
    assert RunConfig.from_values(yaml.safe_load((out / "config.yaml").read_text())).training.max_steps == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert main(["compare", *flags(corpus), "--select", "tfidf", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("select, message", [
    ("ir,lisaa", "did you mean 'lisa'"), ("random:0", "K must be"), ("all,all", "share one run directory"),
    (",", "at least one strategy"),
])
def test_bad_strategy_lists_fail_before_any_training(corpus, tmp_path, capsys, select, message):
    assert main(["compare", *flags(corpus), "--select", select, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_steps_to_95_and_run_names():
    history = [{"step": 2, "macro_f1": 0.2}, {"step": 4, "macro_f1": 0.58}, {"step": 6, "macro_f1": 0.6}]
    assert steps_to_fraction(history, "macro_f1") == 4
    assert steps_to_fraction([], "macro_f1") is None
    assert [run_name(s) for s in ("random:4", "replay:runs/ir", "lisa:2:20")] == \
        ["random_4", "replay_runs_ir", "lisa_2_20"]
    with pytest.raises(RevtuneError):
        compare(RunConfig(), "", "/tmp/never")
