"""The composed run config: flat and nested keys, strategy options, the generated flags, re-runs."""
import json
import subprocess
import sys

import pytest
import yaml
from conftest import run_cli, tiny_args

from revtune.config import FLAT, PARTS, RunConfig, load_yaml
from revtune.errors import RevtuneError
from revtune.knobs import cli_fields, flat_name
from revtune.selection.options import IrOptions, RandomOptions
from revtune.selection.registry import STRATEGIES, option_flags, parse_spec


def test_flat_and_nested_keys_are_the_same_setting(tmp_path):
    flat = RunConfig.from_values({"lora_r": 8, "split_num": 2, "model": "tiny", "decoding": "beam"})
    nested = RunConfig.from_values({"adapter": {"r": 8}, "selection": {"split_num": 2}, "model": {"name": "tiny"},
                                    "decoding": {"mode": "beam"}})
    assert flat == nested
    assert flat.adapter.r == 8 and flat.selection.options.split_num == 2 and flat.decoding.mode == "beam"
    assert RunConfig.from_values(flat.to_dict()) == flat


def test_the_flat_table_is_generated_from_the_parts():
    expected = {flat_name(f) for cls in PARTS.values() for f in cli_fields(cls)}
    assert set(FLAT) == expected and len(expected) == sum(len(cli_fields(c)) for c in PARTS.values())
    assert FLAT["lora_r"][0] == "adapter" and FLAT["lora_r"][1].name == "r"
    assert FLAT["model"][0] == "model" and FLAT["new_tokens_floor"][1].name == "floor"


@pytest.mark.parametrize("values, message", [
    ({"split_num": 3}, "valid: 1, 2"),
    ({"select": "random", "split_num": 2}, "it applies to ir, weight, cosine, frequency"),
    ({"select": "random:3", "random_k": 2}, "already sets k to 3"),
    ({"lora_rr": 2}, "did you mean 'lora_r'"),
    ({"adapter": {"rank": 2}}, "unknown key in adapter"),
    ({"ist_probe": 0}, "it applies to ist"),
    ({"select": "ist", "ist_probe": 0}, "expected 0 < value <= 1"),
    ({"select": "card:x", "objective": "speed"}, "unknown objective"),
    ({"max_steps": "many"}, "expected int"),
])
def test_bad_values_are_refused_when_the_config_is_built(values, message):
    with pytest.raises(RevtuneError, match=message):
        RunConfig.from_values(values)


def test_a_yaml_error_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("selection:\n  select: lisa\n  split_num: 2\n")
    with pytest.raises(RevtuneError, match=r"run.yaml: field 'split_num'.*applies to ir"):
        RunConfig.from_values(load_yaml(path), source=path)


def test_spec_flags_and_keywords_fill_one_options_dataclass():
    assert parse_spec("lisa:3:5:frozen-embeddings") == parse_spec("lisa", {"lisa_gamma": 3, "lisa_period": 5,
                                                                          "lisa_frozen_embeddings": True})
    assert parse_spec("random", {"k": 3}).spec() == "random:3" == RandomOptions(k=3).spec()
    assert parse_spec("ist", {"ist_every": 2}).every == 2


def test_callback_takes_a_spec_with_options_or_an_options_dataclass():
    from revtune.selection.callback import LayerSelectionCallback

    by_keywords = LayerSelectionCallback("ir", split_num=2, aggregation="l2")
    by_options = LayerSelectionCallback(IrOptions(split_num=2, aggregation="l2"))
    for callback in (by_keywords, by_options):
        assert callback.strategy.rule.split.split_num == 2 and callback.strategy.signal.aggregation == "l2"
    with pytest.raises(RevtuneError, match="not an option of strategy 'random'"):
        LayerSelectionCallback("random", split_num=2)


def test_every_strategy_option_has_one_flag():
    for flat, users in option_flags().items():
        assert flat not in FLAT, flat
        assert len({id(f) for _, f in users}) == 1 or len({(f.name, f.default) for _, f in users}) == 1


