"""Hostile inputs through real `revtune` subprocesses: configs and flags, corpora, score and revise inputs,
error messages. Each case failed (traceback, silent change, hang or GBs of memory) before issue 17."""
import json
import os
import subprocess
import sys
import time
import zipfile

import pytest
from conftest import run_cli, tiny_args, write_iterater

DEEP = "[" * 10_000 + "]" * 10_000


def one_line_error(result, *needles):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "\x1b" not in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def run_measured(*args, stdin=None, timeout=600):
    """The CLI in a subprocess that reports its own peak RSS (MiB) on its last stderr line."""
    code = ("import resource, sys\nfrom revtune.cli import main\ncode = main(sys.argv[1:])\n"
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, file=sys.stderr)\n"
            "sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], input=stdin, capture_output=True,
                            timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines = result.stderr.decode(errors="replace").strip().splitlines()
    return result, int(lines[-1].split()[1]), lines[:-1]


# --- flag and config values, checked before anything runs ---------------------------------------------

BAD_VALUES = [
    (["--learning-rate", "inf"], "learning_rate"), (["--learning-rate", "nan"], "learning_rate"),
    (["--lora-r", "-3"], "lora_r"), (["--lora-alpha", "0"], "lora_alpha"), (["--lora-dropout", "1.5"], "lora_dropout"),
    (["--max-grad-norm", "-1"], "max_grad_norm"), (["--warmup-steps", "-1"], "warmup_steps"),
    (["--epochs", "inf"], "epochs"), (["--weight-decay", "nan"], "weight_decay"),
    (["--split-num", "3", "--select", "random"], "split_num"), (["--tiny-layers", "0"], "tiny_layers"),
    (["--select-interval", "0"], "select_interval"), (["--eval-every", "-1"], "eval_every"),
    (["--num-beams", "0"], "num_beams"), (["--top-p", "0"], "top_p"), (["--temperature", "-1"], "temperature"),
    (["--new-tokens-factor", "inf"], "new_tokens_factor"), (["--dev-generate", "-1"], "dev_generate"),
    (["--seed", "-1"], "seed"), (["--ir-window", "0.7,0.3"], "ir_window"), (["--ir-window", "0.3,nan"], "ir_window"),
    (["--bottleneck-dim", "0"], "bottleneck_dim"), (["--upsample", "style=0"], "upsample"),
    (["--ir-aggregation", "max"], "ir_aggregation"), (["--ir-boundary", "weird"], "ir_boundary"),
    (["--max-length", "10000000"], "max_length"),
]
BAD_YAML = [
    ("max_steps: true\n", "field 'max_steps': expected int"),
    ("learning_rate: .inf\n", "field 'learning_rate'"),
    ("batch_size: 2.5\n", "field 'batch_size'"),
    ("label_sep: [1]\n", "field 'label_sep'"),
    ("max_steps: 3\nseed: 1\nmax_steps: 5\n", ":3: key 'max_steps' appears twice (first on line 1)"),
    ("a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]\n"
                                             for p, c in zip("abcdefgh", "bcdefghi")) + "label_sep: *i\n",
     "alias"),
    ("seed: !!python/object/apply:os.system ['echo hacked']\n", "invalid YAML"),
    ("prompt: \"\\e[31mred\\nline\"\n", "field 'prompt'"),
]


@pytest.mark.parametrize("flags, name", BAD_VALUES, ids=[" ".join(f) for f, _ in BAD_VALUES])
def test_bad_flag_values_are_refused_up_front(tmp_path, corpus, flags, name):
    result = run_cli("train", *tiny_args(corpus, tmp_path / "run"), *flags)
    one_line_error(result, f"field '{name}'")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("text, message", BAD_YAML, ids=range(len(BAD_YAML)))
def test_bad_yaml_is_refused_with_one_line(tmp_path, corpus, text, message):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    started = time.perf_counter()
    result = run_cli("train", *tiny_args(corpus, tmp_path / "run"), "--config", config)
    one_line_error(result, str(config), message)
    assert not (tmp_path / "run").exists() and time.perf_counter() - started < 120


def test_an_oversized_yaml_is_refused_unread(tmp_path, corpus):
    config = tmp_path / "big.yaml"
    config.write_text("# padding\n" * 200_000)
    one_line_error(run_cli("train", *tiny_args(corpus, tmp_path / "run"), "--config", config), "limit is")


