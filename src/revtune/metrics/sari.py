"""SARI (Xu et al. 2016): how well a rewrite adds, keeps and deletes n-grams, against the source and
the references.

Three reference implementations disagree on empty denominators and on how a corpus is pooled, and
published numbers depend on which one was run, so each is a named variant:

- ``iterater`` (default): IteraTeR's copy of the HuggingFace metric, 0/0 counts 0.
- ``hf``: the HuggingFace ``sari`` metric, 0/0 counts 1 (a prediction equal to a reference that makes
  no edit then scores 100, not 33.3).
- ``easse``: EASSE ``corpus_sari`` (what EditEval reports): per-order counts summed over the corpus,
  then F1 for add, keep and delete alike.

The two per-sentence variants split the tokenized text on single spaces, as their reference code does,
so an empty text is one empty token; EASSE splits on any whitespace (an empty text has no tokens).
"""
from __future__ import annotations

from collections import Counter
from functools import lru_cache

from revtune.errors import RevtuneError, did_you_mean
from revtune.metrics.inputs import check_corpus

MAX_ORDER = 4
VARIANTS = ("iterater", "hf", "easse")


@lru_cache(maxsize=1)
def _tokenizer13a():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()


def _tokens(text: str, variant: str) -> list[str]:
    normalized = _tokenizer13a()(text.lower())
    return normalized.split() if variant == "easse" else normalized.split(" ")


def _ngram_counts(tokens: list[str], n: int) -> Counter:
    return Counter(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _scaled(counts: Counter, factor: int) -> Counter:
    return Counter({gram: count * factor for gram, count in counts.items()})


def _ratio(num: float, den: float, zero: float) -> float:
    return num / den if den else zero


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _order_scores(src: Counter, cand: Counter, refs: Counter, n_refs: int, zero: float):
    """(keep F1, delete precision, add F1) of one sentence at one n-gram order.

    Keep and delete weigh each n-gram by the share of the references that agree with the system,
    which is why source and candidate counts are multiplied by the number of references.
    """
    s, c = _scaled(src, n_refs), _scaled(cand, n_refs)
    kept, kept_by_refs = s & c, s & refs
    kept_good = kept & refs
    keep_p = _ratio(sum(kept_good[g] / kept[g] for g in kept), len(kept), zero)
    keep_r = _ratio(sum(kept_good.values()), sum(kept_by_refs.values()), zero)

    deleted = s - c
    deleted_good = deleted - refs
    del_p = _ratio(sum(deleted_good[g] / deleted[g] for g in deleted), len(deleted), zero)

    added, added_by_refs = set(cand) - set(src), set(refs) - set(src)
    added_good = len(added & set(refs))
    add_p = _ratio(added_good, len(added), zero)
    add_r = _ratio(added_good, len(added_by_refs), zero)
    return _f1(keep_p, keep_r), del_p, _f1(add_p, add_r)


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise RevtuneError(f"unknown SARI variant '{variant}'; {did_you_mean(variant, VARIANTS)}")


def _sentence(source: str, prediction: str, references: list[str], variant: str) -> float:
    zero = 1.0 if variant == "hf" else 0.0
    src, cand = _tokens(source, variant), _tokens(prediction, variant)
    ref_tokens = [_tokens(r, variant) for r in references]
    totals = [0.0, 0.0, 0.0]
    for n in range(1, MAX_ORDER + 1):
        refs = sum((_ngram_counts(r, n) for r in ref_tokens), Counter())
        scores = _order_scores(_ngram_counts(src, n), _ngram_counts(cand, n), refs, len(references), zero)
        totals = [t + s / MAX_ORDER for t, s in zip(totals, scores)]
    return 100 * sum(totals) / 3


def _easse_counts(source: str, prediction: str, references: list[str]) -> list[list[int]]:
    """Per order: [add correct, add sys, add ref, keep ..., del ...], the counts EASSE sums."""
    src, cand = _tokens(source, "easse"), _tokens(prediction, "easse")
    ref_tokens = [_tokens(r, "easse") for r in references]
    rows = []
    for n in range(1, MAX_ORDER + 1):
        o, sys = _ngram_counts(src, n), _ngram_counts(cand, n)
        refs = sum((_ngram_counts(r, n) for r in ref_tokens), Counter())
        o_rep, sys_rep = _scaled(o, len(references)), _scaled(sys, len(references))
        added, added_by_refs = set(sys) - set(o), set(refs) - set(o)
        kept, kept_by_refs = o_rep & sys_rep, o_rep & refs
        deleted, deleted_by_refs = o_rep - sys_rep, o_rep - refs
        rows.append([len(added & set(refs)), len(added), len(added_by_refs),
                     sum((kept & kept_by_refs).values()), sum(kept.values()), sum(kept_by_refs.values()),
                     sum((deleted & deleted_by_refs).values()), sum(deleted.values()),
                     sum(deleted_by_refs.values())])
    return rows


def _easse_corpus(sources, predictions, references_list) -> float:
    totals = [[0] * 9 for _ in range(MAX_ORDER)]
    for src, pred, refs in zip(sources, predictions, references_list):
        for row, counts in zip(totals, _easse_counts(src, pred, refs)):
            row[:] = [a + b for a, b in zip(row, counts)]
    score = 0.0
    for row in totals:
        for correct, sys_total, ref_total in (row[0:3], row[3:6], row[6:9]):
            precision, recall = _ratio(correct, sys_total, 0.0), _ratio(correct, ref_total, 0.0)
            score += _f1(precision, recall) / MAX_ORDER
    return 100 * score / 3


def sari_sentence(source: str, prediction: str, references: list[str], variant: str = "iterater") -> float:
    """SARI of one prediction, 0-100. Under ``easse`` it is the corpus score of a one-item corpus."""
    _check_variant(variant)
    if not references:
        raise RevtuneError("SARI needs at least one reference per item")
    if variant == "easse":
        return _easse_corpus([source], [prediction], [references])
    return _sentence(source, prediction, references, variant)


def corpus_sari(sources, predictions, references_list, variant: str = "iterater") -> float:
    """Corpus SARI, 0-100: the mean of sentence scores, or EASSE's pooled counts under ``easse``."""
    _check_variant(variant)
    check_corpus("SARI", sources, predictions, references_list)
    if variant == "easse":
        return _easse_corpus(sources, predictions, references_list)
    scores = [_sentence(s, p, r, variant) for s, p, r in zip(sources, predictions, references_list)]
    return sum(scores) / len(scores)
