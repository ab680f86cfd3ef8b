"""Generation metrics against values derived by hand from their definitions (METHODS.md section 5).

Notation in the derivations: S, C, R are the source, candidate and summed reference n-gram counts,
source and candidate counts multiplied by the number of references k.
"""
import json
import math
import random

import pytest

from revtune.errors import RevtuneError
from revtune.metrics.generation import read_score_files, score_generation
from revtune.metrics.gleu import corpus_gleu, reference_draws, sentence_gleu
from revtune.metrics.sari import corpus_sari, sari_sentence
from revtune.metrics.update_rouge import additions, corpus_update_rouge, update_rouge

PUBLISHED = ("About 95 species are currently accepted .", "About 95 you now get in .",
             ["About 95 species are currently known .", "About 95 species are now accepted .",
              "95 species are now accepted ."])


# ---------------------------------------------------------------- SARI

@pytest.mark.parametrize("variant", ["iterater", "hf"])
def test_sari_published_example(variant):
    # The HuggingFace metric card's example; 26.95 is the published value.
    assert round(sari_sentence(*PUBLISHED, variant=variant), 2) == 26.95


# source "a b c d", prediction "a b e", reference "a b f d" (k = 1):
#   n=1 keep: kept {a,b} all in R -> P 1; S&R = {a,b,d} -> R 2/3; F1 0.8
#       del: deleted {c,d}, d kept by R -> P (1 + 0)/2 = 0.5;  add: {e} not in R -> 0
#   n=2 keep {ab}: P 1, R 1 -> 1; del {bc,cd}, neither in R -> 1; add {be} -> 0
#   n=3 keep: nothing kept, R keeps nothing -> 0/0; del {abc,bcd} -> 1; add {abe} -> 0
#   n=4 keep: 0/0; del {abcd} -> 1; add: nothing added, R adds {abfd} -> P 0/0, R 0
#   iterater (0/0 = 0): keep (0.8+1+0+0)/4 = 0.45, del 3.5/4 = 0.875, add 0 -> 100*1.325/3
#   hf (0/0 = 1): keep (0.8+1+1+1)/4 = 0.95 (n=4 add stays 0: P 1, R 0) -> 100*1.825/3
#   easse: deletion as F1 from pooled counts; n=1 del: sys 2, ref-deleted {c} 1, correct 1
#       -> P 0.5, R 1, F1 2/3; other orders as above -> del (2/3+1+1+1)/4 = 11/12
#       -> 100*(0.45 + 11/12)/3
@pytest.mark.parametrize("variant, expected", [("iterater", 100 * 1.325 / 3),
                                               ("hf", 100 * 1.825 / 3),
                                               ("easse", 100 * (0.45 + 11 / 12) / 3)])
def test_sari_small_case_by_hand(variant, expected):
    assert sari_sentence("a b c d", "a b e", ["a b f d"], variant) == pytest.approx(expected)


def test_sari_lowercases_and_tokenizes():
    # 13a splits the final period off and everything is lowercased, so this is the case above.
    assert sari_sentence("A b C d", "a B e", ["a b F d"]) == pytest.approx(100 * 1.325 / 3)
    assert sari_sentence("a b c d.", "a b e.", ["a b f d."]) == sari_sentence("a b c d .", "a b e .",
                                                                                ["a b f d ."])


# Copying the source when the reference also keeps it: keep is 1 at every order; nothing is added
# or deleted by anyone, so add and del are 0/0: 0 under iterater (100/3), 1 under hf (100).
@pytest.mark.parametrize("variant, expected", [("iterater", 100 / 3), ("hf", 100.0), ("easse", 100 / 3)])
def test_sari_copy_of_an_unchanged_reference(variant, expected):
    text = "the cat sat on the mat"
    assert sari_sentence(text, text, [text], variant) == pytest.approx(expected)


