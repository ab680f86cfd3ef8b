"""Revision generation: causal-LM fine-tuning on the instruction prompt (Intention-Tuning's step 2).

An example is ``revise_prompt(before, intents)`` followed by ``" " + after`` and EOS; the loss covers the
response and EOS only (prompt labels are -100), with no packing. Training batches are right-padded (the
labels are padded with -100); generation batches are left-padded so every row ends at its prompt.

Dev selection on CPU: every evaluation computes the dev loss (one forward per batch) and, unless
``dev_generate`` is 0, SARI on the first ``dev_generate`` dev items. The best-dev metric (``headline``)
is that capped-dev ``sari``, or ``neg_loss`` (minus the dev loss, so higher is better) when generation
is off. The test split is always generated in full.
"""
from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import asdict

import torch

from ..config import DecodingConfig
from ..errors import RevtuneError
from ..prompts import revise_prompt
from ..rundir import write_jsonl
from .data import EncodedDataset, PadCollator, Splits

IGNORE = -100
STOP = "\n###"  # an under-trained model may start a new prompt section after its answer


def generate_kwargs(decoding: DecodingConfig) -> dict:
    """Explicit settings, so a checkpoint's own generation defaults never change the decoding."""
    if decoding.mode == "sample":
        return dict(do_sample=True, num_beams=1, temperature=decoding.temperature, top_p=decoding.top_p)
    return dict(do_sample=False, num_beams=decoding.num_beams if decoding.mode == "beam" else 1)


def token_budget(decoding: DecodingConfig, n_source_tokens: int) -> int:
    """Max new tokens of one item: ``factor`` x its source tokens, at least ``floor``."""
    return max(decoding.floor, math.ceil(decoding.factor * n_source_tokens))


def encode_example(tokenizer, prompt: str, response: str, max_length: int) -> dict | None:
    """``prompt + " " + response + EOS`` with the prompt's labels at -100.

    The prompt is tokenised on its own (with the tokenizer's special tokens), exactly as at generation
    time, so the boundary between prompt and response is exact. A response that does not fit loses its
    tail (and EOS); a prompt that leaves no room for one response token gives ``None`` (dropped).
    """
    prompt_ids = tokenizer(prompt).input_ids
    if len(prompt_ids) >= max_length:
        return None
    response_ids = tokenizer(" " + response, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    response_ids = response_ids[:max_length - len(prompt_ids)]
    ids = prompt_ids + response_ids
    return {"input_ids": ids, "attention_mask": [1] * len(ids),
            "labels": [IGNORE] * len(prompt_ids) + response_ids}


def encode_revisions(records, tokenizer, max_length: int) -> tuple[EncodedDataset, int]:
    """The dataset and how many records were dropped for a prompt longer than ``max_length``."""
    rows = [encode_example(tokenizer, revise_prompt(r.before, r.intents), r.after, max_length)
            for r in records]
    kept = [row for row in rows if row is not None]
    return EncodedDataset(kept), len(rows) - len(kept)


def clean_output(text: str) -> str:
    return text.split(STOP, 1)[0].strip()


def _decode(tokenizer, ids: list[int], budget: int) -> str:
    ids = ids[:budget]
    if tokenizer.eos_token_id in ids:
        ids = ids[:ids.index(tokenizer.eos_token_id)]
    return clean_output(tokenizer.decode(ids, skip_special_tokens=True))


def generate(model, tokenizer, prompts: list[list[int]], budgets: list[int], decoding: DecodingConfig,
             batch_size: int = 16, seed: int = 0) -> list[str]:
    """Decoded responses in input order. Batches are formed by prompt length (less padding); each item
    is cut to its own token budget, so its text does not depend on what it was batched with; ``seed``
    seeds sampling."""
    device = next(model.parameters()).device
    collator = PadCollator(tokenizer.pad_token_id, "left")
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collator([{"input_ids": prompts[i]} for i in chunk]).items()}
            new = model.generate(**batch, max_new_tokens=max(budgets[i] for i in chunk),
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                 **generate_kwargs(decoding))
            for row, index in zip(new[:, batch["input_ids"].shape[1]:].tolist(), chunk):
                outputs[index] = _decode(tokenizer, row, budgets[index])
    model.train(was_training)
    return outputs


CHARS_PER_TOKEN_BOUND = 64  # no tokenizer's token is longer: the source is cut to this before tokenising


def fit_source(tokenizer, source: str, intents, max_length: int) -> tuple[list[int], int, bool]:
    """(prompt ids, source tokens, whether the source was cut): the prompt holds at most ``max_length``
    tokens, the source losing its tail. Without the cut, a 5 MB line took 6.4 GB and minutes."""
    room = max(1, max_length - len(tokenizer(revise_prompt("", intents)).input_ids))
    head = source[:room * CHARS_PER_TOKEN_BOUND]
    ids = tokenizer(head, add_special_tokens=False).input_ids
    cut = len(ids) > room or len(head) < len(source)
    if cut:
        head = tokenizer.decode(ids[:room])
        ids = ids[:room]
    prompt = tokenizer(revise_prompt(head, intents)).input_ids[:max_length]
    return prompt, len(ids), cut


