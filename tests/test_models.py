"""Decoder blocks found by structure, and every adapter attached, on tiny random models of each family."""
import json
import pytest
import torch
import transformers
from torch import nn

from revtune import adapters
from revtune.errors import RevtuneError
from revtune.models import decoder_blocks, load_model, publish_conversion

SMALL = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0)
FAMILIES = {
    "llama": (transformers.LlamaConfig, {}),
    "mistral": (transformers.MistralConfig, {}),
    "qwen2": (transformers.Qwen2Config, {}),
    "qwen3": (transformers.Qwen3Config, {"head_dim": 8}),
    "gemma": (transformers.GemmaConfig, {"head_dim": 8}),
    "phi": (transformers.PhiConfig, {}),
    "phi3": (transformers.Phi3Config, {}),
    "mixtral": (transformers.MixtralConfig, {"num_local_experts": 4, "num_experts_per_tok": 2}),
    "gpt2": (transformers.GPT2Config, {"n_embd": 32, "n_layer": 3, "n_head": 4, "n_positions": 64}),
    "gpt_neox": (transformers.GPTNeoXConfig, {}),
}


def build(family: str, head=transformers.AutoModelForSequenceClassification):
    config_class, extra = FAMILIES[family]
    settings = {**SMALL, **extra}
    if family == "gpt2":
        settings = {k: v for k, v in settings.items() if k in ("vocab_size", "pad_token_id")} | extra
    config = config_class(**settings, num_labels=3)
    torch.manual_seed(0)
    return head.from_config(config)


@pytest.mark.parametrize("family", FAMILIES)
def test_blocks_found_by_structure(family):
    model = build(family)
    blocks = decoder_blocks(model)
    assert len(blocks) == 3
    # The winning list is the one of whole blocks: its entries hold attention and MLP parameters.
    assert sum(p.numel() for p in blocks.parameters()) > 0.3 * sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["lora", "dora", "bottleneck", "none"])
def test_every_adapter_on_every_family(family, kind):
    model = adapters.attach(build(family), adapters.AdapterConfig(kind=kind, r=2, alpha=4, bottleneck_dim=4),
                            "intent")
    layers = adapters.layer_map(model)
    assert layers.n_layers == 3 and all(layers.params)
    assert any("score" in name for name in layers.outside_names)  # the head trains by default
    sizes = layers.layer_sizes()
    assert len(set(sizes)) == 1  # identical blocks get identical adapters
    ids = torch.randint(1, 100, (2, 7))
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    logits.sum().backward()
    assert all(p.grad is not None for p in layers.params[0])


def test_frozen_head_and_new_adapter_are_identity():
    base = build("llama")
    reference = base(input_ids=torch.tensor([[5, 6, 7]])).logits.detach().clone()
    model = adapters.attach(base, adapters.AdapterConfig(kind="bottleneck", bottleneck_dim=4, freeze_head=True),
                            "intent")
    layers = adapters.layer_map(model)
    assert layers.outside == []
    assert torch.allclose(model(input_ids=torch.tensor([[5, 6, 7]])).logits, reference, atol=1e-6)


def test_unknown_target_module_is_an_error_listing_valid_ones():
    with pytest.raises(RevtuneError, match="did you mean 'q_proj'.*valid: .*down_proj"):
        adapters.attach(build("llama"), adapters.AdapterConfig(targets=("q_prj",)), "intent")


def test_unknown_adapter_kind():
    with pytest.raises(RevtuneError, match="unknown adapter 'lorra'.*did you mean 'lora'"):
        adapters.AdapterConfig(kind="lorra")


@pytest.mark.parametrize("spec, message", [
    ("no/such/model/here", "unknown model"), ("missing.gguf", "GGUF file not found"),
])
def test_bad_model_specs(spec, message):
    with pytest.raises(RevtuneError, match=message):
        load_model(spec, "intent", labels=["a", "b"])


def test_tiny_model_is_seeded_and_layered():
    first = load_model("tiny", "intent", labels=["a", "b"], seed=4, tiny_layers=9)
    second = load_model("tiny", "intent", labels=["a", "b"], seed=4, tiny_layers=9)
    assert len(decoder_blocks(first.model)) == 9
    for (name, a), (_, b) in zip(first.model.named_parameters(), second.model.named_parameters()):
        assert torch.equal(a, b), name
    ids = first.tokenizer("Their is a error.")["input_ids"]
    assert first.tokenizer.decode(ids) == "Their is a error."


def test_trainable_table_counts_are_true_counts():
    model = adapters.attach(build("llama"), adapters.AdapterConfig(r=2, alpha=4), "intent")
    layers = adapters.layer_map(model)
    table = adapters.format_trainable_table(layers)
    expected = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert f"{expected:,}" in table.splitlines()[-1]
    # q: 32->32, k: 32->16, v: 32->16, up: 32->64, down: 64->32 ; LoRA r=2 adds r*(in+out) each
    per_layer = 2 * ((32 + 32) + (32 + 16) + (32 + 16) + (32 + 64) + (64 + 32))
    assert layers.layer_sizes() == [per_layer] * 3


def test_a_conversion_that_loses_the_race_uses_the_winners_copy(tmp_path):
    target, mine = tmp_path / "model", tmp_path / "model.tmp2"
    target.mkdir()
    (target / "config.json").write_text('{"winner": true}')
    mine.mkdir()
    (mine / "config.json").write_text('{"winner": false}')
    assert publish_conversion(mine, target) == target
    assert json.loads((target / "config.json").read_text()) == {"winner": True}
    assert not mine.exists()


def test_a_conversion_blocked_by_an_unfinished_copy_still_fails(tmp_path):
    target, mine = tmp_path / "model", tmp_path / "model.tmp2"
    (target / "half").mkdir(parents=True)
    mine.mkdir()
    (mine / "config.json").write_text("{}")
    with pytest.raises(OSError):
        publish_conversion(mine, target)
    assert (mine / "config.json").exists()
