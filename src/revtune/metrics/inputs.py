"""The checks every corpus-level generation metric makes on its inputs."""
from __future__ import annotations

from ..errors import RevtuneError


def check_corpus(metric: str, sources, predictions, references_list) -> None:
    """Aligned, non-empty, and at least one reference per item; otherwise one clear error."""
    if not (len(sources) == len(predictions) == len(references_list)):
        raise RevtuneError(f"{metric} inputs differ in length: {len(sources)} sources, "
                           f"{len(predictions)} predictions, {len(references_list)} reference lists")
    if not sources:
        raise RevtuneError(f"{metric} of an empty corpus is undefined")
    if any(not refs for refs in references_list):
        raise RevtuneError(f"{metric} needs at least one reference per item")
