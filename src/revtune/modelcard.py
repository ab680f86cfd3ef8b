"""The model card (README.md) of a saved adapter or an exported model, and the task file beside it.

``task.json`` holds what a head and a prompt need and peft does not store: the label names (so a user can
rebuild the classifier with the right size and names), the decision threshold, and the prompt template.
"""
from __future__ import annotations

import json
from pathlib import Path

from .corpora.record import Revision
from .prompts import intent_prompt, revise_prompt

TASK_FILE = "task.json"


def task_document(config: dict) -> dict:
    """Labels, threshold and the prompt template (``{before}``/``{after}``, or ``{text}``/``{intents}``)."""
    labels = list(config.get("labels") or [])
    if config.get("task") == "intent":
        template = intent_prompt(Revision("{before}", "{after}", ()), labels, config.get("prompt", "instruction"))
    else:
        template = revise_prompt("{text}", ["{intents}"])
    return {"task": config.get("task"), "labels": labels, "num_labels": len(labels),
            "id2label": dict(enumerate(labels)), "label2id": {name: i for i, name in enumerate(labels)},
            "multi_label": config.get("multi_label", False),
            "decision_threshold": config.get("decision_threshold", 0.5),
            "prompt_style": config.get("prompt", "instruction"), "prompt_template": template,
            "max_length": config.get("max_length")}


def trained_layers(metrics: dict) -> list[int]:
    return [layer for layer, count in enumerate(metrics.get("importance_frequency") or []) if count]


def model_card(config: dict, metrics: dict, environment: dict, base_model: str, merged: bool) -> str:
    """A short README.md: what the base is, what it was trained on and how, how well, and how to load it."""
    task = config.get("task")
    labels = config.get("labels") or []
    test = {k: v for k, v in (metrics.get("test") or {}).items() if isinstance(v, (int, float))}
    layers = trained_layers(metrics)
    source = config.get("model_source")
    local = f" (weights used here: `{source}`" + (", the Q4_1 GGUF dequantized to fp32)" if config.get("model") ==
                                                 "smollm2" else ")") if source and source != base_model else ""
    data = ", ".join(f"{split} `{config.get(split)}`" for split in ("train", "dev", "test") if config.get(split)) \
        or "the corpus shipped with revtune (300 sentence revisions, five IteraTeR intents)"
    if merged:
        cls = "AutoModelForSequenceClassification" if task == "intent" else "AutoModelForCausalLM"
        usage = (f"from transformers import {cls}, AutoTokenizer\nmodel = {cls}.from_pretrained(DIR)\n"
                 "tokenizer = AutoTokenizer.from_pretrained(DIR)")
    else:
        cls = "AutoPeftModelForSequenceClassification" if task == "intent" else "AutoPeftModelForCausalLM"
        extra = f", num_labels={len(labels)}, id2label={dict(enumerate(labels))}" if task == "intent" else ""
        usage = (f"from peft import {cls}\nmodel = {cls}.from_pretrained(DIR{extra})\n"
                 "# or: PeftModel.from_pretrained(base, DIR) on the base model named below")
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in test.items())
    return f"""---
base_model: {base_model}
library_name: {"transformers" if merged else "peft"}
tags: [revtune, text-revision, {"intent-classification" if task == "intent" else "revision-generation"}]
---
# {Path(config.get("out", "run")).name}: {"revision intent classifier" if task == "intent" else "revision generator"}

Trained with [revtune](https://github.com/) {"(adapters merged into the base)" if merged else "(a peft adapter)"}.

- **Base model**: `{base_model}`{local}
- **Task**: {task}{f" over {len(labels)} labels: {', '.join(labels)}" if labels else ""}{" (multi-label)" if config.get("multi_label") else ""}
- **Data**: {data}
- **Strategy**: `{metrics.get("strategy", config.get("select"))}`, adapter `{metrics.get("adapter", config.get("adapter"))}` (r={config.get("lora_r")}, alpha={config.get("lora_alpha")})
- **Layers trained**: {", ".join(map(str, layers)) if layers else "-"} of {metrics.get("n_layers")} (mean {metrics.get("mean_active_layers", 0):.1f} per step)
- **Training**: {metrics.get("steps")} steps, batch {config.get("batch_size")}, learning rate {config.get("learning_rate")}, seed {config.get("seed")}
- **Prompt**: `{TASK_FILE}` holds the template and the label names

## Metrics (test split, final step)
| metric | value |
| --- | --- |
{rows or "| - | - |"}

## Use
```python
{usage}
```

## Command
```
{environment.get("command", "")}
```
"""


def write_task_and_card(folder: Path, config: dict, metrics: dict, environment: dict, base_model: str,
                        merged: bool) -> None:
    from .rundir import write_json, write_text

    write_json(folder / TASK_FILE, task_document(config))
    write_text(folder / "README.md", model_card(config, metrics, environment, base_model, merged))
