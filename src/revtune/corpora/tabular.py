"""Rows from JSON Lines, CSV/TSV and xlsx files, the checks every reader shares, and the generic format.

A row is ``(line, cells)``: where it starts (the 1-based line of a JSONL or CSV file, the row number of a
spreadsheet, the position in a hub dataset) and its values by column name. Every corpus reader turns
rows into :class:`Revision` records, so errors name the same file, line and field whatever the format.

The generic ``tabular`` format maps columns onto the record's fields:
``{"before": col, "after": col, "intents": col, "context": col, "doc_id": col}`` (the last two optional).
An intents cell is a JSON list or a string, split on ``label_sep`` when one is given.
"""
from __future__ import annotations

import csv
import json
from os import PathLike
from pathlib import Path

from revtune.corpora.record import Revision
from revtune.errors import RevtuneError, did_you_mean, shown
from revtune.jsonsafe import parse_json

Row = tuple[int, dict]

SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm")
DELIMITERS = {".csv": ",", ".tsv": "\t"}
COLUMN_KEYS = ("before", "after", "intents", "context", "doc_id")
REQUIRED_KEYS = ("before", "after", "intents")
INTENT_COLUMNS = ("intents", "intent", "labels", "label")  # default intents column: the first present
# A spreadsheet is a zip archive; these bound what opening one may unpack (a zip bomb is refused unread).
MAX_XLSX_UNPACKED = 256 * 2**20
MAX_XLSX_RATIO = 200
MAX_XLSX_MEMBERS = 10_000


# --- rows -------------------------------------------------------------------------------------------

def read_rows(path: str | PathLike) -> list[Row]:
    """Every data row of a JSONL (any other suffix), CSV, TSV or xlsx file; blank lines are skipped."""
    path = Path(path)
    if not path.exists():
        raise RevtuneError("no such file", path=path)
    if not path.is_file():
        raise RevtuneError("not a file", path=path)
    suffix = path.suffix.lower()
    if suffix in SPREADSHEET_SUFFIXES:
        rows = _xlsx_rows(path)
    elif suffix in DELIMITERS:
        rows = _delimited_rows(path, DELIMITERS[suffix])
    else:
        rows = _jsonl_rows(path)
    if not rows:
        raise RevtuneError("the file is empty (no data rows)", path=path)
    return rows


def _jsonl_rows(path: Path) -> list[Row]:
    rows, line = [], 0
    try:
        with open(path, encoding="utf-8-sig") as f:
            for line, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                cells = parse_json(text, path, line)
                if not isinstance(cells, dict):
                    raise RevtuneError(f"expected a JSON object, got {type(cells).__name__}",
                                       path=path, line=line)
                rows.append((line, cells))
    except UnicodeDecodeError:
        raise RevtuneError("not UTF-8 text (a spreadsheet must be named .xlsx, a table .csv)",
                           path=path, line=line + 1) from None
    return rows


def _header(names: list, path: Path, line: int) -> list[str]:
    header = ["" if name is None else str(name).strip() for name in names]
    seen = set()
    for name in header:
        if name and name in seen:
            raise RevtuneError("column appears twice in the header", path=path, line=line, field=name)
        seen.add(name)
    return header


def _to_row(header: list[str], cells: list, path: Path, line: int) -> Row | None:
    """Cells keyed by column; None for a blank row. Missing trailing cells are empty."""
    if all(cell is None or (isinstance(cell, str) and not cell.strip()) for cell in cells):
        return None
    extra = [i for i in range(len(header), len(cells)) if cells[i] not in (None, "")]
    if extra:
        raise RevtuneError(f"a value beyond the {len(header)} columns the header names",
                           path=path, line=line, field=f"column {extra[0] + 1}")
    padded = list(cells) + [None] * (len(header) - len(cells))
    return line, {name: cell for name, cell in zip(header, padded) if name}


