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


def write_json(path: Path, data) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never a prefix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, default=_jsonable)
        handle.write("\n")
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
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
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _move_into_place(tmp, out)


def _move_into_place(tmp: Path, out: Path) -> None:
    if out.exists():
        trash = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, trash)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)


def partial_path(out: str | Path) -> Path:
    """Where an unfinished resumable run lives: ``OUT.partial`` beside ``OUT``."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


STARTED_CONFIG = "config.json"  # inside OUT.partial/checkpoints/: the config the run was started with


def read_started_config(out: str | Path) -> dict:
    """The config an unfinished run ``out`` was started with (``OUT.partial/checkpoints/config.json``)."""
    path = partial_path(out) / "checkpoints" / STARTED_CONFIG
    if not path.is_file():
        if (Path(out) / "config.json").is_file():
            raise RevtuneError("this run finished; there is nothing to resume", path=out, field="resume")
        raise RevtuneError("no interrupted run to resume here (expected OUT.partial/checkpoints)",
                           path=partial_path(out), field="resume")
    return json.loads(path.read_text())


def _resumable(folder: Path) -> bool:
    """Worth keeping after a failure: a complete checkpoint, or a finished sub-run (intention-tune)."""
    return any(folder.rglob("checkpoint-*/trainer_state.json")) or any(
        (child / "metrics.json").is_file() for child in folder.iterdir() if child.is_dir())


@contextmanager
def building_resumable(out: str | Path, overwrite: bool = False, resume: bool = False):
    """Like :func:`building`, under the fixed name ``OUT.partial`` so ``--resume OUT`` finds it.

    A failure or interruption keeps ``OUT.partial`` once it holds a checkpoint (or, when resuming,
    always); before that it leaves nothing behind. A fresh run refuses to start over an existing
    ``OUT.partial`` unless ``overwrite``.
    """
    out, partial = Path(out), partial_path(out)
    if resume:
        if (out / "config.json").is_file() and not partial.exists():
            raise RevtuneError("this run finished; there is nothing to resume", path=out, field="resume")
        if not partial.is_dir():
            raise RevtuneError("no interrupted run to resume (expected OUT.partial)", path=partial,
                               field="resume")
    else:
        check_output(out, overwrite)
        if partial.exists():
            if not overwrite:
                raise RevtuneError(f"an interrupted run is kept here: --resume {out} continues it, "
                                   "--overwrite starts over", path=partial, field="out")
            shutil.rmtree(partial)
        partial.mkdir()
    try:
        yield partial
    except BaseException:
        if not resume and not _resumable(partial):
            shutil.rmtree(partial, ignore_errors=True)
        raise
    _move_into_place(partial, out)


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
