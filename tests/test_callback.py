"""LayerSelectionCallback inside a plain transformers Trainer, written the way a user would."""
import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

from revtune import LayerSelectionCallback
from revtune.adapters import layer_map
from revtune.errors import RevtuneError

N_LAYERS = 6


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n=64):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(3, 120, (n, 12), generator=g)
        self.labels = (self.ids[:, 0] % 3).tolist()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long),
                "labels": self.labels[i]}


def peft_model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=N_LAYERS,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=3, pad_token_id=0)
    model = LlamaForSequenceClassification(config)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                            task_type="SEQ_CLS"))


def train(tmp_path, strategy="ir", steps=6, extra_callbacks=(), optimizers=(None, None), **arguments):
    model = peft_model()
    callback = LayerSelectionCallback(strategy, log_path=tmp_path / "selection.jsonl", seed=1,
                                      interval=arguments.pop("interval", 1))
    settings = dict(output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=8,
                    learning_rate=1e-2, report_to=[], use_cpu=True, save_strategy="no", logging_steps=1,
                    seed=0, disable_tqdm=True, weight_decay=0.1)
    settings.update(arguments)
    args = TrainingArguments(**settings)
    trainer = Trainer(model=model, args=args, train_dataset=Pairs(), optimizers=optimizers,
                      callbacks=[callback, *extra_callbacks])
    trainer.train()
    return callback, trainer, model


class WeightWatcher(TrainerCallback):
    """Records which layers' trainable weights changed in each step, and which held gradients."""

    def __init__(self):
        self.changed, self.with_grad = [], []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.layers = layer_map(model)

    def on_step_begin(self, args, state, control, **kwargs):
        self.before = [[p.detach().clone() for p in group] for group in self.layers.params]

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.with_grad.append(sorted(i for i, group in enumerate(self.layers.params)
                                     if any(p.grad is not None for p in group)))

    def on_step_end(self, args, state, control, **kwargs):
        self.changed.append(sorted(i for i, (old, group) in enumerate(zip(self.before, self.layers.params))
                                   if any(not torch.equal(o, p) for o, p in zip(old, group))))


def test_exactly_the_active_layers_change(tmp_path):
    watcher = WeightWatcher()
    callback, _, _ = train(tmp_path, "ir", steps=8, extra_callbacks=[watcher])
    actives = [record["active"] for record in callback.history]
    assert len(actives) == 8
    assert watcher.changed == actives  # momentum and weight decay move no frozen layer
    assert watcher.with_grad == actives  # frozen layers hold no gradient buffers
    assert len({tuple(a) for a in actives}) > 1  # the selection really moves


def test_log_lines_record_the_scores_the_rule_saw(tmp_path):
    callback, _, _ = train(tmp_path, "ir", steps=4)
    lines = [json.loads(line) for line in (tmp_path / "selection.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 1, 2, 3]
    assert all(len(line["scores"]) == N_LAYERS and line["active"] == sorted(line["active"]) for line in lines)
    # Step 1: layers untouched in step 0 still hold the sentinel, measured ones a real norm.
    step0, step1 = lines[0], lines[1]
    for layer in range(N_LAYERS):
        if layer in step0["active"]:
            assert 0 < step1["scores"][layer] < 1000
        else:
            assert step1["scores"][layer] == 1000


def test_same_seed_same_selections_and_losses(tmp_path):
    first, trainer_a, _ = train(tmp_path / "a", "ir", steps=5)
    second, trainer_b, _ = train(tmp_path / "b", "ir", steps=5)
    assert first.history == second.history
    losses = lambda t: [e["loss"] for e in t.state.log_history if "loss" in e]
    assert losses(trainer_a) == losses(trainer_b)


def test_scores_use_gradients_before_clipping(tmp_path):
    clipped, trainer, _ = train(tmp_path / "clip", "ir", steps=2, max_grad_norm=1e-6)
    free, _, _ = train(tmp_path / "free", "ir", steps=2, max_grad_norm=0.0)
    assert clipped.history[1]["scores"] == pytest.approx(free.history[1]["scores"], rel=1e-5)
    assert trainer.args.max_grad_norm == 1e-6  # the callback hands clipping back after the run


def test_interval_holds_the_set_between_selections(tmp_path):
    callback, _, _ = train(tmp_path, "ir", steps=7, interval=3)
    actives = [tuple(r["active"]) for r in callback.history]
    assert actives[0] == actives[1] == actives[2] and actives[3] == actives[4] == actives[5]


def test_fixed_with_every_layer_is_all(tmp_path):
    _, a, _ = train(tmp_path / "all", "all", steps=4)
    _, f, _ = train(tmp_path / "fixed", f"fixed:0-{N_LAYERS - 1}", steps=4)
    losses = lambda t: [e["loss"] for e in t.state.log_history if "loss" in e]
    assert losses(a) == losses(f)


def test_optimizer_missing_a_layer_is_refused(tmp_path):
    model = peft_model()
    partial = [p for n, p in model.named_parameters() if p.requires_grad and "layers.0." not in n]
    optimizer = torch.optim.AdamW(partial, lr=1e-3)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=Pairs(), optimizers=(optimizer, None),
                      callbacks=[LayerSelectionCallback("ir")])
    with pytest.raises(RevtuneError, match="not in the optimizer"):
        trainer.train()


def test_unknown_strategy_lists_valid_ones():
    with pytest.raises(RevtuneError, match="did you mean 'ir'.*valid: .*all.*fixed"):
        LayerSelectionCallback("iir")
