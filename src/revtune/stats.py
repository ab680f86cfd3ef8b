"""How much of a difference between two runs is signal: bootstrap intervals and paired randomization
tests over test items, and agreement between layer sets.

Every test metric here is a function of per-item *sufficient statistics* summed over items: macro-F1
of per-class true/false positive and false negative counts, accuracy of a correct-item count, SARI and
Update-R of per-item scores, GLEU of its pooled n-gram counts. A resample of items is then a sum of
rows, so scipy's vectorized ``bootstrap`` and ``permutation_test`` recompute the exact metric (not a
mean of per-item proxies) for thousands of resamples at once.

Several seeds of one strategy are averaged metric by metric (the mean over seeds of each seed's
score), and items are resampled jointly across seeds when every seed scored the same test items.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Metric = Callable[[np.ndarray], np.ndarray]  # summed item statistics (..., k) -> metric (...)
BATCH = 100  # resamples per vectorized call: keeps (batch, items, k) arrays small on large test sets


# -- per-item statistics and the metrics computed from their sums --------------------------------------

def classification_items(gold: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Rows ``[tp_1..tp_C, fp_1..fp_C, fn_1..fn_C, correct, 1]`` from 0/1 matrices (items x classes),
    one-hot for single-label corpora; ``correct`` is exact match (every intent right)."""
    gold, predicted = np.asarray(gold, dtype=bool), np.asarray(predicted, dtype=bool)
    correct = (gold == predicted).all(axis=1, keepdims=True)
    return np.hstack([gold & predicted, ~gold & predicted, gold & ~predicted, correct,
                      np.ones_like(correct)]).astype(np.float64)


def macro_f1(sums: np.ndarray) -> np.ndarray:
    """Macro-F1 over the classes present in the gold labels or the predictions, as
    ``metrics.classification`` (and scikit-learn's default class set) computes it."""
    classes = (sums.shape[-1] - 2) // 3
    tp, fp, fn = sums[..., :classes], sums[..., classes:2 * classes], sums[..., 2 * classes:3 * classes]
    denominator = 2 * tp + fp + fn
    present = denominator > 0
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=present)
    return f1.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def accuracy(sums: np.ndarray) -> np.ndarray:
    return sums[..., -2] / sums[..., -1]


CLASSIFICATION: dict[str, Metric] = {"macro_f1": macro_f1, "accuracy": accuracy}


GLEU_ORDER = 4
# generation rows: [sari, update_r, 1, GLEU counts: len(hyp), len(ref), then matches and n-grams per order]
_SARI, _UPDATE_R, _COUNT, _GLEU = 0, 1, 2, 3


def generation_items(sources, predictions, references_list, sari_variant: str = "iterater") -> np.ndarray:
    """Rows of per-item SARI and Update-R (both means over items in the corpus scores) and GLEU's counts
    against the first reference (its pooled corpus score is exact for single-reference corpora)."""
    from .metrics.gleu import _stats as gleu_counts
    from .metrics.sari import sari_sentence
    from .metrics.update_rouge import update_rouge

    rows = []
    for source, prediction, references in zip(sources, predictions, references_list):
        rows.append([sari_sentence(source, prediction, references, sari_variant),
                     update_rouge(source, prediction, references)["update_r"], 1.0,
                     *gleu_counts(prediction.split(), source.split(), references[0].split(), GLEU_ORDER)])
    return np.asarray(rows, dtype=np.float64)


def sari(sums: np.ndarray) -> np.ndarray:
    return sums[..., _SARI] / sums[..., _COUNT]


def update_r(sums: np.ndarray) -> np.ndarray:
    return sums[..., _UPDATE_R] / sums[..., _COUNT]


