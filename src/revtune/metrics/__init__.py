"""Metrics: intent classification (``classification``) and revision generation (SARI, GLEU,
Update-ROUGE, gathered by ``generation.score_generation``).

Names are re-exported lazily so that importing one kind of metric does not load the other's libraries
(scikit-learn, rouge-score). The per-item ``update_rouge`` function is not re-exported: its name is
also its module's, which the import system binds on this package once the module is loaded.
"""
from importlib import import_module

_HOMES = {
    "classification_metrics": "classification", "tune_threshold": "classification",
    "score_generation": "generation", "read_score_files": "generation",
    "sari_sentence": "sari", "corpus_sari": "sari",
    "corpus_gleu": "gleu", "sentence_gleu": "gleu",
    "corpus_update_rouge": "update_rouge",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