# source "a b", prediction "a", references ["a", "a b"] (k = 2): S = {a:2, b:2}, C = {a:2}, R = {a:2, b:1}
#   n=1 keep: kept {a:2}, good {a:2} -> P 1; S&R sums 3 -> R 2/3; F1 0.8
#       del: deleted {b:2}, one reference deleted b -> good {b:1} -> P 1/2; add: 0/0
#   n=2 S {ab:2}, C empty, R {ab:1}: keep P 0/0, R 0/1 -> 0; del: deleted {ab:2}, good {ab:1} -> 1/2
#   n=3, n=4: no n-grams at all (every ratio 0/0)
#   iterater: keep 0.8/4, del 1/4, add 0 -> 100*0.45/3 = 15
#   hf: keep (0.8+0+1+1)/4 = 0.7, del (0.5+0.5+1+1)/4 = 0.75, add 1 -> 100*2.45/3
@pytest.mark.parametrize("variant, expected", [("iterater", 15.0), ("hf", 100 * 2.45 / 3)])
def test_sari_several_references_give_partial_credit(variant, expected):
    assert sari_sentence("a b", "a", ["a", "a b"], variant) == pytest.approx(expected)


# Empty prediction, reference = source: nothing kept (keep 0), every deletion wrong (del 0). Split on
# single spaces, the empty text is one empty token, a unigram "added" but not by the reference:
# add P 0 at n=1; at n>1 nothing is added by anyone: 0/0.
#   iterater: 0.  hf: add (0 + 1 + 1 + 1)/4 -> 100*0.75/3 = 25.  easse (no tokens, 0/0 = 0): 0.
@pytest.mark.parametrize("variant, expected", [("iterater", 0.0), ("hf", 25.0), ("easse", 0.0)])
def test_sari_empty_prediction(variant, expected):
    assert sari_sentence("a b c d", "", ["a b c d"], variant) == pytest.approx(expected)


def test_sari_corpus_is_mean_of_sentences_except_easse_which_pools():
    perfect = ("a b c d", "a b e d", ["a b e d"])   # iterater: keep (1+1+0+0)/4, del 1, add 1 -> 250/3
    copy = ("w x y z", "w x y z", ["w x y z"])       # iterater: 100/3
    columns = list(zip(perfect, copy))
    assert corpus_sari(*columns) == pytest.approx((250 / 3 + 100 / 3) / 2)
    # easse pools counts: keep at n=3 is 2 of 2 kept 3-grams (all from the copy) -> F1 1; likewise
    # n=4; add and del only occur in the perfect edit, all correct -> every F1 is 1.
    assert corpus_sari(*columns, variant="easse") == pytest.approx(100.0)
    assert sari_sentence(*perfect, variant="easse") == pytest.approx(250 / 3)


def test_sari_unknown_variant_names_the_valid_ones():
    with pytest.raises(RevtuneError, match="did you mean 'hf'.*easse, hf, iterater"):
        sari_sentence(*PUBLISHED, variant="hff")
    with pytest.raises(RevtuneError, match="unknown SARI variant"):
        corpus_sari([PUBLISHED[0]], [PUBLISHED[1]], [PUBLISHED[2]], variant="paper")


# ---------------------------------------------------------------- GLEU

# source "a b c d", prediction = reference = "a b e d": every n-gram of h is in r and none is a
# source-only n-gram -> p_n = 1; c = r = 4 -> GLEU 1.
# Copy "a b c d" against reference "a b e d": n=1 matches 3 minus the source-only "c" = 2 of 4;
# n=2 matches {ab} 1 minus {bc, cd} 2 -> floored at 0 -> GLEU 0 (the copy is penalised).
def test_gleu_rewards_the_edit_and_penalises_the_copy():
    assert corpus_gleu(["a b c d"], ["a b e d"], [["a b e d"]]) == pytest.approx(1.0)
    assert corpus_gleu(["a b c d"], ["a b c d"], [["a b e d"]]) == 0.0


