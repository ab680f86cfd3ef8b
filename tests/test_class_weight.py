"""``--class-weight balanced``: weights from the train split, and the loss the Trainer really uses."""
import json

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from revtune.config import RunConfig
from revtune.training.data import load_splits
from revtune.training.intent import WeightedIntentLoss, class_weights
from revtune.training.run import train_run


def test_single_label_weights_are_sklearns_balanced_weights():
    targets = [0] * 6 + [1] * 3 + [2] * 1
    weights = class_weights([{"labels": t} for t in targets], 3, multi_label=False)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.array(targets))
    assert torch.allclose(weights, torch.tensor(expected, dtype=torch.float32))
    assert weights.tolist() == pytest.approx([10 / 18, 10 / 9, 10 / 3])


def test_multi_label_pos_weight_is_negatives_over_positives():
    targets = [[1, 0, 1], [1, 0, 0], [0, 1, 0], [1, 0, 0]]
    weights = class_weights([{"labels": [float(v) for v in t]} for t in targets], 3, multi_label=True)
    assert weights.tolist() == pytest.approx([1 / 3, 3 / 1, 3 / 1])


def test_loss_equals_a_direct_weighted_cross_entropy():
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 3), torch.tensor([0, 2, 2, 1, 0])
    weights = torch.tensor([0.5, 2.0, 1.5])
    loss = WeightedIntentLoss(weights, multi_label=False)({"logits": logits}, labels)
    nll = -torch.log_softmax(logits, dim=-1)[torch.arange(5), labels]
    direct = (weights[labels] * nll).sum() / weights[labels].sum()
    assert loss.item() == pytest.approx(direct.item(), rel=1e-6)
    # With gradient accumulation over two such micro-batches each counts for half.
    halved = WeightedIntentLoss(weights, multi_label=False)({"logits": logits}, labels, num_items_in_batch=10)
    assert halved.item() == pytest.approx(direct.item() / 2, rel=1e-6)


def test_multi_label_loss_equals_a_direct_bce_with_pos_weight():
    torch.manual_seed(1)
    logits, labels = torch.randn(4, 3), torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]]).float()
    weights = torch.tensor([2.0, 0.5, 3.0])
    loss = WeightedIntentLoss(weights, multi_label=True)({"logits": logits}, labels)
    p = torch.sigmoid(logits)
    direct = -(weights * labels * torch.log(p) + (1 - labels) * torch.log(1 - p)).mean()
    assert loss.item() == pytest.approx(direct.item(), rel=1e-5)


def test_training_uses_the_weighted_loss(corpus, tmp_path):
    """Same seed, same first batch, same initial model: only the loss weights differ at step 1."""
    skewed = tmp_path / "skewed.jsonl"
    keep = {"clarity": 6, "fluency": 4, "coherence": 2, "style": 1, "meaning-changed": 6}  # 19 rows
    rows = [json.loads(line) for line in open(corpus["train"])]
    skewed.write_text("".join(json.dumps(r) + "\n" for r in rows
                              if int(r["before_sent"].rsplit(" ", 1)[1][:-1]) < keep[r["labels"]]))
    settings = dict(model="tiny", train=str(skewed), dev=str(corpus["dev"]), test=str(corpus["test"]),
                    max_steps=2, batch_size=8, max_length=48, lora_r=2, lora_alpha=4, seed=3, select="all")
    plain = train_run(RunConfig.from_values(dict(**settings, out=str(tmp_path / "none"))), quiet=True).metrics
    weighted = train_run(RunConfig.from_values(dict(**settings, class_weight="balanced", out=str(tmp_path / "bal"))),
                         quiet=True).metrics
    assert "class_weights" not in plain["decision"]
    style = weighted["decision"]["class_weights"]["style"]
    assert style == pytest.approx(19 / (5 * 1)) and weighted["decision"]["class_weights"]["clarity"] < 1
    assert plain["train_loss"][0]["loss"] != pytest.approx(weighted["train_loss"][0]["loss"], rel=1e-4)


def test_multi_label_documents_train_with_pos_weight_on_diff_windows(tmp_path):
    """Long documents, several intents each: the diff prompt windows the edits and BCE gets pos_weight."""
    docs = tmp_path / "docs.jsonl"
    intents = [["clarity"], ["fluency", "style"], ["coherence"], ["clarity", "meaning-changed"]]
    filler = " ".join(f"word{k}" for k in range(300))
    with open(docs, "w") as handle:
        for i in range(16):
            chosen = intents[i % 4]
            edits = [{"major_intent": name} for name in chosen]
            handle.write(json.dumps({"doc_id": str(i), "before_revision": f"{filler} old{i} {filler}",
                                     "after_revision": f"{filler} new{i} {filler}", "edit_actions": edits}) + "\n")
    run = RunConfig.from_values(dict(
        model="tiny", train=str(docs), test=str(docs), max_steps=2, batch_size=4, max_length=64,
        lora_r=2, lora_alpha=4, prompt="diff", diff_context=3, class_weight="balanced",
        out=str(tmp_path / "multi"), seed=1))
    result = train_run(run, quiet=True)
    weights = result.metrics["decision"]["class_weights"]
    train = load_splits(run.data, run.training.seed).train
    for label, weight in weights.items():
        positives = sum(label in r.intents for r in train)
        assert weight == pytest.approx((len(train) - positives) / positives)
    assert weights["clarity"] < weights["style"]
