"""ArgRevision, as the IR-Tuning reference code reads it: a spreadsheet (xlsx or CSV).

Columns ``old_sentences``, ``new_sentences`` and ``purpose_labels``. An empty cell is an added or
deleted sentence (""); a row with both empty is an error. Rows labelled ``claim`` are dropped. Labels
are matched ignoring case, spaces, '-' and '_', and normalised to the spellings of :data:`LABELS`.
"""
from __future__ import annotations

import re
from os import PathLike

from revtune.corpora.record import Revision
from revtune.corpora.tabular import Row, field, make_revision, read_rows, text
from revtune.errors import RevtuneError, did_you_mean

LABELS = ("relevant", "irrelevant", "already exists", "LCE", "not LCE", "commentary")
DROPPED = "claim"
COLUMNS = ("old_sentences", "new_sentences", "purpose_labels")


def _key(label: str) -> str:
    return re.sub(r"[\s_-]+", "", label.lower())


_BY_KEY = {_key(label): label for label in LABELS + (DROPPED,)}
_BY_KEY.update({"linkedclaimevidence": "LCE", "notlinkedclaimevidence": "not LCE"})


def label_name(row: Row, path: str) -> str | None:
    """The canonical label of the row; None for ``claim``."""
    value = text(row, "purpose_labels", path)
    if not value:
        raise RevtuneError(f"empty; valid: {', '.join(LABELS)}", path=path, line=row[0],
                           field="purpose_labels")
    label = _BY_KEY.get(_key(value))
    if label is None:
        raise RevtuneError(f"unknown label '{value.strip()}'; {did_you_mean(value.strip(), LABELS)}",
                           path=path, line=row[0], field="purpose_labels")
    return None if label == DROPPED else label


def parse_argrevision(rows: list[Row], path: str) -> list[Revision]:
    records = []
    for row in rows:
        for name in COLUMNS:
            field(row, name, path)  # a missing column is reported before any cell is judged
        label = label_name(row, path)
        before, after = text(row, "old_sentences", path), text(row, "new_sentences", path)
        if label is not None:
            records.append(make_revision(row, path, ("old_sentences", "new_sentences"), before, after,
                                         (label,)))
    return records


def read_argrevision(path: str | PathLike) -> list[Revision]:
    return parse_argrevision(read_rows(path), str(path))
