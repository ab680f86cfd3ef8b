"""Attach trainable parameters to a base model and map each one to its decoder block.

LoRA and DoRA come from peft. peft has no parallel bottleneck adapter, so :class:`ParallelBottleneck` is
ours. ``none`` trains the model's own weights (full fine-tuning, LISA). Whatever the adapter, the rest of
revtune only sees a :class:`LayerMap`: the trainable parameters of each block, and those outside blocks.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import RevtuneError, did_you_mean
from .models import decoder_blocks

ADAPTERS = ("lora", "dora", "bottleneck", "none")
REFERENCE_TARGETS = ("q_proj", "k_proj", "v_proj", "up_proj", "down_proj")
HEAD_NAMES = ("score", "classifier")
PEFT_TASK_TYPES = {"intent": "SEQ_CLS", "revise": "CAUSAL_LM"}
BOTTLENECK_FILE = "bottleneck.safetensors"
REVTUNE_ADAPTER_CONFIG = "revtune_adapter.json"


@dataclass
class AdapterConfig:
    """Reference defaults of IR-Tuning (METHODS.md §1)."""

    kind: str = "lora"
    r: int = 32
    alpha: int = 64
    dropout: float = 0.05
    targets: tuple[str, ...] | None = None  # None: the reference names when present, else every Linear
    bottleneck_dim: int = 256
    train_head: bool = True
    train_outside_blocks: bool = False  # embeddings and final norm (LISA keeps them trainable)

    def __post_init__(self):
        if self.kind not in ADAPTERS:
            raise RevtuneError(f"unknown adapter '{self.kind}': {did_you_mean(self.kind, ADAPTERS)}",
                               field="adapter")
        if self.r < 1 or self.bottleneck_dim < 1:
            raise RevtuneError("adapter rank and bottleneck size must be at least 1", field="lora_r")


@dataclass
class LayerMap:
    """Trainable parameters grouped by decoder block, plus the ones that belong to no block."""

    names: list[list[str]]
    params: list[list[nn.Parameter]]
    outside_names: list[str] = field(default_factory=list)
    outside: list[nn.Parameter] = field(default_factory=list)

    @property
    def n_layers(self) -> int:
        return len(self.params)

    def layer_sizes(self) -> list[int]:
        return [sum(p.numel() for p in group) for group in self.params]

    def outside_size(self) -> int:
        return sum(p.numel() for p in self.outside)


def layer_map(model: nn.Module, include_frozen: bool = False) -> LayerMap:
    """Assign every trainable parameter to the block that owns it, by module identity, not by name."""
    blocks = decoder_blocks(model)
    owner = {}
    for index, block in enumerate(blocks):
        for param in block.parameters():
            owner[id(param)] = index
    names = [[] for _ in blocks]
    params = [[] for _ in blocks]
    result = LayerMap(names, params)
    for name, param in model.named_parameters():
        if not (param.requires_grad or include_frozen):
            continue
        index = owner.get(id(param))
        if index is None:
            result.outside_names.append(name)
            result.outside.append(param)
        else:
            names[index].append(name)
            params[index].append(param)
    return result


def resolve_targets(model: nn.Module, requested) -> list[str]:
    """Module-name suffixes to adapt; every requested name must match a Linear inside the blocks."""
    blocks = decoder_blocks(model)
    linear_names = {name.rsplit(".", 1)[-1] for name, module in blocks[0].named_modules() if is_linear(module)}
    if requested:
        missing = [t for t in requested if t not in linear_names]
        if missing:
            raise RevtuneError(f"target module '{missing[0]}' matches no layer in the blocks: "
                               f"{did_you_mean(missing[0], linear_names)}", field="target_modules")
        return list(requested)
    reference = [t for t in REFERENCE_TARGETS if t in linear_names]
    return reference or sorted(linear_names)


def is_linear(module: nn.Module) -> bool:
    """nn.Linear, or GPT-2's Conv1D (a linear layer with a transposed weight)."""
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def linear_dims(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    d_in, d_out = module.weight.shape
    return d_in, d_out


class ParallelBottleneck(nn.Module):
    """down (d -> m, Kaiming-uniform) -> tanh -> up (m -> d_out, zeros), added to the wrapped layer's output.

    Computed in fp32 whatever the base dtype, so a bf16 base does not lose the small early updates; the
    zero-initialised up projection makes the wrapped model equal to the base at step 0.
    """

    def __init__(self, base: nn.Module, dim: int, scale: float = 1.0):
        super().__init__()
        self.base = base
        self.scale = scale
        d_in, d_out = linear_dims(base)
        self.down = nn.Linear(d_in, dim, bias=False, dtype=torch.float32, device=base.weight.device)
        self.up = nn.Linear(dim, d_out, bias=False, dtype=torch.float32, device=base.weight.device)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)

    def forward(self, x):
        out = self.base(x)
        delta = self.up(torch.tanh(self.down(x.float()))) * self.scale
        return out + delta.to(out.dtype)


