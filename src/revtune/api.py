"""The Python API of a finished run: ``revtune.load_run(path).predict(pairs)`` / ``.revise(texts, intent=...)``.

A run loads lazily (the model on the first call) and never retrains; an intention-tune output answers
both: ``predict`` with its predictor, ``revise`` with its generator.
"""
from __future__ import annotations

from pathlib import Path

from .errors import RevtuneError


class Run:
    def __init__(self, path: str | Path, device: str = "auto"):
        from .rundir import read_run

        path = Path(path)
        self.path, self.device = path, device
        parts = {name: path / name for name in ("predictor", "generator") if (path / name / "config.json").is_file()}
        if parts:
            self._runs = {read_run(p)[1].data.task: p for p in parts.values()}
        else:
            run, config, _ = read_run(path)
            self._runs = {config.data.task: run}
        self._loaded: dict[str, tuple] = {}

    @property
    def tasks(self) -> list[str]:
        return sorted(self._runs)

    def _model(self, task: str):
        if task not in self._runs:
            raise RevtuneError(f"this run has no {task} model (it has: {', '.join(self.tasks)})", path=self.path,
                               field="task")
        if task not in self._loaded:
            from .predict import load_run_model

            self._loaded[task] = load_run_model(self._runs[task], task, self.device)
        return self._loaded[task]

    @property
    def labels(self) -> list[str]:
        from .rundir import read_run

        task = "intent" if "intent" in self._runs else self.tasks[0]
        return list(read_run(self._runs[task])[2]["labels"] or [])

    def predict(self, pairs, batch_size: int = 16) -> list[dict]:
        """Intents of (before, after) pairs, given as tuples or dicts with ``before`` and ``after``:
        one dict per pair with ``intents`` (a list) and ``probabilities`` (per label)."""
        from .corpora.record import Revision
        from .predict import predict_intents

        records = []
        for index, pair in enumerate(pairs):
            before, after = (pair["before"], pair["after"]) if isinstance(pair, dict) else pair
            if not str(before).strip() and not str(after).strip():
                raise RevtuneError("empty pair", field=f"pairs[{index}]")
            records.append(Revision(str(before), str(after), ()))
        model, tokenizer, config, learned = self._model("intent")
        return predict_intents(model, tokenizer, config, learned, records, batch_size)

    def revise(self, texts, intent: str | list[str], batch_size: int = 16) -> list[str]:
        """Each text revised for ``intent`` (a name, a comma-separated list or a list of names)."""
        from .commands.revise import parse_intents
        from .training.revise import revise_texts

        texts = [texts] if isinstance(texts, str) else list(texts)
        model, tokenizer, config, learned = self._model("revise")
        names = parse_intents(intent if isinstance(intent, str) else ",".join(intent), learned["labels"] or [])
        return revise_texts(model, tokenizer, texts, [names] * len(texts), config.decoding, batch_size,
                            config.training.seed, config.data.max_length)


def load_run(path: str | Path, device: str = "auto") -> Run:
    """A finished run (``revtune train``) or an intention-tune output, ready to predict or revise."""
    return Run(path, device)
