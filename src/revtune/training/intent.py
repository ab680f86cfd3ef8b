"""Intent classification: a sequence-classification head over a causal LM (IR-Tuning's task)."""
from __future__ import annotations

from functools import partial

import numpy as np
import torch

from ..metrics.classification import classification_metrics, tune_threshold
from ..prompts import intent_prompt
from .data import PadCollator, Splits, encode_intents


def batched_logits(model, dataset, collator, batch_size: int, device) -> np.ndarray:
    """Logits of every example, in order, with no gradients and the model in eval mode."""
    was_training = model.training
    model.eval()
    chunks = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            batch.pop("labels", None)
            batch = {k: v.to(device) for k, v in batch.items()}
            chunks.append(model(**batch).logits.float().cpu())
    model.train(was_training)
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, 0))


class IntentTask:
    """Builds the datasets, scores a split, and writes nothing beyond metrics."""

    name = "intent"
    model_task = "intent"
    headline = "macro_f1"

    def __init__(self, config, splits: Splits):
        self.config = config
        self.splits = splits
        self.threshold = 0.5 if config.training.threshold == "tune" else float(config.training.threshold)

    def prepare(self, tokenizer, device) -> None:
        self.device = device
        prompt = partial(intent_prompt, labels=self.splits.labels, style=self.config.data.prompt)
        encode = partial(encode_intents, labels=self.splits.labels, multi_label=self.splits.multi_label,
                         tokenizer=tokenizer, prompt_fn=prompt, max_length=self.config.data.max_length)
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
        logits = batched_logits(model, self.datasets[split], self.collator, self.config.training.batch_size,
                                self.device)
        return classification_metrics(self._labels(split), logits, self.splits.labels,
                                      multi_label=self.splits.multi_label, threshold=self.threshold)

    def tune(self, model) -> dict:
        """Pick the multi-label threshold on dev when asked; returns what was decided."""
        if not (self.splits.multi_label and self.config.training.threshold == "tune" and len(self.datasets["dev"])):
            return {"threshold": self.threshold} if self.splits.multi_label else {}
        logits = batched_logits(model, self.datasets["dev"], self.collator, self.config.training.batch_size,
                                self.device)
        self.threshold = float(tune_threshold(self._labels("dev"), logits))
        return {"threshold": self.threshold}

    def finish(self, model, folder) -> None:
        pass
