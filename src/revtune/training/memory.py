"""Peak memory per optimizer step, so a run shows which steps set its peak and what a step usually needs.

The run's peak is the maximum over steps; with layer selection it is set by the step whose lowest
trained layer is deepest down, while most steps need less. This callback resets the high-water mark at
the start of each step and reads it at the end (before evaluation callbacks run), and folds whatever
happens between steps (evaluation) into the run's overall peak, so that figure keeps its old meaning.
"""
from __future__ import annotations

import statistics

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from ..runtime import PeakMemory
from ..statejson import exported, restored


class StepMemory(TrainerCallback, ExportableState):
    """Checkpoints carry the per-step peaks, so a resumed run reports every step's."""

    def __init__(self, peak: PeakMemory):
        self.peak = peak
        self.per_step: list[int] = []
        self.overall = 0

    def state(self) -> dict:
        return exported({"per_step": self.per_step, "overall": self.overall})

    def on_train_begin(self, args, state, control, **kwargs):
        saved = restored(self, state)
        if saved:
            self.per_step, self.overall = list(saved["per_step"]), saved["overall"]

    def on_step_begin(self, args, state, control, **kwargs):
        self.overall = max(self.overall, self.peak.peak_bytes())
        self.peak.reset()

    def on_step_end(self, args, state, control, **kwargs):
        self.per_step.append(self.peak.peak_bytes())

    def run_peak(self) -> int:
        """The peak over the whole training phase: every step and everything between them."""
        return max([self.overall, self.peak.peak_bytes(), *self.per_step])

    def summary(self) -> dict:
        return {"step_peak_memory_bytes": self.per_step,
                "median_step_peak_memory_bytes": int(statistics.median(self.per_step)) if self.per_step else 0}
