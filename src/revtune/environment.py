"""What produced an output: the command line and the software it ran on, for reports and model cards."""
from __future__ import annotations

import platform
import shlex
import sys
from datetime import datetime, timezone
from importlib import metadata

PACKAGES = ("revtune", "torch", "transformers", "peft", "accelerate", "datasets")
_command: str | None = None


def set_command(argv: list[str]) -> None:
    """Called once by the CLI with its arguments, so outputs record ``revtune ...`` as the user typed it."""
    global _command
    _command = shlex.join(["revtune", *argv])


def command() -> str:
    return _command or shlex.join([sys.executable, *sys.argv])


def environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    accelerator = None
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            accelerator = f"cuda x{torch.cuda.device_count()} ({torch.cuda.get_device_name(0)})"
    return {"command": command(), "python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "accelerator": accelerator or "none", "packages": versions,
            "written_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
