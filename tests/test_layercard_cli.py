"""Layer Card end to end on the tiny model: revtune layer-card, train --select card:PATH, refusals."""
import json

import numpy as np
import pytest

from conftest import run_cli, tiny_args
from revtune.errors import RevtuneError
from revtune.layercard import read_card
from revtune.layercard.strategy import check_model
from revtune.selection.registry import build_strategy

CARD_FLAGS = ("--tiny-layers", "2", "--probe-batches", "2", "--measure-cost", "--cost-steps", "1",
              "--measure-performance", "--probe-steps", "1")


@pytest.fixture(scope="module")
def card_dir(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("cards") / "tiny"
    result = run_cli("layer-card", *tiny_args(corpus, out, *CARD_FLAGS))
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_layer_card_writes_a_complete_card(card_dir):
    card = read_card(card_dir)
    assert {p.name for p in card_dir.iterdir()} == {"card.json", "card.md", "card.png"}
    assert card.n_layers == 2 and card.data["probe"]["planned_steps"] == 4
    for column in ("step_seconds", "peak_bytes", "probe_dev_loss", "probe_gain", "gain_cf", "res2"):
        assert card.column(column) is not None, column
    assert [p["name"] for p in card.data["placements"]] == ["top1", "bottom1", "mid1", "uniform1", "random1"]
    assert card.coupling.shape == (2, 2) and card.data["coupling"]["rho"] >= 0
    assert all(set(b["modules"]) == {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                     "mlp.up_proj", "mlp.down_proj"} for b in card.blocks)
    assert card.blocks[0]["params"] == 4 * (64 + 64) + 2 * 4 * (64 + 32) + 2 * 4 * (64 + 128)


def test_train_with_a_card_trains_the_placed_layers(card_dir, corpus, tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", *tiny_args(corpus, out, "--tiny-layers", "2", "--select", f"card:{card_dir}",
                                         "--budget", "layers=1"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "predicted gain" in result.stdout
    chosen = build_strategy(f"card:{card_dir}", budget="layers=1").rule.spec
    records = [json.loads(line) for line in (out / "selection.jsonl").read_text().splitlines()]
    assert {tuple(r["active"]) for r in records} == {(int(chosen),)}
    assert len(records[0]["scores"]) == 2


def test_a_card_for_another_model_is_refused(card_dir, corpus, tmp_path):
    result = run_cli("train", *tiny_args(corpus, tmp_path / "run", "--tiny-layers", "3", "--select",
                                         f"card:{card_dir}", "--objective", "cost"))
    assert result.returncode == 2
    assert "was made for tiny (2 layers" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_check_model_refuses_other_weights_and_adapter_shapes(card_dir):
    from revtune.adapters import AdapterConfig, attach, layer_map
    from revtune.models import load_model

    card = read_card(card_dir)
    labels = card.data["task"]["labels"]

    def adapted(seed, r):
        model = load_model("tiny", "intent", labels, seed=seed, tiny_layers=2).model
        model = attach(model, AdapterConfig(r=r, alpha=2 * r), "intent")
        return model, layer_map(model).layer_sizes()

    check_model(card, *adapted(171, 4))
    with pytest.raises(RevtuneError, match="other weights"):
        check_model(card, *adapted(1, 4))
    with pytest.raises(RevtuneError, match="adapter parameters"):
        check_model(card, *adapted(171, 8))


def test_card_strategy_objectives_and_bad_paths(card_dir, tmp_path):
    strategy = build_strategy(f"card:{card_dir}", objective="cost")
    assert strategy.name == f"card:{card_dir}" and strategy.default_adapter == "lora"
    assert np.asarray(strategy.signal.gains).shape == (2,)
    with pytest.raises(RevtuneError, match="layer card not found"):
        build_strategy(f"card:{tmp_path / 'missing'}", budget="layers=1")
    with pytest.raises(RevtuneError, match="needs a card directory"):
        build_strategy("card")
