"""Output directories and files under hostile conditions, through real `revtune` subprocesses: what
--overwrite may delete, a directory appearing mid-run, SIGTERM/SIGKILL leftovers, compare's child,
full and read-only disks, umask permissions."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli, tiny_args

HOST = "".join(c for c in socket.gethostname() if c.isalnum() or c == ".")[:40] or "host"


def one_line_error(result, *needles):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, last
    return last


def popen_cli(*args, cwd=None):
    return subprocess.Popen([sys.executable, "-m", "revtune.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})


def wait_for(predicate, timeout=240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


@pytest.fixture(scope="module")
def run_dir(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile-out") / "run"
    result = run_cli("train", *tiny_args(corpus, out, "--max-steps", "2"))
    assert result.returncode == 0, result.stderr
    return out


# --- what --overwrite may delete --------------------------------------------------------------------

@pytest.mark.parametrize("contents", [{"thesis.txt": "years of work"},
                                      {"thesis.txt": "x", "config.json": "{}", "metrics.json": "{}"}])
def test_overwrite_refuses_a_directory_that_is_not_a_revtune_output(tmp_path, corpus, contents):
    folder = tmp_path / "thesis"
    folder.mkdir()
    for name, text in contents.items():
        (folder / name).write_text(text)
    result = run_cli("train", *tiny_args(corpus, folder, "--overwrite"))
    one_line_error(result, "not a revtune output directory", "nothing was deleted")
    assert {p.name: p.read_text() for p in folder.iterdir()} == contents


def test_overwrite_refuses_a_file_and_the_current_directory(tmp_path, corpus, run_dir):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    one_line_error(run_cli("train", *tiny_args(corpus, blocker, "--overwrite")), "not a directory")
    assert blocker.read_text() == "keep me" and not list(tmp_path.glob(".notes.txt.*"))
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    here = subprocess.run([sys.executable, "-m", "revtune.cli", "train", *tiny_args(corpus, ".", "--overwrite")],
                          capture_output=True, text=True, cwd=copy, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    one_line_error(here, "current directory")
    assert (copy / "config.json").is_file() and not [p for p in tmp_path.iterdir() if ".building-" in p.name]


def test_overwriting_a_run_leaves_no_old_copy_and_keeps_the_umask_permissions(tmp_path, corpus, run_dir):
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    result = run_cli("train", *tiny_args(corpus, out, "--max-steps", "1", "--overwrite"))
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    mask = os.umask(0)
    os.umask(mask)
    assert (out.stat().st_mode & 0o777) == 0o777 & ~mask
    assert ((out / "config.json").stat().st_mode & 0o777) == 0o666 & ~mask


# --- the output checked again at the final rename -----------------------------------------------------

def test_an_output_created_while_building_is_not_replaced(tmp_path, corpus):
    out = tmp_path / "run"
    child = popen_cli("train", *tiny_args(corpus, out, "--max-steps", "30"))
    wait_for(lambda: list(tmp_path.glob("run.partial/selection.jsonl")))
    out.mkdir()
    (out / "mine.txt").write_text("created meanwhile")
    stdout, stderr = child.communicate(timeout=600)
    result = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    line = one_line_error(result, "left untouched", "run.new-")
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("run.new-")]
    assert len(kept) == 1 and (kept[0] / "metrics.json").is_file() and str(kept[0].name) in line


# --- signals ------------------------------------------------------------------------------------------

def test_sigterm_keeps_a_resumable_checkpoint_and_no_half_written_run(tmp_path, corpus):
    """SIGTERM mid-training (issue 11): the step finishes, a checkpoint is written under OUT.partial,
    exit 143 with the resume command; OUT itself never appears half-written."""
    out = tmp_path / "run"
    child = popen_cli("train", *tiny_args(corpus, out, "--max-steps", "400"))
    wait_for(lambda: list(tmp_path.glob("run.partial/selection.jsonl")))
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 143, stderr[-2000:]
    assert "--resume" in stderr and "Traceback" not in stderr
    assert not out.exists() and list((tmp_path / "run.partial" / "checkpoints").glob("checkpoint-*"))


def test_sigkill_leftovers_are_removed_by_the_next_run_but_a_live_owners_are_kept(tmp_path, corpus):
    out = tmp_path / "run"
    child = popen_cli("train", *tiny_args(corpus, out, "--max-steps", "400"))
    wait_for(lambda: list(tmp_path.glob("run.partial/selection.jsonl")))
    child.kill()
    child.communicate()
    assert [p.name for p in tmp_path.iterdir()] == ["run.partial"]  # what SIGKILL leaves: no checkpoint
    result = run_cli("train", *tiny_args(corpus, out, "--max-steps", "1"))
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["run"] and not (out / ".owner").exists()

    other = tmp_path / "other"
    live = tmp_path / "other.partial"
    live.mkdir()
    (live / ".owner").write_text(f"{os.getpid()}@{HOST}\n")  # this test process: alive
    (live / "work.txt").write_text("in progress")
    line = one_line_error(run_cli("train", *tiny_args(corpus, other, "--max-steps", "1")),
                          "another revtune process", str(os.getpid()))
    assert "other.partial" in line and (live / "work.txt").read_text() == "in progress"
    assert not other.exists()


def test_sigterm_to_compare_stops_its_training_child(tmp_path, corpus):
    out = tmp_path / "cmp"
    child = popen_cli("compare", *tiny_args(corpus, out, "--max-steps", "400"), "--select", "all,ir")
    grandchild = wait_for(lambda: list(tmp_path.glob(".cmp.building-*/all.partial/selection.jsonl")))
    pid = int((grandchild[0].parent / ".owner").read_text().split("@")[0])
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 143, stderr[-2000:]
    with pytest.raises(ProcessLookupError):
        for _ in range(100):  # the training child exits within the grace period
            os.kill(pid, 0)
            time.sleep(0.1)
    assert list(tmp_path.iterdir()) == []


# --- output files -------------------------------------------------------------------------------------

def test_predict_into_a_directory_is_one_line_and_leaves_no_temporary(tmp_path, corpus, run_dir):
    target = tmp_path / "outdir"
    target.mkdir()
    result = run_cli("predict", "--run", run_dir, "--input", corpus["test"], "--out", target)
    one_line_error(result, "is a directory")
    assert [p.name for p in tmp_path.iterdir()] == ["outdir"] and not list(target.iterdir())


def test_score_out_is_written_atomically_with_the_umask(tmp_path):
    src = tmp_path / "src.jsonl"
    src.write_text('{"text": "a b c."}\n')
    out = tmp_path / "scores.json"
    out.write_text("previous")
    bad = run_cli("score", "--src", src, "--pred", tmp_path / "missing.jsonl", "--ref", src, "--out", out)
    one_line_error(bad, "missing.jsonl")
    assert out.read_text() == "previous"
    good = run_cli("score", "--src", src, "--pred", src, "--ref", src, "--out", out)
    assert good.returncode == 0, good.stderr
    assert json.loads(out.read_text())["exact_match"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.json", "src.jsonl"]


# --- full and read-only disks (a real tmpfs in a private mount namespace; needs root and unshare) -----

def _unshare_mount_works() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(not _unshare_mount_works(), reason="needs root and unshare -m")


def _in_mount_namespace(mount: Path, options: str, *command: str, ro: bool = False):
    mount.mkdir()
    script = f'mount -t tmpfs -o {options} tmpfs "{mount}" && ' + (f'mount -o remount,ro "{mount}" && ' if ro else "")
    script += 'exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *command], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=600)


@needs_mounts
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, corpus):
    mount = tmp_path / "small"
    script = ("import subprocess, sys, os; r = subprocess.run([sys.executable, '-m', 'revtune.cli', 'train'] + "
              "sys.argv[2:]); print('LEFT', os.listdir(sys.argv[1]), file=sys.stderr); sys.exit(r.returncode)")
    result = _in_mount_namespace(mount, "size=160k", sys.executable, "-c", script, str(mount),
                                 *tiny_args(corpus, mount / "run", "--max-steps", "1"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert "No space left on device" in lines[-2] and "error:" in lines[-2]
    assert lines[-1] == "LEFT []"


@needs_mounts
def test_a_read_only_disk_is_one_line(tmp_path):
    src = tmp_path / "src.jsonl"
    src.write_text('{"text": "a b c."}\n')
    mount = tmp_path / "ro"
    result = _in_mount_namespace(mount, "size=1m", sys.executable, "-m", "revtune.cli", "score", "--src", str(src),
                                 "--pred", str(src), "--ref", str(src), "--out", str(mount / "s.json"), ro=True)
    one_line_error(result, "field 'out'")
