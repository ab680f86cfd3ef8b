"""The memory planner: meta-device traces against real forwards, floors, budgets, limits, the CLI."""
import json

import numpy as np
import pytest
import torch
from conftest import run_cli, tiny_args

from revtune import adapters, planner
from revtune.errors import RevtuneError
from revtune.selection.base import SelectionContext
from revtune.selection.floor import FloorRule, with_floor
from revtune.selection.registry import build_strategy
from revtune.selection.rules import VarianceSplitRule


def tiny_pair(kind="lora"):
    """The same tiny classifier with adapters twice: on the meta device and with real weights."""
    from transformers import AutoModelForSequenceClassification

    config = adapters.AdapterConfig(kind=kind, r=4, alpha=8)
    meta = planner.meta_model(planner.skeleton_config("tiny"), "intent", 5, config, torch.float32)
    real_config = planner.skeleton_config("tiny")
    real_config.num_labels = 5
    real = adapters.attach(AutoModelForSequenceClassification.from_config(real_config), config, "intent")
    return meta, real


@pytest.mark.parametrize("kind", ["lora", "bottleneck", "none"])
def test_meta_trace_counts_what_a_real_forward_saves(kind):
    meta, real = tiny_pair(kind)
    torch.manual_seed(0)
    predicted = planner.trace_activations(meta, 4, 96, "intent")
    measured = planner.trace_activations(real, 4, 96, "intent")
    assert predicted.per_block == measured.per_block
    assert predicted.outside == measured.outside
    assert sum(predicted.per_block) > 0


def test_activations_fall_with_the_lowest_trained_layer():
    meta, _ = tiny_pair()
    trace = planner.trace_activations(meta, 8, 64, "intent")
    layers = adapters.layer_map(meta)
    plans = [planner.plan_memory(meta, layers, trace, lowest_layer=low, batch=8, seq=64, dtype="float32",
                                 gradient_checkpointing=False) for low in range(layers.n_layers)]
    acts = [p.activations for p in plans]
    assert all(a > b for a, b in zip(acts, acts[1:]))
    checkpointed = planner.plan_memory(meta, layers, trace, lowest_layer=0, batch=8, seq=64,
                                       dtype="float32", gradient_checkpointing=True)
    assert checkpointed.activations < plans[0].activations
    assert plans[0].optimizer_state == 2 * plans[0].trainable_weights


class Ctx:
    def __init__(self, n, seed=0):
        self.layers = adapters.LayerMap([[] for _ in range(n)], [[] for _ in range(n)])
        self.rng = np.random.default_rng(seed)


def context(n, seed=0):
    return SelectionContext(model=None, layers=adapters.LayerMap([[] for _ in range(n)],
                                                                 [[] for _ in range(n)]),
                            rng=np.random.default_rng(seed))


def test_floor_runs_the_rule_unchanged_above_it():
    scores = np.random.default_rng(1).uniform(size=12)
    inner = VarianceSplitRule()
    active, seen = FloorRule(inner, 4).select(3, scores, context(12))
    assert active == [layer + 4 for layer in inner.choose(scores[4:])]
    assert np.array_equal(seen, scores)
    assert min(active) >= 4


@pytest.mark.parametrize("spec", ["random:3", "lisa:2:5", "all", "ir"])
def test_floor_never_trains_below_it(spec):
    strategy = with_floor(build_strategy(spec), 5, 8)
    ctx = context(8, seed=3)
    for step in range(20):
        scores = np.random.default_rng(step).uniform(size=8) if spec == "ir" else None
        active, _ = strategy.rule.select(step, scores, ctx)
        assert active and min(active) >= 5 and max(active) < 8


def test_a_fixed_set_below_the_floor_is_refused_not_trimmed():
    with pytest.raises(RevtuneError, match="below min_layer"):
        with_floor(build_strategy("fixed:0-3"), 2, 8)
    assert with_floor(build_strategy("fixed:4-7"), 2, 8).rule.spec == "4-7"


def test_budget_picks_the_lowest_floor_that_fits():
    meta, _ = tiny_pair()
    trace = planner.trace_activations(meta, 8, 64, "intent")
    layers = adapters.layer_map(meta)
    floors = [planner.plan_memory(meta, layers, trace, lowest_layer=low, batch=8, seq=64, dtype="float32",
                                  gradient_checkpointing=False) for low in range(8)]
    budget = (floors[3].total + floors[2].total) // 2
    assert planner.budget_floor(floors, budget) == 3
    with pytest.raises(RevtuneError, match="no floor fits"):
        planner.budget_floor(floors, floors[-1].total - 1)


def test_plan_command_prints_the_worst_case(corpus):
    result = run_cli("plan", "--model", "tiny", "--train", corpus["train"], "--dev", corpus["dev"],
                     "--test", corpus["test"], "--batch-size", "4", "--max-length", "64", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    plan = data["plan"]
    assert plan["lowest_layer"] == 0 and plan["batch"] == 4 and plan["seq"] <= 64
    assert plan["total"] == sum(plan[k] for k in ("base_weights", "gradients", "optimizer_state",
                                                   "activations", "runtime"))
    by_layer = data["by_lowest_layer"]
    assert len(by_layer) == 8 and by_layer == sorted(by_layer, reverse=True)
    bounded = run_cli("plan", "--model", "tiny", "--train", corpus["train"], "--dev", corpus["dev"],
                      "--test", corpus["test"], "--batch-size", "4", "--max-length", "64", "--json",
                      "--select", "random:2", "--min-layer", "5")
    assert json.loads(bounded.stdout)["plan"]["lowest_layer"] == 5


def test_train_refuses_a_run_over_the_memory_limit(corpus, tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", *tiny_args(corpus, out, "--memory-limit", "64MiB"))
    assert result.returncode == 2
    assert "exceeds the memory limit" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_train_with_a_budget_trains_only_above_the_floor(corpus, tmp_path):
    plan = json.loads(run_cli("plan", *tiny_args(corpus, tmp_path / "x"), "--json").stdout)
    budget = (plan["by_lowest_layer"][3] + plan["by_lowest_layer"][4]) // 2
    out = tmp_path / "run"
    result = run_cli("train", *tiny_args(corpus, out, "--memory-budget", str(budget)))
    assert result.returncode == 0, result.stderr
    steps = [json.loads(line) for line in (out / "selection.jsonl").read_text().splitlines()]
    assert steps and all(min(s["active"]) >= 4 for s in steps)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["lowest_layer_per_step"] == [min(s["active"]) for s in steps]
    per_step = metrics["step_peak_memory_bytes"]
    assert len(per_step) == metrics["steps"] and all(p > 0 for p in per_step)
    assert min(per_step) <= metrics["median_step_peak_memory_bytes"] <= metrics["peak_memory_bytes"]
    assert metrics["predicted_peak_memory_bytes"] <= budget
