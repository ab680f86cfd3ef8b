"""Faithful where it counts (issue 12): each test pins a point where revtune follows METHODS.md /
LAYERCARD.md and the authors' code, against a direct computation or a real run on the tiny model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from revtune.config import RunConfig
from revtune.models import load_model


def tiny_run_config(corpus, out, **changes) -> RunConfig:
    settings = dict(model="tiny", train=str(corpus["train"]), dev=str(corpus["dev"]), test=str(corpus["test"]),
                    max_steps=3, batch_size=4, max_length=48, lora_r=2, lora_alpha=4, bottleneck_dim=8,
                    eval_every=1000, out=str(out), seed=3)
    settings.update(changes)
    return RunConfig.from_values(settings)


# --- 1. Layer Card coupling in fp32 whatever the model dtype ------------------------------------------

def _probe(dtype, layers=3):
    from revtune.layercard.probe import probe_batches
    from revtune.training.data import PadCollator

    model = load_model("tiny", "intent", ["a", "b", "c"], dtype=dtype, seed=0, tiny_layers=layers).model.eval()
    gen = np.random.default_rng(0)
    rows = []
    for _ in range(4):
        ids = gen.integers(3, 250, int(gen.integers(6, 16))).tolist()
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": int(gen.integers(3))})
    return model, probe_batches(rows, PadCollator(0, "left"), 2, 2, seed=0, device=torch.device("cpu"))


def test_coupling_of_a_bf16_model_is_its_fp32_copy_s_coupling():
    """Same weights (bf16 values), same directions: computed in fp32, the two matrices are the same
    computation; in bf16 the 1e-3 step drowns in rounding and R is noise."""
    from revtune.layercard.coupling import coupling_matrix, unit_perturbations
    from revtune.layercard.probe import target_modules

    half, batches = _probe(torch.bfloat16)
    full = load_model("tiny", "intent", ["a", "b", "c"], dtype=torch.bfloat16, seed=0,
                      tiny_layers=3).model.float().eval()
    per_half = target_modules(half, ["q_proj", "v_proj", "down_proj"])
    per_full = target_modules(full, ["q_proj", "v_proj", "down_proj"])
    gen = torch.Generator().manual_seed(1)
    directions = {(i, name): torch.randn(m.weight.shape, generator=gen)
                  for i, modules in enumerate(per_full) for name, m in modules}
    dtypes = {name: t.dtype for name, t in list(half.named_parameters()) + list(half.named_buffers())}
    r_half, _ = coupling_matrix(half, batches, unit_perturbations(per_half, directions, "cpu"))
    r_full, _ = coupling_matrix(full, batches, unit_perturbations(per_full, directions, "cpu"))
    np.testing.assert_allclose(r_half, r_full, atol=1e-6)
    assert {n: t.dtype for n, t in list(half.named_parameters()) + list(half.named_buffers())} == dtypes
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())


def test_the_same_card_in_fp32_and_bf16_has_the_same_coupling(tmp_path):
    """End to end: the bf16 card's directions come from bf16 forwards and backwards, so R cannot match
    to fp32 precision. bf16 keeps 8 significant bits (unit roundoff 2^-8 = 0.004); a cosine between two
    effects each off by a few roundoffs moves by about as much, so 0.05 (about 12 roundoffs) bounds it
    with room, while the uncorrected bf16 coupling was off by up to 1.0 (fp32 rho 4.6 vs 0.77)."""
    from revtune.layercard.build import build_card
    from revtune.layercard.options import CardOptions

    cards = {}
    for dtype in ("float32", "bfloat16"):
        config = RunConfig.from_values(dict(
            model="tiny", tiny_layers=4, dtype=dtype, batch_size=4, max_length=48, max_steps=10,
            seed=171))
        cards[dtype] = build_card(config, CardOptions(probe_batches=2), tmp_path / dtype, quiet=True)
    r32, r16 = cards["float32"].coupling, cards["bfloat16"].coupling
    assert np.abs(r32 - np.eye(len(r32))).max() > 0.1  # the blocks are coupled: a real comparison
    np.testing.assert_allclose(r16, r32, atol=0.05)
    assert cards["bfloat16"].data["coupling"]["rho"] == pytest.approx(cards["float32"].data["coupling"]["rho"],
                                                                       rel=0.05)


@pytest.mark.parametrize("value, says", [(0.5, "between 0.667 and 2 times"), (1.0, "vacuous"), (4.6, "vacuous")])
def test_the_card_states_the_coupling_bounds_or_that_they_are_vacuous(value, says):
    from revtune.layercard.card import card_markdown

    data = {"model": {"spec": "tiny", "n_layers": 1, "hidden_size": 8}, "task": {"name": "intent"},
            "adapter": {"kind": "lora", "r": 2, "targets": ["q_proj"]}, "probe": {},
            "coupling": {"R": [[1.0]], "rho": value, "mode": "pooled", "tokens": 3},
            "blocks": [{"res2": 1.0}]}
    line = next(line for line in card_markdown(data).splitlines() if line.startswith("- coupling"))
    assert says in line


# --- 2. --freeze-head with every adapter kind -----------------------------------------------------------

class Snapshot:
    """``prepare_model`` hook: every parameter's value before training, to compare after it."""

    def __call__(self, model):
        self.model = model
        self.before = {name: p.detach().clone() for name, p in model.named_parameters()}

    def changed(self) -> set[str]:
        return {name for name, p in self.model.named_parameters() if not torch.equal(self.before[name], p)}


