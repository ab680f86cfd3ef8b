"""Every generation metric of one run in one call, and the JSONL files they are read from.

Score files are JSONL aligned by line: line i of the source, prediction and reference files describe
the same item. Source and prediction rows carry ``text``; reference rows carry ``references`` (a list
of strings) or a single ``text``.
"""
from __future__ import annotations

from pathlib import Path

from revtune.corpora.tabular import check_unicode
from revtune.errors import RevtuneError
from revtune.jsonsafe import parse_json
from revtune.metrics.gleu import corpus_gleu, sentence_gleu
from revtune.metrics.sari import corpus_sari, sari_sentence
from revtune.metrics.update_rouge import update_rouge


def _item(source: str, prediction: str, references: list[str], sari_variant: str) -> dict:
    wanted = {ref.strip() for ref in references}
    return {
        "sari": sari_sentence(source, prediction, references, sari_variant),
        "gleu": sentence_gleu(source, prediction, references),
        **update_rouge(source, prediction, references),
        "exact_match": float(prediction.strip() in wanted),
        "copy_rate": float(prediction.strip() == source.strip()),
    }


def score_generation(sources, predictions, references_list, sari_variant: str = "iterater",
                     per_item: bool = False) -> dict:
    """Corpus SARI (0-100), GLEU, Update-R, ROUGE-1/2 of the additions, exact match and copy rate
    (all 0-1) and ``n``; with ``per_item`` also ``items``, one dict of the same scores per row.

    SARI and GLEU are corpus scores (GLEU pools its counts, so it is not the mean of item scores);
    the others are means over items.
    """
    if not (len(sources) == len(predictions) == len(references_list)):
        raise RevtuneError(f"cannot score: {len(sources)} sources, {len(predictions)} predictions and "
                           f"{len(references_list)} reference lists; every row needs all three")
    if not sources:
        raise RevtuneError("nothing to score: no rows")
    items = [_item(s, p, r, sari_variant) for s, p, r in zip(sources, predictions, references_list)]
    means = {key: sum(item[key] for item in items) / len(items)
             for key in ("update_r", "rouge1", "rouge2", "exact_match", "copy_rate")}
    result = {
        "sari": corpus_sari(sources, predictions, references_list, sari_variant),
        "gleu": corpus_gleu(sources, predictions, references_list),
        **means,
        "n": len(items),
    }
    if per_item:
        result["items"] = items
    return result


def _rows(path) -> list[tuple[int, dict]]:
    """(line number, object) for every line; trailing blank lines are ignored, others are errors."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise RevtuneError("file not found", path=path) from None
    except UnicodeDecodeError as err:
        raise RevtuneError(f"not UTF-8 text ({err.reason} at byte {err.start})", path=path) from None
    except IsADirectoryError:
        raise RevtuneError("is a directory, expected a JSONL file", path=path) from None
    except OSError as err:
        raise RevtuneError(f"cannot read: {err.strerror}", path=path) from None
    while lines and not lines[-1].strip():
        lines.pop()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise RevtuneError("empty line; every line must hold one JSON object", path=path, line=number)
        row = parse_json(line, path, number)
        if not isinstance(row, dict):
            raise RevtuneError(f"expected a JSON object, got {type(row).__name__}", path=path, line=number)
        rows.append((number, row))
    return rows


def _text(row: dict, path, line: int) -> str:
    if "text" not in row:
        raise RevtuneError("missing (expected a string)", path=path, line=line, field="text")
    if not isinstance(row["text"], str):
        raise RevtuneError(f"expected a string, got {type(row['text']).__name__}", path=path, line=line,
                           field="text")
    return check_unicode(row["text"], path, line, "text")


def _references(row: dict, path, line: int) -> list[str]:
    if "references" not in row:
        if "text" in row:
            return [_text(row, path, line)]
        raise RevtuneError("missing (expected a list of strings, or a 'text' string)", path=path,
                           line=line, field="references")
    refs = row["references"]
    if not isinstance(refs, list) or not refs:
        got = "an empty list" if refs == [] else type(refs).__name__
        raise RevtuneError(f"expected a non-empty list of strings, got {got}", path=path, line=line,
                           field="references")
    for i, ref in enumerate(refs):
        if not isinstance(ref, str):
            raise RevtuneError(f"item {i} is {type(ref).__name__}, expected a string", path=path,
                               line=line, field="references")
        check_unicode(ref, path, line, "references")
    return refs


def read_score_files(src_path, pred_path, ref_path) -> tuple[list[str], list[str], list[list[str]]]:
    """(sources, predictions, references_list) from three line-aligned JSONL files."""
    sources = [_text(row, src_path, line) for line, row in _rows(src_path)]
    predictions = [_text(row, pred_path, line) for line, row in _rows(pred_path)]
    references = [_references(row, ref_path, line) for line, row in _rows(ref_path)]
    counts = {src_path: len(sources), pred_path: len(predictions), ref_path: len(references)}
    shortest = min(counts, key=counts.get)
    for path, count in counts.items():
        if count != counts[shortest]:
            raise RevtuneError(f"has {count} rows but {shortest} has {counts[shortest]}; the files are "
                               "aligned by line", path=path, line=counts[shortest] + 1)
    return sources, predictions, references
