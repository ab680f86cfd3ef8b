"""Corpus readers on fixture files in their real formats, their errors, splits, upsampling, the sample."""
from __future__ import annotations

import csv
import json
from collections import Counter

import openpyxl
import pytest

from revtune.corpora import (FORMATS, Revision, is_multi_label, label_names, load_sample, read_corpus,
                             sample_path, split_three, stratified_split, upsample)
from revtune.errors import RevtuneError

ITERATER = ["clarity", "fluency", "coherence", "style", "meaning-changed"]


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_xlsx(path, header, rows):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def raises_at(path, line, field, match=None):
    """Context manager: a RevtuneError whose one-line message names the file, the line and the field."""
    class Check:
        def __enter__(self):
            self.ctx = pytest.raises(RevtuneError)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.ctx.__exit__(*exc)
            err = self.info.value
            message = str(err)
            assert f"{path}:{line}" in message, message
            assert err.path == str(path) and err.line == line
            if field is not None:
                assert f"field '{field}'" in message and err.field == field, message
            if match is not None:
                assert match in message, message
            assert "\n" not in message
            return handled
    return Check()


def sent(before, after, labels, **extra):
    return {"before_sent": before, "after_sent": after, "labels": labels, **extra}


# --- IteraTeR sentence level ----------------------------------------------------------------------

def test_iterater_sentences_names_ids_and_others(tmp_path):
    path = write_jsonl(tmp_path / "train.json", [
        sent("A teh b.", "A the b.", "fluency", doc_id="1704.01", confidence=0.8, revision_depth=1),
        "",  # a blank line is skipped but still counts
        sent("Old text here.", "New text here.", 4),
        sent("Dropped one.", "Dropped two.", "others"),
        sent("We does it.", "We do it.", "Meaning_Changed"),
        sent("", "An added sentence.", "coherence"),
    ])
    records = read_corpus(path)
    assert [r.intents for r in records] == [("fluency",), ("meaning-changed",), ("meaning-changed",),
                                            ("coherence",)]
    first = records[0]
    assert (first.before, first.after) == ("A teh b.", "A the b.")
    assert (first.doc_id, first.context) == ("1704.01", None)
    assert first.source == f"{path}:1" and records[1].source == f"{path}:3"
    assert records[3].before == ""
    assert label_names(records) == ["fluency", "coherence", "meaning-changed"]
    assert not is_multi_label(records)
    assert read_corpus(path, format="iterater-sent") == records


@pytest.mark.parametrize("label, message", [(7, "unknown label id 7"), ("clearity", "did you mean 'clarity'"),
                                             (["style"], "expected an intent name or id")])
def test_iterater_sentence_bad_labels(tmp_path, label, message):
    path = write_jsonl(tmp_path / "s.jsonl", [sent("a b", "a c", "style"), sent("x y", "x z", label)])
    with raises_at(path, 2, "labels", message):
        read_corpus(path)


def test_iterater_sentence_missing_field_and_both_empty(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [sent("a", "b", "style"),
                                              {"before_sent": "a", "labels": "style"}])
    with raises_at(path, 2, "after_sent", "missing"):
        read_corpus(path)
    path = write_jsonl(tmp_path / "e.jsonl", [sent("a", "b", "style"), sent("", "  ", "clarity")])
    with raises_at(path, 2, "before_sent", "empty"):
        read_corpus(path)
    path = write_jsonl(tmp_path / "t.jsonl", [sent("a", 3, "style")])
    with raises_at(path, 1, "after_sent", "expected text"):
        read_corpus(path)


# --- IteraTeR document level ----------------------------------------------------------------------

def edit(intent, **extra):
    return {"type": "R", "before": "x", "after": "y", "start_char_pos": 0, "end_char_pos": 1,
            "major_intent": intent, "raw_intents": [intent, intent], **extra}


