"""Run configuration: one dataclass, the same keys on the command line and in YAML.

Every field's ``help`` becomes the flag's help text, so a flag cannot exist without a field that the run
reads, and a YAML file is checked key by key against the same fields.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path


from .errors import RevtuneError, did_you_mean, shown
from .presets import PRESETS, with_preset
from .prompts import PROMPT_STYLES

TASK_CHOICES = ("intent", "revise")
CLASS_WEIGHTS = ("balanced", "none")
DTYPES = ("float32", "bfloat16", "float16")
DECODINGS = ("greedy", "beam", "sample")
QUANTIZE = (None, "4bit", "8bit")
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
    # --- intent inputs and class imbalance (issue 15) ---
    prompt: str = _f("instruction", "intent input: diff ('Edit: ' and the text with [-deleted-]{+added+} "
                     "marks, no instruction), instruction (the reference's prompt with both texts) pair "
                     "(the two texts alone), reference-instruction (the authors' prompt, whitespace and all) or "
                     "reference-pair (before and after as a tokenizer text pair, as the authors)")
    diff_context: int = _f(10, "diff prompt: unchanged tokens kept beside each edit, the rest cut to '…' "
                           "(document-level edits fit in max_length); -1 keeps the whole text")
    class_weight: str = _f("none", "intent loss weights from the train split: balanced (cross-entropy "
                           "weight n/(k*n_c); multi-label: BCE pos_weight negatives/positives) or none")
    # --- end of issue 15's group ---
    max_length: int = _f(256, "maximum tokens per example")
    learning_rate: float = _f(2e-4, "peak learning rate (AdamW, linear decay)")
    warmup_steps: int = _f(100, "warm-up steps (the reference's 100; a run shorter than 2 x this warms up for "
                       "10% of its steps, printed and recorded as metrics.json effective_warmup_steps)")
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
    # --- memory (issue 13): depth floor and planner limits -------------------------------------------
    min_layer: int = _f(0, "never train below this layer; the strategy's rule runs unchanged on the "
                           "layers from here up (activation memory follows the lowest trained layer)")
    memory_budget: str = _f("", "lowest layer allowed from a memory budget, e.g. 3GiB: the planner picks "
                                "the deepest floor whose predicted peak fits (see revtune plan)")
    memory_limit: str = _f("", "refuse, before loading, a run whose predicted peak exceeds this, e.g. "
                               "20GiB (on CUDA the device's free memory is always checked)")
    # -- compare: several seeds, intervals, paired tests (read by compare.py only; not passed to children)
    seeds: list = _f([], "compare: train every strategy at each of these seeds, e.g. 0,1,2 (default: --seed "
                     "only); a strategy deterministic given its data (tfidf) runs once", group="compare")
    against: str = _f("", "compare: reference strategy of the paired tests (default: the first one)",
                      group="compare")
    bootstrap_samples: int = _f(2000, "compare: resamples of the bootstrap intervals and of the paired "
                                "randomization tests", group="compare")
    confidence: float = _f(0.95, "compare: interval level; a difference is marked significant at "
                           "p < 1 - confidence", group="compare")
    # --- distributed, precision and quantized bases (issue 10) ---
    fsdp: bool = _f(False, "shard with FSDP2 (fully_shard; each decoder block its own unit) under torchrun "
                    "or accelerate launch")
    quantize: str | None = _f(None, "4bit or 8bit: load the base through bitsandbytes (CUDA) and train "
                              "adapters on top")
    deepspeed: str | None = _f(None, "refused: DeepSpeed is not supported, use --fsdp")
    # --- live logging (issue 16) ---
    report_to: str = _f("none", "live logging of the Trainer and the layer selection: none, tensorboard "
                        "(event files in OUT/tensorboard) or wandb (WANDB_MODE=offline works without network)")
    out: str = _f("runs/run", "run directory to create")
    overwrite: bool = _f(False, "replace an existing run directory")
    # --- Reference fidelity (issue 12). ir_grad_accum and cosine_reduction belong to the ir and cosine
    # strategies' own options once those exist (issue 9); preset belongs with the config loading.
    ir_grad_accum: str = _f("per-backward", "IR scores under gradient accumulation: per-backward (the "
                            "reference: per-tensor terms summed over micro-batches) or accumulated (norm of "
                            "the step's summed gradient)")
    preset: str | None = _f(None, "start from a shipped preset (ir-reference: the authors' settings, "
                            "docs/REFERENCE.md); the YAML file and flags override it")
    pad_token_id: int | None = _f(None, "pad with this token id (the reference forces 0); default the "
                                  "tokenizer's pad token, else EOS")
    test_every: int = _f(0, "also score the test split every N steps (metrics.json test_history; the "
                         "reference logs test every 10 steps); 0: only at the end")
    cosine_reduction: str = _f("batch-mean", "cosine scores: batch-mean (the reference: hidden states averaged "
                               "over the batch, then the cosine per position, averaged over positions, pads "
                               "included) or token (per-token cosine averaged over real tokens)")
    # --- checkpoints and reproducibility (issue 11) ---
    save_every: int = _f(0, "write a checkpoint every N optimizer steps under OUT.partial/checkpoints "
                            "(0: only when stopped by SIGINT/SIGTERM); resume with --resume OUT")
    keep_checkpoints: int = _f(2, "how many of the newest checkpoints stay on disk")
    deterministic: bool = _f(False, "torch deterministic algorithms (and CUBLAS_WORKSPACE_CONFIG on CUDA); "
                                    "an op without a deterministic kernel then fails")

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        from .config_values import check_values

        check_values(self)
        checks = [
            (self.task in TASK_CHOICES, "task", f"expected one of {', '.join(TASK_CHOICES)}"),
            (self.prompt in PROMPT_STYLES, "prompt", f"expected one of {', '.join(PROMPT_STYLES)}"),
            (self.class_weight in CLASS_WEIGHTS, "class_weight", f"expected one of {', '.join(CLASS_WEIGHTS)}"),
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
            (self.test_every >= 0, "test_every", "expected >= 0"),
            (self.preset is None or self.preset in PRESETS, "preset", f"expected one of {', '.join(PRESETS)}"),
            (self.min_layer >= 0, "min_layer", "expected a layer index >= 0"),
            (all(_is_seed(s) for s in self.seeds) and len(set(map(str, self.seeds))) == len(self.seeds),
             "seeds", "expected distinct whole numbers >= 0, e.g. 0,1,2"),
            (self.bootstrap_samples >= 100, "bootstrap_samples", "expected >= 100"),
            (0.5 <= self.confidence < 1, "confidence", "expected a level in [0.5, 1), e.g. 0.95"),
            (self.quantize in QUANTIZE, "quantize", "expected 4bit or 8bit"),
            (self.save_every >= 0, "save_every", "expected >= 0"),
            (self.keep_checkpoints >= 1, "keep_checkpoints", "expected >= 1"),
            (self.report_to in REPORT_TO, "report_to", f"expected one of {', '.join(REPORT_TO)}"),
        ]
        for ok, name, message in checks:
            if not ok:
                raise RevtuneError(f"{message}, got {getattr(self, name)!r}", field=name)
        from .units import parse_bytes

        for name in ("memory_budget", "memory_limit"):
            if getattr(self, name):
                parse_bytes(getattr(self, name), name)
        self.seeds = [int(s) for s in self.seeds]  # "0,1,2" parses as floats

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def run_settings(self) -> dict:
        """Every field a training run reads: ``to_dict`` without compare's own fields."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata.get("group") != "compare"}


