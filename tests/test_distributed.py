"""Distributed training on CPU with real torchrun subprocesses (gloo): DDP equivalence with one process,
per-step invariants, agreement failures, and the refusals of what is not supported here."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli, tiny_args, write_iterater

DRIVER = Path(__file__).with_name("distributed_driver.py")
SRC = Path(__file__).resolve().parents[1] / "src"
STEPS = 12  # past IST's first score update (every 10 steps)


def torchrun(nproc: int, *args, timeout: int = 2400) -> subprocess.CompletedProcess:
    """A real torchrun on a free port (--standalone), one thread per rank, gloo on CPU."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    return subprocess.run([*launcher, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=rank_env())


def rank_env() -> dict:
    """One thread per rank (two ranks share two cores) and this checkout's sources first."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


def shared_once(tmp_path_factory, name: str, build) -> Path:
    """``build(folder)`` once per test session, also under pytest-xdist (workers share the base temp's
    parent and wait on a file lock), so the expensive torchrun launches never run twice."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name  # this session only
    with FileLock(str(root) + ".lock"):
        done = root / "complete"
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            build(root)
            done.write_text("ok")
    return root


def selections(run: Path) -> list[list[int]]:
    return [json.loads(line)["active"] for line in (run / "selection.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def even_corpus(tmp_path_factory):
    """40 train rows: a multiple of the global batch 8, so both layouts see the same batches every epoch."""
    folder = tmp_path_factory.mktemp("ddp-corpus")
    return {"train": write_iterater(folder / "train.jsonl", 8), "dev": write_iterater(folder / "dev.jsonl", 2, 100),
            "test": write_iterater(folder / "test.jsonl", 2, 200)}


EXACT = ["fixed:1,3-4", "random:3", "lisa:2:3", "all", "full", "weight"]
FSDP = ["ir", "random:3", "lisa:2:3", "full", "all", "fixed:1,3-4"]
CLOSE = ["ir", "ist", "cosine"]


@pytest.fixture(scope="module")
def equivalence(even_corpus, tmp_path_factory):
    """Every strategy once with 1 process x batch 8 and once with 2 processes x batch 4 (one launch each)."""
    return shared_once(tmp_path_factory, "revtune-equivalence", lambda root: launch_equivalence(root, even_corpus))


def launch_equivalence(root: Path, even_corpus) -> None:

    def configs(layout: str, batch: int, fsdp: bool = False) -> list[dict]:
        base = dict(model="tiny", train=str(even_corpus["train"]), dev=str(even_corpus["dev"]),
                    test=str(even_corpus["test"]), max_steps=STEPS, batch_size=batch, max_length=64, lora_r=4,
                    lora_alpha=8, lora_dropout=0.0, eval_every=STEPS, seed=3, learning_rate=2e-3, fsdp=fsdp)
        specs = (FSDP if fsdp else CLOSE + EXACT + [f"frequency:{root / 'one' / 'ir'}"]) + \
            [f"replay:{root / 'one' / 'ir'}"]
        runs = [dict(base, select=spec, out=str(root / layout / spec.split(":")[0])) for spec in specs]
        if layout == "two":  # DDP with bf16 mixed precision and non-reentrant checkpointing, for the matrix
            runs.append(dict(base, select="ir", dtype="bfloat16", gradient_checkpointing=True,
                             out=str(root / layout / "ir-bf16-checkpointing")))
            runs.append(dict(base, task="revise", select="ir", dev_generate=2, max_length=160,
                             out=str(root / layout / "revise")))
            runs.append(dict(base, select="ir", report_to="tensorboard", out=str(root / layout / "ir-tensorboard")))
        return runs

    for layout, nproc, batch in (("one", 1, 8), ("two", 2, 4), ("fsdp", 2, 4)):
        job = root / f"{layout}.json"
        job.write_text(json.dumps({"configs": configs(layout, batch, layout == "fsdp")}))
        done = torchrun(nproc, DRIVER, "runs", job)
        assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("spec", EXACT + ["replay", "frequency"])
def test_two_ranks_select_exactly_what_one_process_selects(equivalence, spec):
    name = spec.split(":")[0]
    one, two = (selections(equivalence / layout / name) for layout in ("one", "two"))
    assert len(one) == len(two) == STEPS
    assert one == two
    if name in ("random", "lisa"):
        assert len({tuple(s) for s in one}) > 1  # the draws really change, so equality means shared draws


@pytest.mark.parametrize("name", CLOSE)
def test_two_ranks_agree_with_one_process_on_most_steps(equivalence, name):
    one, two = (selections(equivalence / layout / name) for layout in ("one", "two"))
    share = sum(a == b for a, b in zip(one, two)) / len(one)
    print(f"{name}: {share:.0%} of {len(one)} steps select the same layers with 1 and 2 processes")
    assert len(one) == len(two) == STEPS and share >= 0.9


@pytest.mark.parametrize("name", CLOSE + ["fixed", "random", "lisa", "all", "replay", "weight", "frequency"])
def test_two_ranks_end_at_the_same_metrics_with_per_example_losses(equivalence, name):
    one, two = (json.loads((equivalence / layout / name / "metrics.json").read_text()) for layout in ("one", "two"))
    assert (one["world_size"], one["global_batch_size"]) == (1, 8)
    assert (two["world_size"], two["global_batch_size"]) == (2, 8)
    assert len(two["peak_memory_bytes_per_rank"]) == 2
    for key in ("macro_f1", "accuracy"):
        assert abs(one["test"][key] - two["test"][key]) <= 0.05
    losses = [[entry["loss"] for entry in run["train_loss"]] for run in (one, two)]
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-4)  # a mean, not multiplied by the world size
    assert max(abs(a - b) for a, b in zip(*losses)) < 0.05


def test_ddp_runs_with_bf16_and_checkpointing(equivalence):
    run = equivalence / "two" / "ir-bf16-checkpointing"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and len(selections(run)) == STEPS
    assert all(entry["loss"] == entry["loss"] for entry in metrics["train_loss"])  # no NaN


def test_ddp_trains_the_revise_task_and_scores_it_once(equivalence):
    run = equivalence / "two" / "revise"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and len(selections(run)) == STEPS
    assert metrics["test"] and all(entry["loss"] == entry["loss"] for entry in metrics["train_loss"])


@pytest.mark.parametrize("spec", FSDP + ["replay"])
def test_fsdp_selects_what_one_process_selects_from_exact_sharded_norms(equivalence, spec):
    name = spec.split(":")[0]
    one, fsdp = (equivalence / layout / name for layout in ("one", "fsdp"))
    if name == "ir":  # sum of square roots of per-tensor norms, each norm rebuilt from the ranks' shards
        for a, b in zip(*(map(json.loads, (run / "selection.jsonl").read_text().splitlines()[:4]) for run in (one, fsdp))):
            assert b["scores"] == pytest.approx(a["scores"], rel=1e-5)
        share = sum(a == b for a, b in zip(selections(one), selections(fsdp))) / STEPS
        print(f"ir under FSDP: {share:.0%} of {STEPS} steps select the same layers as 1 process")
        assert share >= 0.9
    else:
        assert selections(one) == selections(fsdp)
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (one, fsdp)]
    assert abs(metrics[0]["test"]["accuracy"] - metrics[1]["test"]["accuracy"]) <= 0.05
    assert metrics[0]["train_loss"][-1]["loss"] == pytest.approx(metrics[1]["train_loss"][-1]["loss"], abs=0.05)
    saved = [load_file(str(run / "adapter" / name)) for run in (one, fsdp)
             for name in ["adapter_model.safetensors" if (run / "adapter" / "adapter_model.safetensors").exists()
                          else "bottleneck.safetensors"]]
    assert saved[0].keys() == saved[1].keys()
    assert all(torch.allclose(saved[0][k], saved[1][k], atol=1e-4) for k in saved[0])


