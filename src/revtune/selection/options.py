"""The options of every built-in strategy, registered by name. Torch-free: the CLI builds its flags and
``--select``'s help from these classes; a strategy's code is imported only when it is built.

A field's flag is its ``flag`` name (``split_num``, ``ir_window``) or ``<strategy>_<field>``
(``random_k``, ``ist_every``); a field shared by several strategies is declared once, in a base class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..errors import RevtuneError
from ..knobs import knob
from .registry import StrategyOptions, register, whole_number

AGGREGATIONS = ("authors", "l2")
BOUNDARIES = ("reference", "exact")
GRAD_ACCUM_MODES = ("per-backward", "accumulated")
COSINE_REDUCTIONS = ("batch-mean", "token")


def _flag(strategy: str, name: str) -> str:
    return f"{strategy}_{name}"


@dataclass
class SplitOptions(StrategyOptions):
    """The variance split (METHODS.md §1), shared by every split-based strategy."""

    window: list[float] = knob([0.35, 0.65], "quantile window of the variance split", flag="ir_window")
    split_num: int = knob(1, "apply the variance split once (1) or twice (2)", flag="split_num", choices=(1, 2))
    boundary: str = knob("reference", "reference (keep one layer more, as the authors) or exact",
                         flag="ir_boundary", choices=BOUNDARIES)

    def validate(self) -> None:
        self.window = [float(v) for v in self.window]
        if len(self.window) != 2 or not 0 <= self.window[0] < self.window[1] <= 1:
            raise RevtuneError(f"split window {self.window} must be two numbers with 0 <= low < high <= 1",
                               field="ir_window")


@register
@dataclass
class IrOptions(SplitOptions):
    name = "ir"
    help = "IR-Tuning: gradient-norm scores, variance split, train the high side (default)"
    factory = "revtune.selection.strategies:ir"

    aggregation: str = knob("authors", "IR layer score: authors (sqrt of sum of sqrt norms) or l2",
                            flag="ir_aggregation", choices=AGGREGATIONS)
    grad_accum: str = knob("per-backward", "IR scores under gradient accumulation: per-backward (the "
                           "reference: per-tensor terms summed over micro-batches) or accumulated (norm of "
                           "the step's summed gradient)", flag="ir_grad_accum", choices=GRAD_ACCUM_MODES)


@register
@dataclass
class WeightOptions(SplitOptions):
    name = "weight"
    help = "static: norm of each block's attention output weight, variance split, high side"
    factory = "revtune.selection.strategies:weight"


@register
@dataclass
class CosineOptions(SplitOptions):
    name = "cosine"
    help = "input/output cosine of each block every step, variance split, low side"
    factory = "revtune.selection.strategies:cosine"

    reduction: str = knob("batch-mean", "cosine scores: batch-mean (the reference: hidden states averaged "
                          "over the batch, then the cosine per position, averaged over positions, pads "
                          "included) or token (per-token cosine averaged over real tokens)",
                          flag="cosine_reduction", choices=COSINE_REDUCTIONS)


@register
@dataclass
class AllOptions(StrategyOptions):
    name = "all"
    help = "adapters on every layer, no selection"
    factory = "revtune.selection.strategies:all_layers"


@dataclass
class OneArgumentOptions(StrategyOptions):
    """Strategies whose spec carries one required argument after the colon (a layer list, a directory)."""

    whole = True
    needs: ClassVar[str] = ""

    def validate(self) -> None:
        if not getattr(self, self.positional[0]):
            raise RevtuneError(f"{self.name} needs {self.needs.replace('NAME', self.name)}", field="select")


@register
@dataclass
class FixedOptions(OneArgumentOptions):
    name = "fixed"
    help = "fixed:LIST - the listed layers (0-3,7,-1,top6,mid6,bottom6)"
    factory = "revtune.selection.strategies:fixed"
    positional = ("layers",)
    labels = ("LIST",)
    needs = "a layer list, e.g. fixed:0-3,-1 or fixed:top6"

    layers: str | None = knob(None, "fixed: the layer list (as in fixed:LIST)", cli=False)


@register
@dataclass
class FullOptions(StrategyOptions):
    name = "full"
    help = "full fine-tuning: every weight of every layer (adapter none), no selection"
    factory = "revtune.selection.baselines:full"
    adapter = "none"


@register
@dataclass
class RandomOptions(StrategyOptions):
    name = "random"
    help = "random:K - K layers drawn uniformly every step (RST; default K=4)"
    factory = "revtune.selection.baselines:random_layers"
    positional = ("k",)
    labels = ("K",)

    k: int = knob(4, "random: layers drawn per step (as in random:K)", flag="random_k")

    def validate(self) -> None:
        whole_number("random", self.k, "K")


@register
@dataclass
class LisaOptions(StrategyOptions):
    name = "lisa"
    help = ("lisa:GAMMA:K[:frozen-embeddings] - GAMMA blocks, full weights, redrawn every K steps; "
            "embeddings and head always train unless frozen-embeddings (defaults 2, 20)")
    factory = "revtune.selection.baselines:lisa"
    positional = ("gamma", "period", "frozen_embeddings")
    labels = ("GAMMA", "K", "frozen-embeddings")

    gamma: int = knob(2, "lisa: blocks trained at a time (GAMMA)", flag="lisa_gamma")
    period: int = knob(20, "lisa: steps between redraws (K)", flag="lisa_period")
    frozen_embeddings: bool = knob(False, "lisa: freeze embeddings and final norm (the head still trains)",
                                   flag="lisa_frozen_embeddings")

    @classmethod
    def from_args(cls, args: list[str]) -> dict:
        frozen = bool(args) and args[-1] == "frozen-embeddings"
        numbers = args[:-1] if frozen else args
        if len(numbers) > 2:
            raise RevtuneError(f"lisa takes GAMMA:K[:frozen-embeddings], got '{':'.join(args)}'", field="select")
        values = {name: whole_number("lisa", text, label)
                  for name, label, text in zip(("gamma", "period"), ("GAMMA", "K"), numbers)}
        return {**values, **({"frozen_embeddings": True} if frozen else {})}

    def spec(self) -> str:
        return f"lisa:{self.gamma}:{self.period}" + (":frozen-embeddings" if self.frozen_embeddings else "")

    def validate(self) -> None:
        whole_number("lisa", self.gamma, "GAMMA")
        whole_number("lisa", self.period, "K")


@register
@dataclass
class IstOptions(StrategyOptions):
    name = "ist"
    help = ("IST: floor(share n) layers sampled by sigmoid(-score); scores from damped-adapter losses every "
            "--ist-every steps (needs lora, dora or bottleneck)")
    factory = "revtune.selection.baselines:ist"

    every: int = knob(10, "ist: steps between score updates (never step 0)", flag="ist_every")
    draws: int = knob(3, "ist: damped subsets drawn per update", flag="ist_draws")
    probe: float = knob(0.5, "ist: share of the layers damped in each subset", flag="ist_probe")
    damping: float = knob(0.25, "ist: factor on the adapter scalings of a damped layer", flag="ist_damping")
    gain: float = knob(10.0, "ist: step size of the score update", flag="ist_gain")
    share: float = knob(0.25, "ist: share of the layers trained per step (at least one)", flag="ist_share")

    def validate(self) -> None:
        whole_number("ist", self.every, "every", field="ist_every")
        whole_number("ist", self.draws, "draws", field="ist_draws")
        for name in ("probe", "share"):
            if not 0 < getattr(self, name) <= 1:
                raise RevtuneError(f"expected 0 < value <= 1, got {getattr(self, name)}", field=f"ist_{name}")
        if not 0 <= self.damping < 1 or self.gain <= 0:
            raise RevtuneError(f"expected 0 <= damping < 1 and gain > 0, got {self.damping}, {self.gain}",
                               field="ist_damping")


@dataclass
class RunPathOptions(OneArgumentOptions):
    """Strategies that read a finished run directory (given after the colon)."""

    positional = ("run",)
    labels = ("RUN",)
    needs = "a run directory, e.g. NAME:runs/ir"

    run: str | None = knob(None, "the run directory (as in NAME:RUN)", cli=False)


@register
@dataclass
class ReplayOptions(RunPathOptions):
    name = "replay"
    help = "replay:RUN - the active sets of RUN/selection.jsonl, step by step"
    factory = "revtune.selection.baselines:replay"


@register
@dataclass
class FrequencyOptions(SplitOptions, RunPathOptions):
    name = "frequency"
    help = "frequency:RUN - Intention-Tuning step 2: the high side of RUN's importance frequency, fixed"
    factory = "revtune.selection.frequency:frequency"

    def validate(self) -> None:
        SplitOptions.validate(self)
        OneArgumentOptions.validate(self)


@register
@dataclass
class IntentionLayersOptions(RunPathOptions):
    name = "intention"
    help = "intention:OUT - the generator layers (S_gen) of an intention-tune directory, fixed"
    factory = "revtune.selection.frequency:intention"


@register
@dataclass
class CardSelectOptions(OneArgumentOptions):
    name = "card"
    help = "card:PATH - the best layers by a layer card under --objective/--budget (revtune layer-card)"
    factory = "revtune.layercard.strategy:card"
    positional = ("path",)
    labels = ("PATH",)
    needs = "a card directory, e.g. card:cards/smol"

    path: str | None = knob(None, "card: the card directory (as in card:PATH)", cli=False)
    objective: str = knob("quality", "card:PATH placement: quality (best predicted gain within --budget) or "
                          "cost (shallowest cut reaching 95% of the full predicted gain; cost:0.9 for 90%)",
                          flag="objective")
    budget: str = knob("", "card:PATH budget: layers=6, layers=20%, params=2e6, time=1.5 (s/step), "
                       "memory=3e9 (bytes); comma-separate several", flag="budget")

    def validate(self) -> None:
        from ..layercard.placement import parse_budget, parse_objective

        parse_objective(self.objective)
        parse_budget(self.budget)
        super().validate()
