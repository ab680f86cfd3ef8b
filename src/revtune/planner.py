"""Predict a run's peak memory from the model's config, before any weight is loaded.

The prediction is built, not guessed: the model is instantiated on the ``meta`` device (shapes and dtypes,
no storage), the run's adapters are attached to it the way ``train`` attaches them, and one forward pass
at the run's batch shape is traced with ``torch.autograd.graph.saved_tensors_hooks``, which sees every
tensor autograd keeps for backward. Because autograd saves nothing below the lowest layer that needs a
gradient, the same trace answers "what does training from layer L upwards cost?" for every L.

Parts of the figure:
- base weights: every parameter of the model (they stay resident for the whole run);
- trainable weights, gradients and optimizer state (AdamW: two moments per trainable element) for the
  layers the strategy may train;
- activations: the saved tensors of the forward, per block, from the lowest trained layer up (with
  gradient checkpointing: each block's input, plus one block recomputed at a time), plus a backward
  workspace: one block's worth (the gradients of a block's intermediates are as large as the
  intermediates) and twice the largest saved tensor (the gradient flowing through it and its input's);
- runtime: on CPU the resident memory of the interpreter and libraries, read from this very process
  (the planner imports what training imports); on CUDA nothing (the figure is allocated bytes).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

from .errors import RevtuneError
from .units import parse_bytes  # noqa: F401  (re-exported: plan and train parse sizes)

ADAMW_MOMENTS = 2
WORKSPACE_FACTOR = 2


@dataclass
class MemoryPlan:
    """Predicted bytes of one configuration at its worst step (the lowest layer it may train)."""

    base_weights: int
    trainable_weights: int
    gradients: int
    optimizer_state: int
    activations: int
    runtime: int
    lowest_layer: int
    n_layers: int
    batch: int
    seq: int
    dtype: str
    gradient_checkpointing: bool

    @property
    def total(self) -> int:
        return (self.base_weights + self.gradients + self.optimizer_state + self.activations
                + self.runtime)

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


@dataclass
class ActivationTrace:
    """Saved-for-backward bytes of one forward, split by where they were saved."""

    per_block: list[int]          # bytes saved inside each decoder block
    block_inputs: list[int]       # bytes of each block's input hidden states
    outside: int                  # bytes saved outside the blocks (head, final norm, loss)
    largest: int                  # the largest single saved tensor

    def from_layer(self, lowest: int, checkpointing: bool) -> int:
        """Activation bytes when layers ``lowest`` and above need gradients."""
        if checkpointing:
            kept = sum(self.block_inputs[lowest:]) + max(self.per_block[lowest:], default=0)
        else:
            kept = sum(self.per_block[lowest:])
        workspace = max(self.per_block[lowest:], default=0) + WORKSPACE_FACTOR * self.largest
        return kept + self.outside + workspace


def readable_source(spec: str) -> tuple[str, str | None]:
    """(folder, gguf file name or None) holding the config and tokenizer of a spec, without converting
    anything: the safetensors copy of a GGUF when it exists (fast), else the GGUF itself."""
    from pathlib import Path

    from . import models

    if spec == models.DEFAULT_MODEL or spec.endswith(".gguf"):
        gguf = models.embedded_gguf_path() if spec == models.DEFAULT_MODEL else Path(spec).expanduser()
        if not gguf.is_file():
            raise RevtuneError("GGUF file not found", path=gguf)
        converted = models.converted_path(gguf)
        if (converted / "config.json").exists():
            return str(converted), None
        return str(gguf.parent), gguf.name
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise RevtuneError("not a model directory (no config.json)", path=path)
        return str(path), None
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return spec, None  # a hub id: the user asked for the network
    raise RevtuneError(f"unknown model '{spec}'", field="model")


def skeleton_config(spec: str, tiny_layers: int = 8):
    """The transformers config of a model spec, read without loading (or converting) any weight."""
    from transformers import AutoConfig

    from . import models

    if spec == "tiny":
        return models.tiny_config(len(models.byte_tokenizer()), layers=tiny_layers)
    folder, gguf_file = readable_source(spec)
    return AutoConfig.from_pretrained(folder, **({"gguf_file": gguf_file} if gguf_file else {}))


def meta_model(model_config, task: str, num_labels: int, adapter, dtype: torch.dtype, strategy=None):
    """The run's model with its adapters (and what ``strategy`` trains outside the blocks), on the meta
    device: exact shapes, no memory."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from .adapters import attach

    for attr in ("quantization_config",):
        if hasattr(model_config, attr):
            delattr(model_config, attr)
    cls = AutoModelForSequenceClassification if task == "intent" else AutoModelForCausalLM
    if task == "intent":
        model_config.num_labels = num_labels
    with torch.device("meta"):
        model = cls.from_config(model_config, dtype=dtype)
    if getattr(model_config, "pad_token_id", None) is None:
        model.config.pad_token_id = 0
    model = attach(model, adapter, task)
    if strategy is not None:
        strategy.set_outside_blocks(model)
    return model


