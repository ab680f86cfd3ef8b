"""The baselines IR-Tuning is measured against (METHODS.md §2), each a signal + a rule.

``full`` (every weight of every layer), ``random`` (RST), ``lisa`` (LMFlow's LISA), ``ist`` (importance
sampling from a damped-adapter reward) and ``replay`` (another run's sets, for overhead benchmarks).
``all`` and ``fixed`` live in the registry beside ``ir``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..distributed import mean_across_ranks
from ..errors import RevtuneError
from ..models import decoder_blocks
from ..statejson import array_from_json, array_to_json
from .base import NoSignal, SelectionContext, Strategy
from .options import IstOptions
from .rules import AllRule


def _draw(ctx: SelectionContext, k: int, weights: np.ndarray | None = None) -> list[int]:
    """k distinct layers from the run's generator, uniformly or in proportion to ``weights``."""
    p = None if weights is None else weights / weights.sum()
    return sorted(ctx.rng.choice(ctx.n_layers, size=k, replace=False, p=p).tolist())


def _check_k(name: str, k: int, ctx: SelectionContext) -> None:
    if k > ctx.n_layers:
        raise RevtuneError(f"{name} asks for {k} layers but the model has {ctx.n_layers}", field="select")


def full(options) -> Strategy:
    return Strategy(options.spec(), NoSignal(), AllRule(), adapter=options.adapter, outside_blocks="train")


# --- RST ------------------------------------------------------------------------------------------

@dataclass
class RandomRule:
    """RST: k layers uniformly without replacement over the model's real depth, redrawn every step."""

    k: int

    def select(self, step, scores, ctx):
        _check_k(f"random:{self.k}", self.k, ctx)
        return _draw(ctx, self.k), None


def random_layers(options) -> Strategy:
    return Strategy(options.spec(), NoSignal(), RandomRule(options.k))


# --- LISA -----------------------------------------------------------------------------------------

@dataclass
class LisaRule:
    """LISA: gamma blocks drawn uniformly every K steps (step 0 included), kept in between.

    The period is counted in optimizer steps whatever ``select_interval`` says, so a coarser interval
    only delays a switch to the next time the rule runs.
    """

    gamma: int
    period: int
    current: list[int] | None = None
    drawn_in: int = -1

    def select(self, step, scores, ctx):
        _check_k(f"lisa:{self.gamma}", self.gamma, ctx)
        if self.current is None or step // self.period != self.drawn_in:
            self.current, self.drawn_in = _draw(ctx, self.gamma), step // self.period
        return self.current, None

    def state_dict(self) -> dict:
        return {"current": self.current, "drawn_in": self.drawn_in}

    def load_state_dict(self, state, ctx) -> None:
        self.current, self.drawn_in = state["current"], int(state["drawn_in"])


def lisa(options) -> Strategy:
    return Strategy(options.spec(), NoSignal(), LisaRule(options.gamma, options.period), default_adapter="none",
                    outside_blocks="freeze" if options.frozen_embeddings else "train")


# --- IST ------------------------------------------------------------------------------------------

def adapter_scalings(block: torch.nn.Module) -> list[tuple[dict, str]]:
    """(mapping, key) of every adapter scaling inside a block, read at each forward: the ``scaling`` dict
    of peft LoRA/DoRA layers, and the ``scale`` attribute of a ``ParallelBottleneck`` (a plain float, so
    it lives in the module's ``__dict__``)."""
    from peft.tuners.lora import LoraLayer

    from ..adapters import ParallelBottleneck

    found = []
    for module in block.modules():
        if isinstance(module, LoraLayer):
            found += [(module.scaling, name) for name in module.scaling]
        elif isinstance(module, ParallelBottleneck):
            found.append((vars(module), "scale"))
    return found


