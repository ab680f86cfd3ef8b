"""Update-ROUGE (FRUIT; EditEval ``update_rouge``): ROUGE over only the text a revision added.

Plain ROUGE against the reference rewards copying the source, which a revision mostly does. Here the
prediction's additions are scored against the reference's additions, an addition being a sentence-like
piece (regex ``[^.]+\\.?``) that does not occur verbatim in the source.

The additions are joined with spaces, as FRUIT and EditEval do, so ``rougeLsum`` sees one "sentence"
and equals ROUGE-L over the additions. Joining with newlines would turn it into a sentence-level score
that forgives reordered additions, but then ``update_r`` would no longer be comparable with the
published numbers, which is what the metric is for.

Memory: ROUGE-Lsum fills an LCS table of (reference tokens x prediction tokens), so a long addition
without a full stop grew with its square (8,000 words took 2.5 GB). The additions' LCS is therefore
computed on their first :data:`MAX_LCS_TOKENS` tokens (each side); ROUGE-1/2 count every token. Below
the cap, which a sentence- or paragraph-level revision never reaches, the scores are unchanged.

With several references an item takes, per metric, its best score over the references (as
``rouge_score``'s ``score_multi`` does). EditEval instead averages over reference columns; with one
reference per item, as in IteraTeR, the two agree.
"""
from __future__ import annotations

import re
from functools import lru_cache

from revtune.errors import RevtuneError

_PIECE = re.compile(r"[^.]+\.?")
_KEYS = {"update_r": "rougeLsum", "rouge1": "rouge1", "rouge2": "rouge2"}
MAX_LCS_TOKENS = 1000


@lru_cache(maxsize=2)
def _scorer(kinds: tuple[str, ...] = ("rouge1", "rouge2")):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(kinds))


def capped(text: str) -> str:
    """``text`` cut to its first :data:`MAX_LCS_TOKENS` ROUGE tokens (unchanged when shorter)."""
    tokens = _scorer()._tokenizer.tokenize(text)
    return text if len(tokens) <= MAX_LCS_TOKENS else " ".join(tokens[:MAX_LCS_TOKENS])


def additions(source: str, text: str) -> str:
    """The pieces of ``text`` absent from ``source``, stripped and joined with spaces."""
    pieces = (m.group(0) for m in _PIECE.finditer(text))
    return " ".join(p.strip() for p in pieces if p not in source and p.strip())


def _against_one(source: str, prediction: str, reference: str) -> dict[str, float]:
    predicted, wanted = additions(source, prediction), additions(source, reference)
    if not predicted and not wanted:
        return dict.fromkeys(_KEYS, 1.0)
    if not predicted or not wanted:
        return dict.fromkeys(_KEYS, 0.0)
    scores = _scorer().score(target=wanted, prediction=predicted)
    scores.update(_scorer(("rougeLsum",)).score(target=capped(wanted), prediction=capped(predicted)))
    return {key: scores[name].fmeasure for key, name in _KEYS.items()}


def update_rouge(source: str, prediction: str, reference: str | list[str]) -> dict[str, float]:
    """``update_r`` (ROUGE-Lsum F), ``rouge1`` and ``rouge2`` F of one item, each 0-1.

    Both texts adding nothing scores 1.0 (the prediction rightly made no addition); exactly one
    adding nothing scores 0.0.
    """
    references = [reference] if isinstance(reference, str) else list(reference)
    if not references:
        raise RevtuneError("Update-ROUGE needs at least one reference per item")
    per_ref = [_against_one(source, prediction, ref) for ref in references]
    return {key: max(scores[key] for scores in per_ref) for key in _KEYS}


def corpus_update_rouge(sources, predictions, references_list) -> dict[str, float]:
    """The mean of :func:`update_rouge` over the items."""
    if not (len(sources) == len(predictions) == len(references_list)):
        raise RevtuneError(f"Update-ROUGE inputs differ in length: {len(sources)} sources, "
                           f"{len(predictions)} predictions, {len(references_list)} reference lists")
    if not sources:
        raise RevtuneError("Update-ROUGE of an empty corpus is undefined")
    items = [update_rouge(s, p, r) for s, p, r in zip(sources, predictions, references_list)]
    return {key: sum(item[key] for item in items) / len(items) for key in _KEYS}
