"""GLEU for text revision (Napoles et al. 2015; "GLEU without tuning" 2016), as computed by
cnap/gec-ranking ``scripts/gleu.py`` after its 2017 brevity-penalty fix.

Unlike BLEU, an n-gram the prediction copied from the source is penalised when the reference dropped
it, so leaving an erroneous source untouched does not score well. Tokens are whitespace-separated and
case-sensitive, as in the reference script.

With several references the reference script scores the corpus 500 times, each time against one
reference per sentence drawn with ``random.seed(j * 101); random.randint(...)``, and reports the mean.
We draw the same indices from a private ``random.Random(j * 101)`` so the caller's global random state
is untouched. (The original script ran on Python 2, whose ``randint`` maps seeds to different indices,
so its multi-reference scores can differ slightly from any Python 3 port.) Unlike that script, ``n`` is
honoured (it always used order 4).
"""
from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np

from revtune.errors import RevtuneError
from revtune.metrics.inputs import check_corpus


def _ngram_counts(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) + 1 - n))


def _stats(hyp: list[str], src: list[str], ref: list[str], n: int) -> list[int]:
    """[len(hyp), len(ref), then per order: penalised matches, hypothesis n-gram count]."""
    stats = [len(hyp), len(ref)]
    for order in range(1, n + 1):
        h, s, r = _ngram_counts(hyp, order), _ngram_counts(src, order), _ngram_counts(ref, order)
        source_only = Counter({gram: count for gram, count in s.items() if gram not in r})
        matches = sum((h & r).values()) - sum((h & source_only).values())
        stats += [max(matches, 0), max(len(hyp) + 1 - order, 0)]
    return stats


def _score(stats, n: int, smooth: bool = False) -> float:
    if smooth:
        stats = [s if s != 0 else 1 for s in stats]
    if any(s == 0 for s in stats):
        return 0.0
    c, r = stats[0], stats[1]
    log_precision = sum(math.log(m / d) for m, d in zip(stats[2::2], stats[3::2])) / n
    return math.exp(min(0.0, 1 - r / c) + log_precision)


def reference_draws(n_refs: list[int], iterations: int) -> list[list[int]]:
    """The reference index of every sentence in every iteration, as the reference script draws them."""
    draws = []
    for j in range(iterations):
        rng = random.Random(j * 101)
        draws.append([rng.randint(0, k - 1) for k in n_refs])
    return draws


def _check(sources, predictions, references_list, n: int) -> None:
    check_corpus("GLEU", sources, predictions, references_list)
    if n < 1:
        raise RevtuneError(f"GLEU order n must be at least 1, got {n}")


def corpus_gleu(sources, predictions, references_list, n: int = 4, iterations: int = 500) -> float:
    """Corpus GLEU, 0-1. One iteration when every item has a single reference (no draw to average)."""
    _check(sources, predictions, references_list, n)
    n_refs = [len(refs) for refs in references_list]
    if all(k == 1 for k in n_refs):
        iterations = 1
    rows, offsets = [], []
    for src, pred, refs in zip(sources, predictions, references_list):
        offsets.append(len(rows))
        rows += [_stats(pred.split(), src.split(), ref.split(), n) for ref in refs]
    table = np.asarray(rows, dtype=np.int64)
    offsets = np.asarray(offsets)
    scores = [_score(table[offsets + np.asarray(draw)].sum(axis=0).tolist(), n)
              for draw in reference_draws(n_refs, iterations)]
    return float(np.mean(scores))


def sentence_gleu(source: str, prediction: str, references: list[str], n: int = 4) -> float:
    """Per-item GLEU, 0-1: the mean over references of the smoothed score (zero counts set to 1).

    This is what the reference script prints per sentence in its debug mode; without smoothing almost
    every short sentence would score 0 for lack of a 4-gram match.
    """
    _check([source], [prediction], [references], n)
    scores = [_score(_stats(prediction.split(), source.split(), ref.split(), n), n, smooth=True)
              for ref in references]
    return sum(scores) / len(scores)
