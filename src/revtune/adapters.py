"""Attach trainable parameters to a base model and map each one to its decoder block.

LoRA and DoRA come from peft. peft has no parallel bottleneck adapter, so :class:`ParallelBottleneck` is
ours. ``none`` trains the model's own weights (full fine-tuning, LISA). Whatever the adapter, the rest of
revtune only sees a :class:`LayerMap`: the trainable parameters of each block, and those outside blocks.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from .config import ADAPTERS, AdapterConfig  # noqa: F401  (AdapterConfig is the run config's part)
from .errors import RevtuneError, did_you_mean
from .models import decoder_blocks

REFERENCE_TARGETS = ("q_proj", "k_proj", "v_proj", "up_proj", "down_proj")
HEAD_NAMES = ("score", "classifier")
PEFT_TASK_TYPES = {"intent": "SEQ_CLS", "revise": "CAUSAL_LM"}
BOTTLENECK_FILE = "bottleneck.safetensors"
REVTUNE_ADAPTER_CONFIG = "revtune_adapter.json"


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
    """(d_in, d_out) of a Linear or a GPT-2 Conv1D (whose weight is stored transposed)."""
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
    """Freeze the base model and add the trainable parameters that ``config`` asks for (``config.kind``
    resolved: unset means lora).

    Whatever the kind, a classifier's head trains unless ``freeze_head``; ``none`` makes the blocks' own
    weights the trainable ones. Embeddings and final norm stay frozen: a strategy that trains them (LISA,
    full) says so in its ``prepare`` step (:func:`unfreeze_outside_blocks`).
    """
    kind = config.kind or "lora"
    for param in model.parameters():
        param.requires_grad_(False)
    heads = _head_modules(model) if task == "intent" else []
    train_head = not config.freeze_head and bool(heads)
    if kind == "none":
        for param in decoder_blocks(model).parameters():
            param.requires_grad_(True)
    else:
        targets = resolve_targets(model, config.targets)
        if kind == "bottleneck":
            _wrap_bottlenecks(model, targets, config.bottleneck_dim)
        else:
            from peft import LoraConfig, get_peft_model

            peft_config = LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                     bias="none", target_modules=targets, use_dora=kind == "dora",
                                     modules_to_save=heads if train_head else None)
            model = get_peft_model(model, peft_config)
    if train_head:
        for name, param in model.named_parameters():
            if _in_head(name, heads) and "original_module" not in name:
                param.requires_grad_(True)
    return model


def _in_head(name: str, heads) -> bool:
    return any(part in heads for part in name.split("."))


def unfreeze_outside_blocks(model: nn.Module) -> None:
    """Embeddings and final norm train too (LISA, full); the head trains as :func:`attach` decided."""
    inside = {id(p) for p in decoder_blocks(model).parameters()}
    for name, param in model.named_parameters():
        if id(param) not in inside and "original_module" not in name and not _in_head(name, HEAD_NAMES):
            param.requires_grad_(True)


def freeze_outside_blocks(model: nn.Module) -> None:
    """Only the task head trains outside the blocks (``lisa:...:frozen-embeddings`` with full weights,
    whose adapter ``none`` leaves embeddings and final norm trainable); a classifier's head starts
    random, so it keeps training, as ``--freeze-head`` decides."""
    inside = {id(p) for p in decoder_blocks(model).parameters()}
    for name, param in model.named_parameters():
        if id(param) not in inside and not any(part in HEAD_NAMES for part in name.split(".")):
            param.requires_grad_(False)


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


def save_adapter(model: nn.Module, config: AdapterConfig, folder: Path,
                 state: dict[str, torch.Tensor] | None = None, task: str | None = None,
                 trained_layers: list[int] | None = None, base_model_name: str | None = None) -> None:
    """peft adapters through ``save_pretrained`` (so ``PeftModel.from_pretrained`` loads them); others as
    safetensors of the trainable tensors beside a small JSON that says how to rebuild them. ``state``
    (the trainable tensors, gathered whole from an FSDP-sharded model) replaces reading the model's own.

    A peft adapter is saved as a first-class artefact: its ``task_type`` set (so ``AutoPeftModelFor...``
    picks the right head), ``base_model_name_or_path`` a name a user can resolve, and, when some layers
    never trained (``fixed``, ``card:``, ``frequency:``), only the trained layers (``layers_to_transform``):
    an untrained LoRA layer is the identity (B = 0), so leaving it out changes no output. DoRA keeps every
    layer (an untrained layer's magnitude need not be its initial one)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = adapter_state(model) if state is None else state
    if config.kind in ("lora", "dora"):
        _save_peft(model, folder, state, task, trained_layers if config.kind == "lora" else None,
                   base_model_name)
        extra = {n: t for n, t in state.items() if "lora_" not in n and "modules_to_save" not in n}
    else:
        extra = state
    if extra:
        save_file(extra, str(folder / BOTTLENECK_FILE))
    (folder / REVTUNE_ADAPTER_CONFIG).write_text(json.dumps(asdict(config), indent=2))


def _save_peft(model, folder: Path, state: dict, task: str | None, trained_layers,
               base_model_name: str | None) -> None:
    """``state``: every trainable tensor by parameter name, whole (gathered when FSDP shards the model)."""
    peft_config = model.peft_config["default"]
    kept = {k: getattr(peft_config, k) for k in ("task_type", "base_model_name_or_path", "layers_to_transform",
                                                  "layers_pattern")}
    if task:
        peft_config.task_type = PEFT_TASK_TYPES[task]
    if base_model_name:
        peft_config.base_model_name_or_path = base_model_name
    layers = layer_map(model)
    # A layer that never trained is left out only while it is the identity (every lora_B still zero): a
    # layer initialised from elsewhere (Intention-Tuning's init_layers=all) keeps its tensors.
    identity = [all(not state[n].any() for n in names if "lora_B" in n) for names in layers.names]
    keep = sorted(set(trained_layers or []) | {i for i, same in enumerate(identity) if not same})
    if trained_layers is not None and 0 < len(keep) < layers.n_layers:
        peft_config.layers_to_transform, peft_config.layers_pattern = keep, blocks_name(model)
        untrained = {name for index, names in enumerate(layers.names) if index not in keep for name in names}
        state = {k: v for k, v in state.items() if k not in untrained}
    try:
        model.save_pretrained(folder, state_dict=state)
    finally:
        for key, value in kept.items():
            setattr(peft_config, key, value)


def read_adapter_config(folder: Path) -> AdapterConfig:
    from .jsonsafe import read_json_file

    path = folder / REVTUNE_ADAPTER_CONFIG
    if not folder.is_dir():
        raise RevtuneError("missing: the run directory is incomplete", path=folder)
    saved = read_json_file(path)
    known = {f.name for f in fields(AdapterConfig)}
    legacy = {"train_head", "train_outside_blocks"}  # older runs saved these; the strategy now decides
    unknown = sorted(set(saved) - known - legacy)
    if unknown:
        raise RevtuneError(f"unknown key '{unknown[0]}'", path=path)
    checks = {"kind": (str, type(None)), "r": int, "alpha": (int, float), "dropout": (int, float),
              "bottleneck_dim": int, "freeze_head": bool, "train_head": bool, "train_outside_blocks": bool,
              "targets": (list, type(None))}
    for key, kind in checks.items():
        value = saved.get(key)
        if key in saved and (not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)):
            raise RevtuneError(f"unexpected value {value!r}", path=path, field=key)
    if saved.get("targets") is not None and not all(isinstance(t, str) for t in saved["targets"]):
        raise RevtuneError("expected module names", path=path, field="targets")
    try:
        return AdapterConfig(**{k: v for k, v in saved.items() if k in known})
    except RevtuneError as e:
        raise RevtuneError(e.message, path=path, field=e.field) from None


