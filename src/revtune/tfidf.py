"""The classical floor: logistic regression on TF-IDF of the words a revision deleted and added.

Any fine-tuned model should beat it; if one does not, the corpus or the run is the problem. It reads the
same splits as ``train`` (same flags, same seed) and writes a run directory with the same ``metrics.json``
keys, so ``compare`` puts it in the same table. It is not a layer-selection strategy: there are no layers.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from .errors import RevtuneError
from .metrics.classification import classification_metrics, tune_threshold
from .prompts import word_alignment
from .rundir import building, write_json, write_text
from .runtime import PeakMemory

def edit_words(before: str, after: str) -> str:
    """'del:word' for every word the revision removed, 'add:word' for every word it added, in order.

    Words and punctuation are separate tokens (a fluency edit is often a comma), lowercased; the diff is
    difflib's on token lists, so a replaced word yields its deletion and its addition side by side.
    """
    old, new, codes = word_alignment(before.lower(), after.lower())
    out = []
    for op, i1, i2, j1, j2 in codes:
        if op in ("delete", "replace"):
            out += [f"del:{t}" for _, t in old[i1:i2]]
        if op in ("insert", "replace"):
            out += [f"add:{t}" for _, t in new[j1:j2]]
    return " ".join(out)


def _targets(records, labels: list[str], multi_label: bool) -> np.ndarray:
    index = {name: i for i, name in enumerate(labels)}
    if multi_label:
        y = np.zeros((len(records), len(labels)), dtype=np.int64)
        for row, record in enumerate(records):
            y[row, [index[i] for i in record.intents]] = 1
        return y
    return np.array([index[record.intents[0]] for record in records])


def _logits(model, features, n_classes: int, multi_label: bool) -> np.ndarray:
    """Scores in the space ``classification_metrics`` expects: log-odds (multi-label, thresholded by a
    sigmoid) or log-probabilities per class (single-label, argmax)."""
    proba = np.clip(model.predict_proba(features), 1e-9, 1 - 1e-9)
    if multi_label:
        return np.log(proba) - np.log1p(-proba)
    full = np.full((proba.shape[0], n_classes), np.log(1e-9))
    full[:, model.classes_] = np.log(proba)
    return full


def tfidf_run(config) -> dict:
    """Fit on train, score dev and test, and leave a run directory at ``config.output.out``; returns
    metrics. The config's selection part is not used: tfidf has no layers."""
    from pathlib import Path
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    import torch

    from .environment import environment
    from .report_html import write_report
    from .training.data import load_splits
    from .training.intent import write_intent_predictions

    if config.data.task != "intent":
        raise RevtuneError("tfidf is an intent classifier; it has no revise variant", field="task")
    splits = load_splits(config.data, config.training.seed)
    labels, multi = list(splits.labels), splits.multi_label
    docs = {name: [edit_words(r.before, r.after) for r in getattr(splits, name)]
            for name in ("train", "dev", "test")}
    with building(config.output.out, config.output.overwrite) as tmp:
        peak = PeakMemory(torch.device("cpu"))
        peak.reset()
        started = time.perf_counter()
        vectorizer = TfidfVectorizer(tokenizer=str.split, token_pattern=None, lowercase=False,
                                     ngram_range=(1, 2), sublinear_tf=True)
        features = vectorizer.fit_transform(docs["train"])
        classifier = LogisticRegression(class_weight="balanced", max_iter=2000, random_state=config.training.seed)
        model = OneVsRestClassifier(classifier) if multi else classifier
        model.fit(features, _targets(splits.train, labels, multi))
        fit_seconds = time.perf_counter() - started
        peak_bytes = peak.peak_bytes()

        def score(split, threshold):
            if not docs[split]:
                return {}
            logits = _logits(model, vectorizer.transform(docs[split]), len(labels), multi)
            return classification_metrics(_targets(getattr(splits, split), labels, multi), logits, labels,
                                          multi_label=multi, threshold=threshold)

        wanted = config.training.threshold
        threshold = 0.5 if wanted == "tune" else float(wanted)
        if multi and wanted == "tune" and docs["dev"]:
            dev_logits = _logits(model, vectorizer.transform(docs["dev"]), len(labels), True)
            threshold = float(tune_threshold(_targets(splits.dev, labels, True), dev_logits))
        dev = score("dev", threshold)
        dev_entry = {"step": 1, **{k: v for k, v in dev.items() if k not in ("per_class", "confusion")}} if dev else {}
        test = score("test", threshold)
        if docs["test"]:
            test_logits = _logits(model, vectorizer.transform(docs["test"]), len(labels), multi)
            write_intent_predictions(tmp, splits.test, labels, test_logits, multi, threshold)
        coef = sum(est.coef_.size for est in model.estimators_) if multi else model.coef_.size
        metrics = {
            "decision": {"threshold": threshold} if multi else {}, "test": test, "test_at_best_dev": test,
            "final_dev": dev_entry, "best_dev": dev_entry, "dev_history": [dev_entry] if dev_entry else [],
            "train_loss": [], "steps": 1, "mean_step_seconds": fit_seconds, "peak_memory_bytes": peak_bytes,
            "train_seconds": fit_seconds, "trainable_params": int(coef),
            "mean_trainable_params_per_step": int(coef), "mean_active_layers": 0, "n_layers": 0,
            "importance_frequency": [], "device": "cpu", "model": "tfidf", "strategy": "tfidf",
            "adapter": "none", "vocabulary": len(vectorizer.vocabulary_), "labels": labels, "multi_label": multi,
            "model_source": "scikit-learn TF-IDF + LogisticRegression", "layer_sizes": [], "outside_params": 0,
        }
        write_json(tmp / "config.json", config.to_dict())
        write_json(tmp / "metrics.json", metrics)
        write_text(tmp / "trainable.txt", f"total  {int(coef):>10,}  (0 layers, 0 outside the blocks)\n")
        write_json(tmp / "environment.json", environment())
        write_report(tmp, tmp / "report.html", name=Path(config.output.out).name)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """``python -m revtune.tfidf`` with ``train``'s flags: how ``compare`` runs it in its own process."""
    import argparse

    from .config import add_config_arguments, config_from_args

    parser = argparse.ArgumentParser(prog="python -m revtune.tfidf", description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        metrics = tfidf_run(config)
    except RevtuneError as exc:
        print(f"revtune tfidf: error: {exc}", file=sys.stderr)
        return 2
    scores = metrics["test"] or metrics["final_dev"]
    print(f"revtune: done: tfidf macro_f1 {scores.get('macro_f1', float('nan')):.4f}, "
          f"fit {metrics['train_seconds']:.2f} s -> {config.output.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
