"""Baselines (random, lisa, ist, replay, full) and the tfidf floor, each inside a real Trainer run.

Every run trains the 8-layer ``tiny`` model a few steps on a toy corpus; a gradient recorder attached
through ``train_run(prepare_model=...)`` shows which layers actually received gradients in each step, so
the tests check behaviour, not only what the selection log claims.
"""
from __future__ import annotations

import json
import random
from functools import partial

import numpy as np
import pytest
import torch

from revtune.adapters import AdapterConfig, LayerMap, ParallelBottleneck, attach, layer_map
from revtune.config import RunConfig
from revtune.errors import RevtuneError
from revtune.models import decoder_blocks, load_model
from revtune.selection.base import SelectionContext, TrainSource
from revtune.training.data import EncodedDataset, PadCollator
from revtune.selection.baselines import IstSignal, ReplayRule, adapter_scalings
from revtune.selection.options import IstOptions
from revtune.selection.registry import build_strategy
from revtune.tfidf import edit_words, tfidf_run
from revtune.training.run import train_run

N_LAYERS = 8
EDITS = {  # one family of (deleted, added) words per intent: separable from the edits alone
    "clarity": [("thing", "device"), ("stuff", "material"), ("it", "the engine")],
    "fluency": [("teh", "the"), ("go", "goes"), ("have", "has")],
    "coherence": [("", "however ,"), ("", "therefore ,"), ("", "as a result ,")],
    "style": [("big", "large"), ("get", "obtain"), ("show", "demonstrate")],
    "meaning-changed": [("two", "three"), ("old", "new"), ("always", "never")],
}
FILLER = "the report said that we should check the numbers before the meeting on monday".split()


def write_corpus(path, per_class: int, seed: int) -> None:
    """IteraTeR sentence-level JSONL whose intents are decided by which words were edited."""
    rng = random.Random(seed)
    rows = []
    for label, pairs in EDITS.items():
        for _ in range(per_class):
            old, new = rng.choice(pairs)
            words = [w for w in FILLER if rng.random() > 0.2]
            spot = rng.randrange(len(words) + 1)
            before = " ".join(words[:spot] + ([old] if old else []) + words[spot:])
            after = " ".join(words[:spot] + [new] + words[spot:])
            rows.append({"before_sent": before, "after_sent": after, "labels": label})
    rng.shuffle(rows)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model gains nothing from threads; on a shared machine extra threads only wait."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    write_corpus(folder / "train.jsonl", 5, 0)
    write_corpus(folder / "dev.jsonl", 1, 1)
    write_corpus(folder / "test.jsonl", 1, 2)
    return folder


def tiny_config(corpus, out, select, steps, **overrides) -> RunConfig:
    settings = dict(model="tiny", tiny_layers=N_LAYERS, train=str(corpus / "train.jsonl"),
                    dev=str(corpus / "dev.jsonl"), test=str(corpus / "test.jsonl"), select=select,
                    max_steps=steps, batch_size=4, max_length=40, eval_every=1000, out=str(out))
    settings.update(overrides)
    return RunConfig.from_values(settings)


class GradientRecorder:
    """Per training step, which blocks (by index) and which outside tensors (by name) got a gradient."""

    def __init__(self):
        self.steps: list[set] = []

    def __call__(self, model):
        self.model = model
        self.initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        owner = {id(p): i for i, block in enumerate(decoder_blocks(model)) for p in block.parameters()}
        model.register_forward_pre_hook(self._step_begins)
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.register_post_accumulate_grad_hook(partial(self._got, owner.get(id(param), name)))

    def _step_begins(self, module, args):
        if module.training:  # eval forwards (dev scoring, IST's damped losses) are not steps
            self.steps.append(set())

    def _got(self, where, param):
        self.steps[-1].add(where)

    def layers(self, step: int) -> list[int]:
        return sorted(w for w in self.steps[step] if isinstance(w, int))

    def outside(self, step: int) -> set[str]:
        return {w for w in self.steps[step] if isinstance(w, str)}


def run(corpus, tmp_path, select, steps, **overrides):
    recorder = GradientRecorder()
    result = train_run(tiny_config(corpus, tmp_path / "run", select, steps, **overrides),
                       prepare_model=recorder, quiet=True)
    log = [json.loads(line) for line in (result.path / "selection.jsonl").read_text().splitlines()]
    return result, log, recorder


