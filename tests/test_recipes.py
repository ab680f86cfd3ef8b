"""Shipped recipes: every YAML valid and documented by its first line, the CPU ones run (tiny model), the
GPU ones say so; `revtune config show|list`; and a built wheel ships the recipes."""
import json
import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import run_cli

from revtune.config import RunConfig, load_yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "src" / "revtune" / "configs"
ALL = sorted(RECIPES.rglob("*.yaml"))
CPU = [p for p in ALL if "needs a GPU" not in p.read_text().splitlines()[0]]
TINY = ["--model", "tiny", "--max-steps", "2", "--batch-size", "4", "--max-length", "160", "--lora-r", "4",
        "--lora-alpha", "8", "--eval-every", "2", "--dev-generate", "2", "--new-tokens-floor", "4",
        "--new-tokens-factor", "0.5", "--overwrite"]


def relative(path: Path) -> str:
    return path.relative_to(RECIPES).as_posix()


def test_the_papers_settings_are_there():
    names = {relative(p) for p in ALL}
    for corpus in ("iterater-sent", "iterater-doc", "argrevision"):
        for model in ("llama-3.1-8b", "mistral-7b", "qwen2.5-7b"):
            assert f"ir-tuning/{corpus}-{model}.yaml" in names
    assert {f"intention-tuning/iterater-{m}.yaml" for m in ("llama-3.1-8b", "mistral-7b", "qwen2.5-7b")} <= names
    assert len(CPU) >= 4 and (ROOT / "configs").resolve() == RECIPES  # configs/ in the repository is the same folder


@pytest.mark.parametrize("path", ALL, ids=relative)
def test_recipe_is_valid_and_its_first_line_runs_it(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and f"--config configs/{relative(path)}" in first
    assert "revtune " in first
    values = load_yaml(path)
    several = first.split("revtune ", 1)[1].startswith(("compare", "demo"))  # select: a comma list of specs
    RunConfig.from_values({k: v for k, v in values.items() if not (several and k == "select")}, source=path)
    if "/" in values.get("model", "smollm2"):  # a hub id: the first line says what it needs
        assert first.startswith("# needs a GPU and the network")
        assert values.get("dtype") == "bfloat16"


@pytest.mark.parametrize("path", CPU, ids=relative)
def test_cpu_recipe_runs(path, corpus, tmp_path):
    command = shlex.split(path.read_text().splitlines()[0].split("revtune ", 1)[1])
    subcommand = command[0]
    data = ["--train", corpus["train"], "--dev", corpus["dev"], "--test", corpus["test"]]
    result = run_cli(subcommand, "--config", path, *data, *TINY, "--out", tmp_path / "out", "--json",
                     timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert Path(summary.get("run") or summary.get("output") or summary.get("compare")) == tmp_path / "out"
    assert (tmp_path / "out" / "report.html").is_file()


def test_config_show_prints_every_field_resolved(tmp_path):
    result = run_cli("config", "show", "--config", "cpu-quick", "--max-steps", "7")
    assert result.returncode == 0, result.stderr
    import yaml

    nested = yaml.safe_load(result.stdout)
    assert set(nested) == {f for f in RunConfig.__dataclass_fields__}  # the parts, each with every field
    shown = RunConfig.from_values(nested).flat()
    assert shown["max_steps"] == 7 and shown["batch_size"] == 8 and shown["lora_r"] == 32  # flag, recipe, default
    assert result.stdout.strip().splitlines()[-1].startswith("# revtune config:")


def test_config_show_refuses_a_bad_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_stpes: 3\n")
    result = run_cli("config", "show", "--config", bad)
    assert result.returncode == 2 and "max_stpes" in result.stderr and "max_steps" in result.stderr


def test_config_list_names_every_shipped_recipe():
    result = run_cli("config", "list", "--json")
    assert result.returncode == 0, result.stderr
    listed = {r["name"] for r in json.loads(result.stdout)["recipes"]}
    assert listed == {relative(p)[:-5] for p in ALL}


def test_a_built_wheel_ships_the_recipes(tmp_path):
    """The wheel holds every recipe, and `revtune config list` run from the installed wheel lists them."""
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("revtune-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"revtune/configs/{relative(p)}" for p in ALL} <= set(names)
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    listed = subprocess.run([sys.executable, "-m", "revtune.cli", "config", "list", "--json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env=env)
    assert listed.returncode == 0, listed.stderr
    recipes = json.loads(listed.stdout)["recipes"]
    assert len(recipes) == len(ALL) and all(r["path"].startswith(str(target)) for r in recipes)
