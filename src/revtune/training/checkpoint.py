"""Checkpoints of a run in progress, on the Trainer's own machinery, and clean interruption.

What a checkpoint holds (``OUT.partial/checkpoints/checkpoint-N/``), and who writes it:

- ``trainable.safetensors``: the run's trainable tensors only (adapters, head, or every weight for
  full-weight runs); the frozen base is rebuilt from the model spec and seed on resume. This replaces
  the Trainer's ``save_pretrained`` of the whole model (hundreds of MB to GBs per checkpoint for a 7B
  base, and peft's file would miss revtune's bottleneck tensors).
- ``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth`` (python, numpy, torch, CUDA generators):
  written by the Trainer; it reads them back with ``torch.load(weights_only=True)``.
- ``trainer_state.json``: the Trainer's step, log history and the data position (resume skips the
  batches already seen); its ``stateful_callbacks`` carry the JSON state of revtune's callbacks
  (``ExportableState``): the selection strategy's state, its random generator, the selection log so
  far, the dev history.
- ``revtune_tensors.safetensors``: the tensors of those callbacks that are not JSON (best-dev weights).

Each checkpoint is written under ``checkpoints/.staging/`` and renamed into place when complete, then
older ones beyond ``keep`` are deleted: a crash while writing leaves the previous checkpoint intact.
Nothing a user hands over is unpickled: weights are safetensors, state is JSON.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

import torch
from transformers import Trainer
from transformers.trainer_callback import TrainerCallback

from ..errors import RevtuneError

WEIGHTS = "trainable.safetensors"
EXTRA_TENSORS = "revtune_tensors.safetensors"
_NAME = re.compile(r"^checkpoint-(\d+)$")


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM; ``exit_code`` is 128 + the signal number (130, 143), as shells report it."""

    def __init__(self, signum: int, checkpoint: Path | None = None, resume: str | None = None):
        self.signum, self.checkpoint, self.resume = signum, checkpoint, resume
        self.kept: Path | None = None  # a resumable folder without a checkpoint of the step that ran
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def line(self) -> str:
        name = signal.Signals(self.signum).name
        if self.checkpoint is None and self.kept is not None:
            return f"interrupted ({name}); the finished steps are kept in {self.kept}; resume with: {self.resume}"
        if self.checkpoint is None:
            return f"interrupted ({name}) before the first checkpoint; no partial output was kept"
        step = _NAME.match(self.checkpoint.name).group(1)
        return (f"interrupted ({name}); checkpoint at step {step} in {self.checkpoint}; resume with: "
                f"{self.resume}")


def checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root`` (``checkpoint-N`` with its Trainer state), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.match(p.name) and (p / "trainer_state.json").is_file()
             and (p / WEIGHTS).is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def last_checkpoint(root: Path) -> Path | None:
    found = checkpoints(root)
    return found[-1] if found else None


def _fsync_tree(folder: Path) -> None:
    for path in [*folder.iterdir(), folder]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class CheckpointTrainer(Trainer):
    """``Trainer`` whose checkpoints hold only the trainable tensors and are written atomically.

    ``trainable`` names the parameters to save (taken while every layer is trainable: mid-run the
    selection callback switches ``requires_grad``); ``keep`` is how many checkpoints stay on disk.
    Callbacks with tensors that JSON cannot hold define ``checkpoint_tensors() -> dict`` and
    ``load_checkpoint_tensors(dict)``.
    """

    def __init__(self, *args, trainable: list[str], keep: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.trainable, self.keep = list(trainable), max(1, keep)

    def _init_training_state(self, max_steps, *args, **kwargs):
        # A restored TrainerState keeps the save interval it was written with; --save-every may change.
        result = super()._init_training_state(max_steps, *args, **kwargs)
        self.state.compute_steps(self.args, max_steps)
        return result

    def _tensor_callbacks(self):
        return [cb for cb in self.callback_handler.callbacks if hasattr(cb, "checkpoint_tensors")]

    def _save(self, output_dir=None, state_dict=None):
        """The trainable tensors as safetensors; not the Trainer's ``training_args.bin`` (a pickle)."""
        from safetensors.torch import save_file

        if not self.args.should_save:  # one writer under DDP
            return
        folder = Path(output_dir or self.args.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        params = dict(self.model.named_parameters())
        save_file({name: params[name].detach().cpu().contiguous() for name in self.trainable},
                  str(folder / WEIGHTS))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        from safetensors.torch import load_file

        folder = Path(resume_from_checkpoint)
        saved = load_file(str(folder / WEIGHTS))
        if set(saved) != set(self.trainable):
            missing, extra = sorted(set(self.trainable) - set(saved)), sorted(set(saved) - set(self.trainable))
            raise RevtuneError(f"the checkpoint's trainable tensors differ from this run's ({len(saved)} vs "
                               f"{len(self.trainable)}; missing {missing[:3]}, unexpected {extra[:3]})",
                               path=folder / WEIGHTS)
        params = dict((model or self.model).named_parameters())
        with torch.no_grad():
            for name, value in saved.items():
                if params[name].shape != value.shape:
                    raise RevtuneError(f"{name}: checkpoint shape {tuple(value.shape)}, model "
                                       f"{tuple(params[name].shape)}", path=folder / WEIGHTS)
                params[name].copy_(value)
        extra = load_file(str(folder / EXTRA_TENSORS)) if (folder / EXTRA_TENSORS).is_file() else {}
        for cb in self._tensor_callbacks():
            prefix = type(cb).__name__ + "/"
            cb.load_checkpoint_tensors({k[len(prefix):]: v for k, v in extra.items() if k.startswith(prefix)})

    def _save_checkpoint(self, model, trial):
        from safetensors.torch import save_file

        root = Path(self.args.output_dir)
        staging = root / ".staging"
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self.args.output_dir = str(staging)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.output_dir = str(root)
        self.accelerator.wait_for_everyone()  # every rank's rng_state_N.pth is in place
        if not self.args.should_save:
            return
        written = staging / f"checkpoint-{self.state.global_step}"
        extra = {f"{type(cb).__name__}/{k}": v.detach().cpu().contiguous()
                 for cb in self._tensor_callbacks() for k, v in cb.checkpoint_tensors().items()}
        if extra:
            save_file(extra, str(written / EXTRA_TENSORS))
        _fsync_tree(written)
        final = root / written.name
        if final.exists():
            shutil.rmtree(final)
        os.replace(written, final)
        _fsync_tree(root)
        shutil.rmtree(staging, ignore_errors=True)
        for old in checkpoints(root)[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)


class StopOnSignal(TrainerCallback):
    """SIGINT / SIGTERM during training: finish the optimizer step, checkpoint, stop.

    Outside the training loop (loading, final evaluation) or at a second signal, the run stops at once
    with :class:`Interrupted`. The previous handlers come back with :meth:`uninstall`.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self.training = False
        self._previous = {}

    def install(self) -> "StopOnSignal":
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        if not self.training or self.signum is not None:
            self.signum = signum
            raise Interrupted(signum)
        self.signum = signum

    def on_train_begin(self, args, state, control, **kwargs):
        self.training = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.signum is not None:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self.training = False
