"""Every shipped YAML config is valid against RunConfig and starts with the command that runs it."""
from pathlib import Path

import pytest

from revtune.config import RunConfig, load_yaml

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


def test_there_are_configs():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_valid_and_documented(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# revtune ") and f"--config configs/{path.name}" in first
    RunConfig.from_values(load_yaml(path), source=path)