def _is_seed(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 \
        and float(value).is_integer()


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


def add_config_arguments(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None,
                         compare: bool = False) -> None:
    """One flag per field; defaults are suppressed so a YAML value wins over an unset flag.
    Compare's own fields (seeds, paired tests) become flags only with ``compare``."""
    parser.add_argument("--config", help="YAML file with any of these keys; flags override it")
    for f in dataclasses.fields(RunConfig):
        if (only and f.name not in only) or (f.metadata.get("group") == "compare" and not compare):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = _field_type(f)
        kw = dict(dest=f.name, default=argparse.SUPPRESS, help=f.metadata["help"].replace("%", "%%"))
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif f.name in ("columns", "upsample"):
            parser.add_argument(flag, type=_parse_mapping, **kw)
        elif f.name in ("ir_window", "target_modules", "seeds"):
            parser.add_argument(flag, type=_parse_list, **kw)
        else:
            base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
            parser.add_argument(flag, type=base if base in (int, float, str) else str, **kw)


def load_yaml(path: str | Path) -> dict:
    """A config file's keys, checked against the fields; a shipped recipe's name works as a path too."""
    from .recipes import find_recipe
    from .yamlsafe import load_yaml_file

    path = Path(path)
    if not path.is_file():
        path = find_recipe(str(path)) or path
    if not path.is_file():
        raise RevtuneError("config file not found (nor a shipped recipe: revtune config list)", path=path)
    data = load_yaml_file(path) or {}
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


def explicit_values(namespace: argparse.Namespace, **overrides) -> dict:
    """The config keys the user gave (preset < YAML < flags < ``overrides``), coerced; no defaults."""
    values = load_yaml(namespace.config) if getattr(namespace, "config", None) else {}
    source = getattr(namespace, "config", None)
    from_yaml = set(values)
    flags = {k: v for k, v in vars(namespace).items() if k in {f.name for f in dataclasses.fields(RunConfig)}}
    values.update(flags)
    values.update(overrides)
    values = with_preset(values)
    for f in dataclasses.fields(RunConfig):
        if f.name in values:
            values[f.name] = _coerce(f, values[f.name], source if f.name not in flags else None)
    return values


def refuse_changes(saved: dict, given: dict, allowed=("save_every", "keep_checkpoints", "overwrite")) -> None:
    """A resumed run keeps its config: any explicitly given value that differs is an error naming all."""
    differ = [f"{key} {given[key]!r} (the run has {saved.get(key)!r})" for key in sorted(given)
              if key not in allowed and key in saved and given[key] != saved[key]]
    if differ:
        raise RevtuneError("--resume continues the run with the config it was started with; these flags "
                           f"would change it: {'; '.join(differ)}", field="resume")


def config_from_args(namespace: argparse.Namespace, **overrides) -> RunConfig:
    """preset < YAML (if ``--config``) < explicit flags < ``overrides``; a bad value read from the YAML
    file names that file."""
    values = explicit_values(namespace, **overrides)
    try:
        return RunConfig(**values)
    except RevtuneError as e:
        source = getattr(namespace, "config", None)
        fields = {f.name for f in dataclasses.fields(RunConfig)}
        flags = {k for k in vars(namespace) if k in fields}
        from_yaml = set(load_yaml(source)) if source else set()
        if e.path is None and e.field in from_yaml - flags - set(overrides):
            raise RevtuneError(e.message, path=source, field=e.field) from None
        raise


def _coerce(f: dataclasses.Field, value, source):
    kind = _field_type(f)
    base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
    if value is None and type(None) in typing.get_args(kind):
        return None
    try:
        if base is bool and not isinstance(value, bool):
            raise ValueError
        if base in (int, float, str) and isinstance(value, bool):
            raise ValueError  # YAML's `max_steps: true` is not 1
        if base is int:
            number = float(value) if isinstance(value, (str, float)) else value
            if not isinstance(number, (int, float)) or not math.isfinite(number) or number != int(number):
                raise ValueError
            return int(number)
        if base is float:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        if base is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError
            return str(value)
        if base in (list, dict) and not isinstance(value, base):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        kind = {int: "int (a whole number)", float: "float (a finite number)", str: "str (text)",
                bool: "bool (true or false)", list: "list", dict: "dict (a mapping)"}.get(base, base)
        raise RevtuneError(f"expected {kind}, got {shown(value)}", path=source, field=f.name) from None
    return value