def test_only_rank_zero_writes_one_complete_run_directory(equivalence):
    run = equivalence / "two" / "ir"
    assert {p.name for p in run.iterdir()} >= {"adapter", "config.json", "metrics.json", "selection.jsonl",
                                            "report.html", "environment.json"}
    assert [p.name for p in run.parent.iterdir() if p.name.startswith(".")] == []
    assert len(selections(run)) == STEPS  # one log line per step, not one per rank


def test_under_ddp_only_rank_zero_logs_to_tensorboard(equivalence):
    """One event file, in the run directory, with the selection's tags and one point per step."""
    from test_live_logging import read_events

    run = equivalence / "two" / "ir-tensorboard"
    files = sorted(run.rglob("events.out.tfevents.*"))
    assert len(files) == 1 and files[0].parent == run / "tensorboard", files
    events = read_events(run / "tensorboard")
    assert "train/selection/active_layers" in events.Tags()["scalars"]
    assert "selection/active" in events.Tags()["histograms"]
    assert len(events.Scalars("train/selection/active_layers")) == STEPS


@pytest.fixture(scope="module", params=[1, 2], ids=["single", "ddp"])
def invariant_runs(request, tmp_path_factory):
    """random:2 changes the set every step; fixed:top2 with non-reentrant checkpointing leaves a frozen
    prefix below the trained layers. Both cases in one launch per world size."""
    return request.param, shared_once(tmp_path_factory, f"revtune-invariants{request.param}",
                                      lambda root: launch_invariants(root, request.param))


