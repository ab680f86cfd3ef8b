"""Property-based fuzzing of every reader a user's file reaches: corpora (iterater-sent, iterater-doc,
argrevision xlsx/CSV, tabular JSONL/CSV/TSV/xlsx), the YAML config loader, `score`'s three files and the
`predict`/`revise` inputs.

The property, for every generated input: the reader returns valid records, or raises one
:class:`RevtuneError` whose single line names the file; never another exception, never longer than the
per-example deadline. Inputs are bounded in size (huge lines are 1-2 MB), so memory is bounded too; the
`huge` cases also check the peak allocation against the input size.

``REVTUNE_FUZZ_EXAMPLES`` (default 120) sets the examples per property; CI runs the default.
"""
import io
import json
import os
import tempfile
import tracemalloc
import zipfile
from argparse import Namespace
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from revtune.config import RunConfig, config_from_args
from revtune.corpora import Revision, read_corpus
from revtune.errors import RevtuneError
from revtune.metrics.generation import read_score_files, score_generation
from revtune.predict import read_pairs
from revtune.commands.revise import read_sources

EXAMPLES = int(os.environ.get("REVTUNE_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=5), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much, HealthCheck.large_base_example])
ESCAPES = ("\x1b", "\r", "\x00")

FIELD_NAMES = ["before_sent", "after_sent", "labels", "doc_id", "before_revision", "after_revision",
               "edit_actions", "major_intent", "old_sentences", "new_sentences", "purpose_labels", "before",
               "after", "intents", "intent", "label", "context", "text", "references", "others", ""]
LABELS = ["clarity", "fluency", "coherence", "style", "meaning-changed", "others", "claim", "relevant",
          "LCE", "not LCE", "0", "4", "7", "-1", "Clarity ", "meaning_change", "²", "１"]
NASTY_TEXT = ["", " ", "\t\n", "\ud800", "a\udfffb", "\x1b[31mred", "line\nbreak", "\u2028", "\ufeff",
              "x" * 5000, "é", "日本語", "=SUM(A1:A3)", "null", "NaN", "🙂"]

texts = st.one_of(st.text(max_size=40), st.sampled_from(NASTY_TEXT + LABELS))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True), texts)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.sampled_from(FIELD_NAMES), inner,
                                                                            max_size=4)), max_leaves=12)


def deep(depth: int, opener: str = "[") -> str:
    closer = {"[": "]", "{": "}"}[opener]
    inner = opener * depth + closer * depth if opener == "[" else '{"a":' * depth + "1" + "}" * depth
    return '{"before_sent": "a", "after_sent": "b", "labels": ' + inner + "}"


row_objects = st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=7)
jsonl_lines = st.one_of(
    row_objects.map(json.dumps),
    row_objects.map(lambda row: json.dumps(row, ensure_ascii=False).replace("\\ud800", "\ud800")),
    st.sampled_from([deep(10_000), deep(10_000, "{"), deep(500), "[1, 2]", "null", '"text"', "{", "}{", "\x00",
                     '{"before_sent": NaN, "after_sent": Infinity, "labels": -Infinity}',
                     '{"before_sent": "a", "before_sent": "b", "after_sent": "c", "labels": 0}',
                     '{"doc_id": 1, "before_revision": "a", "after_revision": "b", '
                     '"edit_actions": {"major_intent": ["clarity", "style"], "type": ["R"]}}',
                     '{"doc_id": [[[]]], "before_revision": "a", "after_revision": "b", "edit_actions": []}']),
    st.text(max_size=60),
)
endings = st.sampled_from(["\n", "\r\n", "\r", "\n\n"])


@st.composite
def jsonl_files(draw) -> bytes:
    lines = draw(st.lists(jsonl_lines, min_size=0, max_size=6))
    ending = draw(endings)
    body = ending.join(lines) + draw(st.sampled_from(["", ending]))
    data = body.encode("utf-8", "surrogatepass")
    prefix = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\x80"]))
    return prefix + data


@st.composite
def delimited_files(draw, delimiter: str) -> bytes:
    header = draw(st.lists(st.sampled_from(FIELD_NAMES + ["a", "b", "a"]), min_size=0, max_size=5))
    rows = draw(st.lists(st.lists(st.one_of(texts, st.sampled_from(['"quoted\nnewline"', '"', '""', "a,b",
                                                                   "=1+1", "[\"clarity\"]", "[[["])),
                                          max_size=6), max_size=6))
    ending = draw(endings)
    lines = [delimiter.join(header)] + [delimiter.join(cells) for cells in rows]
    data = ending.join(lines).encode("utf-8", "surrogatepass")
    return draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + data


