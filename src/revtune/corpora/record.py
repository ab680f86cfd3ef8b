"""The one record every corpus reader produces."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Revision:
    """A (before, after) pair and why it was made.

    ``intents`` is a tuple so that single-label corpora (one intent) and multi-label corpora (IteraTeR
    document level, several intents per document) share one type. ``before`` or ``after`` may be empty
    (an added or deleted sentence in ArgRevision), never both.
    """

    before: str
    after: str
    intents: tuple[str, ...]
    context: str | None = None
    doc_id: str | None = None
    source: str | None = field(default=None, compare=False)  # "file:line", for error messages