def test_the_selection_core_imports_no_command_code():
    code = ("import sys, revtune.selection.callback as c; c.LayerSelectionCallback('ir', split_num=2); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('revtune'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "revtune.selection.strategies" in loaded
    heavy = [m for m in loaded if m.startswith(("revtune.layercard", "revtune.training", "revtune.compare",
                                                "revtune.intention"))]
    assert heavy == []


def test_help_shows_every_strategy_and_each_flags_default():
    result = run_cli("train", "--help")
    text, packed = " ".join(result.stdout.split()), "".join(result.stdout.split())  # argparse wraps lines
    for name, cls in STRATEGIES.items():
        assert "".join(f"{name}: {cls.help}".split()) in packed, name
    for flag in ("--lora-r", "--split-num", "--ist-every", "--decoding", "--random-k"):
        assert flag in text
    assert "(default: 32)" in text and "choices: greedy, beam, sample" in text and "choices: 1, 2" in text


@pytest.mark.parametrize("flags, message", [
    (("--split-num", "3"), "split_num"),
    (("--select", "random", "--split-num", "2"), "applies to ir, weight, cosine, frequency"),
])
def test_a_bad_strategy_option_is_one_line_and_exit_2(corpus, tmp_path, flags, message):
    result = run_cli("train", *tiny_args(corpus, tmp_path / "run", *flags))
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("select", ["ir", "random:3"])
def test_config_json_re_runs_the_run(corpus, tmp_path, select):
    first, again = tmp_path / "first", tmp_path / "again"
    assert run_cli("train", *tiny_args(corpus, first, "--select", select, "--split-num" if select == "ir" else
                                       "--random-k", "2" if select == "ir" else "3")).returncode == 0
    saved = json.loads((first / "config.json").read_text())
    assert set(saved) == set(PARTS)
    result = run_cli("train", "--config", first / "config.json", "--out", again)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (again / "selection.jsonl").read_bytes() == (first / "selection.jsonl").read_bytes()
    assert json.loads((again / "config.json").read_text())["selection"] == saved["selection"]
    metrics = json.loads((first / "metrics.json").read_text())
    assert metrics["labels"] and metrics["layer_sizes"] and metrics["model_source"]


def test_lisa_frozen_embeddings_shows_in_trainable_txt(corpus, tmp_path):
    out = tmp_path / "lisa"
    result = run_cli("train", *tiny_args(corpus, out, "--select", "lisa:2:20:frozen-embeddings", "--max-steps", "1"))
    assert result.returncode == 0, result.stderr[-2000:]
    table = (out / "trainable.txt").read_text()
    assert "embed_tokens" not in table and "score" in table
    plain = tmp_path / "plain"
    assert run_cli("train", *tiny_args(corpus, plain, "--select", "lisa", "--max-steps", "1")).returncode == 0
    assert "embed_tokens" in (plain / "trainable.txt").read_text()


def test_demo_honours_its_yaml(corpus, tmp_path):
    config = tmp_path / "demo.yaml"
    out = tmp_path / "demo"
    config.write_text(yaml.safe_dump({"model": "tiny", "train": str(corpus["train"]), "dev": str(corpus["dev"]),
                                      "test": str(corpus["test"]), "max_steps": 2, "batch_size": 3,
                                      "max_length": 64, "lora_r": 2, "out": str(out)}))
    result = run_cli("demo", "--config", config, "--select", "ir,random:2")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((out / "compare.json").read_text())
    assert [r["strategy"] for r in rows] == ["ir", "random:2"] and all(r["steps"] == 2 for r in rows)
    shared = RunConfig.from_values(yaml.safe_load((out / "config.yaml").read_text()))
    assert shared.training.batch_size == 3 and shared.adapter.r == 2


def test_a_run_directory_from_before_the_parts_still_reads(tmp_path):
    from revtune.rundir import read_run

    old = {"task": "intent", "model": "tiny", "select": "random:3", "split_num": 1, "lora_r": 4, "seed": 3,
           "max_steps": 4, "out": str(tmp_path), "labels": ["a", "b"], "multi_label": False, "adapter": "lora",
           "model_source": "random tiny Llama", "decision_threshold": 0.5, "objective": "quality", "budget": "",
           "ir_window": [0.35, 0.65]}
    (tmp_path / "config.json").write_text(json.dumps(old))
    _, config, learned = read_run(tmp_path)
    assert (config.model.name, config.adapter.r, config.adapter.kind, config.training.seed) == ("tiny", 4, "lora", 3)
    assert config.selection.select == "random:3" and config.selection.options.k == 3
    assert {k: learned[k] for k in ("labels", "multi_label", "model_source", "threshold")} == \
        {"labels": ["a", "b"], "multi_label": False, "model_source": "random tiny Llama", "threshold": 0.5}
