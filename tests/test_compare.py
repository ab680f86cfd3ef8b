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
    main_table, statistics = markdown.split("\n## Intervals and paired tests (reference: all)\n")
    assert main_table.count("\n| ") == 4 and "layer '99' is outside" in main_table
    assert statistics.count("\n| ") == 4 and "| tfidf | 1 |" in statistics  # one seed: intervals and tests too
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


@pytest.fixture(scope="module")
def seeds_out(corpus, tmp_path_factory):
    """One comparison at two seeds, with a larger test split so that a real difference is significant."""
    write_corpus(corpus / "test_large.jsonl", 8, 5)
    out = tmp_path_factory.mktemp("seeds") / "cmp"
    args = [*flags(corpus), "--test", str(corpus / "test_large.jsonl"), "--select", "all,fixed:0-3,ir,tfidf",
            "--seeds", "0,1", "--against", "all", "--bootstrap-samples", "500", "--out", str(out)]
    assert main(["compare", *args]) == 0
    return out


def test_compare_seeds_runs_every_strategy_at_every_seed_and_tfidf_once(seeds_out):
    runs = sorted(str(p.parent.relative_to(seeds_out)) for p in seeds_out.glob("*/*/metrics.json"))
    assert runs == ["all/seed0", "all/seed1", "fixed_0-3/seed0", "fixed_0-3/seed1", "ir/seed0", "ir/seed1",
                    "tfidf/seed0"]
    rows = {row["strategy"]: row for row in json.loads((seeds_out / "compare.json").read_text())}
    assert [r["seed"] for r in rows["ir"]["per_seed"]] == [0, 1] and rows["tfidf"]["seeds"] == [0]
    ir = rows["ir"]
    values = [r["macro_f1"] for r in ir["per_seed"]]
    assert ir["macro_f1"] == pytest.approx(sum(values) / 2)
    assert ir["std"]["macro_f1"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    assert ir["std"]["peak_memory_bytes"] is not None and rows["tfidf"]["std"]["macro_f1"] is None
    for row in rows.values():
        for name in ("macro_f1", "accuracy"):
            ci = row["interval"][name]
            assert ci["low"] <= ci["value"] <= ci["high"] and ci["value"] == pytest.approx(row[name])
            for run in row["per_seed"]:
                assert run["interval"][name]["low"] <= run[name] <= run["interval"][name]["high"]
    lines = (seeds_out / "ir" / "seed0" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 24 and {"gold", "predicted", "logits"} <= set(json.loads(lines[0]))


def test_paired_tests_mark_a_real_difference_and_not_an_identical_system(seeds_out):
    rows = {row["strategy"]: row for row in json.loads((seeds_out / "compare.json").read_text())}
    assert "paired" not in rows["all"]
    same = rows["fixed:0-3"]["paired"]["macro_f1"]  # all four layers of a 4-layer model: the same training
    assert same["delta"] == 0 and same["p"] == 1 and not same["significant"]
    tfidf = rows["tfidf"]["paired"]
    assert tfidf["against"] == "all" and tfidf["pairs"] == 2  # run once, paired with both seeds of all
    assert tfidf["macro_f1"]["delta"] > 0.3 and tfidf["macro_f1"]["p"] < 0.05 and tfidf["macro_f1"]["significant"]
    assert tfidf["macro_f1"]["significant_pairs"] == 2
    assert 0 < rows["ir"]["paired"]["accuracy"]["p"] <= 1
    markdown = (seeds_out / "compare.md").read_text()
    assert "## Intervals and paired tests (reference: all)" in markdown and " ± " in markdown
    tfidf_line = next(line for line in markdown.splitlines() if line.startswith("| tfidf | 1 |"))
    assert f"{tfidf['macro_f1']['delta']:+.4f} *" in tfidf_line and "| 2/2 |" in tfidf_line
    fixed_line = next(line for line in markdown.splitlines() if line.startswith("| fixed:0-3 | 2 |"))
    assert "+0.0000 |" in fixed_line and "| 1.0000 |" in fixed_line


def test_selection_stability_across_seeds(seeds_out):
    rows = {row["strategy"]: row for row in json.loads((seeds_out / "compare.json").read_text())}
    assert "stability" not in rows["all"] and "stability" not in rows["tfidf"]
    stability = rows["ir"]["stability"]
    assert stability["seeds"] == [0, 1] and len(stability["top_sets"]) == 2
    top = [set(t) for t in stability["top_sets"]]
    assert stability["mean_jaccard"] == pytest.approx(len(top[0] & top[1]) / len(top[0] | top[1]))
    shares = stability["active_share"]
    assert len(shares) == 2 and len(shares[0]) == 4 and all(0 <= v <= 1 for s in shares for v in s)
    assert stability["active_share_mean"] == pytest.approx([(a + b) / 2 for a, b in zip(*shares)])
    assert (seeds_out / "compare_stability.png").stat().st_size > 0
    assert "## Selection stability across seeds" in (seeds_out / "compare.md").read_text()


@pytest.mark.parametrize("extra, message", [
    (["--against", "lisa"], "'lisa' is not one of the compared strategies"),
    (["--seeds", "1,1"], "expected distinct whole numbers"), (["--seeds", "a"], "expected distinct whole"),
    (["--confidence", "1.5"], "expected a level"),
])
def test_bad_seed_and_test_options_fail_before_any_training(corpus, tmp_path, capsys, extra, message):
    assert main(["compare", *flags(corpus), "--select", "all,tfidf", *extra, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_seed_options_are_compare_and_demo_flags_only():
    from revtune.cli import build_parser

    assert build_parser().parse_args(["demo", "--seeds", "0,1"]).seeds == [0.0, 1.0]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--seeds", "0,1"])


def test_jobs_run_seed_by_seed_and_tfidf_once_unless_its_data_follow_the_seed(corpus):
    from revtune.compare import plan_jobs
    from revtune.config import CompareConfig

    seeds = CompareConfig(seeds=[3, 4])
    given = RunConfig.from_values(dict(train=str(corpus / "train.jsonl"), dev=str(corpus / "dev.jsonl")))
    jobs = [(j.spec, j.seed, j.folder) for j in plan_jobs(["ir", "tfidf", "all"], given, seeds)]
    assert jobs == [("ir", 3, "ir/seed3"), ("tfidf", 3, "tfidf/seed3"), ("all", 3, "all/seed3"),
                    ("ir", 4, "ir/seed4"), ("all", 4, "all/seed4")]
    carved = RunConfig.from_values(dict(train=str(corpus / "train.jsonl")))  # dev drawn from train by the seed
    assert [j.seed for j in plan_jobs(["tfidf"], carved, seeds)] == [3, 4]
    assert [(j.seed, j.folder) for j in plan_jobs(["ir"], RunConfig.from_values(dict(seed=5)))] == [(5, "ir")]


def test_step_bar_follows_the_training_bar_not_the_bars_after_it(tmp_path):
    from tqdm import tqdm

    from revtune.compare import _follow

    log = tmp_path / "child.log"
    log.write_bytes(b"revtune: warm-up 0 steps\n\r  0%|     | 0/3 [00:00<?, ?it/s]\r 67%|###  | 2/3 [00:00<00:00]"
                    b"\r100%|#####| 3/3 [00:00<00:00, loss=1.5]\n"
                    b"\rWriting model shards:   0%|     | 0/1 [00:00<?]\rWriting model shards: 100%|#####| 1/1 [00:00]\n")
    bar = tqdm(total=3, disable=True)
    _follow(log, bar)
    assert (bar.n, bar.total) == (3, 3)