# Two sentences, counts pooled: ("a b c d" -> "a b e d", ref "a b e d"): c 4, r 4, 4/4 3/3 2/2 1/1.
# ("x y z" -> "x y", ref "x y w"): c 2, r 3, 2/2, 1/1, 0/0, 0/0.
# Sums: c 6, r 7, all p_n = 1 -> GLEU = exp(min(0, 1 - 7/6)) = exp(-1/6).
def test_gleu_pools_counts_and_applies_the_fixed_brevity_penalty():
    value = corpus_gleu(["a b c d", "x y z"], ["a b e d", "x y"], [["a b e d"], ["x y w"]])
    assert value == pytest.approx(math.exp(-1 / 6))


# n=2 on "a b c d" -> "a b e", ref "a b e d": p1 3/3, p2 2/2, c 3 < r 4 -> exp(1 - 4/3).
def test_gleu_order_is_honoured():
    assert corpus_gleu(["a b c d"], ["a b e"], [["a b e d"]], n=2) == pytest.approx(math.exp(-1 / 3))
    assert corpus_gleu(["a b c d"], ["a b e"], [["a b e d"]], n=4) == 0.0


def test_gleu_is_case_sensitive_and_empty_prediction_scores_zero():
    assert corpus_gleu(["a b c d"], ["A B E D"], [["a b e d"]]) == 0.0
    assert corpus_gleu(["a b c d"], [""], [["a b e d"]]) == 0.0


def test_gleu_reference_draws_match_the_global_random_module():
    state = random.getstate()
    try:
        expected = []
        for j in range(40):
            random.seed(j * 101)
            expected.append([random.randint(0, 2) for _ in range(7)])
    finally:
        random.setstate(state)
    assert reference_draws([3] * 7, 40) == expected


# One item, two references: against "a b e d" the prediction scores 1, against "x y z w" it matches
# nothing (0). Each iteration is one draw, so the mean is the share of iterations drawing index 0.
def test_gleu_several_references_average_seeded_draws():
    zeros = sum(random.Random(j * 101).randint(0, 1) == 0 for j in range(500))
    assert 0 < zeros < 500
    state = random.getstate()
    first = corpus_gleu(["a b c d"], ["a b e d"], [["a b e d", "x y z w"]])
    assert random.getstate() == state
    assert first == pytest.approx(zeros / 500)
    assert corpus_gleu(["a b c d"], ["a b e d"], [["a b e d", "x y z w"]]) == first
    single_draw = 1.0 if random.Random(0).randint(0, 1) == 0 else 0.0
    assert corpus_gleu(["a b c d"], ["a b e d"], [["a b e d", "x y z w"]], iterations=1) == single_draw


# Smoothed per-item score of the copy: counts 2/4, 0/3, 0/2, 0/1 -> zeros become 1:
# 2/4, 1/3, 1/2, 1/1 -> (1/12) ** (1/4); averaged with 1.0 from a second, matching reference.
def test_sentence_gleu_smooths_and_averages_references():
    assert sentence_gleu("a b c d", "a b c d", ["a b e d"]) == pytest.approx((1 / 12) ** 0.25)
    both = sentence_gleu("a b c d", "a b c d", ["a b e d", "a b c d"])
    assert both == pytest.approx(((1 / 12) ** 0.25 + 1.0) / 2)


def test_gleu_rejects_bad_input():
    with pytest.raises(RevtuneError, match="differ in length"):
        corpus_gleu(["a"], ["a", "b"], [["a"]])
    with pytest.raises(RevtuneError, match="at least one reference"):
        corpus_gleu(["a"], ["a"], [[]])


# ---------------------------------------------------------------- Update-ROUGE

def test_update_rouge_both_without_additions_scores_one():
    text = "The cat sat. It was warm."
    assert update_rouge(text, text, text) == {"update_r": 1.0, "rouge1": 1.0, "rouge2": 1.0}


def test_update_rouge_one_side_without_additions_scores_zero():
    source = "The cat sat."
    assert update_rouge(source, source, source + " It rained.") == dict.fromkeys(
        ("update_r", "rouge1", "rouge2"), 0.0)
    assert update_rouge(source, source + " It rained.", source)["update_r"] == 0.0
    assert update_rouge(source, "", source + " It rained.")["update_r"] == 0.0


