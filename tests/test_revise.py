"""The generation task: what the loss sees, how revisions are generated, and runs with every adapter."""
import json

import pytest
import torch

from revtune.config import RunConfig
from revtune.models import byte_tokenizer, load_model, prepare_tokenizer
from revtune.prompts import revise_prompt
from revtune.training.data import PadCollator
from revtune.config import DecodingConfig
from revtune.training.revise import IGNORE, clean_output, encode_example, revise_texts, token_budget

torch.set_num_threads(1)  # tiny models run ten times faster on one thread than on two busy ones

PAIRS = [("He go home.", "He goes home.", "fluency"), ("She are here.", "She is here.", "fluency"),
         ("It rain a lot.", "It rains a lot.", "fluency"), ("The thing is big.", "The house is big.", "clarity"),
         ("Do the stuff.", "Do the dishes.", "clarity"), ("We has two cats.", "We have two cats.", "fluency"),
         ("That was a thing.", "That was a storm.", "clarity"), ("They was late.", "They were late.", "fluency")]


def write_corpus(folder):
    """train / dev / test files of short sentences (the tiny model's byte tokens stay few)."""
    def rows(pairs):
        return "".join(json.dumps({"before_sent": b, "after_sent": a, "labels": i}) + "\n" for b, a, i in pairs)
    paths = {}
    for name, pairs in (("train", PAIRS), ("dev", PAIRS[:2] + PAIRS[3:4]), ("test", PAIRS[1:4])):
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text(rows(pairs))
    return paths


def tiny_config(folder, **overrides):
    paths = write_corpus(folder)
    values = dict(task="revise", model="tiny", tiny_layers=4, train=str(paths["train"]), dev=str(paths["dev"]),
                  test=str(paths["test"]), max_steps=3, batch_size=4, max_length=160, dev_generate=2,
                  new_tokens_factor=0.5, new_tokens_floor=4, out=str(folder / "run"), lora_r=4)
    values.update(overrides)
    return RunConfig.from_values(values)


def test_prompt_tokens_are_masked_and_eos_is_appended():
    tokenizer = byte_tokenizer()
    prompt = revise_prompt("He go home.", ["fluency"])
    row = encode_example(tokenizer, prompt, "He goes home.", max_length=512)
    n_prompt = len(tokenizer(prompt).input_ids)
    assert row["labels"][:n_prompt] == [IGNORE] * n_prompt
    assert row["labels"][n_prompt:] == row["input_ids"][n_prompt:]
    assert row["input_ids"][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(row["input_ids"][n_prompt:-1]) == " He goes home."


def test_long_response_loses_its_tail_and_a_prompt_that_cannot_fit_is_dropped():
    tokenizer = byte_tokenizer()
    prompt = revise_prompt("He go home.", ["fluency"])
    n_prompt = len(tokenizer(prompt).input_ids)
    row = encode_example(tokenizer, prompt, "He goes home.", max_length=n_prompt + 3)
    assert len(row["input_ids"]) == n_prompt + 3 and row["labels"][-3:] == row["input_ids"][-3:]
    assert encode_example(tokenizer, prompt, "x", max_length=n_prompt) is None


def test_training_batches_pad_on_the_right_with_ignored_labels():
    rows = [{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]}, {"input_ids": [5], "labels": [5]}]
    batch = PadCollator(0, "right", label_pad=IGNORE)(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [5, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_new_token_budget_follows_the_source_length_with_a_floor():
    decoding = DecodingConfig(factor=1.5, floor=4)
    assert [token_budget(decoding, n) for n in (10, 1, 0)] == [15, 4, 4]


def test_output_stops_where_a_new_prompt_section_starts():
    assert clean_output(" He goes home.\n### Instruction:\nRevise") == "He goes home."


@pytest.fixture(scope="module")
def tiny_lm():
    from revtune import adapters

    loaded = load_model("tiny", "revise", seed=3, tiny_layers=2)
    tokenizer = prepare_tokenizer(loaded.tokenizer, loaded.model)
    return adapters.attach(loaded.model, adapters.AdapterConfig(kind="lora", r=4), "revise"), tokenizer


def test_greedy_generation_is_deterministic_and_respects_each_budget(tiny_lm):
    model, tokenizer = tiny_lm
    sources, intents = ["He go home.", "A much longer sentence to revise here."], [["fluency"], ["clarity"]]
    decoding = DecodingConfig(factor=0.5, floor=3)
    first = revise_texts(model, tokenizer, sources, intents, decoding, batch_size=2)
    assert first == revise_texts(model, tokenizer, sources, intents, decoding, batch_size=2)
    for source, text in zip(sources, first):
        assert len(tokenizer(text, add_special_tokens=False).input_ids) <= token_budget(decoding, len(source))


def test_sampling_is_reproducible_with_its_seed(tiny_lm):
    model, tokenizer = tiny_lm
    decoding = DecodingConfig(mode="sample", factor=1.0, floor=8)
    texts = [revise_texts(model, tokenizer, ["He go home."], [["fluency"]], decoding, seed=5) for _ in range(2)]
    assert texts[0] == texts[1]


@pytest.mark.parametrize("adapter, select", [("lora", "ir"), ("dora", "random:2"), ("bottleneck", "all"),
                                             ("none", "full")])
def test_a_revise_run_with_each_adapter_writes_scored_predictions(tmp_path, adapter, select):
    from revtune.training.run import train_run

    result = train_run(tiny_config(tmp_path, adapter=adapter, select=select), quiet=True)
    test = result.metrics["test"]
    assert {"sari", "gleu", "update_r", "rouge1", "rouge2", "exact_match", "copy_rate"} <= set(test)
    assert test["n"] == 3 and "sari" in result.metrics["best_dev"]
    rows = [json.loads(line) for line in (result.path / "predictions.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == [b for b, _, _ in PAIRS[1:4]]
    assert set(rows[0]) == {"source", "prediction", "references", "intents"}
    from revtune import stats
    from revtune.aggregate import item_table

    _, table = item_table(result.path, "revise")  # what compare's intervals and paired tests read
    for name, metric in stats.GENERATION.items():
        assert stats.score(table, metric) == pytest.approx(test[name]), name


def test_a_saved_revise_run_generates_what_it_scored(tmp_path):
    """Save/load symmetry: the reloaded run reproduces predictions.jsonl (greedy)."""
    from revtune.predict import load_run_model
    from revtune.training.run import train_run

    result = train_run(tiny_config(tmp_path, select="ir"), quiet=True)
    rows = [json.loads(line) for line in (result.path / "predictions.jsonl").read_text().splitlines()]
    model, tokenizer, config, _ = load_run_model(result.path, "revise", "cpu")
    again = revise_texts(model, tokenizer, [r["source"] for r in rows], [r["intents"] for r in rows],
                         config.decoding, config.training.batch_size, config.training.seed)
    assert again == [r["prediction"] for r in rows]


def test_dev_loss_only_selects_on_minus_the_loss(tmp_path):
    from revtune.training.run import train_run

    metrics = train_run(tiny_config(tmp_path, dev_generate=0, select="all"), quiet=True).metrics
    assert "sari" not in metrics["best_dev"] and metrics["best_dev"]["neg_loss"] == -metrics["best_dev"]["loss"]


def test_a_bottleneck_ir_run_saves_every_layer(tmp_path):
    from safetensors.torch import load_file

    from revtune.training.run import train_run

    result = train_run(tiny_config(tmp_path, adapter="bottleneck", select="ir"), quiet=True)
    saved = load_file(str(result.path / "adapter" / "bottleneck.safetensors"))
    assert {int(name.split(".")[2]) for name in saved} == set(range(4))