def load_adapter(model: nn.Module, folder: Path, task: str, expected_kind: str | None = None) -> nn.Module:
    """Rebuild the trained model from a base model and a folder written by :func:`save_adapter`.

    Safetensors only (peft would fall back to a pickled ``adapter_model.bin``). Every saved tensor must
    find its parameter, with its shape, and every adapter parameter its saved tensor: a partial load
    would predict with a different model and say nothing.
    """
    config = read_adapter_config(folder)
    if expected_kind is not None and config.kind != expected_kind:
        raise RevtuneError(f"the run's config says adapter '{expected_kind}' but the adapter folder holds "
                           f"'{config.kind}'", path=folder / REVTUNE_ADAPTER_CONFIG, field="kind")
    if config.kind in ("lora", "dora"):
        weights = folder / "adapter_model.safetensors"
        if not weights.is_file():
            raise RevtuneError("missing (revtune loads adapter weights from safetensors only)", path=weights)
        model = _peft_load(model, folder, weights)
    elif config.kind == "bottleneck":
        _wrap_bottlenecks(model, resolve_targets(model, config.targets), config.bottleneck_dim)
    extra_file = folder / BOTTLENECK_FILE
    if extra_file.exists() or config.kind == "bottleneck" or (config.kind == "none"):
        _load_extra(model, extra_file)
    model.eval()
    return model


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise RevtuneError(f"corrupt or truncated tensor file: {str(e).splitlines()[0] if str(e) else e}",
                           path=path) from None


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _peft_load(model: nn.Module, folder: Path, weights: Path) -> nn.Module:
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict

    saved = _load_tensors(weights)
    try:
        model = PeftModel.from_pretrained(model, str(folder))
    except Exception as e:  # peft/transformers raise ValueError, TypeError, RuntimeError on a bad config
        raise RevtuneError(f"cannot load the adapter: {_first_line(e)}", path=folder) from None
    expected = get_peft_model_state_dict(model)
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    if missing or unexpected:
        what = f"no saved tensor for {missing[0]}" if missing else f"tensor {unexpected[0]} fits no module"
        raise RevtuneError(f"the adapter does not match the model ({what})", path=weights)
    for name, tensor in saved.items():
        if tuple(tensor.shape) != tuple(expected[name].shape) or tensor.dtype != expected[name].dtype:
            raise RevtuneError(f"tensor {name} is {tensor.dtype} {tuple(tensor.shape)}, the model needs "
                               f"{expected[name].dtype} {tuple(expected[name].shape)}", path=weights)
    return model


def _load_extra(model: nn.Module, extra_file: Path) -> None:
    if not extra_file.is_file():
        raise RevtuneError("missing: the run directory is incomplete", path=extra_file)
    saved = _load_tensors(extra_file)
    own = dict(model.named_parameters())
    for name, tensor in saved.items():
        if name not in own:
            raise RevtuneError(f"adapter tensor '{name}' does not fit this model", path=extra_file)
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise RevtuneError(f"tensor {name} has shape {tuple(tensor.shape)}, the model needs "
                               f"{tuple(own[name].shape)}", path=extra_file)
    wanted = {f"{name}.{sub}" for name, module in model.named_modules() if isinstance(module, ParallelBottleneck)
              for sub, _ in module.named_parameters() if not sub.startswith("base.")}
    missing = sorted(wanted - set(saved))
    if missing:
        raise RevtuneError(f"the adapter does not match the model (no saved tensor for {missing[0]})",
                           path=extra_file)
    model.load_state_dict(saved, strict=False)


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
