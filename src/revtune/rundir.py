"""Output directories and files: built aside, checked twice, renamed into place only when complete.

A failed or interrupted run never leaves a half-written directory where a user (or ``predict`` /
``compare``) would read it, and never deletes what it did not write:

- ``--overwrite`` replaces only a revtune output (a run, intention-tune, compare or card directory,
  recognised by its files); anything else, and the current directory or one holding it, is refused.
- The output is checked again at the final rename, so a directory someone created meanwhile is never
  replaced without ``--overwrite`` (the finished result is then kept beside it, and the error says where).
- A building directory carries its owner's pid and host; one whose owner is dead (SIGKILL, power loss)
  is removed by the next run into the same place.
- Directories and files get the permissions the user's umask allows (``mkdtemp``/``mkstemp`` alone give
  0700/0600), and a full or read-only disk is one line, not a traceback.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import RevtuneError

# A revtune output holds one of these pairs, and no top-level file outside OUTPUT_FILES.
OUTPUT_KINDS = (("config.json", "metrics.json"), ("intention.json", "metrics.json"),
                ("compare.json", "compare.md"), ("card.json", "card.md"))
OUTPUT_FILES = frozenset({"config.json", "metrics.json", "selection.jsonl", "trainable.txt", "selection.png",
                          "loss.png", "predictions.jsonl", "intention.json", "compare.json", "compare.md",
                          "config.yaml", "compare_metrics.png", "compare_loss.png", "compare_selection.png",
                          "card.json", "card.md", "card.png", "environment.json", "compare_stability.png",
                          "report.html"})
# A model directory that ``revtune export`` wrote (transformers' own file names) lists its files here.
EXPORT_RECORD = "revtune_export.json"
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EIO}
_HOST = re.sub(r"[^A-Za-z0-9.]", "", socket.gethostname())[:40] or "host"


def umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def disk_error(exc: OSError, path) -> RevtuneError:
    return RevtuneError(f"cannot write: {exc.strerror or exc}", path=path)


@contextmanager
def disk_errors(path):
    """Around libraries that write by themselves (safetensors under ``save_pretrained``): a full or
    read-only disk becomes one :class:`RevtuneError`. safetensors reports it as a ``SafetensorError``
    ("I/O error: No space left on device (os error 28)"), not an ``OSError``."""
    try:
        yield
    except OSError as exc:
        if exc.errno in DISK_ERRNOS:
            raise disk_error(exc, path) from None
        raise
    except Exception as exc:
        if type(exc).__name__ == "SafetensorError" and "I/O error: " in str(exc):
            raise RevtuneError(f"cannot write: {str(exc).split('I/O error: ', 1)[1]}", path=path) from None
        raise


# --- files --------------------------------------------------------------------------------------------

def write_bytes(path: Path, data: bytes) -> None:
    """Write atomically: a reader sees the old file or the new one, never a prefix; no temporary file
    survives a failure; the file gets the umask's permissions."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise disk_error(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, IsADirectoryError):
            raise RevtuneError("is a directory; give a file name", path=path, field="out") from None
        if isinstance(exc, OSError):
            raise disk_error(exc, path) from None
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8", "surrogatepass"))


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, default=_jsonable) + "\n")


def write_jsonl(path: Path, rows) -> None:
    write_text(path, "".join(json.dumps(row, default=_jsonable) + "\n" for row in rows))


@contextmanager
def atomic_path(path: Path):
    """A temporary sibling for a library that writes by file name (``savefig``), moved onto ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except OSError as exc:
        raise disk_error(exc, path) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def check_output_file(out: str | Path) -> Path:
    """An output file (predictions, revisions, scores): not a directory, its parent writable."""
    out = Path(out)
    if out.is_dir():
        raise RevtuneError("is a directory; give a file name", path=out, field="out")
    _check_parent(out)
    return out


# --- directories --------------------------------------------------------------------------------------

def is_revtune_output(folder: Path) -> bool:
    """Whether ``folder`` looks like something revtune wrote (and so ``--overwrite`` may replace)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    names = {entry.name for entry in entries}
    files = {entry.name for entry in entries if not entry.is_dir()}
    if EXPORT_RECORD in files:
        return files <= {EXPORT_RECORD, *_recorded_files(folder / EXPORT_RECORD)}
    return any(set(kind) <= names for kind in OUTPUT_KINDS) and files <= OUTPUT_FILES


