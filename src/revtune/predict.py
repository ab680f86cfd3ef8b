"""Use a finished run: rebuild its model from the run directory and classify new pairs. Never trains."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from .adapters import load_adapter
from .corpora.record import Revision
from .corpora.tabular import read_rows, text
from .errors import RevtuneError
from .models import load_model, prepare_tokenizer
from .prompts import intent_prompt
from .rundir import read_run
from .runtime import resolve_device, resolve_dtype

PAIR_FIELDS = (("before", "after"), ("before_sent", "after_sent"), ("old_sentences", "new_sentences"),
               ("before_revision", "after_revision"))


def load_run_model(run: str | Path, expected_task: str, device: str = "auto"):
    """(model, tokenizer, config, learned) of a run, with its adapter and head loaded, in eval mode."""
    from transformers import AutoTokenizer

    run, config, learned = read_run(run)
    task = config.data.task
    if task != expected_task:
        raise RevtuneError(f"this run was trained for task '{task}', not '{expected_task}'", path=run, field="task")
    loaded = load_model(config.model.name, task, learned["labels"], learned["multi_label"],
                        resolve_dtype(config.model.dtype), config.training.seed, config.model.tiny_layers)
    tokenizer = AutoTokenizer.from_pretrained(run / "tokenizer")
    prepare_tokenizer(tokenizer, loaded.model)
    model = load_adapter(loaded.model, run / "adapter", task)
    return model.to(resolve_device(device)), tokenizer, config, learned


def read_pairs(path: str | Path) -> list[Revision]:
    """Pairs to classify: before/after (or an IteraTeR/ArgRevision spelling); intents optional."""
    rows = read_rows(path)
    first = rows[0][1]
    names = next((pair for pair in PAIR_FIELDS if pair[0] in first), PAIR_FIELDS[0])
    records = []
    for row in rows:
        before, after = text(row, names[0], str(path)), text(row, names[1], str(path))
        if not before and not after:
            raise RevtuneError(f"empty, and so is '{names[1]}'", path=path, line=row[0], field=names[0])
        records.append(Revision(before, after, (), source=f"{path}:{row[0]}"))
    return records


def predict_intents(model, tokenizer, config, learned: dict, records: list[Revision],
                    batch_size: int = 16) -> list[dict]:
    """Intents of ``records`` as the run (its ``config`` and ``learned`` labels and threshold) decides."""
    labels, multi, threshold = learned["labels"], learned["multi_label"], learned["threshold"]
    prompt = partial(intent_prompt, labels=labels, style=config.data.prompt)
    device = next(model.parameters()).device
    rows = []
    with torch.no_grad():
        for start in range(0, len(records), batch_size):
            chunk = records[start:start + batch_size]
            batch = tokenizer([prompt(r) for r in chunk], padding=True, truncation=True,
                              max_length=config.data.max_length, return_tensors="pt").to(device)
            logits = model(**batch).logits.float().cpu().numpy()
            for record, row_logits in zip(chunk, logits):
                rows.append(_prediction(record, row_logits, labels, multi, threshold))
    return rows


def _prediction(record: Revision, logits: np.ndarray, labels, multi: bool, threshold: float) -> dict:
    if multi:
        probs = 1 / (1 + np.exp(-logits))
        chosen = [labels[i] for i in np.flatnonzero(probs >= threshold)]
    else:
        probs = np.exp(logits - logits.max())
        probs = probs / probs.sum()
        chosen = [labels[int(np.argmax(probs))]]
    return {"before": record.before, "after": record.after, "intents": chosen,
            "probabilities": {name: round(float(p), 6) for name, p in zip(labels, probs)}}
