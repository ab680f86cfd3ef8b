"""IteraTeR (Du et al. 2022), sentence and document level, as JSON Lines or hub rows.

Sentence level: ``before_sent``, ``after_sent``, ``labels`` (an intent name, or its id: clarity 0,
fluency 1, coherence 2, style 3, meaning-changed 4). Rows labelled ``others`` are dropped.

Document level: ``before_revision``, ``after_revision``, ``edit_actions`` (each with ``major_intent``;
``type``, ``before``, ``after``, the character positions and ``raw_intents`` are not needed here) and
``doc_id``. A document's intents are the sorted set of its edits' major intents among the five, so the
corpus is multi-label; a document with none of them is dropped. Unknown keys are ignored everywhere.
"""
from __future__ import annotations

from os import PathLike

from revtune.corpora.record import Revision
from revtune.corpora.tabular import Row, check_unicode, field, make_revision, read_rows, text
from revtune.errors import RevtuneError, did_you_mean, shown

INTENTS = ("clarity", "fluency", "coherence", "style", "meaning-changed")  # index = label id
DROPPED = "others"
_ALIASES = {"other": DROPPED, "meaning-change": "meaning-changed"}


def intent_name(value, row: Row, name: str, path: str) -> str | None:
    """The canonical intent for a label or id (case, '_' and spaces forgiven); None for ``others``."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) < 10:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(INTENTS):
            return INTENTS[value]
        ids = ", ".join(f"{i} {label}" for i, label in enumerate(INTENTS))
        raise RevtuneError(f"unknown label id {value}; valid: {ids}", path=path, line=row[0], field=name)
    if not isinstance(value, str):
        raise RevtuneError(f"expected an intent name or id, got {type(value).__name__} {shown(value)}",
                           path=path, line=row[0], field=name)
    key = "-".join(value.strip().lower().replace("_", " ").split())
    key = _ALIASES.get(key, key)
    if key == DROPPED:
        return None
    if key not in INTENTS:
        raise RevtuneError(f"unknown intent '{value}'; {did_you_mean(key, INTENTS + (DROPPED,))}",
                           path=path, line=row[0], field=name)
    return key


def parse_sentences(rows: list[Row], path: str) -> list[Revision]:
    records = []
    for row in rows:
        intent = intent_name(field(row, "labels", path), row, "labels", path)
        before, after = text(row, "before_sent", path), text(row, "after_sent", path)
        if intent is not None:
            records.append(make_revision(row, path, ("before_sent", "after_sent"), before, after,
                                         (intent,), doc_id=row[1].get("doc_id")))
    return records


def _edits(row: Row, path: str) -> list[dict]:
    """The edit list; the hub's columnar shape (a dict of lists) becomes a list of dicts."""
    edits = field(row, "edit_actions", path)
    if isinstance(edits, dict):
        lengths = {key: len(values) if isinstance(values, list) else None for key, values in edits.items()}
        if None in lengths.values() or len(set(lengths.values())) > 1:
            raise RevtuneError("a dict of edit lists needs lists of one length, got "
                               + ", ".join(f"{key}: {'not a list' if n is None else n}"
                                           for key, n in list(lengths.items())[:6]),
                               path=path, line=row[0], field="edit_actions")
        edits = [dict(zip(edits, values)) for values in zip(*edits.values())]
    if not isinstance(edits, list):
        raise RevtuneError(f"expected a list of edits, got {type(edits).__name__}", path=path,
                           line=row[0], field="edit_actions")
    for i, edit in enumerate(edits):
        if not isinstance(edit, dict):
            raise RevtuneError(f"expected an object, got {type(edit).__name__}", path=path, line=row[0],
                               field=f"edit_actions[{i}]")
    return edits


def parse_documents(rows: list[Row], path: str) -> list[Revision]:
    records = []
    for row in rows:
        before, after = text(row, "before_revision", path), text(row, "after_revision", path)
        intents = set()
        for i, edit in enumerate(_edits(row, path)):
            name = f"edit_actions[{i}].major_intent"
            if "major_intent" not in edit:
                raise RevtuneError("missing", path=path, line=row[0], field=name)
            if edit["major_intent"] is not None:
                intents.add(intent_name(edit["major_intent"], row, name, path))
        intents.discard(None)
        if intents:
            records.append(make_revision(row, path, ("before_revision", "after_revision"), before, after,
                                         tuple(sorted(intents)), doc_id=row[1].get("doc_id")))
    return records


def read_sentences(path: str | PathLike) -> list[Revision]:
    return parse_sentences(read_rows(path), str(path))


def read_documents(path: str | PathLike) -> list[Revision]:
    return parse_documents(read_rows(path), str(path))