def launch_invariants(root: Path, nproc: int) -> None:
    cases = {"toggled": dict(select="random:2", gradient_checkpointing=False),
             "checkpointing": dict(select="fixed:top2", gradient_checkpointing=True)}
    if nproc > 1:
        cases["fsdp"] = dict(select="random:2", fsdp=True)
    job = root / "job.json"
    job.write_text(json.dumps({"cases": [dict(case, out=str(root / name)) for name, case in cases.items()]}))
    done = torchrun(nproc, DRIVER, "invariants", job)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("case", ["toggled", "checkpointing", "fsdp"])
def test_frozen_layers_never_move_and_selected_ones_get_gradients(invariant_runs, case):
    nproc, root = invariant_runs
    if case == "fsdp" and nproc == 1:
        pytest.skip("FSDP shards over several ranks")
    seen = [json.loads((root / case / f"rank{rank}.json").read_text()) for rank in range(nproc)]
    for view in seen:
        assert view["world_size"] == nproc
        assert (view["wrapped"] == "DistributedDataParallel") == (nproc > 1 and case != "fsdp")
        assert view["optimizer_state_sharded"] == (case == "fsdp")
        if case == "fsdp":  # AdamW's moments are sharded like the parameters: about 1/world per rank
            assert view["optimizer_state_local_share"] == pytest.approx(1 / nproc, abs=0.05)
        assert len(view["records"]) == 6
        for record in view["records"]:
            assert record["frozen_moved"] == [] and record["frozen_with_grad"] == []
            assert record["active_zero_grad"] == []
    assert all([r["active"] for r in view["records"]] == [r["active"] for r in seen[0]["records"]] for view in seen)
    if case == "checkpointing":
        assert all(r["active"] == [4, 5] for r in seen[0]["records"])


def test_ranks_that_disagree_stop_with_the_step_and_ranks_and_leave_no_run(even_corpus, tmp_path):
    out = tmp_path / "split"
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"configs": [dict(model="tiny", train=str(even_corpus["train"]), max_steps=2,
                                                batch_size=4, max_length=64, lora_r=4, select="disagree",
                                                out=str(out))]}))
    done = torchrun(2, DRIVER, "runs", job)
    assert done.returncode != 0
    assert "ranks disagree on the active layers at step 0: ranks 0 chose [0]; ranks 1 chose [1]" in done.stderr
    assert not out.exists() and [p for p in tmp_path.iterdir() if p.name.startswith(".split")] == []