def gleu(sums: np.ndarray) -> np.ndarray:
    """Corpus GLEU from pooled counts (``metrics.gleu._score``, vectorized): 0 when any count is 0."""
    counts = sums[..., _GLEU:]
    hyp, ref = counts[..., 0], counts[..., 1]
    matches, grams = counts[..., 2::2], counts[..., 3::2]
    defined = (counts > 0).all(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(defined[..., None], matches / np.where(grams > 0, grams, 1), 1)
        log_precision = np.log(ratios).mean(axis=-1)
        brevity = np.minimum(0.0, 1 - ref / np.where(hyp > 0, hyp, 1))
    return np.where(defined, np.exp(brevity + log_precision), 0.0)


GENERATION: dict[str, Metric] = {"sari": sari, "gleu": gleu, "update_r": update_r}


def score(table: np.ndarray, metric: Metric) -> float:
    """The metric of one run's item table."""
    return float(metric(np.asarray(table).sum(axis=0)))


# -- intervals and paired tests -----------------------------------------------------------------------

def _seed_mean(tables: list[np.ndarray], metric: Metric, indices) -> np.ndarray:
    """Mean over runs of each run's metric on its resampled items (``indices[k]``: (..., n_k))."""
    return np.mean([metric(table[index].sum(axis=-2)) for table, index in zip(tables, indices)], axis=0)


def bootstrap_interval(tables: list[np.ndarray], metric: Metric, samples: int = 2000,
                       confidence: float = 0.95, seed: int = 0) -> dict:
    """Percentile bootstrap interval of the mean over runs (seeds) of ``metric``, resampling test items.

    Items are resampled jointly across runs when every run has the same number of them (the same test
    split: the usual case), so the interval reflects which items the test set happened to contain;
    the spread over seeds is reported beside it, not folded in. Returns value, low, high.
    """
    from scipy.stats import bootstrap

    tables = [np.asarray(t, dtype=np.float64) for t in tables]
    value = float(np.mean([score(t, metric) for t in tables]))
    paired = len({len(t) for t in tables}) == 1
    data = tuple(np.arange(len(t)) for t in tables)
    if min(len(t) for t in tables) < 2:
        return {"value": value, "low": float("nan"), "high": float("nan")}
    result = bootstrap(data, lambda *idx, axis=-1: _seed_mean(tables, metric, idx), n_resamples=samples,
                       confidence_level=confidence, method="percentile", paired=paired, vectorized=True,
                       batch=BATCH, rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return {"value": value, "low": float(low), "high": float(high)}


def paired_test(tables_a: list[np.ndarray], tables_b: list[np.ndarray], metric: Metric,
                samples: int = 2000, seed: int = 0) -> dict:
    """Approximate randomization test of ``metric(A) - metric(B)`` over the same test items.

    ``tables_a[k]`` and ``tables_b[k]`` are two systems' item tables on one test split (row i: the same
    item); with several pairs (seeds) the statistic is the mean difference over pairs. Under the null
    hypothesis that the systems are exchangeable, each item's two rows are swapped at random; the
    two-sided p-value is the share of swaps whose difference is at least as extreme as the observed one
    (scipy's ``permutation_test``, exact when 2^items <= samples). Returns delta and p.
    """
    from scipy.stats import permutation_test

    tables_a = [np.asarray(t, dtype=np.float64) for t in tables_a]
    tables_b = [np.asarray(t, dtype=np.float64) for t in tables_b]
    if len(tables_a) != len(tables_b) or any(a.shape != b.shape for a, b in zip(tables_a, tables_b)):
        raise ValueError("paired tables must have the same items, pair by pair")
    pool = np.concatenate(tables_a + tables_b)
    total = sum(len(t) for t in tables_a)
    starts = np.cumsum([0] + [len(t) for t in tables_a[:-1]])

    def mean_metric(index: np.ndarray) -> np.ndarray:
        return metric(np.add.reduceat(pool[index], starts, axis=-2)).mean(axis=-1)

    def statistic(x, y, axis=-1):
        return mean_metric(x) - mean_metric(y)

    x, y = np.arange(total), np.arange(total, 2 * total)
    result = permutation_test((x, y), statistic, permutation_type="samples", vectorized=True,
                              n_resamples=samples, alternative="two-sided", batch=BATCH,
                              rng=np.random.default_rng(seed))
    return {"delta": float(result.statistic), "p": float(result.pvalue)}


# -- agreement between layer sets ---------------------------------------------------------------------

def jaccard(a, b) -> float:
    """|A & B| / |A | B|; two empty sets agree fully."""
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def mean_pairwise_jaccard(sets: list) -> float | None:
    """Mean Jaccard over every pair of sets (None with fewer than two)."""
    pairs = [jaccard(sets[i], sets[j]) for i in range(len(sets)) for j in range(i + 1, len(sets))]
    return float(np.mean(pairs)) if pairs else None


def selection_drift(records_a: list[dict], records_b: list[dict]) -> dict:
    """How far two runs' per-step active sets (``selection.jsonl`` records, step by step) differ: the
    share of steps whose sets differ, the mean per-step Jaccard, and the Jaccard of the layers each
    run trained in most steps (active in at least half of them)."""
    steps = min(len(records_a), len(records_b))
    if not steps:
        raise ValueError("no selection records to compare")
    pairs = list(zip(records_a[:steps], records_b[:steps]))
    differ = [set(a["active"]) != set(b["active"]) for a, b in pairs]

    def mostly(records):
        counts: dict[int, int] = {}
        for record in records[:steps]:
            for layer in record["active"]:
                counts[layer] = counts.get(layer, 0) + 1
        return [layer for layer, count in counts.items() if 2 * count >= steps]

    first = next((i for i, d in enumerate(differ) if d), None)
    return {"steps": steps, "steps_differ": float(np.mean(differ)),
            "first_differing_step": None if first is None else records_a[first].get("step", first + 1),
            "mean_step_jaccard": float(np.mean([jaccard(a["active"], b["active"]) for a, b in pairs])),
            "majority_set_jaccard": jaccard(mostly(records_a), mostly(records_b))}
