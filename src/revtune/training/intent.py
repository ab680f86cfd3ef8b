"""Intent classification: a sequence-classification head over a causal LM (IR-Tuning's task)."""
from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from ..distributed import gather_in_order, shard_of
from ..metrics.classification import classification_metrics, predict_classes, tune_threshold
from ..prompts import intent_prompt
from ..rundir import write_jsonl
from .data import PadCollator, Splits, encode_intents


def batched_logits(model, dataset, collator, batch_size: int, device) -> np.ndarray:
    """Logits of every example, in order, with no gradients and the model in eval mode.

    Under torchrun each rank scores its own shard (``rank::world``, padded so every rank runs the same
    number of forwards, as FSDP needs) and the shards are gathered back in order on every rank: the split
    is scored once, not once per rank.
    """
    mine, length = shard_of(len(dataset))
    padded = mine + [mine[-1] if mine else 0] * (length - len(mine))
    was_training = model.training
    model.eval()
    chunks = []
    with torch.no_grad():
        for start in range(0, len(padded), batch_size):
            batch = collator([dataset[i] for i in padded[start:start + batch_size]])
            batch.pop("labels", None)
            batch = {k: v.to(device) for k, v in batch.items()}
            chunks.append(model(**batch).logits.float().cpu())
    model.train(was_training)
    local = torch.cat(chunks).numpy()[:len(mine)] if chunks else np.zeros((0, 0))
    return gather_in_order(local, len(dataset))


def class_weights(rows: list[dict], n_classes: int, multi_label: bool) -> torch.Tensor:
    """Loss weights from the train targets: ``n / (k * n_c)`` per class (scikit-learn's "balanced"), or for
    multi-label BCE the ``pos_weight`` negatives/positives of each label."""
    if multi_label:
        targets = np.array([row["labels"] for row in rows], dtype=np.float64)
        positives = targets.sum(axis=0)
        return torch.tensor((len(targets) - positives) / np.maximum(positives, 1), dtype=torch.float32)
    counts = np.bincount([row["labels"] for row in rows], minlength=n_classes)
    return torch.tensor(len(rows) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32)


class WeightedIntentLoss:
    """The Trainer's ``compute_loss_func``: cross-entropy with class weights (single-label) or BCE with
    ``pos_weight`` (multi-label), a weighted mean per micro-batch.

    With gradient accumulation the Trainer leaves the scaling to this function, so each micro-batch's
    mean counts by its share of the accumulated targets (``num_items_in_batch``).
    """

    def __init__(self, weights: torch.Tensor, multi_label: bool):
        self.weights, self.multi_label = weights, multi_label

    def __call__(self, outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"]
        weights = self.weights.to(device=logits.device, dtype=logits.dtype)
        if self.multi_label:
            loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=weights)
        else:
            loss = F.cross_entropy(logits, labels, weight=weights)
        if num_items_in_batch is not None:
            loss = loss * (labels.numel() / num_items_in_batch)
        return loss


class IntentTask:
    """Builds the datasets, scores a split, and writes nothing beyond metrics."""

    name = "intent"
    model_task = "intent"
    headline = "macro_f1"
    shards_evaluation = True  # batched_logits splits the examples over the ranks

    def __init__(self, config, splits: Splits):
        self.config = config
        self.splits = splits
        self.threshold = 0.5 if config.training.threshold == "tune" else float(config.training.threshold)
        self.compute_loss = None  # the model's own loss unless class weights are asked for

    def prepare(self, tokenizer, device) -> None:
        self.device = device
        prompt = partial(intent_prompt, labels=self.splits.labels, style=self.config.data.prompt,
                         context=self.config.data.diff_context)
        encode = partial(encode_intents, labels=self.splits.labels, multi_label=self.splits.multi_label,
                         tokenizer=tokenizer, prompt_fn=prompt, max_length=self.config.data.max_length)
        self.datasets = {name: encode(getattr(self.splits, name)) for name in ("train", "dev", "test")}
        self.collator = PadCollator(tokenizer.pad_token_id, "left")
        if self.config.training.class_weight == "balanced":
            self.weights = class_weights(self.datasets["train"].rows, len(self.splits.labels),
                                         self.splits.multi_label)
            self.compute_loss = WeightedIntentLoss(self.weights, self.splits.multi_label)

    @property
    def train_dataset(self):
        return self.datasets["train"]

    def _labels(self, split: str) -> np.ndarray:
        return np.array([row["labels"] for row in self.datasets[split].rows])

    def evaluate(self, model, split: str) -> dict:
        if not len(self.datasets[split]):
            return {}
        logits = batched_logits(model, self.datasets[split], self.collator, self.config.training.batch_size,
                                self.device)
        return classification_metrics(self._labels(split), logits, self.splits.labels,
                                      multi_label=self.splits.multi_label, threshold=self.threshold)

    def tune(self, model) -> dict:
        """Pick the multi-label threshold on dev when asked; returns what was decided (with the class
        weights the loss used, if any)."""
        decided = {}
        if self.compute_loss is not None:
            decided["class_weights"] = dict(zip(self.splits.labels, self.weights.tolist()))
        if not (self.splits.multi_label and self.config.training.threshold == "tune" and len(self.datasets["dev"])):
            return {**decided, "threshold": self.threshold} if self.splits.multi_label else decided
        logits = batched_logits(model, self.datasets["dev"], self.collator, self.config.training.batch_size,
                                self.device)
        self.threshold = float(tune_threshold(self._labels("dev"), logits))
        return {**decided, "threshold": self.threshold}

    def finish(self, model, folder) -> None:
        """``predictions.jsonl``: the test split as the final weights classify it (what ``test`` scores)."""
        if len(self.datasets["test"]):
            logits = batched_logits(model, self.datasets["test"], self.collator, self.config.training.batch_size,
                                    self.device)
            write_intent_predictions(folder, self.splits.test, self.splits.labels, logits,
                                     self.splits.multi_label, self.threshold)


def write_intent_predictions(folder, records, labels, logits, multi_label: bool, threshold: float) -> None:
    """One line per test item: its text, ``gold`` and ``predicted`` intents (names) and the ``logits``,
    so intervals and paired tests (``compare``) can be computed item by item without the model."""
    predicted = predict_classes(logits, multi_label, threshold)
    names = list(labels)
    rows = []
    for record, guess, scores in zip(records, predicted, np.asarray(logits, dtype=np.float64)):
        chosen = [names[c] for c in np.flatnonzero(guess)] if multi_label else [names[int(guess)]]
        rows.append({"before": record.before, "after": record.after, "gold": list(record.intents),
                     "predicted": chosen, "logits": [round(float(v), 6) for v in scores]})
    write_jsonl(folder / "predictions.jsonl", rows)
