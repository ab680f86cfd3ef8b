"""Faithful where it counts (issue 12): each test pins a point where revtune follows METHODS.md /
LAYERCARD.md and the authors' code, against a direct computation or a real run on the tiny model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from revtune.config import RunConfig
from revtune.models import load_model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_run_config(corpus, out, **changes) -> RunConfig:
    settings = dict(model="tiny", train=str(corpus["train"]), dev=str(corpus["dev"]), test=str(corpus["test"]),
                    max_steps=3, batch_size=4, max_length=48, lora_r=2, lora_alpha=4, bottleneck_dim=8,
                    eval_every=1000, out=str(out), seed=3)
    settings.update(changes)
    return RunConfig(**settings)


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
        config = RunConfig(model="tiny", tiny_layers=4, dtype=dtype, batch_size=4, max_length=48, max_steps=10,
                           seed=171)
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
