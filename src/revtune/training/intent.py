"""Intent classification: a sequence-classification head over a causal LM (IR-Tuning's task)."""
from __future__ import annotations

from functools import partial

import numpy as np
import torch

from ..distributed import gather_in_order, shard_of
from ..metrics.classification import classification_metrics, tune_threshold
from ..prompts import intent_prompt
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


class IntentTask:
    """Builds the datasets, scores a split, and writes nothing beyond metrics."""

    name = "intent"
    model_task = "intent"
    headline = "macro_f1"
    shards_evaluation = True  # batched_logits splits the examples over the ranks

    def __init__(self, config, splits: Splits):
        self.config = config
        self.splits = splits
        self.threshold = 0.5 if config.threshold == "tune" else float(config.threshold)

    def prepare(self, tokenizer, device) -> None:
        self.device = device
        prompt = partial(intent_prompt, labels=self.splits.labels, style=self.config.prompt)
        encode = partial(encode_intents, labels=self.splits.labels, multi_label=self.splits.multi_label,
                         tokenizer=tokenizer, prompt_fn=prompt, max_length=self.config.max_length)
        self.datasets = {name: encode(getattr(self.splits, name)) for name in ("train", "dev", "test")}
        self.collator = PadCollator(tokenizer.pad_token_id, "left")

    @property
    def train_dataset(self):
        return self.datasets["train"]

    def _labels(self, split: str) -> np.ndarray:
        return np.array([row["labels"] for row in self.datasets[split].rows])

    def evaluate(self, model, split: str) -> dict:
        if not len(self.datasets[split]):
            return {}
        logits = batched_logits(model, self.datasets[split], self.collator, self.config.batch_size,
                                self.device)
        return classification_metrics(self._labels(split), logits, self.splits.labels,
                                      multi_label=self.splits.multi_label, threshold=self.threshold)

    def tune(self, model) -> dict:
        """Pick the multi-label threshold on dev when asked; returns what was decided."""
        if not (self.splits.multi_label and self.config.threshold == "tune" and len(self.datasets["dev"])):
            return {"threshold": self.threshold} if self.splits.multi_label else {}
        logits = batched_logits(model, self.datasets["dev"], self.collator, self.config.batch_size,
                                self.device)
        self.threshold = float(tune_threshold(self._labels("dev"), logits))
        return {"threshold": self.threshold}

    def finish(self, model, folder) -> None:
        pass
