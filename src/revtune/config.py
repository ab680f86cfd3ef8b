"""Run configuration: a composition of small parts, each declared once and validating itself.

``RunConfig`` = data + model + adapter + selection + memory + training + decoding + output. Every field is also a
flag and a YAML key under its flat name (``lora_r`` is ``adapter.r``); the table from flat name to
``part.field`` is generated from the parts (:data:`FLAT`), so ``--lora-r 8``, ``lora_r: 8`` and
``adapter: {r: 8}`` are the same setting. The selected strategy's own options (``split_num``,
``random_k``...) live in ``selection.options``, a dataclass of the strategy (``selection/options.py``).
Consumers take the part they need whole (``load_splits(config.data, seed)``, ``attach(model,
config.adapter)``).
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RevtuneError, did_you_mean
from .knobs import add_flag, check_choices, cli_fields, coerce, flat_name, knob
from .presets import PRESETS, with_preset
from .prompts import PROMPT_STYLES
from .selection.registry import StrategyOptions, option_flags, parse_spec, split_spec, strategy_help

TASK_CHOICES = ("intent", "revise")
CLASS_WEIGHTS = ("balanced", "none")
DTYPES = ("float32", "bfloat16", "float16")
DECODINGS = ("greedy", "beam", "sample")
QUANTIZE = ("4bit", "8bit")
REPORT_TO = ("none", "tensorboard", "wandb")
ADAPTERS = ("lora", "dora", "bottleneck", "none")
FORMATS = ("auto", "iterater-sent", "iterater-doc", "argrevision", "tabular")


def _check(checks, obj) -> None:
    from .config_values import check_values

    check_choices(obj)
    check_values({flat_name(f): getattr(obj, f.name) for f in dataclasses.fields(obj)})
    for ok, name, message in checks:
        if not ok:
            raise RevtuneError(f"{message}, got {getattr(obj, name)!r}", field=_flat(obj, name))


def _flat(obj, name: str) -> str:
    return next(flat_name(f) for f in dataclasses.fields(obj) if f.name == name)


@dataclass
class DataConfig:
    """What the run learns from: the task, the corpus files and how examples are built."""

    task: str = knob("intent", "intent (classify why a revision was made) or revise (generate it)",
                     choices=TASK_CHOICES)
    train: str | None = knob(None, "training corpus (file or hub:NAME); default: the shipped sample corpus")
    dev: str | None = knob(None, "dev corpus; default: a stratified split carved from train")
    test: str | None = knob(None, "test corpus; default: the shipped sample test split when train is default")
    format: str = knob("auto", "corpus format", choices=FORMATS)
    columns: dict = knob({}, "column mapping for tabular files, e.g. before=old,after=new,intents=label")
    label_sep: str | None = knob(None, "separator of several labels in one tabular cell")
    dev_fraction: float = knob(0.1, "share of train carved out as dev when no dev file is given")
    upsample: dict = knob({}, "repeat factors per class on the train split, e.g. style=2,coherence=3")
    prompt: str = knob("instruction", "intent input: diff ('Edit: ' and the text with [-deleted-]{+added+} "
                       "marks, no instruction), instruction (the reference's prompt with both texts) pair "
                       "(the two texts alone), reference-instruction (the authors' prompt, whitespace and all) "
                       "or reference-pair (before and after as a tokenizer text pair, as the authors)",
                       choices=PROMPT_STYLES)
    diff_context: int = knob(10, "diff prompt: unchanged tokens kept beside each edit, the rest cut to '…' "
                             "(document-level edits fit in max_length); -1 keeps the whole text")
    max_length: int = knob(256, "maximum tokens per example")

    def __post_init__(self):
        _check([], self)


@dataclass
class ModelConfig:
    """Which base model, in which precision, on which device."""

    name: str = knob("smollm2", "smollm2 (embedded default), tiny, a directory, a .gguf file or a hub id",
                     flag="model")
    tiny_layers: int = knob(8, "number of layers of the 'tiny' test model")
    dtype: str = knob("float32", "weights' precision", choices=DTYPES)
    device: str = knob("auto", "auto, cpu, cuda, cuda:1, mps")
    pad_token_id: int | None = knob(None, "pad with this token id (the reference forces 0); default the "
                                    "tokenizer's pad token, else EOS")
    quantize: str | None = knob(None, "4bit or 8bit: load the base through bitsandbytes (CUDA) and train "
                                "adapters on top", choices=QUANTIZE)
    fsdp: bool = knob(False, "shard with FSDP2 (fully_shard; each decoder block its own unit) under torchrun "
                      "or accelerate launch")
    deepspeed: str | None = knob(None, "refused: DeepSpeed is not supported, use --fsdp")

    def __post_init__(self):
        _check([], self)


@dataclass
class AdapterConfig:
    """The trainable parameters added to the frozen model (reference defaults of METHODS.md §1)."""

    kind: str | None = knob(None, "adapter kind; unset: what the strategy asks for, else lora", flag="adapter",
                            choices=ADAPTERS)
    r: int = knob(32, "LoRA/DoRA rank", flag="lora_r")
    alpha: int = knob(64, "LoRA/DoRA alpha", flag="lora_alpha")
    dropout: float = knob(0.05, "LoRA/DoRA dropout", flag="lora_dropout")
    bottleneck_dim: int = knob(256, "bottleneck adapter size")
    targets: list[str] = knob([], "module names to adapt; default q,k,v,up,down projections",
                              flag="target_modules")
    freeze_head: bool = knob(False, "keep the classification head at its random init (the reference code)")

    def __post_init__(self):
        self.targets = list(self.targets or [])
        _check([], self)


@dataclass
class SelectionConfig:
    """Which layers train at each step: a strategy spec and that strategy's own options."""

    select: str = knob("ir", "layer selection strategy, NAME[:ARG...]")
    interval: int = knob(1, "run the selection rule every N steps", flag="select_interval")
    options: StrategyOptions | dict | None = knob(None, "the strategy's options", cli=False)

    def __post_init__(self):
        if self.interval < 1:
            raise RevtuneError(f"expected >= 1, got {self.interval}", field="select_interval")
        name = split_spec(self.select)[0]
        if not isinstance(self.options, StrategyOptions) or self.options.name != name:
            # Switching strategy keeps the options both share (ir -> frequency keeps the split settings).
            base = self.options if isinstance(self.options, dict) else \
                dataclasses.asdict(self.options) if self.options is not None else {}
            self.options = parse_spec(self.select, base=base)
        elif parse_spec(self.select, base=dataclasses.asdict(self.options)) != self.options:
            raise RevtuneError(f"'{self.select}' contradicts the options given ({self.options.spec()})",
                               field="select")
        self.select = self.options.spec()


