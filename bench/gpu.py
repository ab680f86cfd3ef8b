"""Memory and speed of layer selection on 8B- and 14B-shaped models, on one CUDA GPU.

Builds Llama-3.1-8B- and Qwen2.5-14B-shaped sequence classifiers from their published shapes with random
weights (nothing is downloaded; ``--layers N`` keeps the first N blocks to fit a smaller GPU), in bf16
with fp32 LoRA adapters and the Trainer's bf16 mixed precision, batch 8 x 256 tokens, and trains each of
  all  ir  replay (of ir's own sets)  full  lisa
for a few steps, each in its own process, printing peak allocated and reserved memory, step time and
tokens/s, with the targets beside them: ir step time <= 1.03 x its replay's, ir peak <= 0.85 x all's.

    python bench/gpu.py --json
    python bench/gpu.py --models llama-8b --layers 8 --steps 10
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = {  # the published configs' shapes (config.json of each model)
    "llama-8b": dict(family="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0,
                     rms_norm_eps=1e-5, max_position_embeddings=8192),
    "qwen-14b": dict(family="qwen2", hidden_size=5120, intermediate_size=13824, num_hidden_layers=48,
                     num_attention_heads=40, num_key_value_heads=8, vocab_size=152064, rope_theta=1000000.0,
                     rms_norm_eps=1e-6, max_position_embeddings=8192),
}
STRATEGIES = ("all", "ir", "replay", "full", "lisa")
NO_CUDA = "bench/gpu.py needs a CUDA GPU (torch.cuda.is_available() is False here): nothing was measured"


def build_model(shape: str, layers: int | None, labels: int = 5, device: str = "cuda"):
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification, Qwen2Config, \
        Qwen2ForSequenceClassification

    values = dict(SHAPES[shape])
    family = values.pop("family")
    if layers:
        values["num_hidden_layers"] = layers
    config_cls, model_cls = (LlamaConfig, LlamaForSequenceClassification) if family == "llama" else \
        (Qwen2Config, Qwen2ForSequenceClassification)
    config = config_cls(**values, num_labels=labels, pad_token_id=0)
    with torch.device(device):
        return model_cls(config).to(torch.bfloat16)


def one(args) -> dict:
    """One strategy on one shape, in this process: the child side of the bench."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from revtune import adapters
    from revtune.selection.callback import LayerSelectionCallback
    from revtune.selection.registry import build_strategy
    from revtune.training.engine import upcast_trainable

    strategy = build_strategy(args.one if args.one != "replay" else f"replay:{args.replay}")
    kind = strategy.adapter or strategy.default_adapter or "lora"
    model = build_model(args.shape, args.layers)
    model = adapters.attach(model, adapters.AdapterConfig(kind=kind, r=32, alpha=64, dropout=0.0,
                                                          train_outside_blocks=strategy.train_outside_blocks),
                            "intent")
    upcast_trainable(model)
    generator = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(1, 32000, (args.length,), generator=generator),
             "attention_mask": torch.ones(args.length, dtype=torch.long), "labels": i % 5}
            for i in range(args.batch * (args.steps + 1))]
    log = Path(args.log)
    selector = LayerSelectionCallback(strategy, log_path=log, seed=0)
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            torch.cuda.synchronize()
            self.started = time.perf_counter()

        def on_step_end(self, *a, **k):
            torch.cuda.synchronize()
            times.append(time.perf_counter() - self.started)

    training = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch,
                                 max_steps=args.steps, learning_rate=1e-4, bf16=True, logging_steps=1,
                                 save_strategy="no", report_to=[], disable_tqdm=True)
    trainer = Trainer(model=model, args=training, train_dataset=rows, callbacks=[selector, Timer()])
    trainer.model_accepts_loss_kwargs = False
    torch.cuda.reset_peak_memory_stats()
    trainer.train()
    steady = times[1:] or times
    step = sum(steady) / len(steady)
    return {"strategy": args.one, "shape": args.shape, "layers": model.config.num_hidden_layers,
            "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
            "step_seconds": step, "tokens_per_second": args.batch * args.length / step,
            "gpu": torch.cuda.get_device_name()}


def run_child(args, shape: str, strategy: str, folder: Path) -> dict:
    log = folder / f"{shape}-{strategy}.jsonl"
    command = [sys.executable, __file__, "--one", strategy, "--shape", shape, "--steps", str(args.steps),
               "--batch", str(args.batch), "--length", str(args.length), "--log", str(log),
               "--replay", str(folder / f"{shape}-ir.jsonl")]
    if args.layers:
        command += ["--layers", str(args.layers)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return {"strategy": strategy, "shape": shape, "error": last[:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="llama-8b,qwen-14b", help=f"comma-separated: {', '.join(SHAPES)}")
    parser.add_argument("--layers", type=int, default=None, help="keep only the first N blocks")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--replay", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    if args.one:
        print(json.dumps(one(args)))
        return 0
    folder = Path(tempfile.mkdtemp(prefix="revtune-bench-gpu-"))
    results = {}
    for shape in args.models.split(","):
        rows = {s: run_child(args, shape, s, folder) for s in STRATEGIES}
        ok = all("error" not in rows[s] for s in ("ir", "replay", "all"))
        targets = {}
        if ok:
            targets = {"ir_step_vs_replay": rows["ir"]["step_seconds"] / rows["replay"]["step_seconds"],
                       "ir_step_vs_replay_target": 1.03,
                       "ir_peak_vs_all": rows["ir"]["peak_allocated_gib"] / rows["all"]["peak_allocated_gib"],
                       "ir_peak_vs_all_target": 0.85}
        results[shape] = {"rows": rows, "targets": targets}
    settings = {"batch": args.batch, "length": args.length, "steps": args.steps, "layers": args.layers,
                "dtype": "bfloat16 base, fp32 adapters, bf16 autocast"}
    if args.json:
        print(json.dumps({"results": results, "settings": settings}))
        return 0
    for shape, result in results.items():
        print(f"{shape} ({settings})")
        print(f"{'strategy':<8} {'alloc GiB':>10} {'reserved GiB':>13} {'s/step':>8} {'tokens/s':>10}")
        for name, row in result["rows"].items():
            if "error" in row:
                print(f"{name:<8} error: {row['error']}")
                continue
            print(f"{name:<8} {row['peak_allocated_gib']:>10.2f} {row['peak_reserved_gib']:>13.2f} "
                  f"{row['step_seconds']:>8.3f} {row['tokens_per_second']:>10.0f}")
        t = result["targets"]
        if t:
            print(f"ir step / replay step {t['ir_step_vs_replay']:.3f} (target <= 1.03); "
                  f"ir peak / all peak {t['ir_peak_vs_all']:.3f} (target <= 0.85)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