def write(data: bytes, suffix: str) -> Path:
    handle = tempfile.NamedTemporaryFile(suffix=suffix, delete=False, dir=FUZZ_DIR)
    handle.write(data)
    handle.close()
    return Path(handle.name)


FUZZ_DIR = tempfile.mkdtemp(prefix="revtune-fuzz-")


def check_records(records):
    assert records and all(isinstance(r, Revision) for r in records)
    for record in records:
        assert isinstance(record.before, str) and isinstance(record.after, str)
        assert record.before or record.after
        assert record.intents and all(isinstance(i, str) and i for i in record.intents)
        for value in (record.before, record.after, *record.intents, record.context or "", record.doc_id or ""):
            value.encode("utf-8")  # what a tokenizer needs


def check_error(error: RevtuneError, path: Path | None):
    line = str(error)
    assert "\n" not in line and not any(c in line for c in ESCAPES), line
    if path is not None:
        assert line.startswith(str(path)) or f"field '" in line, line


def corpus_or_refusal(data: bytes, suffix: str, *args) -> None:
    """Write ``data`` to a file, read it as a corpus, and check the records or the one-line refusal."""
    path = write(data, suffix)
    records = read_or_refuse(path, read_corpus, *args)
    if records is not None:
        check_records(records)
    path.unlink()


def read_or_refuse(path: Path, reader, *args):
    try:
        result = reader(path, *args)
    except RevtuneError as error:
        check_error(error, path)
        return None
    return result


# --- corpora ------------------------------------------------------------------------------------------

@FUZZ
@given(data=jsonl_files(), format=st.sampled_from(["auto", "iterater-sent", "iterater-doc", "tabular",
                                                   "argrevision"]))
def test_jsonl_corpora(data, format):
    corpus_or_refusal(data, ".jsonl", format)


@FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".jsonl", ".csv", ".tsv", ".xlsx", ".txt"]))
def test_arbitrary_bytes_under_every_suffix(data, suffix):
    corpus_or_refusal(data, suffix)


@FUZZ
@given(delimiter=st.sampled_from([",", "\t"]), data=st.data(),
       format=st.sampled_from(["auto", "argrevision", "tabular", "iterater-sent"]),
       columns=st.sampled_from([None, {"before": "a", "after": "b", "intents": "label"}, {"context": None},
                                {"bogus": "x"}, {"before": ""}]),
       label_sep=st.sampled_from([None, ",", ";", ""]))
def test_csv_and_tsv_corpora(delimiter, data, format, columns, label_sep):
    raw = data.draw(delimited_files(delimiter))
    path = write(raw, ".csv" if delimiter == "," else ".tsv")
    try:
        records = read_corpus(path, format, columns if format in ("auto", "tabular") else None,
                              label_sep if format in ("auto", "tabular") else None)
    except RevtuneError as error:
        check_error(error, None)
    else:
        check_records(records)
    path.unlink()


xlsx_cells = st.one_of(st.none(), texts.filter(lambda t: "\ud800" not in t and "\udfff" not in t
                                               and not any(ord(c) < 32 and c not in "\t\n\r" for c in t)),
                       st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                       st.sampled_from(["=1+1", "=A1", '="text"']))


@st.composite
def xlsx_files(draw) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    header = draw(st.lists(st.sampled_from(["old_sentences", "new_sentences", "purpose_labels", "before", "after",
                                            "intents", "claim", None]), max_size=5))
    if header:
        sheet.append(header)
    for row in draw(st.lists(st.lists(xlsx_cells, max_size=5), max_size=5)):
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


@FUZZ
@given(data=xlsx_files(), format=st.sampled_from(["auto", "argrevision", "tabular"]))
def test_xlsx_corpora(data, format):
    corpus_or_refusal(data, ".xlsx", format)


@FUZZ
@given(members=st.lists(st.tuples(st.sampled_from(["[Content_Types].xml", "xl/workbook.xml", "xl/worksheets/sheet1.xml",
                                                   "_rels/.rels", "junk"]),
                                  st.binary(max_size=200)), max_size=4))
