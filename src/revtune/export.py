"""Hand a finished run to the Hugging Face ecosystem: a merged ``transformers`` model, or a peft adapter.

``--merge`` folds LoRA/DoRA into the base weights (peft's ``merge_and_unload``) and writes a standard model
directory (safetensors, tokenizer, config with ``id2label``/``label2id``) that
``AutoModelForSequenceClassification`` (intent runs) or ``AutoModelForCausalLM`` (revise runs) loads
with no revtune installed, and that vLLM or TGI can serve. Without it, the run's peft adapter is copied
with its model card. Both carry ``task.json`` (labels and prompt template), ``README.md`` and
``revtune_export.json`` (the files written, so ``--overwrite`` recognises an export).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .errors import RevtuneError
from .rundir import EXPORT_RECORD, building, disk_errors, read_run_record, write_json

PEFT_KINDS = ("lora", "dora")


def export_run(run: str | Path, out: str | Path, merge: bool = False, overwrite: bool = False) -> Path:
    from .intention import generator_run
    from .modelcard import write_task_and_card
    from .models import resolvable_name

    run, config = read_run_record(generator_run(run))  # flat settings and what the run learned
    kind = config.get("adapter") or "lora"
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    environment = json.loads((run / "environment.json").read_text()) if (run / "environment.json").is_file() else {}
    base_name = config.get("base_model_name") or resolvable_name(config["model"], run)
    if merge and kind == "bottleneck":
        raise RevtuneError("a bottleneck adapter (tanh between two projections) cannot be merged into linear "
                           "weights; only lora, dora and none runs merge", path=run, field="adapter")
    if not merge and kind not in PEFT_KINDS:
        raise RevtuneError(f"adapter '{kind}' is not a peft adapter; export it with --merge", path=run,
                           field="adapter")
    with building(out, overwrite) as tmp:
        with disk_errors(out):  # transformers and safetensors write the model themselves
            if merge:
                _write_merged(run, config, kind, tmp)
            else:
                shutil.copytree(run / "adapter", tmp, dirs_exist_ok=True)
        write_task_and_card(tmp, config, metrics, environment, base_name, merged=merge)
        files = sorted(p.name for p in tmp.iterdir() if not p.is_dir())
        write_json(tmp / EXPORT_RECORD, {"run": str(run), "merged": merge, "files": files})
    return Path(out)


def _write_merged(run: Path, config: dict, kind: str, folder: Path) -> None:
    from .predict import load_run_model

    model, tokenizer, _, _ = load_run_model(run, config["task"], "cpu")
    if kind in PEFT_KINDS:
        model = model.merge_and_unload()
    model.config.name_or_path = config.get("base_model_name") or config["model"]
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
