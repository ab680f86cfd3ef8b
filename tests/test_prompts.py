"""The edit-aware ``diff`` input: word-level marks, context windows for long documents, the CLI flag."""
import json

import pytest

from conftest import run_cli, tiny_args
from revtune.config import RunConfig
from revtune.corpora.record import Revision
from revtune.errors import RevtuneError
from revtune.prompts import diff_text, intent_prompt

LABELS = ["clarity", "fluency", "coherence", "style", "meaning-changed"]


@pytest.mark.parametrize("before, after, expected", [
    ("pieline", "pipeline", "[-pieline-]{+pipeline+}"),
    ("However, when", "When", "[-However, when-]{+When+}"),
    ("The cat sat on the mat.", "The cat sat on a mat!", "The cat sat on [-the-]{+a+} mat[-.-]{+!+}"),
    ("It rained. We stayed.", "It rained, so we stayed.", "It rained[-. We-]{+, so we+} stayed."),
    ("the price was 10 dollars", "the price was 10 US dollars", "the price was 10 {+US+} dollars"),
    ("a very big house", "a big house", "a [-very-] big house"),
    ("", "A new sentence.", "{+A new sentence.+}"),
    ("Referenc", "", "[-Referenc-]"),
    ("same  spacing kept", "same  spacing kept", "same  spacing kept"),
])
def test_diff_marks_deletions_and_insertions_word_by_word(before, after, expected):
    assert diff_text(before, after) == expected


def long_document(n_words: int, edits: dict[int, str]) -> tuple[str, str]:
    words = [f"w{i}" for i in range(n_words)]
    revised = [edits.get(i, word) for i, word in enumerate(words)]
    return " ".join(words), " ".join(revised)


def test_context_window_keeps_only_the_tokens_beside_each_edit():
    before, after = long_document(400, {100: "x100", 300: "y300 z300"})
    text = diff_text(before, after, context=3)
    assert text == ("… w97 w98 w99 [-w100-]{+x100+} w101 w102 w103 … "
                    "w297 w298 w299 [-w300-]{+y300 z300+} w301 w302 w303 …")
    assert diff_text(before, after, context=0) == "… [-w100-]{+x100+} … [-w300-]{+y300 z300+} …"
    whole = diff_text(before, after, context=-1)
    assert "…" not in whole and whole.count("w") == 400 and "{+x100+}" in whole  # every word once


def test_nearby_edits_share_their_context_and_unchanged_text_stays_whole():
    before, after = long_document(20, {5: "x5", 8: "x8"})
    assert diff_text(before, after, context=3) == "… w2 w3 w4 [-w5-]{+x5+} w6 w7 [-w8-]{+x8+} w9 w10 w11 …"
    assert diff_text("nothing changed here", "nothing changed here", context=0) == "nothing changed here"


def test_document_level_prompt_fits_max_length_while_the_instruction_does_not():
    before, after = long_document(2000, {700: "x700", 1500: "y1500"})
    revision = Revision(before, after, ("clarity",))
    diff = intent_prompt(revision, LABELS, "diff", context=8)
    assert diff.startswith("Edit: … w692") and diff.endswith("…\nIntent:")
    assert len(diff.split()) < 50
    assert len(intent_prompt(revision, LABELS, "instruction").split()) > 4000


def test_diff_prompt_rendering_and_context_line():
    plain = Revision("they was going", "they were going", ("fluency",))
    assert intent_prompt(plain, LABELS, "diff") == "Edit: they [-was-]{+were+} going\nIntent:"
    framed = Revision("a", "b", ("clarity",), context="The sentence before.")
    assert intent_prompt(framed, LABELS, "diff") == "Context: The sentence before.\nEdit: [-a-]{+b+}\nIntent:"
    assert intent_prompt(plain, LABELS, "pair") == "they was going\nthey were going"
    assert "### Original Sentence: they was going" in intent_prompt(plain, LABELS, "instruction")


def test_unknown_prompt_and_class_weight_are_config_errors():
    with pytest.raises(RevtuneError, match="diff, instruction, pair"):
        RunConfig.from_values(dict(prompt="marks"))
    with pytest.raises(RevtuneError, match="balanced, none"):
        RunConfig.from_values(dict(class_weight="inverse"))


def test_cli_trains_and_predicts_with_the_diff_prompt(corpus, tmp_path):
    out = tmp_path / "diff"
    result = run_cli("train", *tiny_args(corpus, out, "--prompt", "diff", "--diff-context", "4",
                                         "--class-weight", "balanced"))
    assert result.returncode == 0, result.stderr
    config = RunConfig.from_values(json.loads((out / "config.json").read_text())).flat()
    assert config["prompt"] == "diff" and config["diff_context"] == 4 and config["class_weight"] == "balanced"
    decision = json.loads((out / "metrics.json").read_text())["decision"]
    assert set(decision["class_weights"]) == set(LABELS)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"before": "they was going", "after": "they were going"}) + "\n")
    predicted = run_cli("predict", "--run", out, "--input", pairs, "--out", tmp_path / "pred.jsonl")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads((tmp_path / "pred.jsonl").read_text())["intents"][0] in LABELS

    bad = run_cli("train", *tiny_args(corpus, tmp_path / "bad", "--prompt", "marks"))
    assert bad.returncode == 2 and "prompt" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