@dataclass
class MemoryConfig:
    """How deep a run may train, and the memory it may use (the planner, ``revtune plan``)."""

    min_layer: int = knob(0, "never train below this layer; the strategy's rule runs unchanged on the "
                             "layers from here up (activation memory follows the lowest trained layer)")
    budget: str = knob("", "lowest layer allowed from a memory budget, e.g. 3GiB: the planner picks the "
                           "deepest floor whose predicted peak fits (see revtune plan)", flag="memory_budget")
    limit: str = knob("", "refuse, before loading, a run whose predicted peak exceeds this, e.g. 20GiB (on "
                          "CUDA the device's free memory is always checked)", flag="memory_limit")

    def __post_init__(self):
        from .units import parse_bytes

        _check([(self.min_layer >= 0, "min_layer", "expected a layer index >= 0")], self)
        for name, flag in (("budget", "memory_budget"), ("limit", "memory_limit")):
            if getattr(self, name):
                parse_bytes(getattr(self, name), flag)


@dataclass
class TrainingConfig:
    """The optimisation and its evaluation schedule."""

    learning_rate: float = knob(2e-4, "peak learning rate (AdamW, linear decay)")
    warmup_steps: int = knob(100, "warm-up steps (the reference's 100; a run shorter than 2 x this warms up "
                             "for 10% of its steps, printed and recorded as metrics.json effective_warmup_steps)")
    weight_decay: float = knob(0.0, "AdamW weight decay")
    max_grad_norm: float = knob(1.0, "gradient clipping norm (0 disables)")
    epochs: float = knob(4.0, "training epochs (ignored when max_steps > 0)")
    max_steps: int = knob(-1, "optimizer steps; overrides epochs when > 0")
    batch_size: int = knob(16, "examples per optimizer step per device")
    grad_accum: int = knob(1, "gradient accumulation micro-batches")
    eval_every: int = knob(0, "evaluate on dev every N steps (0: about 5 times per run)")
    test_every: int = knob(0, "also score the test split every N steps (metrics.json test_history; the "
                           "reference logs test every 10 steps); 0: only at the end")
    threshold: str = knob("0.5", "multi-label decision threshold, or 'tune' to pick it on dev")
    class_weight: str = knob("none", "intent loss weights from the train split: balanced (cross-entropy "
                             "weight n/(k*n_c); multi-label: BCE pos_weight negatives/positives) or none",
                             choices=CLASS_WEIGHTS)
    dev_generate: int = knob(16, "revise: first N dev items generated for dev SARI at each evaluation "
                                 "(the best-dev metric); 0: dev loss only (cheapest)")
    seed: int = knob(171, "random seed (data order, selection draws, new weights)")
    gradient_checkpointing: bool = knob(False, "recompute activations in backward (non-reentrant)")
    deterministic: bool = knob(False, "torch deterministic algorithms (and CUBLAS_WORKSPACE_CONFIG on CUDA); "
                                      "an op without a deterministic kernel then fails")
    report_to: str = knob("none", "live logging of the Trainer and the layer selection: none, tensorboard "
                          "(event files in OUT/tensorboard) or wandb (WANDB_MODE=offline works without network)",
                          choices=REPORT_TO)

    def __post_init__(self):
        _check([(self.max_steps > 0 or self.epochs > 0, "max_steps", "give max_steps > 0 or epochs > 0"),
                (self.threshold == "tune" or _is_share(self.threshold), "threshold",
                 "expected a number or 'tune'"),
                (self.test_every >= 0, "test_every", "expected >= 0")], self)