def trace_activations(model, batch: int, seq: int, task: str) -> ActivationTrace:
    """One forward (on the meta device: no memory) with every trainable parameter on, every saved tensor
    counted once. On a real model it measures the same thing, which is how the tests check the meta trace.

    A tensor saved by several operations (a block input read by q, k and v's adapters) is counted once:
    tensors are keyed by the storage they view.
    """
    from .models import decoder_blocks

    blocks = decoder_blocks(model)
    per_block, inputs = [0] * len(blocks), [0] * len(blocks)
    where = {"block": None}
    seen: set[int] = set()
    keep: list[torch.Tensor] = []  # holds every counted tensor, so no id is reused during the trace
    totals = {"outside": 0, "largest": 0}

    def pack(tensor):
        base = tensor if tensor._base is None else tensor._base
        if id(base) not in seen:
            seen.add(id(base))
            keep.append(base)
            size = base.numel() * base.element_size()
            totals["largest"] = max(totals["largest"], size)
            if where["block"] is None:
                totals["outside"] += size
            else:
                per_block[where["block"]] += size
        return tensor

    def enter(index):
        def hook(module, args, kwargs):
            where["block"] = index
            hidden = args[0] if args else kwargs.get("hidden_states")
            if isinstance(hidden, torch.Tensor):
                inputs[index] = hidden.numel() * hidden.element_size()
        return hook

    def leave(module, args, output):
        where["block"] = None

    handles = []
    for index, block in enumerate(blocks):
        handles.append(block.register_forward_pre_hook(enter(index), with_kwargs=True))
        handles.append(block.register_forward_hook(leave))
    device = next(model.parameters()).device
    ids = torch.full((batch, seq), 3, dtype=torch.long, device=device)
    labels = ids if task == "revise" else torch.zeros(batch, dtype=torch.long, device=device)
    model.train()
    sdpa = torch.nn.functional.scaled_dot_product_attention
    if device.type == "meta":
        torch.nn.functional.scaled_dot_product_attention = _fused_attention
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model(input_ids=ids, labels=labels)
    finally:
        torch.nn.functional.scaled_dot_product_attention = sdpa
        for handle in handles:
            handle.remove()
    return ActivationTrace(per_block, inputs, totals["outside"], totals["largest"])


def _fused_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                     enable_gqa=False):
    """Attention as the fused kernels that real devices pick (CPU and CUDA flash / memory-efficient):
    they save the inputs, the output and one log-sum-exp per row, never the seq x seq weights. On the
    meta device SDPA would take the unfused path and save those weights, overstating long sequences.
    Grouped key/value heads stay grouped (``enable_gqa``), as the fused kernels keep them."""
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape, dtype=query.dtype, device=query.device)
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)[0]


def process_rss() -> int:
    """Resident bytes of this process now (Linux); 0 where it cannot be read."""
    from .runtime import status_bytes

    return status_bytes("VmRSS")


def plan_memory(model, layers, trace: ActivationTrace, *, lowest_layer: int, batch: int, seq: int,
                dtype: str, gradient_checkpointing: bool, device_type: str = "cpu") -> MemoryPlan:
    """Assemble a plan for training layers ``lowest_layer`` and above (plus what trains outside blocks)."""
    n = layers.n_layers
    if not 0 <= lowest_layer < max(1, n):
        raise RevtuneError(f"lowest layer {lowest_layer} is outside the model's {n} layers",
                           field="min_layer")
    base = sum(p.numel() * p.element_size() for p in model.parameters())
    reachable = [p for group in layers.params[lowest_layer:] for p in group] + list(layers.outside)
    trainable = sum(p.numel() * p.element_size() for p in reachable)
    moments = sum(p.numel() * p.element_size() for p in reachable) * ADAMW_MOMENTS
    return MemoryPlan(
        base_weights=base, trainable_weights=trainable, gradients=trainable, optimizer_state=moments,
        activations=trace.from_layer(lowest_layer, gradient_checkpointing),
        runtime=process_rss() if device_type == "cpu" else 0, lowest_layer=lowest_layer, n_layers=n,
        batch=batch, seq=seq, dtype=dtype, gradient_checkpointing=gradient_checkpointing)


def format_plan(plan: MemoryPlan, limit: int | None = None) -> str:
    """The plan as a few aligned lines, biggest parts named, for ``revtune plan`` and ``train``."""
    gib = 2 ** 30
    rows = [("base weights", plan.base_weights - plan.trainable_weights),
            ("trainable weights", plan.trainable_weights), ("gradients", plan.gradients),
            ("optimizer state", plan.optimizer_state), ("activations", plan.activations),
            ("runtime", plan.runtime)]
    lines = [f"memory plan: batch {plan.batch} x {plan.seq} tokens, {plan.dtype}, "
             f"lowest trained layer {plan.lowest_layer} of {plan.n_layers}"
             f"{', gradient checkpointing' if plan.gradient_checkpointing else ''}"]
    lines += [f"  {name:<18} {value / gib:8.3f} GiB" for name, value in rows]
    lines.append(f"  {'predicted peak':<18} {plan.total / gib:8.3f} GiB"
                 + (f"  (limit {limit / gib:.3f} GiB)" if limit else ""))
    return "\n".join(lines)


