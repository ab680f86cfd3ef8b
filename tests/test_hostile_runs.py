"""Tampered and corrupt run directories, and the network: `revtune predict` on a run someone changed
gives one line (never a traceback, never a different model with exit 0, never a download), and no
command tries the network unless the user names a hub resource."""
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import threading

import pytest
from conftest import run_cli, tiny_args

MARKER = "/tmp/revtune-pickle-was-loaded"


@pytest.fixture(scope="module")
def intent_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile-runs") / "run"
    result = run_cli("train", *tiny_args(corpus, out, "--max-steps", "1", "--tiny-layers", "2"))
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def edit_config(**changes):
    def apply(run):
        config = json.loads((run / "config.json").read_text())
        config.update(changes)
        (run / "config.json").write_text(json.dumps(config))
    return apply


def edit_json(name, **changes):
    def apply(run):
        data = json.loads((run / name).read_text())
        data.update(changes)
        (run / name).write_text(json.dumps(data))
    return apply


def write_file(name, data):
    def apply(run):
        path = run / name
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
    return apply


def remove(name):
    return lambda run: shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink()


def truncate(name, keep=0.5):
    def apply(run):
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[:int(len(data) * keep)])
    return apply


def retype_tensors(run):
    from safetensors.torch import load_file, save_file

    path = run / "adapter" / "adapter_model.safetensors"
    save_file({k: v.half() for k, v in load_file(str(path)).items()}, str(path))


def extra_tensor(run):
    import torch
    from safetensors.torch import load_file, save_file

    path = run / "adapter" / "adapter_model.safetensors"
    tensors = load_file(str(path))
    tensors["base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight"] = torch.zeros(4, 64)
    save_file(tensors, str(path))


class Exploit:
    def __reduce__(self):
        return (open, (MARKER, "w"))


def pickle_instead_of_safetensors(run):
    (run / "adapter" / "adapter_model.safetensors").unlink()
    (run / "adapter" / "adapter_model.bin").write_bytes(pickle.dumps(Exploit()))


