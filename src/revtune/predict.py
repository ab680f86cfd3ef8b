"""Use a finished run: rebuild its model from the run directory and classify new pairs. Never trains."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from .adapters import load_adapter
from .corpora.record import Revision
from .corpora.tabular import read_rows, text
from .config_values import check_number
from .errors import RevtuneError, shown
from .models import load_model, prepare_tokenizer
from .prompts import intent_prompt, tokenize_inputs
from .rundir import read_run
from .runtime import resolve_device, resolve_dtype

PAIR_FIELDS = (("before", "after"), ("before_sent", "after_sent"), ("old_sentences", "new_sentences"),
               ("before_revision", "after_revision"))


def load_run_model(run: str | Path, expected_task: str, device: str = "auto"):
    """(model, tokenizer, config, learned) of a run, with its adapter and head loaded, in eval mode.

    A run directory may come from someone else, so everything in it is checked before use: the config's
    values as a run config would check them, what the run learned (labels, threshold), the model it
    names read from where it says and never downloaded (a hub id is taken from the local cache only), the
    layer count the run was trained with, the adapter kind, every adapter tensor present and of the right
    shape, the tokenizer's vocabulary within the model's. Any mismatch or corrupt file is one line naming
    the file.
    """
    run, config, learned = read_run(run)
    task = config.data.task
    if task != expected_task:
        raise RevtuneError(f"this run was trained for task '{task}', not '{expected_task}'", path=run, field="task")
    check_learned(learned, expected_task)
    loaded = load_model(config.model.name, task, learned["labels"], learned["multi_label"],
                        resolve_dtype(config.model.dtype), config.training.seed, config.model.tiny_layers,
                        local_only=True)
    _check_layers(loaded.model, learned["n_layers"], run)
    tokenizer = _run_tokenizer(run / "tokenizer", loaded.model)
    prepare_tokenizer(tokenizer, loaded.model, pad_token_id=config.model.pad_token_id)
    model = load_adapter(loaded.model, run / "adapter", task, expected_kind=config.adapter.kind)
    return model.to(resolve_device(device)), tokenizer, config, learned


def check_learned(learned: dict, task: str) -> None:
    """What a run learned (``metrics.json``, or an old flat ``config.json``) holds sensible values."""
    path, labels = learned["source"], learned["labels"]
    if task == "intent" and not (isinstance(labels, list) and labels and len(set(labels)) == len(labels)
                                 and all(isinstance(x, str) and x for x in labels)):
        raise RevtuneError(f"expected a list of distinct label names, got {shown(labels)}", path=path,
                           field="labels")
    if not isinstance(learned["multi_label"], bool):
        raise RevtuneError("expected true or false", path=path, field="multi_label")
    try:
        check_number("decision_threshold", learned["threshold"], 0, 1, False, False)
    except RevtuneError as e:
        raise RevtuneError(e.message, path=path, field=e.field) from None


def _check_layers(model, expected, run: Path) -> None:
    """The base model must have as many blocks as the run trained (``expected``, from metrics.json): a
    changed ``tiny_layers`` or model would otherwise load part of the adapter and predict with a
    different model."""
    from .models import decoder_blocks

    found = len(decoder_blocks(model))
    if expected is not None and expected != found:
        raise RevtuneError(f"the run was trained on {shown(expected)} layers but its model now has {found}: "
                           "config.json was changed", path=run / "config.json", field="model")


def _run_tokenizer(folder: Path, model):
    from transformers import AutoTokenizer

    if not folder.is_dir():
        raise RevtuneError("missing: the run directory is incomplete", path=folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as e:  # tokenizers raises plain Exception on a corrupt tokenizer.json
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RevtuneError(f"cannot load the tokenizer: {first}", path=folder) from None
    vocab = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > vocab:
        raise RevtuneError(f"the tokenizer has {len(tokenizer)} tokens but the model only {vocab} "
                           "embeddings", path=folder)
    return tokenizer


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
    prompt = partial(intent_prompt, labels=labels, style=config.data.prompt, context=config.data.diff_context)
    device = next(model.parameters()).device
    limit = config.data.max_length
    rows = []
    with torch.no_grad():
        for start in range(0, len(records), batch_size):
            chunk = records[start:start + batch_size]
            batch = tokenize_inputs(tokenizer, [prompt(_cut(r, limit)) for r in chunk], padding=True, truncation=True,
                                    max_length=limit, return_tensors="pt").to(device)
            logits = model(**batch).logits.float().cpu().numpy()
            for record, row_logits in zip(chunk, logits):
                rows.append(_prediction(record, row_logits, labels, multi, threshold))
    return rows


def _cut(record: Revision, max_length: int) -> Revision:
    """Texts longer than any ``max_length`` tokens can be, cut before tokenising (which truncates them
    anyway) so that a huge line costs no more than a long one."""
    from dataclasses import replace

    limit = 64 * max_length
    if len(record.before) <= limit and len(record.after) <= limit:
        return record
    return replace(record, before=record.before[:limit], after=record.after[:limit])


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
