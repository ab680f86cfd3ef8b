"""`revtune train` / `revtune predict` as real subprocesses: the run directory, and every bad input."""
import json

import pytest
from conftest import run_cli, tiny_args

RUN_FILES = {"adapter", "tokenizer", "config.json", "metrics.json", "selection.jsonl", "trainable.txt",
             "selection.png", "loss.png"}


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ir"
    result = run_cli("train", *tiny_args(corpus, out, "--select", "ir", "--seed", "3"))
    assert result.returncode == 0, result.stderr
    return out, result


def test_run_directory_is_complete(trained):
    out, result = trained
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("macro_f1", "accuracy", "per_class", "au_prc"):
        assert key in metrics["test"]
    for key in ("best_dev", "train_loss", "peak_memory_bytes", "mean_step_seconds", "trainable_params", "steps"):
        assert key in metrics
    assert metrics["steps"] == 4 and len(metrics["train_loss"]) == 4
    assert metrics["peak_memory_bytes"] > 10 * 2**20
    lines = (out / "selection.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(set(json.loads(l)) == {"step", "active", "scores"} for l in lines)
    assert "layer" in result.stdout and "revtune: done" in result.stdout  # table first, summary last
    assert "total" in (out / "trainable.txt").read_text()


def test_adapter_loads_with_plain_peft(trained):
    from peft import PeftModel

    from revtune.models import load_model

    out, _ = trained
    config = json.loads((out / "config.json").read_text())
    labels = json.loads((out / "metrics.json").read_text())["labels"]
    base = load_model("tiny", "intent", labels, seed=config["training"]["seed"]).model
    model = PeftModel.from_pretrained(base, str(out / "adapter"))
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_predict_reproduces_the_test_score(trained, corpus, tmp_path):
    out, _ = trained
    predictions = tmp_path / "pred.jsonl"
    result = run_cli("predict", "--run", out, "--input", corpus["test"], "--out", predictions)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    gold = [json.loads(line)["labels"] for line in corpus["test"].read_text().splitlines()]
    accuracy = sum(r["intents"] == [g] for r, g in zip(rows, gold)) / len(gold)
    metrics = json.loads((out / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["test"]["accuracy"])
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in rows)
    saved = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [s["predicted"] for s in saved] == [r["intents"] for r in rows]  # the run's own test predictions
    assert [s["gold"] for s in saved] == [[g] for g in gold]


def test_same_seed_same_run(trained, corpus, tmp_path):
    out, _ = trained
    again = tmp_path / "again"
    assert run_cli("train", *tiny_args(corpus, again, "--select", "ir", "--seed", "3")).returncode == 0
    assert (again / "selection.jsonl").read_text() == (out / "selection.jsonl").read_text()
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (out, again))
    assert first["test"]["macro_f1"] == second["test"]["macro_f1"]
    assert first["train_loss"] == second["train_loss"]


def test_yaml_config_and_flags(corpus, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"model: tiny\ntrain: {corpus['train']}\ndev: {corpus['dev']}\nmax_steps: 2\n"
                      "batch_size: 4\nmax_length: 48\nselect: fixed:0-1\nlora_r: 2\nseed: 5\n")
    out = tmp_path / "yaml-run"
    result = run_cli("train", "--config", config, "--max-steps", "3", "--out", out)
    assert result.returncode == 0, result.stderr
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["training"]["max_steps"] == 3 and resolved["adapter"]["r"] == 2
    assert resolved["selection"]["select"] == "fixed:0-1"
    assert all(json.loads(l)["active"] == [0, 1] for l in (out / "selection.jsonl").read_text().splitlines())


def write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", ["missing", "malformed", "field", "label", "unseen", "empty", "yaml", "yaml-type",
                                  "model", "adapter", "strategy", "layers", "output"])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, corpus, tmp_path):
    out = tmp_path / "run"
    good = tiny_args(corpus, out)
    bad_json = write(tmp_path / "bad.jsonl", '{"before_sent": "a", "after_sent": "b", "labels": "style"}\n{oops\n')
    no_field = write(tmp_path / "nofield.jsonl", '{"before_sent": "a", "labels": "style"}\n')
    new_label = write(tmp_path / "dev.jsonl", '{"before_sent": "a", "after_sent": "b", "labels": "humour"}\n')
    empty = write(tmp_path / "empty.jsonl", '{"before_sent": "", "after_sent": " ", "labels": "style"}\n')
    tab_train = write(tmp_path / "ttrain.jsonl", '{"before": "x", "after": "y", "label": "a"}\n'
                      '{"before": "x", "after": "z", "label": "b"}\n' * 3)
    tab_dev = write(tmp_path / "tdev.jsonl", '{"before": "x", "after": "y", "label": "a"}\n'
                    '{"before": "x", "after": "z", "label": "c"}\n')
    yaml_bad = write(tmp_path / "c.yaml", "lerning_rate: 0.1\n")
    yaml_type = write(tmp_path / "t.yaml", "max_steps: many\n")
    blocker = write(tmp_path / "file", "x")
    cases = {
        "missing": (["--train", tmp_path / "nope.jsonl"], "nope.jsonl: no such file"),
        "malformed": (["--train", bad_json], "bad.jsonl:2"),
        "field": (["--train", no_field], "nofield.jsonl:1: field 'after_sent'"),
        "label": (["--dev", new_label], "dev.jsonl:1: field 'labels': unknown intent 'humour'"),
        "unseen": (["--train", tab_train, "--dev", tab_dev, "--test", tab_dev],
                   "tdev.jsonl:2: field 'intents': label 'c' never occurs in the training data"),
        "empty": (["--train", empty], "empty.jsonl:1: field 'before_sent'"),
        "yaml": (["--config", yaml_bad], "c.yaml: field 'lerning_rate': unknown config key: did you mean 'learning_rate'"),
        "yaml-type": (["--config", yaml_type], "t.yaml: field 'max_steps': expected int"),
        "model": (["--model", "nonsense"], "unknown model 'nonsense'"),
        "adapter": (["--adapter", "lorra"], "did you mean 'lora'"),
        "strategy": (["--select", "ri"], "unknown selection strategy 'ri'"),
        "layers": (["--select", "fixed:40"], "outside the model's layers 0-7"),
        "output": (["--out", blocker / "run"], "field 'out'"),
    }
    extra, message = cases[case]
    result = run_cli("train", *good, *map(str, extra))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert message in lines[0]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]


def test_existing_output_is_kept_unless_overwrite(trained, corpus):
    out, _ = trained
    before = (out / "metrics.json").read_text()
    result = run_cli("train", *tiny_args(corpus, out))
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert (out / "metrics.json").read_text() == before


def test_predict_rejects_a_non_run(tmp_path, corpus):
    result = run_cli("predict", "--run", tmp_path, "--input", corpus["test"], "--out", tmp_path / "p.jsonl")
    assert result.returncode == 2 and "not a revtune run directory" in result.stderr
