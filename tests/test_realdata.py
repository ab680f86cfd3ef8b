"""Splitting by document, and bench/realdata.py end to end on the tiny model."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EDITS, INTENTS
from revtune.corpora import Revision, document_split, read_corpus
from revtune.errors import RevtuneError

BENCH = Path(__file__).resolve().parent.parent / "bench" / "realdata.py"


def records(n_docs: int, sizes=(1, 2, 5, 9)) -> list[Revision]:
    out = []
    for doc in range(n_docs):
        for i in range(sizes[doc % len(sizes)]):
            intent = INTENTS[(doc + i) % len(INTENTS)]
            out.append(Revision(f"{EDITS[intent][0]} {doc}.{i}", EDITS[intent][1], (intent,), doc_id=f"d{doc}"))
    return out


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_document_split_keeps_every_document_on_one_side(seed):
    rows = records(40)
    kept, carved = document_split(rows, 0.2, seed)
    assert not {r.doc_id for r in kept} & {r.doc_id for r in carved}
    assert sorted(kept + carved, key=rows.index) == rows and kept == [r for r in rows if r in kept]
    assert abs(len(carved) - 0.2 * len(rows)) <= 9 / 2  # within half the largest document
    assert document_split(rows, 0.2, seed) == (kept, carved)


def test_document_split_varies_with_the_seed_and_treats_missing_ids_as_documents():
    rows = records(40)
    assert document_split(rows, 0.2, 0)[1] != document_split(rows, 0.2, 1)[1]
    loose = [Revision(f"a {i}", "b", ("clarity",)) for i in range(10)]
    kept, carved = document_split(loose, 0.3, 0)
    assert len(carved) == 3 and len(kept) == 7
    with pytest.raises(RevtuneError, match="at least two documents"):
        document_split(records(1), 0.5, 0)


def write_corpus(path: Path, n_docs: int) -> Path:
    with open(path, "w") as handle:
        for r in records(n_docs, sizes=(4, 6, 5)):
            handle.write(json.dumps({"before_sent": r.before, "after_sent": r.after, "labels": r.intents[0],
                                     "doc_id": r.doc_id}) + "\n")
    return path


def test_bench_splits_by_document_and_reports_each_method(tmp_path):
    data = write_corpus(tmp_path / "train.jsonl", 30)
    out = tmp_path / "bench"
    result = subprocess.run([sys.executable, str(BENCH), "--data", str(tmp_path), "--seeds", "0,1",
                             "--select", "ir", "--model", "tiny", "--out", str(out), "--json", "--",
                             "--max-steps", "2", "--batch-size", "4", "--max-length", "32", "--lora-r", "2",
                             "--lora-alpha", "4", "--prompt", "diff"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["summary"]) == {"tfidf", "ir"} and report["seeds"] == [0, 1]
    for name, summary in report["summary"].items():
        values = summary["values"]
        assert len(values) == 2 and summary["mean"] == pytest.approx(sum(values) / 2)
    margin = report["margins"]["ir_minus_tfidf"]["values"]
    assert margin == pytest.approx([a - b for a, b in zip(report["summary"]["ir"]["values"],
                                                          report["summary"]["tfidf"]["values"])])
    for seed in (0, 1):
        parts = {name: read_corpus(out / f"seed{seed}" / f"{name}.jsonl") for name in ("train", "dev", "test")}
        docs = {name: {r.doc_id for r in rows} for name, rows in parts.items()}
        assert not docs["train"] & docs["test"] and not docs["dev"] & docs["test"] and not docs["train"] & docs["dev"]
        assert sum(len(rows) for rows in parts.values()) == len(read_corpus(data))
        assert json.loads((out / f"seed{seed}" / "ir" / "config.json").read_text())["data"]["prompt"] == "diff"
