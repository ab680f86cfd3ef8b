"""Intention-Tuning: S_gen from importance frequencies, adapter transfer, alignment, the two-step run."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from revtune import adapters
from revtune.config import RunConfig
from revtune.errors import RevtuneError
from revtune.intention import (IntentionOptions, _saved_names, alignment_ratio, generator_run, intention_tune,
                               predictor_tensors, transfer_adapters)
from revtune.models import load_model
from revtune.selection.base import SelectionContext
from revtune.selection.frequency import generation_layers
from revtune.selection.options import SplitOptions
from revtune.selection.registry import build_strategy

torch.set_num_threads(1)  # tiny models run ten times faster on one thread than on two busy ones

PAIRS = [("He go home.", "He goes home.", "fluency"), ("She are here.", "She is here.", "fluency"),
         ("It rain a lot.", "It rains a lot.", "fluency"), ("The thing is big.", "The house is big.", "clarity"),
         ("Do the stuff.", "Do the dishes.", "clarity"), ("We has two cats.", "We have two cats.", "fluency"),
         ("That was a thing.", "That was a storm.", "clarity"), ("They was late.", "They were late.", "fluency")]
N_LAYERS = 6


def tiny_config(folder, **overrides):
    paths = {}
    for name, pairs in (("train", PAIRS), ("dev", PAIRS[:3]), ("test", PAIRS[1:4])):
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps({"before_sent": b, "after_sent": a, "labels": i}) + "\n"
                                       for b, a, i in pairs))
    values = dict(model="tiny", tiny_layers=N_LAYERS, train=str(paths["train"]), dev=str(paths["dev"]),
                  test=str(paths["test"]), max_steps=6, batch_size=4, max_length=160, dev_generate=0,
                  new_tokens_factor=0.5, new_tokens_floor=4, out=str(folder / "it"), lora_r=4)
    values.update(overrides)
    return RunConfig.from_values(values)


# ---------------------------------------------------------------- S_gen and alignment on constructed data

@pytest.mark.parametrize("frequency, options, expected", [
    ([9, 1, 5, 3, 8, 2, 7, 4, 6, 10], {}, [0, 2, 4, 6, 8, 9]),        # METHODS.md §1's example, as counts
    ([9, 1, 5, 3, 8, 2, 7, 4, 6, 10], {"split_num": 2}, [0, 4, 6, 9]),
    ([1] * 5 + [5] * 5, {}, [4, 5, 6, 7, 8, 9]),                       # the reference keeps one layer more
    ([1] * 5 + [5] * 5, {"boundary": "exact"}, [5, 6, 7, 8, 9]),
    ([1] * 5 + [5] * 5, {"split_num": 2}, [7, 8, 9]),
    ([4] * 6, {}, [0, 1, 2, 3, 4, 5]),                                 # no contrast: every layer
])
def test_generation_layers_split_a_constructed_frequency(frequency, options, expected):
    assert generation_layers(frequency, SplitOptions(**options)) == expected


def test_alignment_ratio_is_the_share_of_generation_layers_the_predictor_also_found():
    assert alignment_ratio([0, 1, 2], [1, 2, 3, 4]) == 0.5
    assert alignment_ratio([3, 4], [3, 4]) == 1.0
    assert alignment_ratio([0], [5, 6]) == 0.0
    with pytest.raises(ValueError):
        alignment_ratio([0], [])


def _context(n_layers):
    return SelectionContext(model=None, layers=adapters.LayerMap([[]] * n_layers, [[]] * n_layers),
                            rng=np.random.default_rng(0))


def test_frequency_strategy_trains_the_same_split_every_step_and_checks_depth(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"importance_frequency": [1] * 5 + [5] * 5}))
    strategy = build_strategy(f"frequency:{tmp_path}")
    assert strategy.choose(0, _context(10))[0] == strategy.choose(7, _context(10))[0] == [4, 5, 6, 7, 8, 9]
    with pytest.raises(RevtuneError, match="covers 10 layers but this model has 8"):
        strategy.choose(0, _context(8))
    with pytest.raises(RevtuneError, match="not found"):
        build_strategy(f"frequency:{tmp_path / 'missing'}")


# ---------------------------------------------------------------- the two-step run

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("intention")
    return intention_tune(tiny_config(folder), IntentionOptions(alignment=True, init_layers="all"), quiet=True)


def test_the_run_directory_holds_both_steps_and_their_layer_sets(run):
    out, metrics = run.path, run.metrics
    assert {p.name for p in out.iterdir()} >= {"predictor", "generator", "alignment", "metrics.json",
                                              "intention.json", "selection.png"}
    assert json.loads((out / "predictor" / "config.json").read_text())["data"]["task"] == "intent"
    generator_config = json.loads((out / "generator" / "config.json").read_text())
    assert generator_config["selection"]["select"] == f"frequency:{out / 'predictor'}"
    assert generator_config["output"]["out"] == str(out / "generator")
    frequency = json.loads((out / "predictor" / "metrics.json").read_text())["importance_frequency"]
    assert metrics["importance_frequency"] == frequency
    assert metrics["generator_layers"] == generation_layers(frequency)
    steps = [json.loads(line) for line in (out / "generator" / "selection.jsonl").read_text().splitlines()]
    assert len(steps) == 6 and all(s["active"] == metrics["generator_layers"] for s in steps)
    assert generator_run(out) == out / "generator"
    assert build_strategy(f"intention:{out}").choose(0, _context(N_LAYERS))[0] == metrics["generator_layers"]


def test_alignment_compares_the_predictor_split_with_an_ir_run_on_generation(run):
    alignment, metrics = run.metrics["alignment"], run.metrics
    assert alignment["s_int"] == metrics["generator_layers"]
    assert alignment["s_gen"] == generation_layers(alignment["generation_frequency"])
    assert alignment["ratio"] == alignment_ratio(alignment["s_int"], alignment["s_gen"])


def test_frozen_generator_layers_keep_the_predictor_adapters_exactly(run):
    """init_layers=all: layers outside S_gen never train, so they must still hold the predictor's tensors."""
    predictor = predictor_tensors(run.path / "predictor")
    generator = load_file(str(run.path / "generator" / "adapter" / "adapter_model.safetensors"))
    frozen = [i for i in range(N_LAYERS) if i not in run.metrics["generator_layers"]]
    assert frozen, "the split kept every layer; nothing to compare"
    compared = 0
    for name, tensor in generator.items():
        if int(name.split(".layers.")[1].split(".")[0]) in frozen:
            assert torch.equal(tensor, predictor[name]), name
            compared += 1
    assert compared == len(frozen) * 10  # five target modules x (lora_A, lora_B)
    assert not any("score" in name for name in generator)  # the predictor's head is discarded