@dataclass
class DecodingConfig:
    """How revisions are generated (revise task, ``revtune revise``)."""

    mode: str = knob("greedy", "revise: greedy, beam (num_beams) or sample (temperature, top_p) decoding",
                     flag="decoding", choices=DECODINGS)
    num_beams: int = knob(4, "revise: beams when decoding is beam")
    temperature: float = knob(0.7, "revise: sampling temperature when decoding is sample")
    top_p: float = knob(0.9, "revise: nucleus probability mass when decoding is sample")
    factor: float = knob(1.5, "revise: max new tokens per item = factor x its source tokens",
                         flag="new_tokens_factor")
    floor: int = knob(16, "revise: at least this many new tokens (short or empty sources)", flag="new_tokens_floor")

    def __post_init__(self):
        _check([], self)


@dataclass
class OutputConfig:
    """Where the run directory goes, and the checkpoints written on the way (the settings a resumed run
    may change)."""

    out: str = knob("runs/run", "run directory to create")
    overwrite: bool = knob(False, "replace an existing run directory")
    save_every: int = knob(0, "write a checkpoint every N optimizer steps under OUT.partial/checkpoints "
                              "(0: only when stopped by SIGINT/SIGTERM); resume with --resume OUT")
    keep_checkpoints: int = knob(2, "how many of the newest checkpoints stay on disk")

    def __post_init__(self):
        _check([(self.save_every >= 0, "save_every", "expected >= 0"),
                (self.keep_checkpoints >= 1, "keep_checkpoints", "expected >= 1")], self)


@dataclass
class CompareConfig:
    """``revtune compare``'s own settings (several seeds, intervals, paired tests); not a run's: they
    never reach a child run."""

    seeds: list[float] = knob([], "compare: train every strategy at each of these seeds, e.g. 0,1,2 (default: "
                              "--seed only); a strategy deterministic given its data (tfidf) runs once",
                              expect="expected distinct whole numbers >= 0, e.g. 0,1,2")
    against: str = knob("", "compare: reference strategy of the paired tests (default: the first one)")
    bootstrap_samples: int = knob(2000, "compare: resamples of the bootstrap intervals and of the paired "
                                        "randomization tests")
    confidence: float = knob(0.95, "compare: interval level; a difference is marked significant at "
                                   "p < 1 - confidence")

    def __post_init__(self):
        ok = all(_is_seed(s) for s in self.seeds) and len(set(map(str, self.seeds))) == len(self.seeds)
        _check([(ok, "seeds", "expected distinct whole numbers >= 0, e.g. 0,1,2"),
                (self.bootstrap_samples >= 100, "bootstrap_samples", "expected >= 100"),
                (0.5 <= self.confidence < 1, "confidence", "expected a level in [0.5, 1), e.g. 0.95")], self)
        self.seeds = [int(s) for s in self.seeds]