FREEZE_CASES = [("all", "lora"), ("all", "dora"), ("all", "bottleneck"), ("all", "none"),
                ("lisa:2:1", "lora"), ("lisa:2:1", "none"), ("full", "none"), ("ir", "none")]


@pytest.mark.parametrize("select, adapter", FREEZE_CASES)
def test_freeze_head_keeps_the_head_bit_identical(select, adapter, corpus, tmp_path):
    from revtune.training.run import train_run

    snap = Snapshot()
    train_run(tiny_run_config(corpus, tmp_path / "run", select=select, adapter=adapter, freeze_head=True,
                              learning_rate=1e-2), prepare_model=snap, quiet=True)
    changed = snap.changed()
    head = {n for n in snap.before if n.split(".")[-2] == "score" or ".score." in n}
    assert head and not head & changed
    assert any(".layers." in n for n in changed)  # the blocks did train
    outside = {n for n in changed if ".layers." not in n}
    if select in ("full", "lisa:2:1"):  # embeddings and final norm train with these, as documented
        assert any("embed_tokens" in n for n in outside)
    else:
        assert not outside


def test_adapter_none_trains_the_head_unless_frozen(corpus, tmp_path):
    from revtune.training.run import train_run

    snap = Snapshot()
    train_run(tiny_run_config(corpus, tmp_path / "run", select="all", adapter="none", learning_rate=1e-2),
              prepare_model=snap, quiet=True)
    outside = {n for n in snap.changed() if ".layers." not in n}
    assert outside == {"score.weight"}


# --- 3. IR scores under gradient accumulation --------------------------------------------------------

class Capture:
    """``prepare_model`` hook: a copy of the model before training and every training micro-batch."""

    def __call__(self, model):
        import copy

        self.initial = copy.deepcopy(model)
        self.micro = []
        model.register_forward_pre_hook(self._batch, with_kwargs=True)

    def _batch(self, module, args, kwargs):
        if module.training:
            self.micro.append({k: v.clone() for k, v in kwargs.items()})


def _ir_scores_after_one_step(corpus, out, mode, aggregation="authors"):
    """One ``ir`` step of 2 micro-batches through ``train_run``; the micro-batches, the active set, the
    scores the rule saw at step 1, and the model as it was before the step."""
    from revtune.training.run import train_run

    capture = Capture()
    result = train_run(tiny_run_config(corpus, out, max_steps=2, batch_size=2, grad_accum=2, lora_dropout=0.0,
                                       ir_grad_accum=mode, ir_aggregation=aggregation, tiny_layers=4),
                       prepare_model=capture, quiet=True)
    log = [json.loads(line) for line in (result.path / "selection.jsonl").read_text().splitlines()]
    return capture.micro[:2], log[0]["active"], np.array(log[1]["scores"]), capture.initial


def _direct_ir_scores(micro, active, model, mode, aggregation="authors"):
    """Manual backward per micro-batch of the micro-batch loss / grad_accum (what the Trainer
    differentiates, and what the reference's hooks saw) on the model as it was before the step."""
    from revtune.adapters import layer_map

    model.train()
    layers = layer_map(model)
    per_micro = []
    for batch in micro:
        loss = model(**batch).loss / len(micro)
        flat = torch.autograd.grad(loss, [p for group in layers.params for p in group])
        sizes = [len(group) for group in layers.params]
        per_micro.append([flat[sum(sizes[:i]):sum(sizes[:i + 1])] for i in range(layers.n_layers)])
    term = (lambda n: n ** 0.5) if aggregation == "authors" else (lambda n: n ** 2)
    scores = {}
    for layer in active:
        if mode == "per-backward":
            total = sum(term(float(g.norm())) for grads in per_micro for g in grads[layer])
        else:
            total = sum(term(float(sum(grads[layer][k] for grads in per_micro).norm()))
                        for k in range(len(per_micro[0][layer])))
        scores[layer] = total ** 0.5
    return scores