def _delimited_rows(path: Path, delimiter: str) -> list[Row]:
    rows = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = next((cells for cells in reader if any(c.strip() for c in cells)), None)
            if header is None:
                return []
            header = _header(header, path, reader.line_num)
            start = reader.line_num + 1
            for cells in reader:
                line, start = start, reader.line_num + 1  # a quoted cell may span several lines
                row = _to_row(header, cells, path, line)
                if row is not None:
                    rows.append(row)
    except UnicodeDecodeError:
        raise RevtuneError("not UTF-8 text", path=path) from None
    except csv.Error as e:
        raise RevtuneError(f"malformed CSV: {e}", path=path) from None
    return rows


def check_zip(path: Path) -> None:
    """Refuse, before unpacking anything, an archive that is not a zip or would unpack too much."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise RevtuneError(f"cannot read the spreadsheet: not an xlsx (zip) file ({e})", path=path) from None
    unpacked = sum(member.file_size for member in members)
    packed = sum(member.compress_size for member in members)
    if len(members) > MAX_XLSX_MEMBERS or unpacked > MAX_XLSX_UNPACKED or unpacked > MAX_XLSX_RATIO * max(
            packed, 2**16):
        raise RevtuneError(f"refused: the spreadsheet would unpack {len(members)} parts into {unpacked:,} "
                           f"bytes from {packed:,} (limits: {MAX_XLSX_UNPACKED:,} bytes, ratio "
                           f"{MAX_XLSX_RATIO})", path=path)


def _is_formula(value) -> bool:
    return (isinstance(value, str) and value.startswith("=")) or type(value).__name__ == "ArrayFormula"


def _xlsx_rows(path: Path) -> list[Row]:
    """The first worksheet; row numbers are the spreadsheet's own (the header is usually row 1).

    A formula cell is read as the value the spreadsheet program last computed and saved with it; a
    formula saved without one (files written by scripts) is refused, never read as empty.
    """
    import openpyxl
    from openpyxl.utils import get_column_letter

    check_zip(path)
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        formulas = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except Exception as e:  # openpyxl raises zipfile, KeyError, InvalidFileException... on bad input
        raise RevtuneError(f"cannot read the spreadsheet: {e}", path=path) from None
    try:
        rows, header = [], None
        pairs = zip(book.worksheets[0].iter_rows(min_row=1, values_only=True),
                    formulas.worksheets[0].iter_rows(min_row=1, values_only=True))
        for number, (values, written) in enumerate(pairs, 1):
            for column, (value, formula) in enumerate(zip(values, written), 1):
                if value is None and _is_formula(formula):
                    raise RevtuneError("a formula with no saved value: open and save the file in a "
                                       "spreadsheet program, or paste the values", path=path, line=number,
                                       field=f"cell {get_column_letter(column)}{number}")
            cells = [value if value is None or isinstance(value, str) else str(value) for value in values]
            if header is None:
                if any(cell is not None for cell in cells):
                    header = _header(cells, path, number)
                continue
            row = _to_row(header, cells, path, number)
            if row is not None:
                rows.append(row)
        return rows
    except RevtuneError:
        raise
    except Exception as e:  # a part that passed the zip check but not openpyxl's parser
        raise RevtuneError(f"cannot read the spreadsheet: {e}", path=path) from None
    finally:
        book.close()
        formulas.close()


# --- field checks shared by the readers -----------------------------------------------------------

def field(row: Row, name: str, path: str):
    """The value of a required field; its absence names the fields the row does have."""
    line, cells = row
    if name not in cells:
        have = sorted(cells)
        listed = ", ".join(have[:12]) + (", ..." if len(have) > 12 else "")
        raise RevtuneError(f"missing (the row has: {listed or 'no fields'})", path=path, line=line,
                           field=name)
    return cells[name]


def text(row: Row, name: str, path: str) -> str:
    """A text field: null, an empty or a blank cell is ""."""
    value = field(row, name, path)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RevtuneError(f"expected text, got {type(value).__name__} {shown(value)}", path=path,
                           line=row[0], field=name)
    check_unicode(value, path, row[0], name)
    return value if value.strip() else ""


def check_unicode(value: str, path, line, name: str) -> str:
    """Text a tokenizer can encode: JSON's ``"\\ud800"`` decodes to a lone surrogate, which cannot."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise RevtuneError(f"holds an unpaired surrogate {value[e.start]!r} at character {e.start + 1} "
                           "(not valid Unicode text)", path=path, line=line, field=name) from None
    return value