def _is_seed(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 \
        and float(value).is_integer()


@dataclass
class Loading:
    """How a command gathers its values; not a setting of the run (its config.json holds the values)."""

    preset: str | None = knob(None, "start from a shipped preset (ir-reference: the authors' settings, "
                                    "docs/REFERENCE.md); the YAML file and flags override it", choices=PRESETS)


def _part(cls):
    return field(default_factory=cls)


PARTS = {"data": DataConfig, "model": ModelConfig, "adapter": AdapterConfig, "selection": SelectionConfig,
         "memory": MemoryConfig, "training": TrainingConfig, "decoding": DecodingConfig, "output": OutputConfig}


def flat_table(parts: dict[str, type]) -> dict[str, tuple[str, dataclasses.Field]]:
    """Flat name -> (part, field) of every command-line field; a flat name used twice is a bug."""
    table = {}
    for part, cls in parts.items():
        for f in cli_fields(cls):
            if flat_name(f) in table:
                raise ValueError(f"flat name '{flat_name(f)}' declared twice ({table[flat_name(f)][0]}, {part})")
            table[flat_name(f)] = (part, f)
    return table


FLAT = flat_table(PARTS)


@dataclass
class RunConfig:
    """Everything a training run needs; the copy in a run directory's ``config.json`` re-runs it."""

    data: DataConfig = _part(DataConfig)
    model: ModelConfig = _part(ModelConfig)
    adapter: AdapterConfig = _part(AdapterConfig)
    selection: SelectionConfig = _part(SelectionConfig)
    memory: MemoryConfig = _part(MemoryConfig)
    training: TrainingConfig = _part(TrainingConfig)
    decoding: DecodingConfig = _part(DecodingConfig)
    output: OutputConfig = _part(OutputConfig)

    @classmethod
    def from_values(cls, values: dict, source=None) -> "RunConfig":
        """From flat keys (``lora_r``), nested parts (``adapter: {r: 8}``) or both, checked key by key; a
        ``preset`` key puts the preset's values under the others."""
        values = dict(values)
        preset = values.pop("preset", None)
        nested = nest(PARTS, values, source)
        if preset:
            _under_preset(nested, str(preset), PARTS)
        return cls(**build_parts(PARTS, nested, source))

    def to_dict(self) -> dict:
        """Nested, JSON-ready: what ``config.json`` holds and :meth:`from_values` reads back."""
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Check every part again (each checked itself when built; a part changed since is checked now)."""
        for part in PARTS:
            getattr(self, part).__post_init__()

    def flat(self) -> dict:
        """Flat name -> value of every setting (``lora_r``, ``split_num`` of the chosen strategy...): the
        keys of a flat YAML file, which :meth:`from_values` reads back."""
        values = {}
        for part, cls in PARTS.items():
            obj = getattr(self, part)
            values.update({flat_name(f): getattr(obj, f.name) for f in cli_fields(cls)})
        options = self.selection.options
        values.update({flat_name(f): getattr(options, f.name) for f in cli_fields(type(options))})
        return values

    def override(self, **flat) -> "RunConfig":
        """A copy with some settings changed by flat name (``config.override(task="revise", out=...)``)."""
        values = self.to_dict()
        for key, value in nest(PARTS, flat).items():
            values[key].update(value)
            if key == "selection" and "select" in value:
                values[key]["options"] = self.selection.options
        return RunConfig.from_values(values)


def nest(parts: dict[str, type], values: dict, source=None) -> dict[str, dict]:
    """Flat and nested keys -> {part: {field or option name: value}}; unknown keys are one-line errors."""
    table = flat_table(parts)
    options = option_flags() if "selection" in parts else {}
    nested: dict[str, dict] = {part: {} for part in parts}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name in parts and isinstance(value, dict):
            for inner, item in value.items():
                nested[name][_field_name(parts[name], str(inner).replace("-", "_"), options, source, name)] = item
        elif name in table:
            part, f = table[name]
            nested[part][f.name] = value
        elif name in options:
            nested["selection"][name] = value
        else:
            valid = [*table, *options, *parts]
            raise RevtuneError(f"unknown config key: {did_you_mean(name, valid)}", path=source, field=str(key))
    return nested


def _field_name(cls, key: str, options: dict, source, part: str) -> str:
    for f in dataclasses.fields(cls):
        if key in (f.name, flat_name(f)):
            return f.name
    if cls is SelectionConfig:
        return key  # a strategy option, checked against the chosen strategy
    valid = [f.name for f in dataclasses.fields(cls)]
    raise RevtuneError(f"unknown key in {part}: {did_you_mean(key, valid)}", path=source, field=key)


def build_parts(parts: dict[str, type], nested: dict[str, dict], source=None) -> dict:
    """Each part built from its values (types checked); strategy options resolved against ``select``."""
    built = {}
    for part, cls in parts.items():
        values = dict(nested.get(part, {}))
        names = {f.name: f for f in dataclasses.fields(cls)}
        if cls is SelectionConfig:
            extra = {k: values.pop(k) for k in list(values) if k not in names}
            select = coerce(cls, names["select"], values.pop("select", names["select"].default), source)
            saved = values.pop("options", None)
            base = dataclasses.asdict(saved) if isinstance(saved, StrategyOptions) else saved
            values = {k: coerce(cls, names[k], v, source) for k, v in values.items()}
            built[part] = _at(source, lambda: SelectionConfig(
                select=select, options=parse_spec(select, extra, base, source), **values))
            continue
        values = {k: coerce(cls, names[k], v, source) for k, v in values.items()}
        built[part] = _at(source, lambda: cls(**values))
    return built


def _at(source, make):
    """Validation errors of a part built from a file name the file."""
    try:
        return make()
    except RevtuneError as exc:
        if exc.path is None and source is not None:
            raise RevtuneError(exc.message, path=source, field=exc.field) from None
        raise


def _is_share(text: str) -> bool:
    try:
        return 0.0 < float(text) < 1.0
    except ValueError:
        return False


# --- command line and YAML --------------------------------------------------------------------------

def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = (),
                         parts: dict[str, type] | None = None, strategy_options: bool | tuple = True) -> None:
    """``--config`` and one flag per field of ``parts`` (default the run config's), except ``skip``, and
    one flag per option of every registered strategy (``strategy_options=True``), of the named ones (a
    tuple) or of none (False)."""
    parser.add_argument("--config", help="YAML file with any of these keys, flat (lora_r: 8) or nested "
                                         "(adapter: {r: 8}); flags override it")
    add_flag(parser, Loading, dataclasses.fields(Loading)[0])
    for flat, (part, f) in flat_table(parts or PARTS).items():
        if flat not in skip:
            add_flag(parser, (parts or PARTS)[part], f,
                     extra_help=" - " + strategy_help() if flat == "select" else "")
    if strategy_options and "selection" in (parts or PARTS):
        from .selection.registry import STRATEGIES

        wanted = STRATEGIES if strategy_options is True else strategy_options
        for flat, users in option_flags().items():
            users = [(name, f) for name, f in users if name in wanted]
            if users:
                add_flag(parser, STRATEGIES[users[0][0]], users[0][1],
                         extra_help=f" [{', '.join(name for name, _ in users)}]")


def load_yaml(path: str | Path) -> dict:
    """A config file's keys (flat or nested); a shipped recipe's name works as a path too."""
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
    return legacy_values(data) if "model_source" in data else data


LEARNED_KEYS = ("labels", "multi_label", "model_source", "decision_threshold", "n_layers", "base_model_name",
               "preset")


def legacy_values(saved: dict) -> dict:
    """The settings of a flat ``config.json`` written before the config had parts: without what the run
    learned, and without the strategy options it listed for every strategy (kept: the selected one's)."""
    select = str(saved.get("select", "ir"))
    name = split_spec(select)[0]
    mine = {flat for flat, users in option_flags().items() if any(user == name for user, _ in users)}
    return {k: v for k, v in saved.items()
            if k not in LEARNED_KEYS and (k not in option_flags() or k in mine)}


def merged_values(namespace: argparse.Namespace, parts: dict[str, type], overrides: dict) -> tuple[dict, str | None]:
    """{part: {name: value}}: YAML (if ``--config``) < explicit flags < ``overrides``."""
    source = getattr(namespace, "config", None)
    in_yaml = load_yaml(source) if source else {}
    preset = overrides.get("preset", getattr(namespace, "preset", None) or in_yaml.get("preset"))
    in_yaml.pop("preset", None)
    overrides = {k: v for k, v in overrides.items() if k != "preset"}
    nested = nest(parts, in_yaml, source)
    for part, values in nested.items():  # a YAML value's type is checked even when a flag replaces it
        names = {f.name: f for f in cli_fields(parts[part])}
        for key in [k for k in values if k in names]:
            values[key] = coerce(parts[part], names[key], values[key], source)
    flags = {k: v for k, v in vars(namespace).items() if k not in ("config", "command")}
    known = set(flat_table(parts)) | (set(option_flags()) if "selection" in parts else set())
    for layer in (nest(parts, {k: v for k, v in flags.items() if k in known}), nest(parts, overrides)):
        for part, values in layer.items():
            if part == "selection" and "select" in values and source:
                old = nested[part].get("select")
                if old is not None and split_spec(str(old))[0] != split_spec(str(values["select"]))[0]:
                    nested[part].pop("options", None)  # saved options of another strategy
            nested[part].update(values)
    if preset:
        _under_preset(nested, str(preset), parts)
    return nested, source


def _under_preset(nested: dict[str, dict], name: str, parts: dict[str, type]) -> None:
    """Put the preset's values under those given (``presets.with_preset``: its fp16 only on a GPU)."""
    given = {"dtype": nested["model"]["dtype"]} if "dtype" in nested.get("model", {}) else {}
    if "device" in nested.get("model", {}):
        given["device"] = nested["model"]["device"]
    values = with_preset({"preset": name, **given})
    values.pop("preset")
    preset = nest(parts, values)
    if "selection" in preset:  # the preset's strategy options reach only a strategy that has them
        from .selection.registry import options_class

        select = nested["selection"].get("select", preset["selection"].get("select", "ir"))
        own = {flat_name(f) for f in cli_fields(options_class(split_spec(str(select))[0]))}
        own |= {f.name for f in dataclasses.fields(SelectionConfig)}
        preset["selection"] = {k: v for k, v in preset["selection"].items() if k in own}
    for part, inner in preset.items():
        nested[part] = {**inner, **nested[part]}


def explicit_values(namespace: argparse.Namespace, parts: dict[str, type] | None = None, **overrides) -> dict:
    """The settings given (preset < YAML < flags < ``overrides``), by flat name; no defaults."""
    parts = parts or PARTS
    nested, _ = merged_values(namespace, parts, overrides)
    flat = {}
    for part, values in nested.items():
        names = {f.name: flat_name(f) for f in dataclasses.fields(parts[part])}
        flat.update({names.get(k, k): v for k, v in values.items() if k != "options"})
    return flat


def refuse_changes(saved: dict, given: dict, allowed=("save_every", "keep_checkpoints", "overwrite")) -> None:
    """A resumed run keeps its config: any explicitly given value (flat names) that differs from the saved
    one is an error naming all."""
    differ = [f"{key} {given[key]!r} (the run has {saved.get(key)!r})" for key in sorted(given)
              if key not in allowed and key in saved and given[key] != saved[key]]
    if differ:
        raise RevtuneError("--resume continues the run with the config it was started with; these flags "
                           f"would change it: {'; '.join(differ)}", field="resume")


def config_from_args(namespace: argparse.Namespace, **overrides) -> RunConfig:
    """The run config of a command: YAML (if ``--config``) < explicit flags < ``overrides``."""
    nested, source = merged_values(namespace, PARTS, overrides)
    return RunConfig(**build_parts(PARTS, nested, source))


def config_and_strategies(namespace: argparse.Namespace, default_select: str, **overrides
                          ) -> tuple[RunConfig, str, dict, CompareConfig]:
    """For commands that train several strategies (``compare``, ``demo``): the shared run config, the
    comma list of specs (``select``, default ``default_select``), the strategy options given (flat
    names), which each strategy takes if it has them, and compare's own settings."""
    parts = {**PARTS, "compare": CompareConfig}
    nested, source = merged_values(namespace, parts, overrides)
    selection = nested["selection"]
    specs = str(selection.pop("select", default_select))
    names = {f.name for f in dataclasses.fields(SelectionConfig)}
    option_values = {k: selection.pop(k) for k in list(selection) if k not in names}
    selection.pop("options", None)
    settings = build_parts({"compare": CompareConfig}, nested, source)["compare"]
    nested.pop("compare")
    return RunConfig(**build_parts(PARTS, nested, source)), specs, option_values, settings
