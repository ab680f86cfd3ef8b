"""One entry point for every corpus, and what the training code does with records: label sets, splits,
upsampling and the shipped sample corpus."""
from __future__ import annotations

import random
from os import PathLike
from pathlib import Path

from revtune.corpora import argrevision, iterater
from revtune.corpora.record import Revision
from revtune.corpora.tabular import Row, parse_tabular, read_rows
from revtune.errors import RevtuneError, did_you_mean

FORMATS = ("auto", "iterater-sent", "iterater-doc", "argrevision", "tabular")
HUB_PREFIX = "hub:"
SAMPLE_SPLITS = ("train", "dev", "test")
DATA_DIR = Path(__file__).resolve().parent.parent / "data"

_PARSERS = {
    "iterater-sent": iterater.parse_sentences,
    "iterater-doc": iterater.parse_documents,
    "argrevision": argrevision.parse_argrevision,
}


def sniff(cells: dict) -> str:
    """The format a first row's fields point to."""
    if "before_sent" in cells:
        return "iterater-sent"
    if "before_revision" in cells and "edit_actions" in cells:
        return "iterater-doc"
    if "old_sentences" in cells:
        return "argrevision"
    return "tabular"


def read_corpus(path: str | PathLike, format: str = "auto", columns: dict | None = None,
                label_sep: str | None = None) -> list[Revision]:
    """Records from a file (JSONL, CSV, TSV, xlsx) or from ``hub:NAME[:split]`` (split defaults to train).

    ``auto`` sniffs the first row (see :func:`sniff`); a ``columns`` mapping implies ``tabular``.
    ``columns`` and ``label_sep`` apply to the tabular format only.
    """
    if format not in FORMATS:
        raise RevtuneError(f"unknown corpus format '{format}'; {did_you_mean(str(format), FORMATS)}",
                           field="format")
    where = str(path)
    rows = _hub_rows(where) if where.startswith(HUB_PREFIX) else read_rows(path)
    if format == "auto":
        format = "tabular" if columns else sniff(rows[0][1])
    if format == "tabular":
        records = parse_tabular(rows, where, columns, label_sep)
    else:
        for name, value in (("columns", columns), ("label_sep", label_sep)):
            if value:
                raise RevtuneError(f"applies to the tabular format only; this corpus is read as {format}",
                                   path=where, field=name)
        records = _PARSERS[format](rows, where)
    if not records:
        raise RevtuneError(f"no revision left: every one of the {len(rows)} rows is labelled with a dropped "
                           "class (IteraTeR 'others', ArgRevision 'claim')", path=where)
    return records


def _hub_rows(spec: str) -> list[Row]:
    """Rows of a Hugging Face hub dataset, only ever when the user names one (needs the network)."""
    name, _, split = spec[len(HUB_PREFIX):].partition(":")
    if not name:
        raise RevtuneError("expected hub:NAME[:split], e.g. hub:wanyu/IteraTeR_human_sent:train", path=spec)
    import datasets

    try:
        data = datasets.load_dataset(name, split=split or "train")
    except Exception as e:  # network, unknown name, unknown split: all the user's to fix
        raise RevtuneError(f"cannot load the dataset: {e}", path=spec) from None
    class_names = {column: feature.names for column, feature in data.features.items()
                   if isinstance(feature, datasets.ClassLabel)}
    rows = []
    for number, cells in enumerate(data, start=1):
        for column, names in class_names.items():
            if isinstance(cells[column], int) and 0 <= cells[column] < len(names):
                cells[column] = names[cells[column]]
        rows.append((number, cells))
    if not rows:
        raise RevtuneError("the dataset split is empty", path=spec)
    return rows


# --- label sets ------------------------------------------------------------------------------------

def label_names(records: list[Revision]) -> list[str]:
    """The labels used, in IteraTeR's order if all are IteraTeR's, else ArgRevision's, else sorted."""
    used = {intent for record in records for intent in record.intents}
    for canonical in (iterater.INTENTS, argrevision.LABELS):
        if used <= set(canonical):
            return [label for label in canonical if label in used]
    return sorted(used)


def is_multi_label(records: list[Revision]) -> bool:
    return any(len(record.intents) != 1 for record in records)


# --- splits and upsampling -------------------------------------------------------------------------