def test_random_trains_exactly_k_layers_each_step(corpus, tmp_path):
    result, log, grads = run(corpus, tmp_path, "random:3", 3)
    assert [len(r["active"]) for r in log] == [3, 3, 3]
    assert [grads.layers(r["step"]) for r in log] == [r["active"] for r in log]
    assert result.metrics["mean_active_layers"] == 3

    replayed, replay_log, replay_grads = run(corpus, tmp_path / "again", f"replay:{result.path}", 3)
    assert [r["active"] for r in replay_log] == [r["active"] for r in log]
    assert [replay_grads.layers(s) for s in range(3)] == [r["active"] for r in log]
    assert replayed.metrics["strategy"] == f"replay:{result.path}"


def test_full_trains_every_weight_and_more_than_all(corpus, tmp_path):
    full, log, grads = run(corpus, tmp_path / "full", "full", 1)
    adapters, _, _ = run(corpus, tmp_path / "all", "all", 1)
    assert (full.metrics["adapter"], adapters.metrics["adapter"]) == ("none", "lora")
    assert full.metrics["trainable_params"] > adapters.metrics["trainable_params"]
    assert grads.layers(0) == list(range(N_LAYERS)) == log[0]["active"]
    assert any("embed_tokens" in n for n in grads.outside(0))


def test_lisa_redraws_every_k_steps_and_always_trains_embeddings_and_head(corpus, tmp_path):
    result, log, grads = run(corpus, tmp_path, "lisa:2:2", 5)
    assert result.metrics["adapter"] == "none"
    for record in log:
        assert len(record["active"]) == 2
        assert grads.layers(record["step"]) == record["active"]
        outside = grads.outside(record["step"])
        assert any("embed_tokens" in n for n in outside) and any(n.startswith("score") for n in outside)
        if record["step"] % 2:
            assert record["active"] == log[record["step"] - 1]["active"]
    never = set(range(N_LAYERS)) - {layer for r in log for layer in r["active"]}
    params = dict(grads.model.named_parameters())
    for name, before in grads.initial.items():
        if any(f"layers.{i}." in name for i in never):
            assert torch.equal(params[name], before), name


def test_lisa_frozen_embeddings_keeps_only_the_head_outside(corpus, tmp_path):
    result, log, grads = run(corpus, tmp_path, "lisa:2:20:frozen-embeddings", 2)
    assert all(grads.outside(s) and all(n.startswith("score") for n in grads.outside(s)) for s in range(2))
    assert log[0]["active"] == log[1]["active"]
    assert not any("embed_tokens" in n or n.endswith("model.norm.weight") for n in grads.initial)  # never trainable