TAMPERED = {
    "hub id": (edit_config(model="someone/their-model"), "not in the local cache"),
    "absolute path": (edit_config(model="/nonexistent/model"), "unknown model"),
    "dotdot path": (edit_config(model="../../elsewhere/model"), "unknown model"),
    "layer count": (edit_config(tiny_layers=3), "trained on 2 layers but its model now has 3"),
    "adapter kind in config": (edit_config(adapter="dora"), "adapter 'dora' but the adapter folder holds 'lora'"),
    "adapter kind in adapter": (edit_json("adapter/revtune_adapter.json", kind="bottleneck"), "config says adapter"),
    "label count": (edit_json("metrics.json",
                              labels=["clarity", "fluency", "coherence", "style", "meaning-changed", "humour"]),
                    "cannot load the adapter"),
    "duplicate labels": (edit_json("metrics.json", labels=["style", "style"]), "distinct label names"),
    "dtype": (edit_config(dtype="float64"), "field 'dtype'"),
    "dtype type": (edit_config(dtype=5), "field 'dtype'"),
    "multi_label": (edit_json("metrics.json", multi_label="yes"), "field 'multi_label'"),  # learned: metrics.json
    "threshold": (edit_json("metrics.json", decision={"threshold": "nan"}), "field 'decision_threshold'"),
    "max_length": (edit_config(max_length=-1), "field 'max_length'"),
    "config list": (write_file("config.json", "[1, 2]"), "expected a JSON object"),
    "config deep": (write_file("config.json", "[" * 10_000 + "]" * 10_000), "nested too deeply"),
    "config not utf-8": (write_file("config.json", b"\xff\xfe{}"), "not UTF-8"),
    "truncated safetensors": (truncate("adapter/adapter_model.safetensors"), "corrupt or truncated"),
    "empty safetensors": (write_file("adapter/adapter_model.safetensors", b""), "corrupt or truncated"),
    "garbage safetensors": (write_file("adapter/adapter_model.safetensors", b"\x08" + b"\x00" * 7 + b"{}junk"),
                            "corrupt or truncated"),
    "tensor dtype": (retype_tensors, "the model needs torch.float32"),
    "extra tensor": (extra_tensor, "fits no module"),
    "pickle": (pickle_instead_of_safetensors, "safetensors only"),
    "no adapter": (remove("adapter"), "incomplete"),
    "no adapter config": (remove("adapter/adapter_config.json"), "cannot load the adapter"),
    "bad adapter config": (write_file("adapter/adapter_config.json", "{"), "cannot load the adapter"),
    "adapter rank": (edit_json("adapter/adapter_config.json", r=8), "cannot load the adapter"),
    "no revtune adapter file": (remove("adapter/revtune_adapter.json"), "revtune_adapter.json: missing"),
    "revtune adapter unknown key": (edit_json("adapter/revtune_adapter.json", evil=1), "unknown key 'evil'"),
    "no tokenizer": (remove("tokenizer"), "tokenizer: missing"),
    "corrupt tokenizer": (write_file("tokenizer/tokenizer.json", "{not json"), "cannot load the tokenizer"),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_a_tampered_or_corrupt_run_is_one_line(tmp_path, corpus, intent_run, case):
    change, message = TAMPERED[case]
    run = tmp_path / "run"
    shutil.copytree(intent_run, run)
    change(run)
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    result = run_cli("predict", "--run", run, "--input", corpus["test"], "--out", tmp_path / "p.jsonl",
                     timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert message in lines[0], lines[0]
    assert not (tmp_path / "p.jsonl").exists() and not os.path.exists(MARKER)


def test_the_untampered_run_still_predicts(tmp_path, corpus, intent_run):
    result = run_cli("predict", "--run", intent_run, "--input", corpus["test"], "--out", tmp_path / "p.jsonl")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 10


# --- the network --------------------------------------------------------------------------------------

class Listener:
    """A TCP port standing in for the network: every proxy and hub endpoint points here; it counts
    connections and answers none."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def env(self) -> dict:
        url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                                                 "HF_DATASETS_OFFLINE", "NO_PROXY", "no_proxy")}
        env.update({name: url for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                                           "all_proxy")})
        env.update(HF_ENDPOINT=url, PYTHONWARNINGS="ignore")
        return env


def test_no_command_tries_the_network(tmp_path, corpus, intent_run):
    listener = Listener()
    env = listener.env()

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "revtune.cli", *map(str, args)], capture_output=True,
                              text=True, timeout=600, env=env)

    revise = tmp_path / "gen"
    src = tmp_path / "src.jsonl"
    src.write_text('{"text": "Their is a error."}\n')
    hub_run = tmp_path / "hub"
    shutil.copytree(intent_run, hub_run)
    edit_config(model="someone/their-model")(hub_run)
    results = {
        "train": cli("train", *tiny_args(corpus, tmp_path / "run", "--max-steps", "1", "--tiny-layers", "2")),
        "predict": cli("predict", "--run", intent_run, "--input", corpus["test"], "--out", tmp_path / "p.jsonl"),
        "train revise": cli("train", *tiny_args(corpus, revise, "--task", "revise", "--select", "all", "--max-steps",
                                                 "1", "--tiny-layers", "2", "--dev-generate", "0",
                                                 "--new-tokens-floor", "2", "--new-tokens-factor", "0.01",
                                                 "--max-length", "160")),
        "revise": cli("revise", "--run", revise, "--input", src, "--intent", "clarity"),
        "score": cli("score", "--src", src, "--pred", src, "--ref", src),
        "predict on a run naming a hub model": cli("predict", "--run", hub_run, "--input", corpus["test"],
                                                   "--out", tmp_path / "h.jsonl"),
    }
    for name, result in results.items():
        expected = 2 if name.endswith("hub model") else 0
        assert result.returncode == expected, (name, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, name
    assert listener.connections == 0


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root and unshare -n")
def test_a_run_naming_a_hub_model_fails_fast_without_a_network(tmp_path, corpus, intent_run):
    hub_run = tmp_path / "hub"
    shutil.copytree(intent_run, hub_run)
    edit_config(model="someone/their-model")(hub_run)
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    result = subprocess.run(["unshare", "-n", sys.executable, "-m", "revtune.cli", "predict", "--run", str(hub_run),
                             "--input", str(corpus["test"]), "--out", str(tmp_path / "p.jsonl")],
                            capture_output=True, text=True, timeout=120, env={**env, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "not in the local cache" in result.stderr