def doc(doc_id, edits, **extra):
    return {"doc_id": doc_id, "before_revision": f"Before {doc_id}.", "after_revision": f"After {doc_id}.",
            "edit_actions": edits, "sents_char_pos": [0, 10], "domain": "arxiv", **extra}


def test_iterater_documents_multi_label(tmp_path):
    path = write_jsonl(tmp_path / "doc.json", [
        doc("d1", [edit("style"), edit("clarity"), edit("others"), edit("clarity")]),
        doc("d2", [edit("others"), edit(None)]),  # none of the five: dropped
        doc("d3", [edit("fluency")]),
    ])
    records = read_corpus(path)
    assert [(r.doc_id, r.intents) for r in records] == [("d1", ("clarity", "style")), ("d3", ("fluency",))]
    assert records[0].before == "Before d1." and records[0].after == "After d1."
    assert is_multi_label(records)
    assert read_corpus(path, format="iterater-doc") == records


def test_iterater_documents_hub_columnar_edits(tmp_path):
    columnar = {"type": ["R", "A"], "major_intent": ["coherence", "meaning-changed"], "before": ["a", None]}
    path = write_jsonl(tmp_path / "doc.jsonl", [doc("d1", columnar)])
    assert read_corpus(path)[0].intents == ("coherence", "meaning-changed")


def test_iterater_document_errors(tmp_path):
    path = write_jsonl(tmp_path / "doc.jsonl", [doc("d1", [edit("style")]),
                                                doc("d2", [edit("style"), {"type": "D"}])])
    with raises_at(path, 2, "edit_actions[1].major_intent", "missing"):
        read_corpus(path)
    path = write_jsonl(tmp_path / "bad.jsonl", [doc("d1", [edit("stlye")])])
    with raises_at(path, 1, "edit_actions[0].major_intent", "did you mean 'style'"):
        read_corpus(path)
    path = write_jsonl(tmp_path / "notlist.jsonl", [doc("d1", "oops")])
    with raises_at(path, 1, "edit_actions", "list of edits"):
        read_corpus(path)
    row = doc("d1", [edit("style")])
    del row["after_revision"]
    path = write_jsonl(tmp_path / "missing.jsonl", [row])
    with raises_at(path, 1, "after_revision", "missing"):
        read_corpus(path, format="iterater-doc")


# --- ArgRevision -----------------------------------------------------------------------------------

ARG_HEADER = ["essay_id", "old_sentences", "new_sentences", "purpose_labels"]
ARG_ROWS = [
    ["e1", "Old claim.", "New claim.", "claim"],
    ["e1", "The farm had no water.", "The farm had no clean water.", "Relevant"],
    ["e2", None, "An added sentence.", "already_exists"],
    ["e2", "A deleted sentence.", None, "not  lce"],
    ["e3", "A reason.", "A better reason.", "LCE"],
    ["e3", "Talk.", "More talk.", "Commentary"],
    ["e4", "Off topic.", "Still off topic.", "IRRELEVANT"],
]


def test_argrevision_xlsx(tmp_path):
    path = write_xlsx(tmp_path / "arg.xlsx", ARG_HEADER, ARG_ROWS)
    records = read_corpus(path)
    assert [r.intents[0] for r in records] == ["relevant", "already exists", "not LCE", "LCE", "commentary",
                                               "irrelevant"]
    assert records[1].before == "" and records[2].after == ""
    assert records[0].source == f"{path}:3"  # spreadsheet row numbers: header is row 1, claim row 2
    assert label_names(records) == ["relevant", "irrelevant", "already exists", "LCE", "not LCE",
                                    "commentary"]
    assert read_corpus(path, format="argrevision") == records


def test_argrevision_csv_matches_xlsx(tmp_path):
    csv_rows = [["" if c is None else c for c in row] for row in ARG_ROWS]
    from_csv = read_corpus(write_csv(tmp_path / "arg.csv", ARG_HEADER, csv_rows))
    from_xlsx = read_corpus(write_xlsx(tmp_path / "arg.xlsx", ARG_HEADER, ARG_ROWS))
    assert from_csv == from_xlsx and len(from_csv) == 6