def _head_modules(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_children() if name in HEAD_NAMES]


def attach(model: nn.Module, config: AdapterConfig, task: str) -> nn.Module:
    """Freeze the base model and add the trainable parameters that ``config`` asks for."""
    for param in model.parameters():
        param.requires_grad_(False)
    heads = _head_modules(model) if task == "intent" else []
    if config.kind == "none":
        for name, param in model.named_parameters():
            param.requires_grad_(True)
        return model
    targets = resolve_targets(model, config.targets)
    if config.kind == "bottleneck":
        _wrap_bottlenecks(model, targets, config.bottleneck_dim)
    else:
        from peft import LoraConfig, get_peft_model

        peft_config = LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                 bias="none", target_modules=targets, use_dora=config.kind == "dora",
                                 modules_to_save=heads if config.train_head and heads else None)
        model = get_peft_model(model, peft_config)
    if config.train_head:
        for name, param in model.named_parameters():
            if any(f"{head}." in name for head in heads) and "original_module" not in name:
                param.requires_grad_(True)
    if config.train_outside_blocks:
        _unfreeze_outside_blocks(model)
    return model


def _unfreeze_outside_blocks(model: nn.Module) -> None:
    inside = {id(p) for p in decoder_blocks(model).parameters()}
    for name, param in model.named_parameters():
        if id(param) not in inside and "original_module" not in name:
            param.requires_grad_(True)


def _wrap_bottlenecks(model: nn.Module, targets: list[str], dim: int) -> None:
    for block in decoder_blocks(model):
        for name, module in list(block.named_modules()):
            if name.rsplit(".", 1)[-1] in targets and is_linear(module):
                parent_name, _, child = name.rpartition(".")
                parent = block.get_submodule(parent_name) if parent_name else block
                setattr(parent, child, ParallelBottleneck(module, dim))


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable tensor, by name: what a run must save to be reproduced on the same base."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def blocks_name(model: nn.Module) -> str:
    """The attribute name of the decoder blocks' ModuleList (``layers``, ``h``): peft's ``layers_pattern``."""
    blocks = decoder_blocks(model)
    return next(name for name, module in model.named_modules() if module is blocks).rsplit(".", 1)[-1]


