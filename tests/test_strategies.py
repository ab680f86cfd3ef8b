"""Every foundation strategy with every adapter on a tiny model, in-process, plus the task variants."""
import json

import pytest
import torch

from revtune.config import RunConfig
from revtune.training.run import train_run


def config(corpus, out, **changes):
    settings = dict(model="tiny", train=str(corpus["train"]), dev=str(corpus["dev"]), test=str(corpus["test"]),
                    max_steps=3, batch_size=4, max_length=48, lora_r=2, lora_alpha=4, bottleneck_dim=8,
                    out=str(out), seed=2)
    settings.update(changes)
    return RunConfig.from_values(settings)


def selections(out):
    return [json.loads(line) for line in (out / "selection.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("adapter", ["lora", "dora", "bottleneck"])
@pytest.mark.parametrize("select", ["ir", "weight", "cosine", "all", "fixed:2-4,-1"])
def test_strategy_and_adapter(select, adapter, corpus, tmp_path):
    result = train_run(config(corpus, tmp_path / "run", select=select, adapter=adapter), quiet=True)
    records = selections(result.path)
    assert len(records) == 3
    n = result.metrics["n_layers"]
    for record in records:
        assert record["active"] and set(record["active"]) <= set(range(n))
    if select == "all":
        assert all(r["active"] == list(range(n)) for r in records)
    if select.startswith("fixed"):
        assert all(r["active"] == [2, 3, 4, 7] for r in records)
    if select == "weight":  # static scores: the same set every step
        assert len({tuple(r["active"]) for r in records}) == 1 and records[0]["scores"][0] != 1000
    if select == "cosine":  # re-scored every step from the forward, no sentinel after step 0
        assert all(abs(s) <= 1 for s in records[1]["scores"])
    assert (result.path / "adapter" / "revtune_adapter.json").exists()


def test_l2_aggregation_and_two_splits_keep_fewer_layers(corpus, tmp_path):
    one = train_run(config(corpus, tmp_path / "one", max_steps=4), quiet=True)
    two = train_run(config(corpus, tmp_path / "two", max_steps=4, split_num=2, ir_aggregation="l2"), quiet=True)
    assert two.metrics["mean_active_layers"] < one.metrics["mean_active_layers"]


def test_gradient_checkpointing_keeps_gradients_of_active_layers(corpus, tmp_path):
    result = train_run(config(corpus, tmp_path / "gc", gradient_checkpointing=True), quiet=True)
    first, second = selections(result.path)[:2]
    for layer in first["active"]:
        assert 0 < second["scores"][layer] < 1000  # a zero gradient would score 0


def test_bfloat16_runs_on_cpu(corpus, tmp_path):
    result = train_run(config(corpus, tmp_path / "bf16", dtype="bfloat16", select="fixed:top2"), quiet=True)
    assert result.metrics["steps"] == 3 and "macro_f1" in result.metrics["test"]


def test_multi_label_documents_train_with_bce_and_tuned_threshold(tmp_path):
    docs = tmp_path / "docs.jsonl"
    intents = [["clarity"], ["fluency", "style"], ["coherence"], ["clarity", "meaning-changed"]]
    with open(docs, "w") as handle:
        for i in range(24):
            chosen = intents[i % 4]
            edits = [{"type": "R", "before": "a", "after": "b", "start_char_pos": 0, "end_char_pos": 1,
                      "major_intent": name, "raw_intents": [name]} for name in chosen]
            handle.write(json.dumps({"doc_id": str(i), "before_revision": f"doc {i} text {' '.join(chosen)}",
                                     "after_revision": f"doc {i} new text", "edit_actions": edits}) + "\n")
    run = RunConfig.from_values(dict(model="tiny", train=str(docs), test=str(docs), max_steps=3, batch_size=4,
                                     max_length=48, lora_r=2, lora_alpha=4, threshold="tune",
                                     out=str(tmp_path / "multi"), seed=1))
    result = train_run(run, quiet=True)
    saved = json.loads((result.path / "metrics.json").read_text())
    assert saved["multi_label"] is True
    assert 0 < result.metrics["decision"]["threshold"] < 1
    assert saved["decision"]["threshold"] == result.metrics["decision"]["threshold"]


def test_frozen_head_trains_nothing_outside_the_blocks(corpus, tmp_path):
    result = train_run(config(corpus, tmp_path / "frozen", freeze_head=True), quiet=True)
    table = (result.path / "trainable.txt").read_text()
    assert "score" not in table and "0 outside the blocks" in table


def test_pair_prompt_and_upsampling(corpus, tmp_path):
    result = train_run(config(corpus, tmp_path / "pair", prompt="pair", upsample={"style": 3}), quiet=True)
    assert result.metrics["steps"] == 3