def test_xlsx_made_of_arbitrary_zip_members(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, payload in members:
            archive.writestr(name, payload)
    corpus_or_refusal(buffer.getvalue(), ".xlsx")


def test_huge_inputs_stay_bounded_in_time_and_memory():
    """1 MB lines and fields, and 10,000-deep nesting, read with a peak allocation of a few times the input."""
    cases = {".jsonl": json.dumps({"before_sent": "x" * 2**20, "after_sent": "y", "labels": "style"}).encode(),
             ".csv": b"before,after,intents\n" + b"a" * 2**20 + b",b,style\n",
             ".tsv": b"before\tafter\tintents\n" + b'"' + b"a" * 2**20 + b"\n",
             ".txt": deep(100_000).encode()}
    for suffix, data in cases.items():
        path = write(data, suffix)
        tracemalloc.start()
        try:
            read_corpus(path)
        except RevtuneError as error:
            check_error(error, path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 12 * len(data) + 2**20, (suffix, peak)
        path.unlink()


# --- the config loader --------------------------------------------------------------------------------

CONFIG_KEYS = [f for f in RunConfig.__dataclass_fields__] + ["lerning_rate", "max-steps", "1", ""]
yaml_values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(texts, scalars, max_size=2),
                        st.sampled_from([".inf", "-.inf", ".nan", "true", "1e400", "0x10", "~", "[1, 2]"]))


@st.composite
def yaml_files(draw) -> bytes:
    import yaml

    mapping = draw(st.dictionaries(st.sampled_from(CONFIG_KEYS), yaml_values, max_size=5))
    try:
        text = yaml.safe_dump(mapping, allow_unicode=True)
    except yaml.YAMLError:
        text = "{}"
    extra = draw(st.sampled_from(["", "a: &x [1]\nb: *x\n", "max_steps: 1\nmax_steps: 2\n", "!!python/object:os.system {}\n",
                                  "- 1\n- 2\n", ":\n", "\t- bad", "seed: &s 1\nnum_beams: *s\n",
                                  "a: &a [" + ",".join(["x"] * 9) + "]\n" + "".join(
                                      f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]\n"
                                      for p, c in zip("abcdefgh", "bcdefghi"))]))
    return (text + extra).encode("utf-8", "surrogatepass")


@FUZZ
@given(data=st.one_of(yaml_files(), st.binary(max_size=200)))
def test_config_loader(data):
    path = write(data, ".yaml")
    try:
        config = config_from_args(Namespace(config=str(path)))
    except RevtuneError as error:
        check_error(error, None)
    else:
        assert isinstance(config, RunConfig)
        config.validate()
    path.unlink()


# --- score's inputs and predict/revise inputs ---------------------------------------------------------

score_lines = st.one_of(st.dictionaries(st.sampled_from(["text", "references", "x"]),
                                        st.one_of(texts, st.lists(texts, max_size=3), json_values), max_size=2)
                        .map(lambda row: json.dumps(row, ensure_ascii=False)),
                        st.sampled_from([deep(10_000), "", " ", "[]", '{"text": "\\ud800"}', "{"]))


@FUZZ
@given(files=st.lists(st.lists(score_lines, max_size=4), min_size=3, max_size=3), ending=endings)
def test_score_inputs(files, ending):
    paths = [write(ending.join(lines).encode("utf-8", "surrogatepass"), ".jsonl") for lines in files]
    try:
        sources, predictions, references = read_score_files(*paths)
        scores = score_generation(sources, predictions, references)
    except RevtuneError as error:
        check_error(error, None)
    else:
        assert scores["n"] == len(sources) and all(0 <= scores[k] <= 1 for k in ("update_r", "gleu"))
    for path in paths:
        path.unlink()


@FUZZ
@given(data=st.one_of(jsonl_files(), delimited_files(",")),
       suffix=st.sampled_from([".jsonl", ".csv"]))
def test_predict_and_revise_inputs(data, suffix):
    path = write(data, suffix)
    for reader in (read_pairs, read_sources):
        try:
            result = reader(path)
        except RevtuneError as error:
            check_error(error, None)
        else:
            assert result
            for item in result:
                for value in ((item.before, item.after) if isinstance(item, Revision) else (item,)):
                    assert isinstance(value, str)
                    value.encode("utf-8")
    path.unlink()


def test_the_fuzz_directory_is_left_empty():
    assert os.listdir(FUZZ_DIR) == []
