"""Hand-off: the saved adapter is a first-class peft artefact, `revtune export` writes a transformers model
(merged) or a peft adapter with a model card, and `revtune.load_run` predicts and revises from Python."""
import json
import re
from pathlib import Path

import pytest
import torch
from conftest import run_cli, tiny_args

import revtune
from revtune.models import cache_dir
from revtune.rundir import read_run

README = Path(__file__).resolve().parents[1] / "README.md"
TEXTS = ["Their is a error in this sentense.", "He go home yesterday."]


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("handoff")
    intent = run_cli("train", *tiny_args(corpus, folder / "runs" / "ir", "--select", "fixed:0-2"))
    assert intent.returncode == 0, intent.stderr
    revise = run_cli("train", *tiny_args(corpus, folder / "runs" / "gen", "--task", "revise", "--select", "all",
                                         "--dev-generate", "2", "--max-length", "160", "--new-tokens-floor", "4",
                                         "--new-tokens-factor", "0.5"))
    assert revise.returncode == 0, revise.stderr
    return folder


def gold_and_predict(run: Path, corpus, tmp_path) -> list[list[str]]:
    out = tmp_path / "pred.jsonl"
    result = run_cli("predict", "--run", run, "--input", corpus["test"], "--out", out)
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["intents"] for line in out.read_text().splitlines()]


def test_the_adapter_is_a_first_class_peft_artefact(runs):
    from peft import AutoPeftModelForSequenceClassification

    adapter = runs / "runs" / "ir" / "adapter"
    saved = json.loads((adapter / "adapter_config.json").read_text())
    assert saved["task_type"] == "SEQ_CLS"
    assert saved["layers_to_transform"] == [0, 1, 2] and saved["layers_pattern"] == "layers"  # fixed:0-2 only
    assert str(cache_dir()) not in saved["base_model_name_or_path"]
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as handle:
        layers = {int(m.group(1)) for key in handle.keys() if (m := re.search(r"layers\.(\d+)\.", key))}
    assert layers == {0, 1, 2}  # no zeros saved for the layers that never trained
    task = json.loads((adapter / "task.json").read_text())
    assert task["num_labels"] == 5 and task["labels"][0] == "clarity" and "{before}" in task["prompt_template"]
    model = AutoPeftModelForSequenceClassification.from_pretrained(str(adapter))  # no extra argument
    assert model.config.id2label[0] == "clarity" and model.base_model.model.score.modules_to_save
    card = (adapter / "README.md").read_text()
    for fact in ("Base model", "Data", "Strategy", "fixed:0-2", "Layers trained", "0, 1, 2", "macro_f1",
                 "revtune train --model tiny"):
        assert fact in card, fact


def test_merged_export_predicts_what_revtune_predict_predicts(runs, corpus, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "merged"
    result = run_cli("export", runs / "runs" / "ir", "--merge", "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("revtune export: merged transformers model ->")
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    model = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert model.config.label2id["fluency"] == 1 and not any("lora" in n for n, _ in model.named_parameters())
    template = json.loads((out / "task.json").read_text())["prompt_template"]
    rows = [json.loads(line) for line in corpus["test"].read_text().splitlines()]
    prompts = [template.replace("{before}", r["before_sent"]).replace("{after}", r["after_sent"]) for r in rows]
    with torch.no_grad():
        logits = model(**tokenizer(prompts, padding=True, return_tensors="pt")).logits
    exported = [[model.config.id2label[int(i)]] for i in logits.argmax(-1)]
    assert exported == gold_and_predict(runs / "runs" / "ir", corpus, tmp_path)


def test_adapter_export_loads_with_peft(runs, tmp_path):
    from peft import PeftModel

    from revtune.models import load_model

    out = tmp_path / "adapter"
    result = run_cli("export", runs / "runs" / "ir", "--out", out)
    assert result.returncode == 0, result.stderr
    _, config, learned = read_run(runs / "runs" / "ir")  # labels: what the run learned (metrics.json)
    base = load_model("tiny", "intent", learned["labels"], seed=config.training.seed).model
    model = PeftModel.from_pretrained(base, str(out))
    assert sum("lora_A" in n for n, _ in model.named_parameters()) == 3 * 5  # 3 layers x 5 target modules
    assert "base_model:" in (out / "README.md").read_text()


def test_merged_generator_revises_as_the_run_does(runs, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from revtune.training.revise import revise_texts

    out = tmp_path / "gen"
    assert run_cli("export", runs / "runs" / "gen", "--merge", "--out", out).returncode == 0
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    run = revtune.load_run(runs / "runs" / "gen")
    _, config, _ = read_run(runs / "runs" / "gen")
    merged = revise_texts(model, tokenizer, TEXTS, [["fluency"]] * 2, config.decoding, config.training.batch_size,
                          config.training.seed, config.data.max_length)
    assert merged == run.revise(TEXTS, intent="fluency")


def test_export_refuses_what_it_cannot_write(runs, tmp_path):
    result = run_cli("export", tmp_path / "nothing", "--out", tmp_path / "x")
    assert result.returncode == 2 and "run directory not found" in result.stderr
    result = run_cli("export", runs / "runs" / "ir", "--out", runs / "runs" / "gen")
    assert result.returncode == 2 and "--overwrite" in result.stderr


def test_export_overwrites_its_own_output_only(runs, tmp_path):
    """An export is a transformers directory, not a run: its record of the files it wrote lets
    --overwrite replace it, and a file someone added since makes it foreign again."""
    out = tmp_path / "adapter-export"
    for _ in range(2):
        result = run_cli("export", runs / "runs" / "ir", "--out", out, "--overwrite")
        assert result.returncode == 0, result.stderr
    (out / "notes.txt").write_text("mine")
    result = run_cli("export", runs / "runs" / "ir", "--out", out, "--overwrite")
    assert result.returncode == 2 and "not a revtune output" in result.stderr
    assert (out / "notes.txt").read_text() == "mine"


def test_load_run_predicts_like_the_cli(runs, corpus, tmp_path):
    run = revtune.load_run(runs / "runs" / "ir")
    rows = [json.loads(line) for line in corpus["test"].read_text().splitlines()]
    predicted = run.predict([(r["before_sent"], r["after_sent"]) for r in rows])
    assert [p["intents"] for p in predicted] == gold_and_predict(runs / "runs" / "ir", corpus, tmp_path)
    assert run.labels[0] == "clarity"
    with pytest.raises(revtune.RevtuneError, match="no revise model"):
        run.revise(["x"], intent="fluency")


def test_the_readme_python_examples_run(runs, monkeypatch):
    """Every ```python block of the README's "Python API" section, run where runs/ir and runs/gen exist."""
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks
    monkeypatch.chdir(runs)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