def test_ist_samples_a_quarter_and_scores_move_only_on_update_steps(corpus, tmp_path):
    scalings = {}

    def remember(model):
        recorder(model)
        scalings.update({id(h): dict(h) for b in decoder_blocks(model) for h, _ in adapter_scalings(b)})

    recorder = GradientRecorder()
    train_run(tiny_config(corpus, tmp_path / "run", "ist", 11, learning_rate=2e-2), prepare_model=remember,
              quiet=True)
    log = [json.loads(line) for line in (tmp_path / "run" / "selection.jsonl").read_text().splitlines()]
    assert all(len(r["active"]) == N_LAYERS // 4 for r in log)
    assert [recorder.layers(r["step"]) for r in log] == [r["active"] for r in log]
    assert all(r["scores"] == [0.0] * N_LAYERS for r in log[:10])
    assert log[10]["scores"] != log[9]["scores"]
    after = {id(h): dict(h) for b in decoder_blocks(recorder.model) for h, _ in adapter_scalings(b)}
    assert after == scalings and len(after) == N_LAYERS * 5


def test_ist_restores_bottleneck_scales_and_train_mode(corpus):
    loaded = load_model("tiny", "intent", ["a", "b"], seed=0, tiny_layers=N_LAYERS)
    model = attach(loaded.model, AdapterConfig(kind="bottleneck", bottleneck_dim=8), "intent")
    for module in model.modules():
        if isinstance(module, ParallelBottleneck):
            torch.nn.init.normal_(module.up.weight, std=0.5)  # a non-zero adapter, so damping matters
    rows = [{"input_ids": torch.randint(3, 200, (12,)).tolist(), "labels": i % 2} for i in range(8)]
    train = TrainSource(EncodedDataset(rows), PadCollator(0), batch_size=4, seed=0)
    ctx = SelectionContext(model, layer_map(model), np.random.default_rng(0), train=train)
    signal = IstSignal(IstOptions())
    signal.setup(ctx)
    model.train()
    assert signal.scores(0, ctx).tolist() == [0.0] * N_LAYERS
    moved = signal.scores(10, ctx)
    assert model.training
    assert all(m.scale == 1.0 for m in model.modules() if isinstance(m, ParallelBottleneck))
    assert np.abs(moved).sum() > 0


def test_ist_refuses_full_weights():
    loaded = load_model("tiny", "intent", ["a", "b"], seed=0, tiny_layers=2)
    model = attach(loaded.model, AdapterConfig(kind="none"), "intent")
    ctx = SelectionContext(model, layer_map(model), np.random.default_rng(0))
    with pytest.raises(RevtuneError, match="lora, dora or bottleneck"):
        IstSignal(IstOptions()).setup(ctx)


def _bare_context(n_layers: int) -> SelectionContext:
    return SelectionContext(None, LayerMap([[] for _ in range(n_layers)], [[] for _ in range(n_layers)]),
                            np.random.default_rng(0))


def test_replay_past_the_end_of_its_log_is_an_error(tmp_path):
    (tmp_path / "selection.jsonl").write_text('{"step": 0, "active": [1, 2]}\n{"step": 1, "active": [3]}\n')
    rule = ReplayRule.read(str(tmp_path))
    ctx = _bare_context(4)
    assert [rule.select(s, None, ctx)[0] for s in (0, 1)] == [[1, 2], [3]]
    with pytest.raises(RevtuneError, match="past the end"):
        rule.select(2, None, ctx)
    with pytest.raises(RevtuneError, match="names layer 3"):
        rule.select(1, None, _bare_context(2))
    with pytest.raises(RevtuneError, match="selection.jsonl"):
        build_strategy(f"replay:{tmp_path / 'missing'}")


@pytest.mark.parametrize("spec, message", [
    ("random:0", "K must be"), ("random:x", "K must be"), ("random:1:2", "one argument"),
    ("lisa:2:0", "K must be"), ("lisa:1:2:3", "GAMMA:K"), ("ist:3", "takes no argument"),
    ("full:2", "takes no argument"), ("replay", "needs a run directory"),
])
def test_bad_specs_are_user_errors(spec, message):
    with pytest.raises(RevtuneError, match=message):
        build_strategy(spec)


def test_asking_for_more_layers_than_the_model_has_is_an_error():
    for spec in ("random:9", "lisa:9:2"):
        with pytest.raises(RevtuneError, match="asks for 9 layers"):
            build_strategy(spec).choose(0, _bare_context(8))


def test_strategy_parameter_setups():
    assert build_strategy("full").adapter == "none"
    lisa, frozen = build_strategy("lisa"), build_strategy("lisa:3:5:frozen-embeddings")
    assert (lisa.name, lisa.default_adapter, lisa.outside_blocks) == ("lisa:2:20", "none", "train")
    assert (frozen.rule.gamma, frozen.rule.period, frozen.outside_blocks) == (3, 5, "freeze")
    assert build_strategy("random").name == "random:4"


def test_edit_words_lists_deletions_and_additions():
    assert edit_words("He go to school, daily.", "He goes to school daily.") == "del:go add:goes del:,"
    assert edit_words("same", "same") == ""


def test_tfidf_beats_chance_on_a_separable_corpus(tmp_path):
    for name, per_class, seed in (("train", 12, 3), ("dev", 2, 4), ("test", 6, 5)):
        write_corpus(tmp_path / f"{name}.jsonl", per_class, seed)
    metrics = tfidf_run(tiny_config(tmp_path, tmp_path / "tfidf", "all", 1))  # tfidf reads no selection
    assert metrics["test"]["macro_f1"] > 0.8  # chance is 0.2 with five balanced intents
    assert metrics["steps"] == 1 and metrics["mean_active_layers"] == 0 and metrics["trainable_params"] > 0
    written = json.loads((tmp_path / "tfidf" / "metrics.json").read_text())
    assert set(written["test"]) >= {"macro_f1", "accuracy", "au_prc", "per_class"}
    saved = json.loads((tmp_path / "tfidf" / "config.json").read_text())
    assert json.loads((tmp_path / "tfidf" / "metrics.json").read_text())["strategy"] == "tfidf"
    assert RunConfig.from_values(saved).data.train == saved["data"]["train"]
