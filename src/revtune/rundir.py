"""Run directories, built under a temporary name and renamed into place only when complete.

A failed or interrupted run therefore never leaves a half-written directory where a user (or
``predict``/``compare``) would read it.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import RevtuneError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def permit(path, directory: bool = False) -> None:
    """The mode a plain ``open``/``mkdir`` would give: tempfile creates 0600 files and 0700 directories,
    which would hide a run from the user's group whatever their umask says."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def write_json(path: Path, data) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never a prefix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, default=_jsonable)
        handle.write("\n")
    permit(tmp)
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    permit(tmp)
    os.replace(tmp, path)


def write_jsonl(path: Path, rows) -> None:
    write_text(path, "".join(json.dumps(row, default=_jsonable) + "\n" for row in rows))


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def check_output(out: str | Path, overwrite: bool) -> Path:
    """Fail early, before any training, if the run directory cannot be created."""
    out = Path(out)
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise RevtuneError("output exists; pass --overwrite to replace it", path=out, field="out")
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RevtuneError(f"cannot create the output's parent directory: {exc.strerror}", path=parent,
                           field="out") from None
    if not os.access(parent, os.W_OK):
        raise RevtuneError("output directory is not writable", path=parent, field="out")
    return out


@contextmanager
def building(out: str | Path, overwrite: bool = False):
    """Yield a temporary sibling of ``out``; on success move it to ``out``, on failure delete it."""
    out = check_output(out, overwrite)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building-"))
    permit(tmp, directory=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for folder, _, files in os.walk(tmp):  # libraries (safetensors) write some files 0600
        for name in files:
            permit(os.path.join(folder, name))
    if out.exists():
        trash = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, trash)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)


def read_run(run: str | Path) -> tuple[Path, dict]:
    """A finished run directory and its resolved config; clear errors for anything else."""
    run = Path(run)
    config_path = run / "config.json"
    if not run.is_dir():
        raise RevtuneError("run directory not found", path=run, field="run")
    if not config_path.is_file():
        raise RevtuneError("not a revtune run directory (no config.json)", path=run, field="run")
    try:
        return run, json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise RevtuneError(f"invalid JSON: {exc.msg}", path=config_path, line=exc.lineno) from None