# Additions: reference "It rained hard." (tokens it rained hard), prediction "It rained." (it rained).
# ROUGE-1: 2 overlaps, P 1, R 2/3 -> F 0.8; ROUGE-2: {it rained} of {it rained, rained hard}
# -> P 1, R 1/2 -> F 2/3; LCS 2 -> F 0.8.
def test_update_rouge_partial_addition_by_hand():
    scores = update_rouge("The cat sat.", "The cat sat. It rained.", "The cat sat. It rained hard.")
    assert scores == pytest.approx({"update_r": 0.8, "rouge1": 0.8, "rouge2": 2 / 3})


def test_update_rouge_additions_are_pieces_absent_from_the_source():
    assert additions("The cat sat.", "The cat sat. It rained. Then sun") == "It rained. Then sun"
    assert additions("The cat sat.", "The cat sat.") == ""


# Reordered additions "A b. C d." vs "C d. A b.": joined with spaces they are one "sentence", so
# rougeLsum is the LCS "a b" (or "c d") = 2 of 4 tokens -> 0.5; newline-joined it would be 1.0.
# ROUGE-1 is 1.0; ROUGE-2 matches {a b, c d} of 3 bigrams each -> 2/3.
def test_update_rouge_joins_additions_with_spaces():
    scores = update_rouge("Intro.", "Intro. C d. A b.", "Intro. A b. C d.")
    assert scores == pytest.approx({"update_r": 0.5, "rouge1": 1.0, "rouge2": 2 / 3})


# Against "It snowed." the prediction's "It rained." scores ROUGE-1 0.5; against "It rained." 1.0.
# The max is taken (a mean would give 0.75).
def test_update_rouge_several_references_take_the_max():
    scores = update_rouge("The cat sat.", "The cat sat. It rained.",
                          ["The cat sat. It snowed.", "The cat sat. It rained."])
    assert scores["rouge1"] == 1.0 and scores["update_r"] == 1.0


def test_corpus_update_rouge_is_the_mean():
    source = "The cat sat."
    corpus = corpus_update_rouge([source, source], [source, source + " It rained."],
                                 [[source], [source + " It rained hard."]])
    assert corpus == pytest.approx({"update_r": 0.9, "rouge1": 0.9, "rouge2": (1 + 2 / 3) / 2})


# ---------------------------------------------------------------- score_generation

# Item 1 copies "a b c d" (reference "a b e d"); item 2 makes exactly the reference's edit.
#   SARI (iterater): copy: n=1 keep P 3/4, R 1 -> 6/7; n=2 P 1/3, R 1 -> 1/2; n=3,4 keep 0;
#     del and add 0 -> 100*((6/7 + 1/2)/4)/3. Perfect edit: 250/3 (see above). Corpus: the mean.
#   GLEU pooled: c 8, r 8; n=1 (2+4)/8, n=2 (0+3)/6, n=3 (0+2)/4, n=4 (0+1)/2 -> (0.75*0.125)**0.25
#   Update-R: copy adds nothing, the reference adds "a b e d" -> 0; item 2 -> 1; mean 0.5.
def test_score_generation_by_hand():
    result = score_generation(["a b c d", "a b c d"], ["a b c d", "a b e d "], [["a b e d"], ["a b e d"]],
                              per_item=True)
    copy_sari = 100 * ((6 / 7 + 1 / 2) / 4) / 3
    assert result["sari"] == pytest.approx((copy_sari + 250 / 3) / 2)
    assert result["gleu"] == pytest.approx((0.75 * 0.125) ** 0.25)
    assert result["update_r"] == pytest.approx(0.5)
    assert result["exact_match"] == 0.5 and result["copy_rate"] == 0.5 and result["n"] == 2
    first, second = result["items"]
    assert first["sari"] == pytest.approx(copy_sari) and first["copy_rate"] == 1.0
    assert first["exact_match"] == 0.0 and first["update_r"] == 0.0
    assert second["exact_match"] == 1.0 and second["copy_rate"] == 0.0 and second["rouge2"] == 1.0
    assert "items" not in score_generation(["a"], ["a"], [["a"]])


