"""The YAML recipes shipped inside the package (``src/revtune/configs``, ``configs/`` in the repository).

A recipe is named by its path under that folder without ``.yaml`` (``cpu-quick``,
``ir-tuning/iterater-sent-llama-3.1-8b``); ``--config NAME`` accepts the name as well as a file.
Its first line is the command that runs it (and, for the GPU ones, says they need a GPU and the network).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass
class Recipe:
    name: str
    path: Path
    command: str
    description: str

    @property
    def needs_gpu(self) -> bool:
        return "needs a GPU" in self.command


def recipes_root() -> Path:
    return Path(str(resources.files("revtune") / "configs"))


def shipped_recipes() -> list[Recipe]:
    root = recipes_root()
    found = []
    for path in sorted(root.rglob("*.yaml")):
        lines = path.read_text().splitlines()
        comments = [line.lstrip("# ").rstrip() for line in lines if line.startswith("#")]
        found.append(Recipe(path.relative_to(root).with_suffix("").as_posix(), path,
                            comments[0] if comments else "", " ".join(comments[1:2])))
    return found


def find_recipe(name: str) -> Path | None:
    """The shipped file of a recipe name (``configs/`` prefix and ``.yaml`` suffix optional)."""
    name = name.removeprefix("configs/").removesuffix(".yaml")
    path = recipes_root() / f"{name}.yaml"
    return path if path.is_file() else None