@dataclass
class IstSignal(NoSignal):
    """IST's scores s, one per layer, starting at 0 (METHODS.md §2).

    Every ``every`` steps (never step 0), before the rule runs: take the next batch of IST's own loader
    over the training split (shuffled with the run's seed, reshuffled when exhausted, as the reference's
    separate DataLoader); ``draws`` times pick a new subset of floor(``probe`` n) layers with weights
    sigmoid(s) (a subset already drawn is redrawn, while new ones exist), multiply their adapter scalings
    by ``damping``, and take the eval-mode, no-grad loss; reward r_k = exp(-loss_k) - mean_j exp(-loss_j),
    and s_l += sum_k [l in S_k] r_k p_l (1 - p_l) ``gain`` with p = sigmoid(s) from before the draws. Only
    scalings are touched, and each is restored to its saved value, not divided back.
    """

    options: IstOptions = field(default_factory=IstOptions)
    values: np.ndarray | None = None
    updates: int = 0
    scalings: list = field(default_factory=list)
    batches: object = None

    def setup(self, ctx):
        self.values = np.zeros(ctx.n_layers)
        self.scalings = [adapter_scalings(block) for block in decoder_blocks(ctx.model)]
        if not all(self.scalings):
            raise RevtuneError("ist damps adapter scalings: use --adapter lora, dora or bottleneck",
                               field="adapter")
        if ctx.train is not None:
            self.batches = _endless_batches(ctx.train)

    def scores(self, step, ctx):
        if step > 0 and step % self.options.every == 0:
            self.update(ctx, self.probe_batch(ctx, step))
        return self.values.copy()

    def probe_batch(self, ctx, step: int) -> dict:
        if self.batches is None:
            raise RuntimeError(f"ist: no training data to probe at step {step}: run inside a Trainer")
        device = next(ctx.model.parameters()).device
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in next(self.batches).items()}

    def update(self, ctx, batch: dict) -> None:
        p = 1.0 / (1.0 + np.exp(-self.values))
        size = max(1, math.floor(self.options.probe * ctx.n_layers))
        distinct = math.comb(ctx.n_layers, size)
        subsets: list[list[int]] = []
        while len(subsets) < self.options.draws:
            subset = _draw(ctx, size, p)
            if subset not in subsets or len(subsets) >= distinct:
                subsets.append(subset)
        losses = mean_across_ranks([self.damped_loss(ctx, subset, batch) for subset in subsets])
        rewards = np.exp(-losses) - np.exp(-losses).mean()
        for subset, reward in zip(subsets, rewards):
            self.values[subset] += reward * p[subset] * (1 - p[subset]) * self.options.gain
        self.updates += 1

    def state_dict(self) -> dict:
        return {"values": array_to_json(self.values), "updates": self.updates}

    def load_state_dict(self, state, ctx) -> None:
        self.values, self.updates = array_from_json(state["values"]), int(state["updates"])

    def damped_loss(self, ctx, subset: list[int], batch: dict) -> float:
        saved = [(holder, key, holder[key]) for layer in subset for holder, key in self.scalings[layer]]
        was_training = ctx.model.training
        try:
            for holder, key, value in saved:
                holder[key] = value * self.options.damping
            ctx.model.eval()
            with torch.no_grad():
                loss = ctx.model(**batch).loss
            return float(loss)  # host synchronisation: three per update, every ``every`` steps
        finally:
            for holder, key, value in saved:
                holder[key] = value
            ctx.model.train(was_training)


def _endless_batches(source):
    """Batches of the training split in a seeded shuffled order, a new order each pass."""
    generator = torch.Generator().manual_seed(source.seed)
    shuffle = not isinstance(source.dataset, torch.utils.data.IterableDataset)  # a stream has its own order
    loader = torch.utils.data.DataLoader(source.dataset, batch_size=source.batch_size, shuffle=shuffle,
                                         collate_fn=source.collate_fn, generator=generator if shuffle else None)
    while True:
        yield from loader


@dataclass
class IstRule:
    """floor(``share`` n) layers (at least one) drawn without replacement with weights sigmoid(-s)."""

    share: float

    def select(self, step, scores, ctx):
        k = max(1, math.floor(self.share * ctx.n_layers))
        return _draw(ctx, k, 1.0 / (1.0 + np.exp(scores))), scores


def ist(options) -> Strategy:
    return Strategy(options.spec(), IstSignal(options), IstRule(options.share))


# --- replay ---------------------------------------------------------------------------------------

@dataclass
class ReplayRule:
    """The active set another run logged for each step, read once from its ``selection.jsonl``."""

    path: Path
    sets: dict[int, list[int]]

    @classmethod
    def read(cls, run: str) -> "ReplayRule":
        path = Path(run) / "selection.jsonl" if Path(run).is_dir() else Path(run)
        if not path.is_file():
            raise RevtuneError("replay needs a run directory with a selection.jsonl", path=path,
                               field="select")
        sets = {}
        for number, line in enumerate(path.read_text().splitlines(), 1):
            try:
                record = json.loads(line)
                sets[int(record["step"])] = [int(layer) for layer in record["active"]]
            except (ValueError, KeyError, TypeError, RecursionError, OverflowError):
                raise RevtuneError("expected a JSON object with step and active", path=path,
                                   line=number) from None
        return cls(path, sets)

    def possible_layers(self, n_layers: int) -> list[int]:
        return sorted({layer for active in self.sets.values() for layer in active})

    def select(self, step, scores, ctx):
        if step not in self.sets:
            raise RevtuneError(f"replay: step {step} is past the end of the log ({len(self.sets)} steps)",
                               path=self.path, field="select")
        active = self.sets[step]
        if any(not 0 <= layer < ctx.n_layers for layer in active):
            raise RevtuneError(f"replay: step {step} names layer {max(active)} but the model has "
                               f"{ctx.n_layers}", path=self.path, field="select")
        return active, None


def replay(options) -> Strategy:
    return Strategy(options.spec(), NoSignal(), ReplayRule.read(options.run))