@pytest.mark.parametrize("aggregation", ["authors", "l2"])
def test_ir_scores_under_gradient_accumulation_match_a_direct_computation(corpus, tmp_path, aggregation):
    got, expected = {}, {}
    for mode in ("per-backward", "accumulated"):
        micro, active, scores, initial = _ir_scores_after_one_step(corpus, tmp_path / mode, mode, aggregation)
        direct = _direct_ir_scores(micro, active, initial, mode, aggregation)
        got[mode] = np.array([scores[layer] for layer in active])
        expected[mode] = np.array([direct[layer] for layer in active])
        np.testing.assert_allclose(got[mode], expected[mode], rtol=1e-5)
        assert all(scores[layer] == 1000 for layer in set(range(len(scores))) - set(active))
    # The two readings really differ with two micro-batches, so each comparison above is a real one.
    assert np.abs(expected["per-backward"] / expected["accumulated"] - 1).min() > 0.02


def test_per_backward_is_the_default_and_agrees_with_accumulated_for_one_micro_batch(corpus, tmp_path):
    from revtune.training.run import train_run

    assert RunConfig().flat()["ir_grad_accum"] == "per-backward"
    logs = {}
    for mode in ("per-backward", "accumulated"):
        result = train_run(tiny_run_config(corpus, tmp_path / mode, ir_grad_accum=mode), quiet=True)
        logs[mode] = [json.loads(line)["scores"] for line in (result.path / "selection.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(np.array(logs["per-backward"]), np.array(logs["accumulated"]), rtol=1e-5)


def test_micro_batch_losses_are_divided_by_the_accumulation(corpus, tmp_path):
    """Two micro-batches of 2 log the same step loss as one batch of 4 (transformers would otherwise sum
    the two means: the classification loss does not normalise over the accumulated batch)."""
    from revtune.training.run import train_run

    losses = []
    for name, batch, accum in (("one", 4, 1), ("two", 2, 2)):
        result = train_run(tiny_run_config(corpus, tmp_path / name, max_steps=1, batch_size=batch, grad_accum=accum,
                                           lora_dropout=0.0, select="all"), quiet=True)
        losses.append(result.metrics["train_loss"][0]["loss"])
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)


# --- 4. warm-up -------------------------------------------------------------------------------------

def test_warm_up_is_the_reference_s_unless_the_run_is_too_short(tmp_path):
    from revtune.training.run import training_arguments

    config = RunConfig().training
    warmups = {steps: training_arguments(config, tmp_path, torch.device("cpu"), steps).warmup_steps
               for steps in (150, 199, 200, 300, 999, 5000)}
    assert warmups == {150: 15, 199: 19, 200: 100, 300: 100, 999: 100, 5000: 100}


def test_a_short_run_prints_and_records_its_effective_warm_up(corpus, tmp_path, capsys):
    from revtune.training.run import train_run

    result = train_run(tiny_run_config(corpus, tmp_path / "run", max_steps=30), quiet=False)
    assert result.metrics["effective_warmup_steps"] == 3
    assert "warm-up 3 steps instead of 100" in capsys.readouterr().out
    saved = json.loads((result.path / "config.json").read_text())
    assert saved["training"]["warmup_steps"] == 100
    assert json.loads((result.path / "metrics.json").read_text())["effective_warmup_steps"] == 3


# --- 5. cosine reduction ----------------------------------------------------------------------------

def _cosine_scores(reduction, hidden_in, hidden_out, mask):
    from revtune.selection.signals import CosineSignal

    return float(CosineSignal(reduction).similarity(hidden_in, hidden_out, mask))


def test_cosine_batch_mean_is_the_reference_reduction():
    gen = torch.Generator().manual_seed(0)
    hidden_in, hidden_out = torch.randn(3, 5, 8, generator=gen), torch.randn(3, 5, 8, generator=gen)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 1, 1]])
    before, after = hidden_in.mean(0), hidden_out.mean(0)  # average over the batch first, pads included
    direct = np.mean([float(before[t] @ after[t] / (before[t].norm() * after[t].norm())) for t in range(5)])
    assert _cosine_scores("batch-mean", hidden_in, hidden_out, mask) == pytest.approx(direct, rel=1e-5)
    tokens = [float(hidden_in[b, t] @ hidden_out[b, t] / (hidden_in[b, t].norm() * hidden_out[b, t].norm()))
              for b in range(3) for t in range(5) if mask[b, t]]
    assert _cosine_scores("token", hidden_in, hidden_out, mask) == pytest.approx(np.mean(tokens), rel=1e-5)
    assert abs(direct - np.mean(tokens)) > 1e-3