@pytest.mark.parametrize("suffix", ["xlsx", "csv"])
def test_argrevision_errors(tmp_path, suffix):
    write = write_xlsx if suffix == "xlsx" else write_csv
    path = write(tmp_path / f"unknown.{suffix}", ARG_HEADER, ARG_ROWS[:2] + [["e9", "a", "b", "evidence"]])
    with raises_at(path, 4, "purpose_labels", "valid: LCE, already exists"):
        read_corpus(path)
    path = write(tmp_path / f"empty.{suffix}", ARG_HEADER, ARG_ROWS[:3] + [["e9", "", "", "relevant"]])
    with raises_at(path, 5, "old_sentences", "empty"):
        read_corpus(path)
    path = write(tmp_path / f"nolabel.{suffix}", ARG_HEADER, [["e9", "a", "b", ""]])
    with raises_at(path, 2, "purpose_labels", "empty"):
        read_corpus(path)
    path = write(tmp_path / f"nocol.{suffix}", ["old_sentences", "new_sentence", "purpose_labels"],
                 [["a", "b", "LCE"]])
    with raises_at(path, 2, "new_sentences", "missing"):
        read_corpus(path)


def test_spreadsheet_blank_rows_are_skipped_and_numbered(tmp_path):
    path = write_xlsx(tmp_path / "gaps.xlsx", ARG_HEADER,
                      [ARG_ROWS[1], [None, None, None, None], ["e5", "x", "y", "bogus"]])
    with raises_at(path, 4, "purpose_labels"):
        read_corpus(path)


# --- generic tabular -------------------------------------------------------------------------------

def test_tabular_defaults_and_label_fallback(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [
        {"before": "a b", "after": "a c", "label": "tone", "context": "Some context.", "doc_id": 7},
        {"before": "d e", "after": "d f", "label": "grammar", "context": None, "doc_id": 8},
    ])
    records = read_corpus(path)
    assert records == [Revision("a b", "a c", ("tone",), "Some context.", "7"),
                       Revision("d e", "d f", ("grammar",), None, "8")]
    assert label_names(records) == ["grammar", "tone"]


def test_tabular_column_mapping_csv_and_lists(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["src", "tgt", "why", "ctx"], [
        ["one two", "one three", "x, y", "c1"],
        ["four", "five", '["y", "z", "y"]', ""],
    ])
    columns = {"before": "src", "after": "tgt", "intents": "why", "context": "ctx"}
    records = read_corpus(path, columns=columns, label_sep=",")
    assert [r.intents for r in records] == [("x", "y"), ("y", "z")]
    assert records[0].context == "c1" and records[1].context is None
    assert is_multi_label(records)
    unsplit = read_corpus(path, format="tabular", columns=columns)
    assert unsplit[0].intents == ("x, y",)


def test_tabular_errors(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"src": "a", "tgt": "b", "why": []}])
    with raises_at(path, 1, "why", "no intent"):
        read_corpus(path, columns={"before": "src", "after": "tgt", "intents": "why"})
    with raises_at(path, 1, "before", "missing"):
        read_corpus(path, format="tabular")
    with pytest.raises(RevtuneError, match="field 'columns': unknown key 'befor'; did you mean 'before'"):
        read_corpus(path, columns={"befor": "src"})
    path = write_csv(tmp_path / "bad.csv", ["before", "after", "intents"], [["a", "b", "[x"]])
    with raises_at(path, 2, "intents", "malformed"):
        read_corpus(path)


def test_csv_line_numbers_follow_multiline_cells(tmp_path):
    path = write_csv(tmp_path / "m.csv", ["before", "after", "intents"],
                     [["line one\nline two", "b", "x"], ["", "", "x"]])
    with raises_at(path, 4, "before", "empty"):
        read_corpus(path)
    path = write_csv(tmp_path / "n.csv", ["before", "after", "intents"],
                     [["a", "b", "x"], ["line one\nline two", "b", "[x"]])
    with raises_at(path, 3, "intents", "malformed"):  # where the record starts, not where it ends
        read_corpus(path)