def test_accelerate_launch_runs_ddp_with_gradient_accumulation(corpus, tmp_path):
    out = tmp_path / "acc"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(free_port())]
    done = subprocess.run([*launcher, "-m", "revtune.cli", "train", *tiny_args(corpus, out, "--grad-accum", "2")],
                          capture_output=True, text=True, timeout=600, env=rank_env())
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["world_size"], metrics["global_batch_size"]) == (2, 16)
    assert all(1.0 < entry["loss"] < 2.2 for entry in metrics["train_loss"])  # ~ln 5: a per-example mean


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def test_deepspeed_is_refused_before_any_model_loads(corpus, tmp_path):
    done = run_cli("train", *tiny_args(corpus, tmp_path / "ds", "--deepspeed", "ds_config.json"))
    assert done.returncode == 2
    assert "DeepSpeed is not supported" in done.stderr and "--fsdp" in done.stderr
    assert "revtune: model" not in done.stdout and not (tmp_path / "ds").exists()


@pytest.mark.parametrize("flags, expected", [
    (["--quantize", "4bit"], "--quantize 4bit needs a CUDA GPU"),
    (["--dtype", "float16"], "--dtype float16 needs a CUDA GPU"),
])
def test_what_needs_cuda_is_refused_in_one_line_before_loading(corpus, tmp_path, flags, expected):
    done = run_cli("train", *tiny_args(corpus, tmp_path / "q", *flags))
    assert done.returncode == 2 and expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "revtune: model" not in done.stdout


BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_gpu_bench_says_it_cannot_run_without_cuda():
    done = subprocess.run([sys.executable, str(BENCH / "gpu.py"), "--json"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 2 and done.stdout == ""
    assert "needs a CUDA GPU" in done.stderr and "nothing was measured" in done.stderr


@pytest.mark.parametrize("shape, billions", [("llama-8b", 7.50), ("qwen-14b", 13.99)])
def test_gpu_bench_models_have_the_published_shapes(shape, billions):
    """Built on the meta device: the parameter count of the classifier (published total minus lm_head)."""
    sys.path.insert(0, str(BENCH))
    try:
        import gpu
    finally:
        sys.path.remove(str(BENCH))
    model = gpu.build_model(shape, None, device="meta")
    assert sum(p.numel() for p in model.parameters()) / 1e9 == pytest.approx(billions, abs=0.01)
    assert len(gpu.build_model(shape, 2, device="meta").model.layers) == 2


@pytest.mark.parametrize("select", ["ir", "full"])
def test_bfloat16_on_cpu_is_mixed_precision_with_float32_trainable_tensors(corpus, tmp_path, select):
    """--dtype bfloat16: base weights bf16, trainable tensors (and so AdamW state) fp32, bf16 autocast on."""
    from revtune.config import RunConfig
    from revtune.models import decoder_blocks
    from revtune.training.run import train_run

    seen = {}

    def inspect(model):
        seen["model"] = model
        seen["autocast"] = []
        decoder_blocks(model)[0].register_forward_pre_hook(  # inside the Trainer's autocast forward
            lambda module, args: seen["autocast"].append(torch.is_autocast_enabled("cpu")) if module.training else None)

    config = RunConfig.from_values(dict(
        model="tiny", train=str(corpus["train"]), dev=str(corpus["dev"]), test=str(corpus["test"]),
        max_steps=2, batch_size=4, max_length=48, lora_r=2, lora_alpha=4, dtype="bfloat16",
        select=select, out=str(tmp_path / "bf16")))
    result = train_run(config, prepare_model=inspect, quiet=True)
    params = dict(seen["model"].named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    assert trainable and all(params[n].dtype == torch.float32 for n in trainable)
    frozen = [p.dtype for n, p in params.items() if n not in trainable]
    assert (select == "full") or (frozen and all(d == torch.bfloat16 for d in frozen))
    assert seen["autocast"] and all(seen["autocast"])
    assert result.metrics["train_loss"] and all(e["loss"] == e["loss"] for e in result.metrics["train_loss"])