def _generator_model(**adapter):
    loaded = load_model("tiny", "revise", seed=1, tiny_layers=N_LAYERS)
    return adapters.attach(loaded.model, adapters.AdapterConfig(**{"kind": "lora", "r": 4, **adapter}), "revise")


def test_transfer_copies_exactly_the_chosen_layers(run):
    tensors = predictor_tensors(run.path / "predictor")
    model = _generator_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert transfer_adapters(model, tensors, [1, 3]) == 20
    for name, param in model.named_parameters():
        layer = int(name.split(".layers.")[1].split(".")[0]) if ".layers." in name else None
        if layer in (1, 3) and "lora_" in name:
            saved = next(k for k in _saved_names(name) if k in tensors)
            assert torch.equal(param, tensors[saved]), name
        else:
            assert torch.equal(param, before[name]), name


def test_transfer_names_the_module_whose_shape_differs(run):
    tensors = predictor_tensors(run.path / "predictor")
    with pytest.raises(RevtuneError, match=r"module .*layers\.0\.self_attn\.q_proj.*shape"):
        transfer_adapters(_generator_model(r=8), tensors, [0])
    with pytest.raises(RevtuneError, match="no adapter tensor"):
        transfer_adapters(_generator_model(kind="bottleneck"), tensors, [0])


def test_a_failed_second_step_leaves_no_output(run, tmp_path):
    config = tiny_config(tmp_path, lora_r=8)  # the predictor has rank 4: step 2 cannot start from it
    with pytest.raises(RevtuneError, match="shape"):
        intention_tune(config, IntentionOptions(predictor=str(run.path / "predictor")), quiet=True)
    assert not (tmp_path / "it").exists() and not list(tmp_path.glob(".it.*"))


def test_a_reused_predictor_must_be_an_intent_run_on_the_same_model(run, tmp_path):
    with pytest.raises(RevtuneError, match="task 'revise'"):
        intention_tune(tiny_config(tmp_path), IntentionOptions(predictor=str(run.path / "generator")), quiet=True)
    with pytest.raises(RevtuneError, match="tiny_layers"):
        intention_tune(tiny_config(tmp_path, tiny_layers=4),
                       IntentionOptions(predictor=str(run.path / "predictor")), quiet=True)
