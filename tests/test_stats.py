"""Intervals and paired tests against cases whose answer is known."""
import numpy as np
import pytest

from revtune import stats
from revtune.metrics.classification import classification_metrics
from revtune.metrics.generation import score_generation


def one_hot(ids, classes):
    return np.eye(classes, dtype=int)[ids]


@pytest.mark.parametrize("multi_label", [False, True])
def test_item_sums_give_the_reported_macro_f1_and_accuracy(multi_label):
    rng = np.random.default_rng(3)
    names = ["a", "b", "c", "d", "e"]
    logits = rng.normal(size=(60, 5))
    if multi_label:
        gold = (rng.random((60, 5)) < 0.3).astype(int)
        predicted = (logits >= 0).astype(int)
    else:
        gold = rng.integers(0, 4, size=60)  # class e never occurs in the gold labels
        predicted = one_hot(logits.argmax(1), 5)
    reported = classification_metrics(gold, logits, names, multi_label=multi_label)
    table = stats.classification_items(gold if multi_label else one_hot(gold, 5), predicted)
    assert stats.score(table, stats.macro_f1) == pytest.approx(reported["macro_f1"])
    assert stats.score(table, stats.accuracy) == pytest.approx(reported["accuracy"])


def test_item_sums_give_the_reported_generation_scores():
    sources = ["the cat sat on a mat", "he go to school", "it is good", "we was there yesterday"]
    predictions = ["the cat sat on the mat", "he goes to school", "it is good", "we were there"]
    references = [["the cat sat on the mat"], ["he goes to school"], ["it is very good"],
                  ["we were there yesterday"]]
    reported = score_generation(sources, predictions, references)
    table = stats.generation_items(sources, predictions, references)
    for name, metric in stats.GENERATION.items():
        assert stats.score(table, metric) == pytest.approx(reported[name]), name


def correct_table(correct: np.ndarray) -> np.ndarray:
    """Single-label items of two classes where the system is right exactly where ``correct`` is."""
    gold = np.arange(len(correct)) % 2
    predicted = np.where(correct, gold, 1 - gold)
    return stats.classification_items(one_hot(gold, 2), one_hot(predicted, 2))


def test_identical_systems_have_p_one_and_a_clearly_better_one_a_small_p():
    rng = np.random.default_rng(0)
    table = correct_table(rng.random(80) < 0.6)
    same = stats.paired_test([table], [table], stats.accuracy, samples=500)
    assert same == {"delta": 0.0, "p": 1.0}
    better = correct_table(rng.random(80) < 0.95)
    worse = correct_table(rng.random(80) < 0.45)
    result = stats.paired_test([better], [worse], stats.macro_f1, samples=500)
    assert result["delta"] > 0.3 and result["p"] < 0.01


def test_a_paired_test_over_seeds_pools_the_evidence():
    """A small edge on each of three seeds is weaker alone than pooled over the three pairs."""
    rng = np.random.default_rng(1)
    a = [correct_table(rng.random(60) < 0.75) for _ in range(3)]
    b = [correct_table(rng.random(60) < 0.6) for _ in range(3)]
    alone = [stats.paired_test([x], [y], stats.accuracy, samples=1000)["p"] for x, y in zip(a, b)]
    pooled = stats.paired_test(a, b, stats.accuracy, samples=1000)
    assert pooled["delta"] == pytest.approx(np.mean([stats.score(x, stats.accuracy) - stats.score(y, stats.accuracy)
                                                     for x, y in zip(a, b)]))
    assert pooled["p"] < min(alone)
    with pytest.raises(ValueError):
        stats.paired_test(a, b[:2], stats.accuracy)


def test_a_nominal_95_interval_covers_the_true_accuracy_about_95_times_in_100():
    rng = np.random.default_rng(7)
    truth, trials = 0.7, 200
    covered = 0
    for trial in range(trials):
        table = correct_table(rng.random(150) < truth)
        interval = stats.bootstrap_interval([table], stats.accuracy, samples=400, seed=trial)
        assert interval["low"] <= interval["value"] <= interval["high"]
        covered += interval["low"] <= truth <= interval["high"]
    assert 0.89 <= covered / trials <= 0.99  # binomial sd at 0.95 over 200 trials: 0.015


def test_intervals_over_seeds_resample_the_shared_items_jointly():
    """Two seeds that make the same errors: resampled jointly, the mean's interval is as wide as one
    seed's; resampled independently (different test items) it would be narrower."""
    rng = np.random.default_rng(2)
    table = correct_table(rng.random(100) < 0.7)
    one = stats.bootstrap_interval([table], stats.accuracy, samples=1000, seed=0)
    two = stats.bootstrap_interval([table, table], stats.accuracy, samples=1000, seed=0)
    assert two["high"] - two["low"] == pytest.approx(one["high"] - one["low"], abs=0.02)
    unpaired = stats.bootstrap_interval([table, table[:-1]], stats.accuracy, samples=1000, seed=0)
    assert unpaired["high"] - unpaired["low"] < 0.85 * (one["high"] - one["low"])


def test_jaccard():
    assert stats.jaccard([1, 2, 3], [2, 3, 4]) == 0.5 and stats.jaccard([], []) == 1.0
    assert stats.mean_pairwise_jaccard([[1, 2], [1, 2], [3]]) == pytest.approx((1 + 0 + 0) / 3)
    assert stats.mean_pairwise_jaccard([[1]]) is None
