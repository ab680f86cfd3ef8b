"""Intent-classification metrics: accuracy, macro and per-class P/R/F1, macro AU-PRC.

Single-label corpora (IteraTeR sentence level, ArgRevision) predict the argmax of the logits;
multi-label ones (IteraTeR document level) predict every intent whose sigmoid reaches the threshold.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import (accuracy_score, average_precision_score, confusion_matrix,
                             multilabel_confusion_matrix, precision_recall_fscore_support)

from revtune.errors import RevtuneError

THRESHOLD_GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _arrays(labels, logits, n_classes: int, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    labels, logits = np.asarray(labels), np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != n_classes or len(logits) == 0:
        raise RevtuneError(f"logits must have shape (n >= 1, {n_classes}), got {logits.shape}")
    expected = logits.shape if multi_label else logits.shape[:1]
    if labels.shape != expected:
        raise RevtuneError(f"labels must have shape {expected}, got {labels.shape}")
    allowed = (0, 1) if multi_label else range(n_classes)
    if not np.isin(labels, allowed).all():
        raise RevtuneError(f"labels must be {'0/1' if multi_label else f'class ids 0..{n_classes - 1}'}, "
                           f"got {sorted(set(labels.ravel().tolist()) - set(allowed))[:5]}")
    return labels.astype(np.int64), logits


def _one_hot(labels: np.ndarray, n_classes: int, multi_label: bool) -> np.ndarray:
    return labels if multi_label else np.eye(n_classes, dtype=np.int64)[labels]


def _macro_au_prc(truth: np.ndarray, scores: np.ndarray) -> float:
    per_class = [average_precision_score(truth[:, c], scores[:, c])
                 for c in range(truth.shape[1]) if truth[:, c].any()]
    return float(np.mean(per_class)) if per_class else float("nan")


def predict_classes(logits, multi_label: bool, threshold: float = 0.5) -> np.ndarray:
    """The decision rule of every intent metric: argmax (n,), or with ``multi_label`` a 0/1 matrix of
    the intents whose sigmoid reaches ``threshold`` (n, C)."""
    logits = np.asarray(logits, dtype=np.float64)
    if multi_label:
        return (_sigmoid(logits) >= threshold).astype(np.int64)
    return logits.argmax(axis=1)


def classification_metrics(labels, logits, label_names, multi_label: bool = False,
                           threshold: float = 0.5) -> dict:
    """Accuracy, macro P/R/F1, macro AU-PRC and per-class P/R/F1/support.

    ``labels`` are class ids, shape (n,), or with ``multi_label`` a 0/1 matrix (n, C); ``logits`` are
    (n, C). Multi-label accuracy is exact-match (every intent right). Undefined ratios count 0.

    Macro P/R/F1 average the classes that occur in the labels or the predictions (scikit-learn's
    default set, as the reference code reports it), so a class absent from both does not count as a 0.
    AU-PRC is the mean one-vs-rest average precision over the classes present in the labels, ranked by
    ``logits`` exactly as given (argmax and the reference code use raw logits; softmax probabilities
    can rank items differently); classes without a positive item are skipped, and the value is NaN if
    none has one.
    """
    names = list(label_names)
    labels, logits = _arrays(labels, logits, len(names), multi_label)
    predicted = predict_classes(logits, multi_label, threshold)
    truth, guessed = _one_hot(labels, len(names), multi_label), _one_hot(predicted, len(names), multi_label)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=list(range(len(names))), average=None, zero_division=0)
    present = (truth.sum(axis=0) + guessed.sum(axis=0)) > 0
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "au_prc": _macro_au_prc(truth, logits),
        "per_class": {name: {"precision": float(precision[c]), "recall": float(recall[c]),
                             "f1": float(f1[c]), "support": int(support[c])}
                      for c, name in enumerate(names)},
        "confusion": _confusion(labels, predicted, names, multi_label),
    }


def _confusion(labels, predicted, names: list[str], multi_label: bool) -> dict:
    """Rows are the true class, columns the predicted one; multi-label: one [[tn, fp], [fn, tp]] per class."""
    if multi_label:
        matrix = multilabel_confusion_matrix(labels, predicted).tolist()
        return {"kind": "per_class", "labels": names, "matrix": matrix}
    matrix = confusion_matrix(labels, predicted, labels=list(range(len(names)))).tolist()
    return {"kind": "multiclass", "labels": names, "matrix": matrix}


def tune_threshold(labels, logits) -> float:
    """The sigmoid threshold in 0.05..0.95 (step 0.05) with the best dev macro-F1 (multi-label).

    Ties go to the threshold nearest the untuned 0.5, so a flat dev curve leaves the default alone.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise RevtuneError(f"logits must have shape (n, C), got {logits.shape}")
    names = [str(c) for c in range(logits.shape[1])]
    f1 = {t: classification_metrics(labels, logits, names, multi_label=True, threshold=t)["macro_f1"]
          for t in THRESHOLD_GRID}
    best = max(f1.values())
    return min((t for t in THRESHOLD_GRID if f1[t] == best), key=lambda t: (abs(t - 0.5), t))
