"""revtune: layer-wise fine-tuning of language models for text revision.

``from revtune import LayerSelectionCallback`` adds IR-Tuning (or any registered strategy) to a
transformers ``Trainer``; ``revtune.load_run(path)`` predicts or revises with a finished run; the rest of the
package is the command-line tool and its library.
"""
__version__ = "0.1.0"

_LAZY = {
    "LayerSelectionCallback": ("revtune.selection.callback", "LayerSelectionCallback"),
    "build_strategy": ("revtune.selection.registry", "build_strategy"),
    "Strategy": ("revtune.selection.base", "Strategy"),
    "RevtuneError": ("revtune.errors", "RevtuneError"),
    "load_run": ("revtune.api", "load_run"),
    "Run": ("revtune.api", "Run"),
}


def __getattr__(name):
    """Imports torch and transformers only when a user asks for a name that needs them."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'revtune' has no attribute '{name}'")


__all__ = list(_LAZY)
