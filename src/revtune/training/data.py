"""Corpus splits for a run, and the tokenised datasets the Trainer reads."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import corpora
from ..corpora.record import Revision
from ..errors import RevtuneError
from ..prompts import corpus_family, tokenize_inputs


@dataclass
class Splits:
    train: list[Revision]
    dev: list[Revision]
    test: list[Revision]
    labels: list[str]
    multi_label: bool


def load_splits(config, seed: int) -> Splits:
    """train/dev/test as the data part ``config`` names them; the shipped corpus when no train file is
    given; ``seed`` draws any split carved from train and the upsampling."""
    def read(path):
        return corpora.read_corpus(path, format=config.format, columns=config.columns or None,
                                   label_sep=config.label_sep)

    if config.train is None:
        train = corpora.load_sample("train")
        dev = read(config.dev) if config.dev else corpora.load_sample("dev")
        test = read(config.test) if config.test else corpora.load_sample("test")
    else:
        train = read(config.train)
        dev = read(config.dev) if config.dev else None
        test = read(config.test) if config.test else []
        if dev is None and not test and corpus_family(corpora.label_names(train)) == "argrevision":
            train, dev, test = corpora.split_three(train, seed)  # no public split (METHODS.md §3)
    if dev is None:
        train, dev = corpora.stratified_split(train, config.dev_fraction, seed)
    if not train:
        raise RevtuneError("the training corpus has no usable rows", path=config.train, field="train")
    labels = corpora.label_names(train)
    _check_known_labels(dev + test, labels)
    if config.upsample:
        train = corpora.upsample(train, config.upsample, seed)
    multi = corpora.is_multi_label(train + dev + test)
    return Splits(train, dev, test, labels, multi)


def seed_changes_splits(config) -> bool:
    """Whether ``load_splits`` draws with the seed (a dev or test split carved from train, upsampling):
    then even a model-free classifier sees different data at another seed."""
    return bool(config.upsample) or (config.train is not None and config.dev is None)


def _check_known_labels(records: list[Revision], labels: list[str]) -> None:
    known = set(labels)
    for record in records:
        for intent in record.intents:
            if intent not in known:
                path, _, line = (record.source or "").rpartition(":")
                raise RevtuneError(f"label '{intent}' never occurs in the training data (known: "
                                   f"{', '.join(labels)})", path=path or None,
                                   line=int(line) if line.isdigit() else None, field="intents")


class EncodedDataset(torch.utils.data.Dataset):
    """Pre-tokenised examples (lists of ids), padded per batch by the collator."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]


def encode_intents(records, labels, multi_label, tokenizer, prompt_fn, max_length) -> EncodedDataset:
    if not records:
        return EncodedDataset([])
    index = {name: i for i, name in enumerate(labels)}
    encoded = tokenize_inputs(tokenizer, [prompt_fn(record) for record in records], truncation=True,
                              max_length=max_length)
    rows = []
    for i, record in enumerate(records):
        if multi_label:
            target = [0.0] * len(labels)
            for intent in record.intents:
                target[index[intent]] = 1.0
        else:
            target = index[record.intents[0]]
        rows.append({"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
                     "labels": target})
    return EncodedDataset(rows)


class PadCollator:
    """Left-pads ids with the pad token (so the last position is the last real token)."""

    def __init__(self, pad_id: int, padding_side: str = "left", label_pad: int | None = None):
        self.pad_id = pad_id
        self.left = padding_side == "left"
        self.label_pad = label_pad

    def __call__(self, rows: list[dict]) -> dict:
        width = max(len(r["input_ids"]) for r in rows)
        batch = {"input_ids": [], "attention_mask": []}
        token_labels = self.label_pad is not None
        if token_labels:
            batch["labels"] = []
        for row in rows:
            pad = width - len(row["input_ids"])
            ids, mask = row["input_ids"], [1] * len(row["input_ids"])
            fill = ([self.pad_id] * pad, [0] * pad)
            batch["input_ids"].append(fill[0] + ids if self.left else ids + fill[0])
            batch["attention_mask"].append(fill[1] + mask if self.left else mask + fill[1])
            if token_labels:
                labels = [self.label_pad] * pad
                batch["labels"].append(labels + row["labels"] if self.left else row["labels"] + labels)
        out = {k: torch.tensor(v) for k, v in batch.items()}
        if not token_labels and "labels" in rows[0]:
            values = [r["labels"] for r in rows]
            out["labels"] = torch.tensor(values, dtype=torch.float32 if isinstance(values[0], list)
                                         else torch.long)
        return out