def test_other_commands_refuse_bad_counts_with_one_line(tmp_path, corpus):
    result = run_cli("predict", "--run", tmp_path, "--input", corpus["test"], "--out", tmp_path / "p",
                     "--batch-size", "0")
    assert result.returncode == 2 and "expected a whole number" in result.stderr and "Traceback" not in result.stderr


# --- corpora ------------------------------------------------------------------------------------------

def test_deep_json_is_one_line_in_every_jsonl_reader(tmp_path, corpus):
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"before_sent": "a", "after_sent": "b", "labels": ' + DEEP + "}\n")
    runs = {
        "train": run_cli("train", *tiny_args(corpus, tmp_path / "r"), "--train", deep),
        "score": run_cli("score", "--src", deep, "--pred", deep, "--ref", deep),
        "predict": run_cli("predict", "--run", tmp_path, "--input", deep, "--out", tmp_path / "p.jsonl"),
        "revise": run_cli("revise", "--run", tmp_path, "--input", deep, "--intent", "clarity"),
        "intention-tune": run_cli("intention-tune", *tiny_args(corpus, tmp_path / "it"), "--train", deep),
        "layer-card": run_cli("layer-card", *tiny_args(corpus, tmp_path / "card"), "--test", deep),
    }
    for command, result in runs.items():
        one_line_error(result, f"{deep}:1", "nested too deeply")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.jsonl"]


def test_lone_surrogates_are_refused_naming_the_field(tmp_path, corpus):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"before_sent": "fine", "after_sent": "broken \\ud800 text", "labels": "style"}\n')
    one_line_error(run_cli("train", *tiny_args(corpus, tmp_path / "r"), "--train", bad),
                   f"{bad}:1: field 'after_sent'", "unpaired surrogate")
    one_line_error(run_cli("score", "--src", bad, "--pred", bad, "--ref", bad), f"{bad}:1: field 'text'")


def test_an_xlsx_zip_bomb_is_refused_and_leaves_no_temporary_directory(tmp_path, corpus):
    import openpyxl

    bomb = tmp_path / "bomb.xlsx"
    book = openpyxl.Workbook()
    book.active.append(["old_sentences", "new_sentences", "purpose_labels"])
    book.save(bomb)
    with zipfile.ZipFile(bomb) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    head, _, tail = parts["xl/worksheets/sheet1.xml"].partition(b"</sheetData>")
    filler = b'<row r="2"><c r="A2" t="inlineStr"><is><t>' + b"a" * (300 * 2**20) + b"</t></is></c></row>"
    parts["xl/worksheets/sheet1.xml"] = head + filler + b"</sheetData>" + tail
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    assert bomb.stat().st_size < 2 * 2**20
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = subprocess.run([sys.executable, "-m", "revtune.cli", "train", *map(str, tiny_args(corpus, tmp_path / "r")),
                             "--train", str(bomb)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TMPDIR": str(scratch), "PYTHONWARNINGS": "ignore"})
    one_line_error(result, str(bomb), "refused", "would unpack")
    assert not [p for p in scratch.iterdir() if not p.name.startswith("torchinductor")]  # torch's own cache
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.xlsx", "scratch"]


def _xlsx_with_formula(path, cached: str | None):
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["old_sentences", "new_sentences", "purpose_labels"])
    for i in range(12):
        sheet.append([f"old {i}", f"new {i}", "relevant" if i % 2 else "irrelevant"])
    sheet.append(["old x", "new x", '="relevant"'])
    book.save(path)
    if cached is None:
        return path
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    sheet_xml = parts["xl/worksheets/sheet1.xml"].decode()
    sheet_xml = sheet_xml.replace('<c r="C14"><f>"relevant"</f><v></v></c>',
                                  f'<c r="C14" t="str"><f>"relevant"</f><v>{cached}</v></c>')
    assert cached in sheet_xml
    parts["xl/worksheets/sheet1.xml"] = sheet_xml.encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return path


def test_xlsx_formula_cells_read_their_saved_value_or_are_refused(tmp_path):
    from revtune.corpora import read_corpus

    uncached = _xlsx_with_formula(tmp_path / "uncached.xlsx", None)
    result = run_cli("train", "--model", "tiny", "--train", uncached, "--max-steps", "1", "--out", tmp_path / "r")
    one_line_error(result, f"{uncached}:14: field 'cell C14'", "formula with no saved value")
    cached = _xlsx_with_formula(tmp_path / "cached.xlsx", "relevant")
    assert read_corpus(cached)[-1].intents == ("relevant",)


def test_ragged_edit_lists_are_refused(tmp_path, corpus):
    doc = tmp_path / "doc.jsonl"
    doc.write_text(json.dumps({"doc_id": "d1", "before_revision": "a b.", "after_revision": "a c.",
                               "edit_actions": {"major_intent": ["clarity", "style", "fluency"],
                                                "type": ["R", "A"]}}) + "\n")
    one_line_error(run_cli("train", *tiny_args(corpus, tmp_path / "r"), "--train", doc, "--format", "iterater-doc"),
                   f"{doc}:1: field 'edit_actions'", "major_intent: 3", "type: 2")


def test_error_messages_carry_no_raw_newlines_or_escape_codes(tmp_path, corpus):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"before_sent": "a", "after_sent": "b", "labels": "clar\x1b[2J\nity"}) + "\n")
    line = one_line_error(run_cli("train", *tiny_args(corpus, tmp_path / "r"), "--train", bad), "unknown intent")
    assert "\\x1b[2J\\nity" in line
    one_line_error(run_cli("train", *tiny_args(corpus, tmp_path / "r"), "--select", "ir\x1b[31m\nfoo"), "\\x1b[31m\\nfoo")