def save_adapter(model: nn.Module, config: AdapterConfig, folder: Path, task: str | None = None,
                 trained_layers: list[int] | None = None, base_model_name: str | None = None) -> None:
    """peft adapters through ``save_pretrained`` (so ``PeftModel.from_pretrained`` loads them); others as
    safetensors of the trainable tensors beside a small JSON that says how to rebuild them.

    A peft adapter is saved as a first-class artefact: its ``task_type`` set (so ``AutoPeftModelFor...``
    picks the right head), ``base_model_name_or_path`` a name a user can resolve, and, when some layers
    never trained (``fixed``, ``card:``, ``frequency:``), only the trained layers (``layers_to_transform``):
    an untrained LoRA layer is the identity (B = 0), so leaving it out changes no output. DoRA keeps every
    layer (an untrained layer's magnitude need not be its initial one)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    if config.kind in ("lora", "dora"):
        _save_peft(model, folder, task, trained_layers if config.kind == "lora" else None, base_model_name)
        extra = {n: t for n, t in adapter_state(model).items()
                 if "lora_" not in n and "modules_to_save" not in n}
    else:
        extra = adapter_state(model)
    if extra:
        save_file(extra, str(folder / BOTTLENECK_FILE))
    (folder / REVTUNE_ADAPTER_CONFIG).write_text(json.dumps(asdict(config), indent=2))


def _save_peft(model, folder: Path, task: str | None, trained_layers, base_model_name: str | None) -> None:
    peft_config = model.peft_config["default"]
    kept = {k: getattr(peft_config, k) for k in ("task_type", "base_model_name_or_path", "layers_to_transform",
                                                  "layers_pattern")}
    kwargs = {}
    if task:
        peft_config.task_type = PEFT_TASK_TYPES[task]
    if base_model_name:
        peft_config.base_model_name_or_path = base_model_name
    layers = layer_map(model)
    # A layer that never trained is left out only while it is the identity (every lora_B still zero): a
    # layer initialised from elsewhere (Intention-Tuning's init_layers=all) keeps its tensors.
    identity = [all(not p.any() for n, p in zip(names, params) if "lora_B" in n)
                for names, params in zip(layers.names, layers.params)]
    keep = sorted(set(trained_layers or []) | {i for i, same in enumerate(identity) if not same})
    if trained_layers is not None and 0 < len(keep) < layers.n_layers:
        trained = keep
        peft_config.layers_to_transform, peft_config.layers_pattern = trained, blocks_name(model)
        untrained = {name for index, names in enumerate(layers.names) if index not in trained for name in names}
        kwargs["state_dict"] = {k: v for k, v in model.state_dict().items() if k not in untrained}
    try:
        model.save_pretrained(folder, **kwargs)
    finally:
        for key, value in kept.items():
            setattr(peft_config, key, value)


def load_adapter(model: nn.Module, folder: Path, task: str) -> nn.Module:
    """Rebuild the trained model from a base model and a folder written by :func:`save_adapter`."""
    from safetensors.torch import load_file

    config = AdapterConfig(**{k: (tuple(v) if k == "targets" and v else v) for k, v in
                              json.loads((folder / REVTUNE_ADAPTER_CONFIG).read_text()).items()})
    if config.kind in ("lora", "dora"):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(folder))
    elif config.kind == "bottleneck":
        _wrap_bottlenecks(model, resolve_targets(model, config.targets), config.bottleneck_dim)
    extra_file = folder / BOTTLENECK_FILE
    if extra_file.exists():
        missing_ok = model.load_state_dict(load_file(str(extra_file)), strict=False)
        if missing_ok.unexpected_keys:
            raise RevtuneError(f"adapter tensor '{missing_ok.unexpected_keys[0]}' does not fit this model",
                               path=extra_file)
    model.eval()
    return model


def trainable_table(layers: LayerMap) -> list[tuple[str, str, int]]:
    """Rows (layer, module, parameters) of the trainable modules, outside-block ones labelled by name."""
    rows = []
    for index, (names, params) in enumerate(zip(layers.names, layers.params)):
        grouped: dict[str, int] = {}
        for name, param in zip(names, params):
            module = _short_module(name)
            grouped[module] = grouped.get(module, 0) + param.numel()
        rows += [(str(index), module, count) for module, count in grouped.items()]
    for name, param in zip(layers.outside_names, layers.outside):
        rows.append(("-", _short_module(name, outside=True), param.numel()))
    return rows


def _short_module(name: str, outside: bool = False) -> str:
    parts = [p for p in name.split(".") if p not in ("base_model", "model", "default", "weight", "bias")]
    if outside:
        return ".".join(parts)
    digits = [i for i, p in enumerate(parts) if p.isdigit()]
    return ".".join(parts[digits[0] + 1:] if digits else parts)


def format_trainable_table(layers: LayerMap) -> str:
    rows = trainable_table(layers)
    per_layer: dict[str, list[tuple[str, int]]] = {}
    for layer, module, count in rows:
        per_layer.setdefault(layer, []).append((module, count))
    lines = ["layer  params      modules"]
    for layer, items in per_layer.items():
        total = sum(c for _, c in items)
        modules = ", ".join(sorted({m.split(".lora")[0].split(".down")[0].split(".up")[0]
                                    for m, _ in items}))
        lines.append(f"{layer:>5}  {total:>10,}  {modules}")
    total = sum(layers.layer_sizes()) + layers.outside_size()
    lines.append(f"total  {total:>10,}  ({layers.n_layers} layers, "
                 f"{layers.outside_size():,} outside the blocks)")
    return "\n".join(lines)