# --- reading and sniffing --------------------------------------------------------------------------

def test_auto_sniffing(tmp_path):
    s = write_jsonl(tmp_path / "s.jsonl", [sent("a b", "a c", "style")])
    d = write_jsonl(tmp_path / "d.jsonl", [doc("d1", [edit("style"), edit("fluency")])])
    a = write_csv(tmp_path / "a.csv", ARG_HEADER, [["e", "a", "b", "LCE"]])
    t = write_jsonl(tmp_path / "t.jsonl", [{"before": "a", "after": "b", "labels": ["p", "q"]}])
    assert read_corpus(s)[0].intents == ("style",)
    assert read_corpus(d)[0].intents == ("fluency", "style")
    assert read_corpus(a)[0].intents == ("LCE",)
    assert read_corpus(t)[0].intents == ("p", "q")
    with pytest.raises(RevtuneError, match="field 'label_sep': applies to the tabular format only"):
        read_corpus(s, label_sep=",")


def test_file_level_errors(tmp_path):
    with pytest.raises(RevtuneError, match="no such file") as info:
        read_corpus(tmp_path / "absent.jsonl")
    assert str(tmp_path / "absent.jsonl") in str(info.value)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(RevtuneError, match="empty"):
        read_corpus(empty)
    path = write_jsonl(tmp_path / "broken.jsonl", [sent("a", "b", "style"), '{"before_sent": "a",'])
    with raises_at(path, 2, None, "malformed JSON"):
        read_corpus(path)
    path = write_jsonl(tmp_path / "array.jsonl", ['["a", "b"]'])
    with raises_at(path, 1, None, "expected a JSON object"):
        read_corpus(path)
    path = write_jsonl(tmp_path / "others.jsonl", [sent("a", "b", "others")])
    with pytest.raises(RevtuneError, match="no revision left"):
        read_corpus(path)
    with pytest.raises(RevtuneError, match="field 'format': unknown corpus format 'iterater'"):
        read_corpus(path, format="iterater")
    assert FORMATS == ("auto", "iterater-sent", "iterater-doc", "argrevision", "tabular")


def test_explicit_format_reports_the_fields_it_expects(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"before": "a", "after": "b", "intents": "x"}])
    with raises_at(path, 1, "labels", "the row has: after, before, intents"):
        read_corpus(path, format="iterater-sent")


# --- label sets, splits, upsampling ----------------------------------------------------------------

def corpus(counts):
    return [Revision(f"{c} {i}", f"{c} {i}!", (c,)) for c, n in counts.items() for i in range(n)]


def test_label_names_orders():
    assert label_names(corpus({"style": 1, "clarity": 1})) == ["clarity", "style"]
    assert label_names(corpus({"commentary": 1, "LCE": 1, "relevant": 1})) == ["relevant", "LCE",
                                                                                "commentary"]
    assert label_names(corpus({"zeta": 1, "clarity": 1, "alpha": 1})) == ["alpha", "clarity", "zeta"]


def test_stratified_split_is_stratified_seeded_and_complete():
    records = corpus({"clarity": 50, "style": 20, "fluency": 2, "coherence": 1})
    kept, carved = stratified_split(records, 0.1, seed=3)
    assert sorted(kept + carved, key=records.index) == records and not set(kept) & set(carved)
    by_class = Counter(r.intents[0] for r in carved)
    assert len(carved) == 8  # round(0.1 * 73) = 7, plus the one fluency needs on each side
    assert by_class["clarity"] == 5 and by_class["style"] == 2
    assert by_class["fluency"] == 1 and by_class["coherence"] == 0  # >= 1 each side; a singleton stays
    assert stratified_split(records, 0.1, seed=3) == (kept, carved)
    assert stratified_split(records, 0.1, seed=4)[1] != carved
    assert [r for r in records if r in kept] == kept  # input order kept
    for bad in (0, 1, 1.5, -0.2):
        with pytest.raises(RevtuneError, match="field 'fraction'"):
            stratified_split(records, bad, seed=0)


