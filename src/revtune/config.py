"""Run configuration: one dataclass, the same keys on the command line and in YAML.

Every field's ``help`` becomes the flag's help text, so a flag cannot exist without a field that the run
reads, and a YAML file is checked key by key against the same fields.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import RevtuneError, did_you_mean

TASK_CHOICES = ("intent", "revise")
PROMPTS = ("instruction", "pair")
DTYPES = ("float32", "bfloat16", "float16")
DECODINGS = ("greedy", "beam", "sample")
REPORT_TO = ("none", "tensorboard", "wandb")


def _f(default, help_text, **kw):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help_text, **kw})
    return field(default=default, metadata={"help": help_text, **kw})


@dataclass
class RunConfig:
    """Everything a training run needs; the resolved copy in a run directory re-runs it."""

    task: str = _f("intent", "intent (classify why a revision was made) or revise (generate it)")
    train: str | None = _f(None, "training corpus (file or hub:NAME); default: the shipped sample corpus")
    dev: str | None = _f(None, "dev corpus; default: a stratified split carved from train")
    test: str | None = _f(None, "test corpus; default: the shipped sample test split when train is default")
    format: str = _f("auto", "corpus format: auto, iterater-sent, iterater-doc, argrevision, tabular")
    columns: dict = _f({}, "column mapping for tabular files, e.g. before=old,after=new,intents=label")
    label_sep: str | None = _f(None, "separator of several labels in one tabular cell")
    dev_fraction: float = _f(0.1, "share of train carved out as dev when no dev file is given")
    upsample: dict = _f({}, "repeat factors per class on the train split, e.g. style=2,coherence=3")
    model: str = _f("smollm2", "smollm2 (embedded default), tiny, a directory, a .gguf file or a hub id")
    tiny_layers: int = _f(8, "number of layers of the 'tiny' test model")
    select: str = _f("ir", "layer selection strategy, e.g. ir, all, fixed:0-3, random:4")
    select_interval: int = _f(1, "run the selection rule every N steps")
    ir_aggregation: str = _f("authors", "IR layer score: authors (sqrt of sum of sqrt norms) or l2")
    split_num: int = _f(1, "apply the variance split once (1) or twice (2)")
    ir_boundary: str = _f("reference", "reference (keep one layer more, as the authors) or exact")
    ir_window: list = _f([0.35, 0.65], "quantile window of the variance split")
    objective: str = _f("quality", "card:PATH placement: quality (best predicted gain within --budget) or "
                        "cost (shallowest cut reaching 95% of the full predicted gain; cost:0.9 for 90%)")
    budget: str = _f("", "card:PATH budget: layers=6, layers=20%, params=2e6, time=1.5 (s/step), "
                     "memory=3e9 (bytes); comma-separate several")
    adapter: str | None = _f(None, "lora, dora, bottleneck or none (full weights); default lora")
    lora_r: int = _f(32, "LoRA/DoRA rank")
    lora_alpha: int = _f(64, "LoRA/DoRA alpha")
    lora_dropout: float = _f(0.05, "LoRA/DoRA dropout")
    bottleneck_dim: int = _f(256, "bottleneck adapter size")
    target_modules: list = _f([], "module names to adapt; default q,k,v,up,down projections")
    freeze_head: bool = _f(False, "keep the classification head at its random init (the reference code)")
    prompt: str = _f("instruction", "instruction prompt or plain (before, after) pair input")
    max_length: int = _f(256, "maximum tokens per example")
    learning_rate: float = _f(2e-4, "peak learning rate (AdamW, linear decay)")
    warmup_steps: int = _f(100, "warm-up steps (capped at 10% of the run for short runs)")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient clipping norm (0 disables)")
    epochs: float = _f(4.0, "training epochs (ignored when max_steps > 0)")
    max_steps: int = _f(-1, "optimizer steps; overrides epochs when > 0")
    batch_size: int = _f(16, "examples per optimizer step per device")
    grad_accum: int = _f(1, "gradient accumulation micro-batches")
    eval_every: int = _f(0, "evaluate on dev every N steps (0: about 5 times per run)")
    threshold: str = _f("0.5", "multi-label decision threshold, or 'tune' to pick it on dev")
    decoding: str = _f("greedy", "revise: greedy, beam (num_beams) or sample (temperature, top_p) decoding")
    num_beams: int = _f(4, "revise: beams when decoding is beam")
    temperature: float = _f(0.7, "revise: sampling temperature when decoding is sample")
    top_p: float = _f(0.9, "revise: nucleus probability mass when decoding is sample")
    new_tokens_factor: float = _f(1.5, "revise: max new tokens per item = factor x its source tokens")
    new_tokens_floor: int = _f(16, "revise: at least this many new tokens (short or empty sources)")
    dev_generate: int = _f(16, "revise: first N dev items generated for dev SARI at each evaluation "
                               "(the best-dev metric); 0: dev loss only (cheapest)")
    seed: int = _f(171, "random seed (data order, selection draws, new weights)")
    dtype: str = _f("float32", "float32, bfloat16 or float16")
    device: str = _f("auto", "auto, cpu, cuda, cuda:1, mps")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward (non-reentrant)")
    # --- live logging (issue 16) ---
    report_to: str = _f("none", "live logging of the Trainer and the layer selection: none, tensorboard "
                        "(event files in OUT/tensorboard) or wandb (WANDB_MODE=offline works without network)")
    out: str = _f("runs/run", "run directory to create")
    overwrite: bool = _f(False, "replace an existing run directory")

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        checks = [
            (self.task in TASK_CHOICES, "task", f"expected one of {', '.join(TASK_CHOICES)}"),
            (self.prompt in PROMPTS, "prompt", f"expected one of {', '.join(PROMPTS)}"),
            (self.dtype in DTYPES, "dtype", f"expected one of {', '.join(DTYPES)}"),
            (0 < self.dev_fraction < 1, "dev_fraction", "expected a number between 0 and 1"),
            (self.batch_size >= 1 and self.grad_accum >= 1, "batch_size", "expected >= 1"),
            (self.max_length >= 8, "max_length", "expected >= 8"),
            (self.learning_rate > 0, "learning_rate", "expected > 0"),
            (self.max_steps > 0 or self.epochs > 0, "max_steps", "give max_steps > 0 or epochs > 0"),
            (self.threshold == "tune" or _is_float(self.threshold), "threshold", "expected a number or 'tune'"),
            (len(self.ir_window) == 2, "ir_window", "expected two numbers, e.g. 0.35,0.65"),
            (self.decoding in DECODINGS, "decoding", f"expected one of {', '.join(DECODINGS)}"),
            (self.num_beams >= 1, "num_beams", "expected >= 1"),
            (self.temperature > 0 and 0 < self.top_p <= 1, "temperature",
             "expected temperature > 0 and 0 < top_p <= 1"),
            (self.new_tokens_factor > 0 and self.new_tokens_floor >= 1, "new_tokens_factor",
             "expected factor > 0 and floor >= 1"),
            (self.dev_generate >= 0, "dev_generate", "expected >= 0"),
            (self.report_to in REPORT_TO, "report_to", f"expected one of {', '.join(REPORT_TO)}"),
        ]
        for ok, name, message in checks:
            if not ok:
                raise RevtuneError(f"{message}, got {getattr(self, name)!r}", field=name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _is_float(text: str) -> bool:
    try:
        return 0.0 < float(text) < 1.0
    except ValueError:
        return False


def _parse_mapping(text: str) -> dict:
    result = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected key=value pairs, got '{part}'")
        result[key.strip()] = int(value) if value.strip().isdigit() else value.strip()
    return result


def _parse_list(text: str) -> list:
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return [float(t) for t in items]
    except ValueError:
        return items


def _field_type(f: dataclasses.Field):
    hints = typing.get_type_hints(RunConfig)
    return hints[f.name]


def add_config_arguments(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """One flag per field; defaults are suppressed so a YAML value wins over an unset flag."""
    parser.add_argument("--config", help="YAML file with any of these keys; flags override it")
    for f in dataclasses.fields(RunConfig):
        if only and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = _field_type(f)
        kw = dict(dest=f.name, default=argparse.SUPPRESS, help=f.metadata["help"].replace("%", "%%"))
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif f.name in ("columns", "upsample"):
            parser.add_argument(flag, type=_parse_mapping, **kw)
        elif f.name in ("ir_window", "target_modules"):
            parser.add_argument(flag, type=_parse_list, **kw)
        else:
            base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
            parser.add_argument(flag, type=base if base in (int, float, str) else str, **kw)


def load_yaml(path: str | Path) -> dict:
    """A config file's keys, checked against the fields; a shipped recipe's name works as a path too."""
    from .recipes import find_recipe

    path = Path(path)
    if not path.is_file():
        path = find_recipe(str(path)) or path
    if not path.is_file():
        raise RevtuneError("config file not found (nor a shipped recipe: revtune config list)", path=path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RevtuneError(f"invalid YAML: {getattr(exc, 'problem', exc)}", path=path,
                           line=mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise RevtuneError("expected a mapping of config keys", path=path)
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    clean = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            raise RevtuneError(f"unknown config key: {did_you_mean(name, fields)}", path=path, field=str(key))
        clean[name] = _coerce(fields[name], value, path)
    return clean


def config_from_args(namespace: argparse.Namespace, **overrides) -> RunConfig:
    """YAML (if ``--config``) < explicit flags < ``overrides``; type errors name the key."""
    values = load_yaml(namespace.config) if getattr(namespace, "config", None) else {}
    source = getattr(namespace, "config", None)
    values.update({k: v for k, v in vars(namespace).items()
                   if k in {f.name for f in dataclasses.fields(RunConfig)}})
    values.update(overrides)
    for f in dataclasses.fields(RunConfig):
        if f.name in values:
            values[f.name] = _coerce(f, values[f.name], source)
    return RunConfig(**values)


def _coerce(f: dataclasses.Field, value, source):
    kind = _field_type(f)
    base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
    if value is None and type(None) in typing.get_args(kind):
        return None
    try:
        if base is bool and not isinstance(value, bool):
            raise ValueError
        if base in (int, float):
            return base(value)
        if base is str:
            return str(value)
        if base in (list, dict) and not isinstance(value, base):
            raise ValueError
    except (TypeError, ValueError):
        raise RevtuneError(f"expected {getattr(base, '__name__', base)}, got {value!r}", path=source,
                           field=f.name) from None
    return value
