"""Checkpoints, resume and interruption: real `revtune train` subprocesses killed mid-run, resumed, and
compared bit for bit with the same run uninterrupted."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_cli, tiny_args

from revtune.config import RunConfig
from revtune.rundiff import diff_runs
from revtune.rundir import read_started_config
from revtune.training.checkpoint import last_checkpoint
from revtune.training.run import train_run


def cli(*args):
    return subprocess.Popen([sys.executable, "-m", "revtune.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def signal_at_checkpoint(args, out, step: int, sig=signal.SIGKILL, timeout=600, command="train"):
    """Start `revtune train ARGS`, wait until OUT.partial holds checkpoint-STEP, send SIG; (returncode, stderr).
    ``out`` may name a sub-run (intention-tune's OUT.partial/generator)."""
    target = out.with_name(out.name + ".partial") / "checkpoints" / f"checkpoint-{step}"
    proc = cli(command, *args)
    deadline = time.monotonic() + timeout
    while not target.is_dir():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (code {proc.returncode}) before checkpoint {step}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint {step} after {timeout} s")
        time.sleep(0.01)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stderr


def config_of(corpus, out, *extra) -> RunConfig:
    """The RunConfig the CLI builds from the same flags (for the uninterrupted run, in this process)."""
    from revtune.cli import build_parser
    from revtune.config import config_from_args

    return config_from_args(build_parser().parse_args(["train", *tiny_args(corpus, out, *extra)]))


CASES = {  # strategy -> (extra flags, checkpoint step to kill at)
    "ir": (["--max-steps", "6", "--save-every", "2"], 2),
    "random": (["--max-steps", "6", "--save-every", "2"], 2),
    "lisa:2:2": (["--max-steps", "6", "--save-every", "3", "--adapter", "lora"], 3),
    "ist": (["--max-steps", "13", "--save-every", "10"], 10),  # IST's first update is at step 10
    "all": (["--max-steps", "6", "--save-every", "2"], 2),
}


@pytest.mark.parametrize("grad_accum", [1, 2])
@pytest.mark.parametrize("select", list(CASES))
def test_sigkill_then_resume_is_bit_for_bit(corpus, tmp_path, select, grad_accum):
    flags, step = CASES[select]
    extra = ["--select", select, "--grad-accum", str(grad_accum), "--seed", "5", *flags]
    reference = train_run(config_of(corpus, tmp_path / "reference", *extra), quiet=True)

    out = tmp_path / "killed"
    code, stderr = signal_at_checkpoint(tiny_args(corpus, out, *extra), out, step)
    assert code == -signal.SIGKILL, stderr
    partial = tmp_path / "killed.partial"
    assert last_checkpoint(partial / "checkpoints") is not None and not out.exists()
    assert len([p for p in (partial / "checkpoints").iterdir() if p.name.startswith("checkpoint-")]) <= 2

    resumed = train_run(RunConfig.from_values(read_started_config(out)), quiet=True, resume=True)
    assert not partial.exists() and not (out / "checkpoints").exists()
    assert diff_runs(reference.path, out) == []
    assert (reference.path / "selection.jsonl").read_bytes() == (out / "selection.jsonl").read_bytes()
    assert resumed.metrics["trainable_params"] == reference.metrics["trainable_params"]
    assert resumed.metrics["steps"] == reference.metrics["steps"]


def test_sigterm_checkpoints_and_cli_resume_matches(corpus, tmp_path):
    extra = ["--select", "ir", "--grad-accum", "2", "--max-steps", "6", "--save-every", "2", "--seed", "2"]
    reference = train_run(config_of(corpus, tmp_path / "reference", *extra), quiet=True)
    out = tmp_path / "run"
    code, stderr = signal_at_checkpoint(tiny_args(corpus, out, *extra), out, 2, signal.SIGTERM)
    assert code == 143, stderr
    line = stderr.strip().splitlines()[-1]
    assert "interrupted (SIGTERM)" in line and f"resume with: revtune train --resume {out}" in line
    saved = last_checkpoint(tmp_path / "run.partial" / "checkpoints")
    assert saved is not None and saved.name in line  # the step in progress finished and was saved
    state = json.loads((saved / "trainer_state.json").read_text())
    assert {"LayerSelectionCallback", "BestDevTracker"} <= set(state["stateful_callbacks"])
    assert sorted(p.name for p in saved.iterdir()) == sorted(
        ["trainable.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"]
        + (["revtune_tensors.safetensors"] if (saved / "revtune_tensors.safetensors").exists() else []))

    result = run_cli("train", "--resume", out)
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stdout
    same = run_cli("diff-runs", reference.path, out)
    assert same.returncode == 0 and "same run" in same.stdout, same.stdout
    assert 'id="selection-heatmap"' in (out / "report.html").read_text()  # the resumed run reports too


def test_resume_refuses_flags_that_change_the_run(corpus, tmp_path):
    out = tmp_path / "run"
    (tmp_path / "run.partial" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run.partial" / "checkpoints" / "config.json").write_text(
        json.dumps(config_of(corpus, out).to_dict()))
    result = run_cli("train", "--resume", out, "--learning-rate", "0.1", "--seed", "9", "--save-every", "3")
    assert result.returncode == 2
    message = result.stderr.strip()
    assert "learning_rate 0.1 (the run has 0.0002)" in message and "seed 9 (the run has 171)" in message
    assert "save_every" not in message  # checkpointing may change on resume
    assert (tmp_path / "run.partial").is_dir()  # a refused resume loses nothing


def test_stop_before_the_first_checkpoint_leaves_nothing(corpus, tmp_path):
    out = tmp_path / "run"
    proc = cli("train", *tiny_args(corpus, out, "--max-steps", "50"))
    partial = tmp_path / "run.partial"
    while not partial.exists():
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr
    assert "before the first checkpoint" in stderr
    assert list(tmp_path.iterdir()) == []


def test_fresh_run_refuses_an_interrupted_one_and_resume_needs_one(corpus, tmp_path):
    out = tmp_path / "run"
    (tmp_path / "run.partial" / "checkpoints").mkdir(parents=True)
    result = run_cli("train", *tiny_args(corpus, out))
    assert result.returncode == 2 and "--resume" in result.stderr and "--overwrite" in result.stderr
    shutil.rmtree(tmp_path / "run.partial")
    result = run_cli("train", "--resume", out)
    assert result.returncode == 2 and "no interrupted run" in result.stderr


def test_last_checkpoint_skips_a_half_written_one(tmp_path):
    """A crash while writing leaves the staging folder (or a folder without weights): never picked."""
    root = tmp_path / "checkpoints"
    for name, files in (("checkpoint-2", ["trainer_state.json", "trainable.safetensors"]),
                        ("checkpoint-4", ["trainer_state.json"]),
                        (".staging/checkpoint-6", ["trainer_state.json", "trainable.safetensors"])):
        (root / name).mkdir(parents=True)
        for file in files:
            (root / name / file).write_text("{}")
    assert last_checkpoint(root).name == "checkpoint-2"


def test_diff_runs_reports_a_different_run(corpus, tmp_path):
    a = train_run(config_of(corpus, tmp_path / "a", "--select", "random", "--seed", "1"), quiet=True)
    b = train_run(config_of(corpus, tmp_path / "b", "--select", "random", "--seed", "2"), quiet=True)
    found = diff_runs(a.path, b.path)
    assert any(line.startswith("selection.jsonl") for line in found)
    assert any(line.startswith("adapter") for line in found)
    assert any(line.startswith("config.json: seed") for line in found)
    assert diff_runs(a.path, a.path) == []


def test_environment_json(corpus, tmp_path):
    run = train_run(config_of(corpus, tmp_path / "a", "--max-steps", "1"), quiet=True)
    env = json.loads((run.path / "environment.json").read_text())
    for key in ("python", "torch", "transformers", "peft", "accelerate", "revtune", "git", "device", "dtype",
                "threads"):
        assert key in env
    assert env["torch"].startswith("2.") and env["device"] == "cpu" and env["dtype"] == "float32"
    assert env["threads"] == 1


def test_deterministic_turns_on_torch_deterministic_algorithms(corpus, tmp_path):
    import torch

    try:
        run = train_run(config_of(corpus, tmp_path / "a", "--max-steps", "1", "--deterministic"), quiet=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert json.loads((run.path / "environment.json").read_text())["deterministic"] is True
    finally:
        torch.use_deterministic_algorithms(False)


def test_intention_tune_resumes_the_interrupted_step(tmp_path):
    from test_intention import tiny_config

    from revtune.cli import build_parser
    from revtune.config import config_from_args
    from revtune.intention import IntentionOptions, intention_tune

    base = tiny_config(tmp_path)  # writes the corpus files
    flags = ["--model", "tiny", "--tiny-layers", str(base.model.tiny_layers), "--train", base.data.train,
             "--dev", base.data.dev,
             "--test", base.data.test, "--max-steps", "6", "--batch-size", "4", "--max-length", "160",
             "--dev-generate", "0", "--new-tokens-factor", "0.5", "--new-tokens-floor", "4", "--lora-r", "4",
             "--save-every", "2"]
    reference = config_from_args(build_parser().parse_args(
        ["intention-tune", *flags, "--out", str(tmp_path / "reference")]), task="revise")
    intention_tune(reference, IntentionOptions(), quiet=True)

    out = tmp_path / "it"
    code, stderr = signal_at_checkpoint([*flags, "--out", out], tmp_path / "it.partial" / "generator", 2,
                                        signal.SIGTERM, command="intention-tune")
    assert code == 143, stderr
    assert f"resume with: revtune intention-tune --resume {out}" in stderr
    assert (tmp_path / "it.partial" / "predictor" / "metrics.json").is_file()  # step 1 finished and kept
    result = run_cli("intention-tune", "--resume", out)
    assert result.returncode == 0, result.stderr
    assert diff_runs(tmp_path / "reference", out) == []
    assert json.loads((out / "metrics.json").read_text())["init"] == \
        json.loads((tmp_path / "reference" / "metrics.json").read_text())["init"]