def test_split_three_is_80_10_10():
    records = corpus({"relevant": 40, "LCE": 30, "commentary": 30})
    train, dev, test = split_three(records, seed=171)
    assert (len(train), len(dev), len(test)) == (80, 10, 10)
    assert len(set(train) | set(dev) | set(test)) == 100
    assert Counter(r.intents[0] for r in test) == {"relevant": 4, "LCE": 3, "commentary": 3}
    assert split_three(records, seed=171) == (train, dev, test)


def test_upsample():
    records = corpus({"clarity": 3, "style": 2}) + [Revision("m", "n", ("clarity", "style"))]
    out = upsample(records, {"style": 3}, seed=0)
    counts = Counter(out)
    assert all(counts[r] == (3 if "style" in r.intents else 1) for r in records)
    assert len(out) == 3 + 2 * 3 + 3
    assert upsample(records, {"style": 3}, seed=0) == out
    grouped = [r for r in records for _ in range(counts[r])]
    assert out != grouped and sorted(out, key=records.index) == grouped  # shuffled, nothing else
    with pytest.raises(RevtuneError, match="field 'upsample': unknown class 'styel'; did you mean 'style'"):
        upsample(records, {"styel": 2}, seed=0)
    with pytest.raises(RevtuneError, match="whole number"):
        upsample(records, {"style": 0}, seed=0)


# --- the shipped sample corpus ---------------------------------------------------------------------

def test_sample_corpus():
    splits = {split: load_sample(split) for split in ("train", "dev", "test")}
    assert {s: len(r) for s, r in splits.items()} == {"train": 220, "dev": 40, "test": 40}
    pairs = set()
    for split, records in splits.items():
        counts = Counter(r.intents[0] for r in records)
        assert label_names(records) == ITERATER, split
        assert max(counts.values()) - min(counts.values()) <= 2, counts  # balanced
        for r in records:
            assert r.before.strip() and r.after.strip() and r.before != r.after, r
            assert 8 <= len(r.before.split()) <= 30 and 8 <= len(r.after.split()) <= 30, r
        split_pairs = {(r.before, r.after) for r in records}
        assert len(split_pairs) == len(records) and not pairs & split_pairs, split
        pairs |= split_pairs
    befores = [before for before, _ in pairs]
    assert len(set(befores)) == len(befores)
    for line in sample_path("dev").read_text(encoding="utf-8").splitlines():
        assert set(json.loads(line)) == {"before_sent", "after_sent", "labels"}


def test_sample_unknown_split():
    with pytest.raises(RevtuneError, match="field 'split': unknown split 'valid'"):
        sample_path("valid")


# --- hub:NAME[:split], with load_dataset stubbed (no network) ---------------------------------------

def test_hub_rows_decode_class_labels(monkeypatch):
    datasets = pytest.importorskip("datasets")
    names = ["style", "clarity", "others"]  # the hub's own ids, deliberately not IteraTeR's 0..4
    table = datasets.Dataset.from_dict(
        {"before_sent": ["a b", "c d", "e f"], "after_sent": ["a c", "c e", "e g"], "labels": [1, 2, 0]},
        features=datasets.Features({"before_sent": datasets.Value("string"),
                                    "after_sent": datasets.Value("string"),
                                    "labels": datasets.ClassLabel(names=names)}))
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: calls.append((name, split)) or table)
    records = read_corpus("hub:someone/corpus:validation")
    assert calls == [("someone/corpus", "validation")]
    assert [r.intents for r in records] == [("clarity",), ("style",)]
    assert records[1].source == "hub:someone/corpus:validation:3"
    read_corpus("hub:someone/corpus")
    assert calls[-1] == ("someone/corpus", "train")