def test_cosine_runs_score_the_first_forward_of_each_step_with_the_reference_reduction(corpus, tmp_path):
    from revtune.models import decoder_blocks
    from revtune.training.run import train_run

    assert RunConfig.from_values({"select": "cosine"}).flat()["cosine_reduction"] == "batch-mean"
    seen = {}

    def watch(model):
        def hook(index):
            def record(module, args, kwargs, output):
                if module.training and index not in seen:
                    hidden_in = args[0] if args else kwargs["hidden_states"]
                    hidden_out = output[0] if isinstance(output, tuple) else output
                    seen[index] = _cosine_scores("batch-mean", hidden_in.detach(), hidden_out.detach(), None)
            return record
        for i, block in enumerate(decoder_blocks(model)):
            block.register_forward_hook(hook(i), with_kwargs=True)

    result = train_run(tiny_run_config(corpus, tmp_path / "run", select="cosine", max_steps=2), prepare_model=watch,
                       quiet=True)
    log = [json.loads(line) for line in (result.path / "selection.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(log[1]["scores"], [seen[i] for i in range(len(seen))], rtol=1e-5)


# --- 6. IST: its own probe batches, duplicate subsets redrawn ----------------------------------------

class RecordingIst:
    """An IST signal that keeps the subsets it damped (the real signal, with a real model forward)."""

    @staticmethod
    def make():
        from revtune.selection.baselines import IstSignal

        class Recording(IstSignal):
            def damped_loss(self, ctx, subset, batch):
                self.seen.append(tuple(subset))
                return super().damped_loss(ctx, subset, batch)

        signal = Recording()
        signal.seen = []
        return signal


@pytest.mark.parametrize("layers", [4, 2])
def test_ist_redraws_duplicate_subsets_while_new_ones_exist(layers):
    import math

    from revtune.adapters import AdapterConfig, attach, layer_map
    from revtune.selection.base import SelectionContext

    model = attach(load_model("tiny", "intent", ["a", "b"], seed=0, tiny_layers=layers).model,
                   AdapterConfig(kind="lora", r=2, alpha=4), "intent")
    ids = torch.randint(3, 200, (2, 8), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1])}
    distinct = math.comb(layers, layers // 2)
    for seed in range(30):
        signal = RecordingIst.make()
        ctx = SelectionContext(model, layer_map(model), np.random.default_rng(seed))
        signal.setup(ctx)
        signal.update(ctx, batch)
        assert len(signal.seen) == 3
        assert len(set(signal.seen)) == min(3, distinct)


def test_ist_probes_a_batch_of_its_own_from_the_training_split(corpus, tmp_path):
    from revtune.training.run import train_run

    forwards = []

    def watch(model):
        model.register_forward_pre_hook(lambda m, a, kw: forwards.append((m.training, "labels" in kw,
                                                                          kw["input_ids"].clone())),
                                        with_kwargs=True)

    def probes(out):
        forwards.clear()
        train_run(tiny_run_config(corpus, out, select="ist", max_steps=11, adapter="lora", prompt="pair"),
                  prepare_model=watch,
                  quiet=True)
        stepped = [ids for training, _, ids in forwards if training]
        damped = [ids for training, labelled, ids in forwards if not training and labelled]
        return stepped, damped

    stepped, damped = probes(tmp_path / "one")
    assert len(damped) == 3 and all(torch.equal(d, damped[0]) for d in damped)
    probe = damped[0]
    assert not (probe.shape == stepped[9].shape and torch.equal(probe, stepped[9]))  # not the batch just stepped on

    def rows(ids):
        return {tuple(t for t in row.tolist() if t != 0) for row in ids}

    train_rows = set().union(*(rows(ids) for ids in stepped))
    assert rows(probe) <= train_rows
    _, again = probes(tmp_path / "two")
    assert torch.equal(again[0], probe)  # seeded


# --- 7. the reference preset ---------------------------------------------------------------------------

def test_reference_prompt_is_the_authors_character_for_character():
    from revtune.corpora.record import Revision
    from revtune.prompts import intent_prompt

    labels = ["clarity", "fluency", "coherence", "style", "meaning-changed"]
    got = intent_prompt(Revision("a b", "a c", ("clarity",)), labels, "reference-instruction")
    pad = " " * 8
    expected = (f"\n{pad}### Instruction: Identify the intention of the revision between original sentence and "
                f"revised sentence. \n{pad}The possible intentions include: Clarity, Style, Fluency, Coherence, "
                f"and Meaning-change.\n\n{pad}### Original Sentence: a b\n{pad}### Revised Sentence: a c\n{pad}")
    assert got == expected
    arg = intent_prompt(Revision("x", "y", ("LCE",)), ["LCE", "commentary"], "reference-instruction")
    assert arg.startswith(f"\n{pad}### Instruction: Identify the intention of the revision between original text")
    assert f"### Original Text: x\n{pad}### Revised Text: y\n{pad}" in arg


def test_reference_pair_is_a_tokenizer_text_pair_and_pads_with_id_0():
    from revtune.corpora.record import Revision
    from revtune.models import byte_tokenizer, prepare_tokenizer
    from revtune.prompts import intent_prompt
    from revtune.training.data import PadCollator, encode_intents

    loaded = load_model("tiny", "intent", ["clarity", "style"], seed=0, tiny_layers=1)
    tokenizer = prepare_tokenizer(byte_tokenizer(), loaded.model, pad_token_id=0)
    assert tokenizer.pad_token_id == 0 == loaded.model.config.pad_token_id and tokenizer.padding_side == "left"
    records = [Revision("a cat", "the cat", ("style",)), Revision("it go", "it goes on", ("clarity",))]
    rows = encode_intents(records, ["clarity", "style"], False, tokenizer,
                          lambda r: intent_prompt(r, ["clarity", "style"], "reference-pair"), 64).rows
    assert [r["input_ids"] for r in rows] == tokenizer(["a cat", "it go"], ["the cat", "it goes on"])["input_ids"]
    batch = PadCollator(tokenizer.pad_token_id, "left")(rows)
    assert batch["input_ids"][0, 0] == 0 and batch["attention_mask"][0, 0] == 0


def test_preset_values_sit_under_yaml_and_flags(tmp_path, capsys):
    import argparse

    from revtune.config import add_config_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("preset: ir-reference\nlearning_rate: 0.001\n")
    config = config_from_args(parser.parse_args(["--config", str(yaml_file), "--seed", "5", "--device", "cpu"])).flat()
    assert (config["learning_rate"], config["seed"]) == (0.001, 5)  # YAML and flags win
    assert (config["freeze_head"], config["prompt"], config["pad_token_id"], config["eval_every"],
            config["test_every"], config["warmup_steps"]) == (True, "reference-instruction", 0, 10, 10, 100)
    assert config["dtype"] == "float32"
    assert "fp16 (the reference's) needs a GPU" in capsys.readouterr().out
    assert config_from_args(parser.parse_args(["--preset", "ir-reference", "--dtype", "bfloat16"])).model.dtype == "bfloat16"


def test_train_with_the_reference_preset_on_the_tiny_model(corpus, tmp_path):
    from conftest import run_cli

    out = tmp_path / "ref"
    result = run_cli("train", "--preset", "ir-reference", "--model", "tiny", "--tiny-layers", "2",
                     "--train", corpus["train"], "--dev", corpus["dev"], "--test", corpus["test"],
                     "--max-steps", "10", "--batch-size", "4", "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "training in float32 on cpu" in result.stdout and "warm-up 1 steps instead of 100" in result.stdout
    config = RunConfig.from_values(json.loads((out / "config.json").read_text())).flat()  # the preset's values
    metrics = json.loads((out / "metrics.json").read_text())
    assert (config["prompt"], config["pad_token_id"], config["seed"]) == ("reference-instruction", 0, 171)
    assert [h["step"] for h in metrics["test_history"]] == [10] == [h["step"] for h in metrics["dev_history"]]
    assert "0 outside the blocks" in (out / "trainable.txt").read_text()  # the head stays random
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out / "tokenizer").pad_token_id == 0


@pytest.mark.parametrize("mode", ["per-backward", "accumulated"])
def test_a_non_finite_tensor_norm_counts_as_1000_per_tensor(mode):
    from revtune.adapters import LayerMap
    from revtune.selection.base import SelectionContext
    from revtune.selection.signals import GradNormSignal

    params = [[torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))]]
    ctx = SelectionContext(torch.nn.Linear(1, 1), LayerMap([["a", "b"]], params), np.random.default_rng(0))
    signal = GradNormSignal("authors", mode)
    signal.setup(ctx)
    loss = (params[0][0] * torch.tensor([float("inf"), 0.0, 0.0])).sum() + (params[0][1] * torch.tensor([3.0, 4.0])).sum()
    loss.backward()
    signal.observe(0, [0], ctx)
    assert signal.scores(1, ctx)[0] == pytest.approx((1000 ** 0.5 + 5 ** 0.5) ** 0.5)
    signal.close()