def _recorded_files(record: Path) -> list[str]:
    """The files an export wrote, from its record; none when the record is not one."""
    try:
        files = json.loads(record.read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return []
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


def _holds_cwd(out: Path) -> bool:
    try:
        target, here = out.resolve(), Path.cwd().resolve()
    except OSError:
        return False
    return target == here or target in here.parents


def _check_parent(out: Path) -> Path:
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RevtuneError(f"cannot create the output's parent directory: {exc.strerror}", path=parent,
                           field="out") from None
    if not os.access(parent, os.W_OK):
        raise RevtuneError("output directory is not writable", path=parent, field="out")
    return parent


def check_output(out: str | Path, overwrite: bool) -> Path:
    """Fail early, before any training, if the output directory cannot be created or replaced."""
    out = Path(out)
    if _holds_cwd(out) or out.name in ("", ".", ".."):
        raise RevtuneError("is the current directory or holds it; give a new directory name", path=out,
                           field="out")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RevtuneError("exists and is not a directory; revtune replaces only its own output "
                           "directories", path=out, field="out")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RevtuneError("output exists; pass --overwrite to replace it", path=out, field="out")
        if not is_revtune_output(out):
            raise RevtuneError("is not a revtune output directory; --overwrite replaces only those, so "
                               "nothing was deleted", path=out, field="out")
    _check_parent(out)
    return out


def _owner_alive(name: str) -> bool:
    match = re.search(r"\.(?:building|old)-(\d+)@([A-Za-z0-9.]+)-", name + "-")
    return True if match is None else _alive(match.group(1), match.group(2))


def _alive(pid: str, host: str) -> bool:
    if host != _HOST:
        return True  # not ours to judge: another host's
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def remove_stale(out: Path) -> None:
    """Building (and half-swapped) directories of ``out`` left by a process that no longer exists."""
    parent = out.parent if str(out.parent) else Path(".")
    prefix = f".{out.name}."
    try:
        entries = [p for p in parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for entry in entries:
        rest = entry.name[len(prefix):]
        if rest.startswith(("building-", "old-")) and entry.is_dir() and not entry.is_symlink() \
                and not _owner_alive(entry.name):
            shutil.rmtree(entry, ignore_errors=True)


@contextmanager
def building(out: str | Path, overwrite: bool = False):
    """Yield a temporary sibling of ``out``; on success move it to ``out``, on failure delete it."""
    out = check_output(out, overwrite)
    remove_stale(out)
    owner = f"{os.getpid()}@{_HOST}"
    try:
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building-{owner}-"))
        os.chmod(tmp, 0o777 & ~umask())
    except OSError as exc:
        raise disk_error(exc, out.parent) from None
    try:
        yield tmp
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            raise disk_error(exc, out) from None
        raise
    _install(tmp, out, overwrite, owner)


def _install(tmp: Path, out: Path, overwrite: bool, owner: str) -> None:
    """The final rename, after checking ``out`` again: it may have appeared while ``tmp`` was built."""
    try:
        check_output(out, overwrite)
    except RevtuneError as exc:
        raise _keep(tmp, out, exc.message) from None
    mode = 0o666 & ~umask()
    for folder, _, files in os.walk(tmp):  # libraries (safetensors) write some files 0600
        for name in files:
            os.chmod(os.path.join(folder, name), mode)
    if out.exists():
        trash = out.with_name(f".{out.name}.old-{owner}")
        os.replace(out, trash)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
        return
    try:
        os.rename(tmp, out)  # refuses (ENOTEMPTY, ENOTDIR) anything created since the check
    except OSError as exc:
        raise _keep(tmp, out, f"appeared while building ({exc.strerror})") from None


def _keep(tmp: Path, out: Path, reason: str) -> RevtuneError:
    kept = out.with_name(f"{out.name}.new-{os.getpid()}")
    try:
        os.rename(tmp, kept)
    except OSError:
        kept = tmp
    return RevtuneError(f"{reason}; it was left untouched and this result is in {kept}", path=out,
                        field="out")


def partial_path(out: str | Path) -> Path:
    """Where an unfinished resumable run lives: ``OUT.partial`` beside ``OUT``."""
    out = Path(out)
    out = out if out.name else out.resolve()
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


OWNER_FILE = ".owner"  # inside OUT.partial: pid@host of the process building it, removed at the rename


def partial_owner(partial: Path) -> str | None:
    """``pid@host`` of the live process building ``partial``, or None (none recorded, or it is dead)."""
    try:
        owner = (partial / OWNER_FILE).read_text().strip()
    except OSError:
        return None
    pid, _, host = owner.partition("@")
    return owner if pid.isdigit() and _alive(pid, host) else None


def _check_partial(partial: Path, out: Path, resume: bool, overwrite: bool) -> None:
    """May this process take ``OUT.partial``? A live owner's is refused. A leftover whose recorded owner
    died (SIGKILL) with nothing worth resuming is removed; one with a checkpoint, or with no owner on
    record, is resumed, or replaced only with ``--overwrite``."""
    if partial.is_dir():
        owner = partial_owner(partial)
        if owner is not None:
            raise RevtuneError(f"another revtune process ({owner}) is building this run right now",
                               path=partial, field="out")
        if not resume:
            stale = (partial / OWNER_FILE).is_file() and not _resumable(partial)
            if not stale and not overwrite:
                raise RevtuneError(f"an interrupted run is kept here: --resume {out} continues it, "
                                   "--overwrite starts over", path=partial, field="out")
            shutil.rmtree(partial)
    elif partial.exists():
        raise RevtuneError("is in the way of this run's working directory (not a directory)", path=partial,
                           field="out")


@contextmanager
def building_resumable(out: str | Path, overwrite: bool = False, resume: bool = False):
    """Like :func:`building`, under the fixed name ``OUT.partial`` so ``--resume OUT`` finds it.

    A failure or interruption keeps ``OUT.partial`` once it holds a checkpoint (or, when resuming,
    always); before that it leaves nothing behind. ``OUT.partial`` records its owner, so a second process
    into the same place is refused while the first lives, and a SIGKILLed run's leftover without a
    checkpoint is cleared by the next run.
    """
    out = Path(out)
    if not resume:
        check_output(out, overwrite)  # first: it refuses '.', a file or a foreign folder in one line
    partial = partial_path(out)
    if resume:
        if (out / "config.json").is_file() and not partial.exists():
            raise RevtuneError("this run finished; there is nothing to resume", path=out, field="resume")
        if not partial.is_dir():
            raise RevtuneError("no interrupted run to resume (expected OUT.partial)", path=partial,
                               field="resume")
    _check_partial(partial, out, resume, overwrite)
    try:  # from here on a signal (Interrupted) may arrive at any line: the cleanup below covers them all
        if not resume:
            partial.mkdir()
        write_text(partial / OWNER_FILE, f"{os.getpid()}@{_HOST}\n")
        yield partial
    except BaseException:
        if not resume and partial.is_dir() and not _resumable(partial):
            shutil.rmtree(partial, ignore_errors=True)
        else:
            (partial / OWNER_FILE).unlink(missing_ok=True)
        raise
    (partial / OWNER_FILE).unlink(missing_ok=True)
    _install(partial, out, overwrite, f"{os.getpid()}@{_HOST}")


LEARNED = ("labels", "multi_label", "model_source", "n_layers", "base_model_name")


def learned_of(metrics: dict) -> dict:
    """What a run learned, from its ``metrics.json``."""
    learned = {key: metrics.get(key) for key in LEARNED}
    learned["threshold"] = (metrics.get("decision") or {}).get("threshold", 0.5)
    return learned


def run_record(config, learned: dict) -> dict:
    """A run's settings by flat name (``task``, ``model``, ``lora_r``...) with what it learned
    (``labels``, ``decision_threshold``...): the one flat view that model cards, exports and reports read."""
    record = config.flat()
    record.update({key: learned.get(key) for key in LEARNED})
    record["decision_threshold"] = learned.get("threshold", 0.5)
    return record


def read_run_record(run: str | Path) -> tuple[Path, dict]:
    """:func:`read_run` as one flat record (:func:`run_record`)."""
    path, config, learned = read_run(run)
    return path, run_record(config, learned)


def read_run(run: str | Path):
    """(path, config, learned) of a finished run directory: its resolved :class:`RunConfig` and what it
    learned (``labels``, ``multi_label``, ``threshold``, ``model_source``, ``n_layers``, and ``source``,
    the file that holds them), with clear errors for anything else. Run directories written before the
    config had parts (flat config.json holding the learned keys) read the same."""
    from .config import RunConfig, legacy_values
    from .jsonsafe import read_json_file

    run = Path(run)
    config_path = run / "config.json"
    if not run.is_dir():
        raise RevtuneError("run directory not found", path=run, field="run")
    if not config_path.is_file():
        raise RevtuneError("not a revtune run directory (no config.json)", path=run, field="run")
    saved = read_json_file(config_path)
    metrics_path = run / "metrics.json"
    metrics = read_json_file(metrics_path) if metrics_path.is_file() else {}
    if "data" in saved:
        learned = learned_of(metrics)
        learned["source"] = metrics_path
    else:
        learned = {key: saved.get(key) for key in LEARNED}
        learned["n_layers"] = saved.get("n_layers", metrics.get("n_layers"))
        learned["threshold"] = saved.get("decision_threshold", 0.5)
        learned["source"] = config_path
        saved = legacy_values(saved)
    if learned["multi_label"] is None:
        learned["multi_label"] = False
    return run, RunConfig.from_values(saved, source=config_path), learned
