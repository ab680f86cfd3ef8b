"""--report-to tensorboard|wandb: the selection reaches the Trainer's loggers, read back from their files;
and LayerSelectionCallback in a user's own Trainer adds the same keys to the Trainer's logs."""
import os
from pathlib import Path

import pytest
from conftest import run_cli, tiny_args
from test_callback import Pairs, peft_model
from transformers import Trainer, TrainerCallback, TrainingArguments

from revtune import LayerSelectionCallback

N_LAYERS = 8


def read_events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(folder.rglob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event file under {folder}"
    events = EventAccumulator(str(files[0]), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    return events


def test_train_reports_the_selection_to_tensorboard(corpus, tmp_path):
    out = tmp_path / "tb"
    result = run_cli("train", *tiny_args(corpus, out, "--select", "ir", "--report-to", "tensorboard"))
    assert result.returncode == 0, result.stderr
    events = read_events(out / "tensorboard")
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/selection/active_layers"} <= scalars
    for layer in range(N_LAYERS):
        assert f"train/selection/layer_{layer:02d}/active" in scalars
    assert any(tag.endswith("/score") for tag in scalars)
    assert {"selection/active", "selection/scores"} <= set(events.Tags()["histograms"])
    counts = [event.value for event in events.Scalars("train/selection/active_layers")]
    logged = [len(__import__("json").loads(line)["active"]) for line in
              (out / "selection.jsonl").read_text().splitlines()]
    assert counts == logged  # one point per step, the same sets the selection log holds


def test_report_to_is_checked_before_training(corpus, tmp_path):
    result = run_cli("train", *tiny_args(corpus, tmp_path / "x", "--report-to", "mlflow"))
    assert result.returncode == 2 and "report_to" in result.stderr and "tensorboard" in result.stderr


def test_wandb_offline_run_holds_the_selection(corpus, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "wb"
    result = run_cli("train", *tiny_args(corpus, out, "--select", "ir", "--report-to", "wandb"))
    assert result.returncode == 0, result.stderr
    logs = sorted(out.rglob("*.wandb"))
    assert logs, f"no offline W&B run under {out}"
    data = logs[0].read_bytes()
    assert b"selection/active_layers" in data and b"selection/layer_00/active" in data


class Collect(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


def test_the_callback_feeds_any_trainers_loggers(tmp_path, monkeypatch):
    """A user's Trainer with report_to=tensorboard: the integration callback, which a Trainer puts before the
    user's callbacks, still sees the selection keys; so does a callback listed before ours."""
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    early = Collect()
    callback = LayerSelectionCallback("ir", seed=1)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=8,
                             learning_rate=1e-2, report_to=["tensorboard"], use_cpu=True, save_strategy="no",
                             logging_steps=1, disable_tqdm=True)
    Trainer(model=peft_model(), args=args, train_dataset=Pairs(), callbacks=[early, callback]).train()
    steps = [logs for logs in early.logs if "loss" in logs]
    assert len(steps) == 4
    assert [logs["selection/active_layers"] for logs in steps] == [float(len(r["active"])) for r in callback.history]
    assert all(sum(logs[f"selection/layer_{i:02d}/active"] for i in range(6)) == logs["selection/active_layers"]
               for logs in steps)
    scalars = set(read_events(tmp_path / "tb").Tags()["scalars"])
    assert "train/selection/active_layers" in scalars and "train/selection/layer_05/active" in scalars


def test_log_selection_off_leaves_the_logs_alone(tmp_path):
    early = Collect()
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=8,
                             report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True)
    Trainer(model=peft_model(), args=args, train_dataset=Pairs(),
            callbacks=[early, LayerSelectionCallback("ir", log_selection=False)]).train()
    assert not any(key.startswith("selection/") for logs in early.logs for key in logs)