def make_revision(row: Row, path: str, names: tuple[str, str], before: str, after: str,
                  intents: tuple[str, ...], context: str | None = None, doc_id=None) -> Revision:
    """The record, refusing a pair whose two texts are both empty."""
    if not before and not after:
        raise RevtuneError(f"empty, and so is '{names[1]}': a revision needs at least one text",
                           path=path, line=row[0], field=names[0])
    if doc_id is not None and (isinstance(doc_id, bool) or not isinstance(doc_id, (str, int))):
        raise RevtuneError(f"expected text or a whole number, got {type(doc_id).__name__} {shown(doc_id)}",
                           path=path, line=row[0], field="doc_id")
    if isinstance(doc_id, str):
        check_unicode(doc_id, path, row[0], "doc_id")
    return Revision(before, after, intents, context=context,
                    doc_id=None if doc_id is None else str(doc_id), source=f"{path}:{row[0]}")


# --- the generic format ---------------------------------------------------------------------------

def resolve_columns(columns: dict | None, first: dict, path: str) -> dict[str, str]:
    """The user's mapping over the defaults (before, after, the first of intents/intent/labels/label
    present, and context/doc_id when such columns exist)."""
    resolved = {"before": "before", "after": "after",
                "intents": next((c for c in INTENT_COLUMNS if c in first), "intents")}
    resolved.update({key: key for key in ("context", "doc_id") if key in first})
    for key, column in (columns or {}).items():
        if key not in COLUMN_KEYS:
            raise RevtuneError(f"unknown key '{key}'; {did_you_mean(key, COLUMN_KEYS)}", field="columns")
        if column is None and key not in REQUIRED_KEYS:
            resolved.pop(key, None)
            continue
        if not isinstance(column, str) or not column:
            raise RevtuneError(f"'{key}' must name a column, got {column!r}", field="columns")
        resolved[key] = column
    return resolved


def intents_of(row: Row, column: str, path: str, label_sep: str | None) -> tuple[str, ...]:
    """A JSON list, or a string split on label_sep (no split when None); duplicates dropped, order kept."""
    value = field(row, column, path)

    def bad(message):
        return RevtuneError(message, path=path, line=row[0], field=column)

    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise bad(f"looks like a JSON list but is malformed: {e.msg}") from None
        except RecursionError:
            raise bad("looks like a JSON list but is nested too deeply") from None
    if value is None:
        items = []
    elif isinstance(value, str):
        items = value.split(label_sep) if label_sep else [value]
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise bad(f"expected a label or a list of labels, got {type(value).__name__}")
    names = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise bad(f"expected label names, got {type(item).__name__} {shown(item)}")
        name = check_unicode(str(item).strip(), path, row[0], column)
        if name and name not in names:
            names.append(name)
    if not names:
        raise bad("no intent label")
    return tuple(names)


def parse_tabular(rows: list[Row], path: str, columns: dict | None = None,
                  label_sep: str | None = None) -> list[Revision]:
    if label_sep is not None and (not isinstance(label_sep, str) or not label_sep):
        raise RevtuneError(f"must be a non-empty string, got {label_sep!r}", field="label_sep")
    mapping = resolve_columns(columns, rows[0][1] if rows else {}, path)
    records = []
    for row in rows:
        before, after = text(row, mapping["before"], path), text(row, mapping["after"], path)
        context = (text(row, mapping["context"], path) or None) if "context" in mapping else None
        doc_id = field(row, mapping["doc_id"], path) if "doc_id" in mapping else None
        intents = intents_of(row, mapping["intents"], path, label_sep)
        records.append(make_revision(row, path, (mapping["before"], mapping["after"]), before, after,
                                     intents, context=context, doc_id=doc_id))
    return records


def read_tabular(path: str | PathLike, columns: dict | None = None,
                 label_sep: str | None = None) -> list[Revision]:
    return parse_tabular(read_rows(path), str(path), columns, label_sep)
