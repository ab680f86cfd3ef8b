"""Scripts and people: one summary line per command, --quiet and --json, --version, progress on compare and
demo, and run directories as readable as the user's umask allows."""
import json
import os
import stat

import pytest
from conftest import run_cli, tiny_args

from revtune import __version__


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"revtune {__version__}"


@pytest.fixture(scope="module")
def quiet_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("scripts") / "run"
    result = run_cli("train", *tiny_args(corpus, out, "--quiet"))
    assert result.returncode == 0, result.stderr
    return out, result


def test_quiet_prints_only_the_summary_line_and_no_progress(quiet_run):
    out, result = quiet_run
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("revtune: done: test macro_f1")
    assert str(out) in result.stdout and "report.html" in result.stdout
    assert "it/s" not in result.stderr and "%|" not in result.stderr


def test_json_summary_of_predict_and_score(quiet_run, corpus, tmp_path):
    out, _ = quiet_run
    result = run_cli("predict", "--run", out, "--input", corpus["test"], "--out", tmp_path / "p.jsonl", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["n"] == 10 and sum(summary["intent_counts"].values()) == 10
    normal = run_cli("predict", "--run", out, "--input", corpus["test"], "--out", tmp_path / "q.jsonl")
    assert normal.stdout.strip().splitlines()[-1].startswith("revtune predict: 10 predictions ->")


def test_train_json_has_the_run_and_headline(corpus, tmp_path):
    result = run_cli("train", *tiny_args(corpus, tmp_path / "j", "--json", "--select", "all"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # nothing but the JSON on stdout
    assert summary["run"] == str(tmp_path / "j") and summary["headline"] == "macro_f1"
    assert 0 <= summary["test"]["macro_f1"] <= 1 and summary["steps"] == 4


def test_run_directory_is_readable_per_umask(quiet_run):
    out, _ = quiet_run
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask  # tests run with the default umask (022)
    for path in [out / "metrics.json", out / "adapter" / "adapter_model.safetensors", out / "report.html"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


def test_compare_shows_progress_over_strategies_and_steps(corpus, tmp_path):
    result = run_cli("compare", *tiny_args(corpus, tmp_path / "cmp", "--select", "all,tfidf", "--max-steps", "3"))
    assert result.returncode == 0, result.stderr
    assert "compare: 100%" in result.stderr and "2/2" in result.stderr  # the bar over strategies
    assert "all: " in result.stderr and "3/3" in result.stderr  # the child's steps, forwarded
    assert result.stdout.strip().splitlines()[-1].startswith("revtune compare: 2 runs, best macro_f1")