def load_tokenizer(spec: str):
    """The tokenizer of a model spec, without its weights."""
    from transformers import AutoTokenizer

    from . import models

    if spec == "tiny":
        return models.byte_tokenizer()
    folder, gguf_file = readable_source(spec)
    return AutoTokenizer.from_pretrained(folder, **({"gguf_file": gguf_file} if gguf_file else {}))


def longest_example(config, splits, task_factory) -> int:
    """Tokens of the longest training example after truncation: the batch shape of the peak step."""
    tokenizer = load_tokenizer(config.model.name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    task = task_factory(config, splits)
    task.prepare(tokenizer, torch.device("cpu"))
    rows = task.train_dataset.rows
    return max((len(row["input_ids"]) for row in rows), default=config.data.max_length)


def lowest_reachable_layer(strategy, n_layers: int, floor: int = 0) -> int:
    """The lowest layer ``strategy`` may ever train: its fixed set's minimum, else ``floor``."""
    possible = getattr(strategy.rule, "possible_layers", None)
    layers = possible(n_layers) if possible else range(n_layers)
    allowed = [layer for layer in layers if layer >= floor]
    if not allowed:
        raise RevtuneError(f"strategy '{strategy.name}' trains no layer at or above layer {floor}",
                           field="min_layer")
    return min(allowed)


@dataclass
class RunPlan:
    """What the planner decided for a run: the bounded strategy, its worst-case plan, the trace."""

    strategy: object
    plan: MemoryPlan
    floors: list[MemoryPlan]  # the plan for every lowest layer 0..n-1, for tables and budgets


def plan_run(config, splits=None, strategy=None) -> RunPlan:
    """Plan a run config: bound its strategy (``min_layer``, ``memory_budget``) and predict its peak."""
    from .adapters import layer_map
    from .runtime import resolve_device, resolve_dtype
    from .selection.floor import with_floor
    from .training.data import load_splits
    from .training.run import make_task, resolve_adapter

    splits = splits or load_splits(config.data, config.training.seed)
    strategy = strategy or config.selection.options.build()
    task = make_task(config, splits)
    adapters = resolve_adapter(config.adapter, strategy)
    model_part, training, memory = config.model, config.training, config.memory
    model = meta_model(skeleton_config(model_part.name, model_part.tiny_layers), task.model_task,
                       len(splits.labels), adapters, resolve_dtype(model_part.dtype), strategy)
    layers = layer_map(model)
    seq = longest_example(config, splits, make_task)
    trace = trace_activations(model, training.batch_size, seq, task.model_task)
    device_type = resolve_device(model_part.device).type
    floors = [plan_memory(model, layers, trace, lowest_layer=low, batch=training.batch_size, seq=seq,
                          dtype=model_part.dtype, gradient_checkpointing=training.gradient_checkpointing,
                          device_type=device_type) for low in range(layers.n_layers)]
    floor = memory.min_layer
    if memory.budget:
        floor = budget_floor(floors, parse_bytes(memory.budget, "memory_budget"), floor)
    strategy = with_floor(strategy, floor, layers.n_layers)
    lowest = lowest_reachable_layer(strategy, layers.n_layers, floor)
    return RunPlan(strategy, floors[lowest], floors)


def budget_floor(floors: list[MemoryPlan], budget: int, at_least: int = 0) -> int:
    """The lowest layer whose predicted peak fits ``budget`` (deeper floors cost less memory)."""
    for plan in floors[at_least:]:
        if plan.total <= budget:
            return plan.lowest_layer
    gib = 2 ** 30
    raise RevtuneError(f"no floor fits a memory budget of {budget / gib:.2f} GiB: training only the top "
                       f"layer is predicted at {floors[-1].total / gib:.2f} GiB", field="memory_budget")


def check_limit(plan: MemoryPlan, memory, device) -> int | None:
    """Refuse a run predicted above the memory part's ``limit`` (or, on CUDA, above the device's free
    memory)."""
    limit = parse_bytes(memory.limit, "memory_limit") if memory.limit else None
    field = "memory_limit"
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if limit is None or free < limit:
            limit, field = free, "device"
    if limit is not None and plan.total > limit:
        gib = 2 ** 30
        raise RevtuneError(f"predicted peak {plan.total / gib:.2f} GiB exceeds the "
                           f"{'free device memory' if field == 'device' else 'memory limit'} of "
                           f"{limit / gib:.2f} GiB: lower --batch-size or --max-length, turn on "
                           "--gradient-checkpointing, or bound the depth with --min-layer/--memory-budget",
                           field=field if field != "device" else "memory_limit")
    return limit