def _quotas(sizes: dict[str, int], fraction: float) -> dict[str, int]:
    """How many of each class to carve: largest remainders hit round(fraction * total); then every class
    of two or more keeps at least one on each side, and a class of one stays on the kept side."""
    exact = {c: round(fraction * n, 9) for c, n in sizes.items()}
    quota = {c: int(x) for c, x in exact.items()}
    spare = round(fraction * sum(sizes.values())) - sum(quota.values())
    for c in sorted(exact, key=lambda c: (quota[c] - exact[c], c))[:max(spare, 0)]:
        quota[c] += 1
    return {c: min(max(quota[c], 1), n - 1) if n >= 2 else 0 for c, n in sizes.items()}


def stratified_split(records: list[Revision], fraction: float,
                     seed: int) -> tuple[list[Revision], list[Revision]]:
    """(kept, carved): about ``fraction`` of each class (by first intent) carved out at random.

    Both sides keep the input order; the same records and seed give the same split.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise RevtuneError(f"must be strictly between 0 and 1, got {fraction!r}", field="fraction")
    by_class: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        by_class.setdefault(record.intents[0] if record.intents else "", []).append(i)
    quotas = _quotas({c: len(members) for c, members in by_class.items()}, fraction)
    rng = random.Random(seed)
    carved = set()
    for c in sorted(by_class):
        members = list(by_class[c])
        rng.shuffle(members)
        carved.update(members[:quotas[c]])
    return ([r for i, r in enumerate(records) if i not in carved],
            [r for i, r in enumerate(records) if i in carved])


def document_split(records: list[Revision], fraction: float,
                   seed: int) -> tuple[list[Revision], list[Revision]]:
    """(kept, carved): whole documents (``doc_id``; a record without one is its own document) carved at
    random until about ``fraction`` of the rows are carved, so no document is on both sides.

    Documents are visited in a seeded order and one is carved when that brings the carved row count
    closer to the target; both sides keep the input order.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise RevtuneError(f"must be strictly between 0 and 1, got {fraction!r}", field="fraction")
    groups: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        groups.setdefault(record.doc_id if record.doc_id is not None else f"\0row{i}", []).append(i)
    if len(groups) < 2:
        raise RevtuneError(f"a split by document needs at least two documents, got {len(groups)}",
                           field="doc_id")
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    target, carved = fraction * len(records), set()
    for name in names:
        if abs(len(carved) + len(groups[name]) - target) < abs(len(carved) - target):
            carved.update(groups[name])
    if not carved:
        carved.update(groups[names[0]])
    if len(carved) == len(records):
        carved.difference_update(groups[names[-1]])
    return ([r for i, r in enumerate(records) if i not in carved],
            [r for i, r in enumerate(records) if i in carved])


def split_three(records: list[Revision], seed: int) -> tuple[list[Revision], list[Revision], list[Revision]]:
    """(train, dev, test), stratified 80/10/10: ArgRevision has no public split."""
    rest, test = stratified_split(records, 0.1, seed)
    train, dev = stratified_split(rest, 1 / 9, seed + 1)
    return train, dev, test


def upsample(records: list[Revision], factors: dict[str, int], seed: int) -> list[Revision]:
    """Each record repeated factors[c] times (the largest over its intents; 1 for classes not named),
    then shuffled with ``seed`` so that copies are not adjacent. Meant for the train split only."""
    known = label_names(records)
    for name, factor in factors.items():
        if name not in known:
            raise RevtuneError(f"unknown class '{name}'; {did_you_mean(str(name), known)}", field="upsample")
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise RevtuneError(f"the factor of '{name}' must be a whole number >= 1, got {factor!r}",
                               field="upsample")
    out = []
    for record in records:
        out.extend([record] * max((factors.get(i, 1) for i in record.intents), default=1))
    random.Random(seed).shuffle(out)
    return out


# --- the shipped sample corpus ---------------------------------------------------------------------

def sample_path(split: str) -> Path:
    """The shipped sample corpus (IteraTeR sentence-level format, original text): train, dev or test."""
    if split not in SAMPLE_SPLITS:
        raise RevtuneError(f"unknown split '{split}'; {did_you_mean(str(split), SAMPLE_SPLITS)}",
                           field="split")
    return DATA_DIR / f"sample_{split}.jsonl"


def load_sample(split: str) -> list[Revision]:
    return read_corpus(sample_path(split), format="iterater-sent")