def test_score_generation_passes_the_sari_variant():
    hf = score_generation(["a b c d"], ["a b c d"], [["a b c d"]], sari_variant="hf")
    assert hf["sari"] == pytest.approx(100.0)
    with pytest.raises(RevtuneError, match="did you mean"):
        score_generation(["a"], ["a"], [["a"]], sari_variant="easy")


def test_score_generation_rejects_unequal_lengths():
    with pytest.raises(RevtuneError, match="2 sources, 1 predictions"):
        score_generation(["a", "b"], ["a"], [["a"], ["b"]])
    with pytest.raises(RevtuneError, match="no rows"):
        score_generation([], [], [])


# ---------------------------------------------------------------- JSONL readers

def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    src = _write(tmp_path / "src.jsonl", ['{"text": "a b c"}', '{"text": "d e"}'])
    pred = _write(tmp_path / "pred.jsonl", ['{"text": "a b"}', '{"text": "d"}'])
    ref = _write(tmp_path / "ref.jsonl", ['{"references": ["a b", "a c"]}', '{"text": "d f"}'])
    return src, pred, ref


def test_read_score_files(files):
    files[2].write_text(files[2].read_text() + "\n\n")   # trailing blank lines are tolerated
    assert read_score_files(*files) == (["a b c", "d e"], ["a b", "d"], [["a b", "a c"], ["d f"]])


@pytest.mark.parametrize("which, line, message, where", [
    (1, '{"text": "x"', "malformed JSON", (2, None)),
    (1, '["x"]', "expected a JSON object, got list", (2, None)),
    (1, '{"txt": "x"}', "missing", (2, "text")),
    (0, '{"text": 5}', "expected a string, got int", (2, "text")),
    (2, '{"references": "x"}', "expected a non-empty list of strings, got str", (2, "references")),
    (2, '{"references": []}', "got an empty list", (2, "references")),
    (2, '{"references": ["x", 3]}', "item 1 is int", (2, "references")),
    (2, '{"other": 1}', "missing", (2, "references")),
])
def test_read_score_files_errors_name_file_line_and_field(files, which, line, message, where):
    path = files[which]
    first = path.read_text().splitlines()[0]
    _write(path, [first, line])
    with pytest.raises(RevtuneError, match=message) as caught:
        read_score_files(*files)
    assert (caught.value.path, caught.value.line, caught.value.field) == (str(path), *where)
    assert f"{path}:{where[0]}" in str(caught.value)


def test_read_score_files_blank_line_inside_is_an_error(files):
    _write(files[1], ['{"text": "a b"}', "", '{"text": "d"}'])
    with pytest.raises(RevtuneError, match="empty line") as caught:
        read_score_files(*files)
    assert caught.value.line == 2


def test_read_score_files_length_mismatch(files):
    _write(files[2], ['{"text": "x"}'] * 3)
    with pytest.raises(RevtuneError, match="has 3 rows but .*src.jsonl has 2") as caught:
        read_score_files(*files)
    assert caught.value.path == str(files[2]) and caught.value.line == 3


def test_read_score_files_missing_file(files, tmp_path):
    with pytest.raises(RevtuneError, match="file not found") as caught:
        read_score_files(files[0], tmp_path / "nope.jsonl", files[2])
    assert caught.value.path == str(tmp_path / "nope.jsonl")


def test_read_score_files_json_round_trip(tmp_path):
    rows = [{"text": "Ünïcode \"quoted\" text"}]
    paths = [_write(tmp_path / f"{name}.jsonl", [json.dumps(rows[0])]) for name in ("s", "p", "r")]
    assert read_score_files(*paths) == ([rows[0]["text"]], [rows[0]["text"]], [[rows[0]["text"]]])
