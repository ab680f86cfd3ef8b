"""Distributed training on CPU with real torchrun subprocesses (gloo): DDP equivalence with one process,
per-step invariants, agreement failures, and the refusals of what is not supported here."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli, tiny_args, write_iterater

DRIVER = Path(__file__).with_name("distributed_driver.py")
SRC = Path(__file__).resolve().parents[1] / "src"
STEPS = 12  # past IST's first score update (every 10 steps)


def torchrun(nproc: int, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    """A real torchrun on a free port (--standalone), one thread per rank, gloo on CPU."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([*launcher, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def selections(run: Path) -> list[list[int]]:
    return [json.loads(line)["active"] for line in (run / "selection.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def even_corpus(tmp_path_factory):
    """40 train rows: a multiple of the global batch 8, so both layouts see the same batches every epoch."""
    folder = tmp_path_factory.mktemp("ddp-corpus")
    return {"train": write_iterater(folder / "train.jsonl", 8), "dev": write_iterater(folder / "dev.jsonl", 2, 100),
            "test": write_iterater(folder / "test.jsonl", 2, 200)}


EXACT = ["fixed:1,3-4", "random:3", "lisa:2:3", "all"]
CLOSE = ["ir", "ist"]


@pytest.fixture(scope="module")
def equivalence(even_corpus, tmp_path_factory):
    """Every strategy once with 1 process x batch 8 and once with 2 processes x batch 4 (one launch each)."""
    root = tmp_path_factory.mktemp("equivalence")

    def configs(layout: str, batch: int) -> list[dict]:
        base = dict(model="tiny", train=str(even_corpus["train"]), dev=str(even_corpus["dev"]),
                    test=str(even_corpus["test"]), max_steps=STEPS, batch_size=batch, max_length=64, lora_r=4,
                    lora_alpha=8, lora_dropout=0.0, eval_every=STEPS, seed=3, learning_rate=2e-3)
        specs = CLOSE + EXACT + [f"replay:{root / 'one' / 'ir'}"]
        return [dict(base, select=spec, out=str(root / layout / spec.split(":")[0])) for spec in specs]

    results = {}
    for layout, nproc, batch in (("one", 1, 8), ("two", 2, 4)):
        job = root / f"{layout}.json"
        job.write_text(json.dumps({"configs": configs(layout, batch)}))
        done = torchrun(nproc, DRIVER, "runs", job)
        assert done.returncode == 0, done.stderr[-3000:]
        results[layout] = root / layout
    return results


@pytest.mark.parametrize("spec", EXACT + ["replay"])
def test_two_ranks_select_exactly_what_one_process_selects(equivalence, spec):
    name = spec.split(":")[0]
    one, two = (selections(equivalence[layout] / name) for layout in ("one", "two"))
    assert len(one) == len(two) == STEPS
    assert one == two
    if name in ("random", "lisa"):
        assert len({tuple(s) for s in one}) > 1  # the draws really change, so equality means shared draws


@pytest.mark.parametrize("name", CLOSE)
def test_two_ranks_agree_with_one_process_on_most_steps(equivalence, name):
    one, two = (selections(equivalence[layout] / name) for layout in ("one", "two"))
    share = sum(a == b for a, b in zip(one, two)) / len(one)
    print(f"{name}: {share:.0%} of {len(one)} steps select the same layers with 1 and 2 processes")
    assert len(one) == len(two) == STEPS and share >= 0.9


@pytest.mark.parametrize("name", CLOSE + ["fixed", "random", "lisa", "all", "replay"])
def test_two_ranks_end_at_the_same_metrics_with_per_example_losses(equivalence, name):
    one, two = (json.loads((equivalence[layout] / name / "metrics.json").read_text()) for layout in ("one", "two"))
    assert (one["world_size"], one["global_batch_size"]) == (1, 8)
    assert (two["world_size"], two["global_batch_size"]) == (2, 8)
    assert len(two["peak_memory_bytes_per_rank"]) == 2
    for key in ("macro_f1", "accuracy"):
        assert abs(one["test"][key] - two["test"][key]) <= 0.05
    losses = [[entry["loss"] for entry in run["train_loss"]] for run in (one, two)]
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-4)  # a mean, not multiplied by the world size
    assert max(abs(a - b) for a, b in zip(*losses)) < 0.05


def test_only_rank_zero_writes_one_complete_run_directory(equivalence):
    run = equivalence["two"] / "ir"
    assert {p.name for p in run.iterdir()} >= {"adapter", "config.json", "metrics.json", "selection.jsonl"}
    assert [p.name for p in run.parent.iterdir() if p.name.startswith(".")] == []
    assert len(selections(run)) == STEPS  # one log line per step, not one per rank


@pytest.fixture(scope="module", params=[1, 2], ids=["single", "ddp"])
def invariant_runs(request, tmp_path_factory):
    """random:2 changes the set every step; fixed:top2 with non-reentrant checkpointing leaves a frozen
    prefix below the trained layers. Both cases in one launch per world size."""
    root = tmp_path_factory.mktemp(f"invariants{request.param}")
    cases = {"toggled": dict(select="random:2", gradient_checkpointing=False),
             "checkpointing": dict(select="fixed:top2", gradient_checkpointing=True)}
    job = root / "job.json"
    job.write_text(json.dumps({"cases": [dict(case, out=str(root / name)) for name, case in cases.items()]}))
    done = torchrun(request.param, DRIVER, "invariants", job)
    assert done.returncode == 0, done.stderr[-3000:]
    return request.param, root


@pytest.mark.parametrize("case", ["toggled", "checkpointing"])
def test_frozen_layers_never_move_and_selected_ones_get_gradients(invariant_runs, case):
    nproc, root = invariant_runs
    seen = [json.loads((root / case / f"rank{rank}.json").read_text()) for rank in range(nproc)]
    for view in seen:
        assert view["world_size"] == nproc
        assert (view["wrapped"] == "DistributedDataParallel") == (nproc > 1)
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