# --- score and revise: bounded on huge inputs ---------------------------------------------------------

def _score_files(folder, source, prediction, reference):
    paths = []
    for name, text in (("src", source), ("pred", prediction), ("ref", reference)):
        path = folder / f"{name}.jsonl"
        path.write_text(json.dumps({"text": text}) + "\n")
        paths.append(path)
    return paths


def test_score_of_a_long_addition_without_a_full_stop_is_bounded(tmp_path):
    words = [f"w{(i * 7919) % 1000}" for i in range(8000)]
    src, pred, ref = _score_files(tmp_path, "Start.", "Start. " + " ".join(words),
                                  "Start. " + " ".join(reversed(words)))
    result, peak_mib, lines = run_measured("score", "--src", src, "--pred", pred, "--ref", ref, "--json")
    assert result.returncode == 0, lines
    _, baseline_mib, _ = run_measured("score", "--src", src, "--pred", src, "--ref", src, "--json")
    assert peak_mib - baseline_mib < 300, (peak_mib, baseline_mib)  # was 2.5 GB above
    scores = json.loads(result.stdout)
    assert 0 < scores["update_r"] < 1 and scores["rouge1"] == pytest.approx(1.0)


def test_update_r_of_ordinary_revisions_is_the_rouge_lsum_of_the_additions(tmp_path):
    from rouge_score import rouge_scorer

    source = "The cat sat on the mat. It was warm."
    prediction = "The cat sat on the mat. It was very warm and sunny outside."
    reference = "The cat sat on the mat. It was warm and sunny."
    src, pred, ref = _score_files(tmp_path, source, prediction, reference)
    result = run_cli("score", "--src", src, "--pred", pred, "--ref", ref, "--json")
    assert result.returncode == 0, result.stderr
    expected = rouge_scorer.RougeScorer(["rougeLsum", "rouge1"]).score(
        target="It was warm and sunny.", prediction="It was very warm and sunny outside.")
    scores = json.loads(result.stdout)
    assert scores["update_r"] == pytest.approx(expected["rougeLsum"].fmeasure)
    assert scores["rouge1"] == pytest.approx(expected["rouge1"].fmeasure)


@pytest.fixture(scope="module")
def revise_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile-revise") / "gen"
    result = run_cli("train", *tiny_args(corpus, out, "--task", "revise", "--select", "all", "--max-steps", "1",
                                         "--dev-generate", "0", "--new-tokens-floor", "2",
                                         "--new-tokens-factor", "0.01", "--max-length", "160"))
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_revise_cuts_a_huge_line_to_the_run_max_length(revise_run):
    line = ("word " * 400_000).encode()  # 2 MB on one line
    result, peak_mib, lines = run_measured("revise", "--run", revise_run, "--intent", "clarity", stdin=line)
    assert result.returncode == 0, lines
    assert len(result.stdout.decode().splitlines()) == 1
    assert peak_mib < 2500, peak_mib  # the uncut line reached 6.4 GB; alone this run peaks near 0.5 GB


def test_non_utf8_stdin_is_one_line(revise_run):
    result = subprocess.run([sys.executable, "-m", "revtune.cli", "revise", "--run", str(revise_run), "--intent",
                             "clarity"], input=b"fine\nbad \xff\xfe byte\n", capture_output=True, timeout=300,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    result = subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(),
                                         result.stderr.decode())
    one_line_error(result, "<stdin>:2", "not UTF-8")
