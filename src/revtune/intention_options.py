"""What Intention-Tuning adds to a run config. Torch-free: ``intention-tune``'s flags come from it."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import RevtuneError
from .knobs import check_choices, knob

INIT_LAYERS = ("selected", "all", "none")


@dataclass
class IntentionOptions:
    """Each field is a flag of ``revtune intention-tune`` and a key of its YAML."""

    predictor: str | None = knob(None, "reuse this finished intent run as step 1 (copied into OUT)")
    predictor_steps: int = knob(0, "optimizer steps of step 1 (0: the same schedule as the generator)")
    init_layers: str = knob("selected", "generator layers whose adapters start from the predictor's: the "
                            "trained layers S_gen, all, or none", choices=INIT_LAYERS)
    alignment: bool = knob(False, "also run ir on the generation task alone and report how its layers agree "
                           "with the predictor's (a third training run)")

    def __post_init__(self):
        check_choices(self)
        if self.predictor_steps < 0:
            raise RevtuneError(f"expected >= 0, got {self.predictor_steps}", field="predictor_steps")
