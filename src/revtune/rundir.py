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
    if out.exists():
        trash = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, trash)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RevtuneError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from None


def read_run(run: str | Path):
    """(path, config, learned) of a finished run directory: its resolved :class:`RunConfig` and what it
    learned (``labels``, ``multi_label``, ``threshold``, ``model_source``), with clear errors for anything
    else. Run directories written before the config had parts (flat config.json holding the learned keys)
    read the same."""
    from .config import RunConfig, legacy_values

    run = Path(run)
    config_path = run / "config.json"
    if not run.is_dir():
        raise RevtuneError("run directory not found", path=run, field="run")
    if not config_path.is_file():
        raise RevtuneError("not a revtune run directory (no config.json)", path=run, field="run")
    saved = _read_json(config_path)
    metrics = _read_json(run / "metrics.json") if (run / "metrics.json").is_file() else {}
    if "data" in saved:
        learned = {key: metrics.get(key) for key in ("labels", "multi_label", "model_source")}
        learned["threshold"] = (metrics.get("decision") or {}).get("threshold", 0.5)
    else:
        learned = {key: saved.get(key) for key in ("labels", "multi_label", "model_source")}
        learned["threshold"] = saved.get("decision_threshold", 0.5)
        saved = legacy_values(saved)
    learned["multi_label"] = bool(learned["multi_label"])
    return run, RunConfig.from_values(saved, source=config_path), learned