def revise_texts(model, tokenizer, sources: list[str], intents: list, decoding: DecodingConfig,
                 batch_size: int = 16, seed: int = 0, max_length: int = 256) -> list[str]:
    """Revise each source for its intents (a list of names per source); sources too long for the
    run's ``max_length`` (prompt tokens) are cut to fit, with a warning that says how many."""
    fitted = [fit_source(tokenizer, s, i, max_length) for s, i in zip(sources, intents)]
    cut = sum(1 for _, _, was_cut in fitted if was_cut)
    if cut:
        warnings.warn(f"revtune: {cut} of {len(sources)} sources cut to fit max_length "
                      f"{max_length} tokens", stacklevel=2)
    prompts = [prompt for prompt, _, _ in fitted]
    budgets = [token_budget(decoding, n_tokens) for _, n_tokens, _ in fitted]
    return generate(model, tokenizer, prompts, budgets, decoding, batch_size, seed)


def _fingerprint(model) -> str:
    """Identifies the current weights, so a split generated twice with the same weights is not re-run."""
    sums = torch.stack([p.detach().float().sum() for p in model.parameters()])
    return hashlib.sha1(sums.cpu().numpy().tobytes()).hexdigest()


class ReviseTask:
    """Same interface as ``IntentTask``: datasets, scores per split, predictions file."""

    name = "revise"
    model_task = "revise"
    compute_loss = None  # the causal LM's own loss on the response tokens

    def __init__(self, config, splits: Splits):
        self.config = config
        self.splits = splits
        self.decoding = config.decoding
        self.headline = "sari" if config.training.dev_generate > 0 else "neg_loss"
        self._generated: dict[tuple[str, str], list[str]] = {}

    def prepare(self, tokenizer, device) -> None:
        self.tokenizer, self.device = tokenizer, device
        encoded = {name: encode_revisions(getattr(self.splits, name), tokenizer, self.config.data.max_length)
                   for name in ("train", "dev", "test")}
        self.datasets = {name: dataset for name, (dataset, _) in encoded.items()}
        self.dropped = {name: dropped for name, (_, dropped) in encoded.items()}
        if not len(self.datasets["train"]):
            raise RevtuneError(f"every training prompt is longer than max_length {self.config.data.max_length}",
                               field="max_length")
        if any(self.dropped.values()):
            warnings.warn(f"revtune: examples dropped, prompt longer than max_length {self.config.data.max_length}: "
                          + ", ".join(f"{n} {split}" for split, n in self.dropped.items() if n), stacklevel=2)
        self.collator = PadCollator(tokenizer.pad_token_id, "right", label_pad=IGNORE)

    @property
    def train_dataset(self):
        return self.datasets["train"]

    def loss(self, model, split: str) -> float:
        """Mean loss per response token over the split (no gradients, eval mode)."""
        dataset, total, tokens = self.datasets[split], 0.0, 0
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for start in range(0, len(dataset), self.config.training.batch_size):
                batch = self.collator([dataset[i] for i in range(start, min(start + self.config.training.batch_size,
                                                                              len(dataset)))])
                batch = {k: v.to(self.device) for k, v in batch.items()}
                count = int((batch["labels"][:, 1:] != IGNORE).sum())
                total += float(model(**batch).loss) * count
                tokens += count
        model.train(was_training)
        return total / max(1, tokens)

    def _records(self, split: str):
        records = getattr(self.splits, split)
        return records[:self.config.training.dev_generate] if split == "dev" else records

    def predictions(self, model, split: str) -> list[str]:
        key = (split, _fingerprint(model))
        if key not in self._generated:
            records = self._records(split)
            self._generated[key] = revise_texts(model, self.tokenizer, [r.before for r in records],
                                                [r.intents for r in records], self.decoding,
                                                self.config.training.batch_size, self.config.training.seed,
                                                self.config.data.max_length)
        return self._generated[key]

    def evaluate(self, model, split: str) -> dict:
        from ..metrics.generation import score_generation

        if not getattr(self.splits, split):
            return {}
        scores = {}
        if len(self.datasets[split]):
            scores["loss"] = self.loss(model, split)
            scores["neg_loss"] = -scores["loss"]
        records = self._records(split)
        if records:
            scores.update(score_generation([r.before for r in records], self.predictions(model, split),
                                           [[r.after] for r in records]))
        return scores

    def tune(self, model) -> dict:
        """Nothing is tuned on dev; records the decoding and any example dropped for length."""
        decoding = {**asdict(self.decoding), "batch_size": self.config.training.batch_size,
                    "seed": self.config.training.seed}
        return {"decoding": decoding, "dropped_for_length": self.dropped}

    def finish(self, model, folder) -> None:
        """``predictions.jsonl``: the test split generated by the final weights (what ``test`` scores)."""
        records = self.splits.test
        if not records:
            return
        rows = [{"source": r.before, "prediction": p, "references": [r.after], "intents": list(r.intents)}
                for r, p in zip(records, self.predictions(model, "test"))]
        write_jsonl(folder / "predictions.jsonl", rows)
