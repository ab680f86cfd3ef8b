"""One table of every registered strategy x every adapter it trains with, each run in a real Trainer:
the layers a step logs as active are exactly the blocks whose weights that step changed.

The table is checked against the registry, so a new strategy cannot ship without a row here.
"""
from __future__ import annotations

import json

import pytest
import torch

from revtune.config import RunConfig
from revtune.models import decoder_blocks
from revtune.selection.registry import STRATEGIES, split_spec
from revtune.training.run import train_run

N_LAYERS = 4
STEPS = 3
ADAPTERS = ("lora", "dora", "bottleneck", "none")
TABLE = {
    "ir": ADAPTERS, "weight": ADAPTERS, "cosine": ADAPTERS, "all": ADAPTERS, "fixed:1,3": ADAPTERS,
    "full": ("none",), "random:2": ADAPTERS, "lisa:2:2": ADAPTERS, "lisa:1:2:frozen-embeddings": ("none",),
    "ist": ("lora", "dora", "bottleneck"),
    "replay:{replay}": ("lora",), "frequency:{frequency}": ("lora",), "intention:{intention}": ("lora",),
    "card:{card}": ("lora",),
}
CASES = [(spec, adapter) for spec, adapters in TABLE.items() for adapter in adapters]


def test_the_table_names_every_registered_strategy():
    assert {split_spec(spec)[0] for spec in TABLE} == set(STRATEGIES)


class WeightWatcher:
    """A copy of every block's weights at each training forward (one per step) and at the end."""

    def __call__(self, model):
        self.model, self.copies = model, []
        model.register_forward_pre_hook(self.step_begins)

    def step_begins(self, module, args):
        if module.training:  # eval forwards (dev scoring, IST's damped losses) are not steps
            self.copies.append(self.copy())

    def copy(self) -> list[list[torch.Tensor]]:
        return [[p.detach().clone() for p in block.parameters()] for block in decoder_blocks(self.model)]

    def changed(self) -> list[list[int]]:
        copies = self.copies + [self.copy()]
        return [[i for i, (a, b) in enumerate(zip(before, after))
                 if any(not torch.equal(x, y) for x, y in zip(a, b))]
                for before, after in zip(copies, copies[1:])]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engagement")
    rows = [{"before_sent": f"the {w} was here ({i})", "after_sent": f"the {w} is here ({i})", "labels": label}
            for i in range(6) for w, label in (("cat", "clarity"), ("dog", "fluency"), ("cow", "style"))]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "replay").mkdir()
    (folder / "replay" / "selection.jsonl").write_text("".join(
        json.dumps({"step": s, "active": active}) + "\n" for s, active in enumerate([[0], [1, 3], [2]])))
    for name, extra in (("frequency", {}), ("intention", {"generator_layers": [0, 2]})):
        (folder / name).mkdir()
        (folder / name / "metrics.json").write_text(json.dumps({"importance_frequency": [3, 0, 3, 1], **extra}))
    from revtune.layercard.build import build_card
    from revtune.layercard.options import CardOptions

    build_card(config(folder, "all", "lora", folder / "unused"), CardOptions(probe_batches=1), folder / "card",
               quiet=True)
    return folder


def config(folder, spec, adapter, out) -> RunConfig:
    return RunConfig.from_values(dict(
        model="tiny", tiny_layers=N_LAYERS, train=str(folder / "train.jsonl"), select=spec, adapter=adapter,
        max_steps=STEPS, batch_size=4, max_length=40, eval_every=1000, lora_r=2, lora_alpha=4, bottleneck_dim=4,
        out=str(out), seed=3, **({"budget": "layers=2"} if spec.startswith("card:") else {})))


@pytest.mark.parametrize("spec, adapter", CASES)
def test_logged_layers_are_the_layers_that_changed(files, tmp_path, spec, adapter):
    spec = spec.format(**{name: files / name for name in ("replay", "frequency", "intention", "card")})
    watcher = WeightWatcher()
    result = train_run(config(files, spec, adapter, tmp_path / "run"), prepare_model=watcher, quiet=True)
    log = [json.loads(line)["active"] for line in (result.path / "selection.jsonl").read_text().splitlines()]
    assert result.metrics["adapter"] == adapter and len(log) == STEPS
    assert watcher.changed() == log
