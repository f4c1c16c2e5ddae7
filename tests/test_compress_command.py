"""`trainkit compress RUN` end to end: the file it writes decodes to the pruned / quantized
parameters, evaluate and predict run on it, the checkpoint is never touched, bad input exits 2."""

import hashlib
import json
import shutil

import numpy as np
import pytest

from trainkit import api
from trainkit.compress.masks import magnitude_masks
from trainkit.compress.quantize import dequantize, quantize_int8
from trainkit.compress.storage import read
from trainkit.runs import checkpoint

RUN_CONFIG = """
seed: 0
data: {name: blobs, n_samples: 400, n_classes: 3, n_features: 6, cluster_std: 3.0, val_fraction: 0.2, test_fraction: 0.2}
model: {name: mlp, hidden: [48, 24]}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 8, batch_size: 32}
"""
WEIGHTS = ["layers.0.weight", "layers.2.weight", "layers.4.weight"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("trained")
    (base / "c.yaml").write_text(RUN_CONFIG)
    api.train(base / "c.yaml", output_dir=base / "run")
    return base / "run"


@pytest.fixture
def run(trained, tmp_path):
    """A fresh copy of the trained run for each test."""
    return shutil.copytree(trained, tmp_path / "run")


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _params(run):
    arrays, _ = checkpoint.load(run / "checkpoint.npz")
    return {k[len("param/") :]: v for k, v in arrays.items() if k.startswith("param/")}


def test_pruned_file_decodes_to_the_one_shot_pruned_weights(cli, run):
    before = _sha(run / "checkpoint.npz")
    r = cli("compress", run, "--sparsity", "0.9", "--json")
    assert r.code == 0, r.stderr
    doc = r.json
    assert doc["status"] == "ok" and doc["file"] == str(run / "model.compressed.npz")
    assert _sha(run / "checkpoint.npz") == before  # never touched
    tensors, meta = read(run / "model.compressed.npz")
    params = _params(run)
    masks = magnitude_masks({k: params[k] for k in WEIGHTS}, 0.9, "global")
    for k, v in params.items():
        want = v * masks[k] if k in masks else v
        np.testing.assert_array_equal(tensors[k], want.astype(np.float32))
    pruned = sum(int((~m).sum()) for m in masks.values())
    assert doc["total"]["params"] - doc["total"]["nonzeros"] == pruned
    assert meta["sparsity"] == 0.9 and meta["scope"] == "global" and meta["int8"] is None
    # the table: every tensor, dense float32 bytes, stored bytes, their ratio
    rows = {t["name"]: t for t in doc["tensors"]}
    assert set(rows) == set(params)
    w = rows["layers.0.weight"]
    assert w["bytes_dense_float32"] == 4 * w["params"] and w["ratio"] == w["bytes_dense_float32"] / w["bytes_stored"]
    assert doc["total"]["file_bytes"] == (run / "model.compressed.npz").stat().st_size
    assert set(doc["metrics"]["before"]) == set(doc["metrics"]["after"]) >= {"val_loss", "test_accuracy"}


def test_metrics_after_are_what_evaluate_reports_on_the_compressed_model(cli, run):
    doc = cli("compress", run, "--sparsity", "0.8", "--int8", "--json").json
    ev = cli("evaluate", run, "--model", "compressed", "--json").json
    assert ev["split"] == "test"
    after = {k: v for k, v in doc["metrics"]["after"].items() if k.startswith("test_")}
    assert ev["metrics"] == after
    dense = cli("evaluate", run, "--json").json
    assert dense["metrics"]["test_loss"] == doc["metrics"]["before"]["test_loss"] != after["test_loss"]


@pytest.mark.parametrize("per_tensor", [False, True])
def test_int8_file_decodes_to_torch_style_quantized_weights(cli, run, per_tensor):
    r = cli("compress", run, "--int8", *(["--per-tensor"] if per_tensor else []), "--json")
    assert r.code == 0, r.stderr
    tensors, meta = read(run / "model.compressed.npz")
    assert meta["int8"] == ("per_tensor" if per_tensor else "per_channel")
    for k, v in _params(run).items():
        want = dequantize(*quantize_int8(v, not per_tensor)) if k in WEIGHTS else v.astype(np.float32)
        np.testing.assert_array_equal(tensors[k], want)
    rows = {t["name"]: t for t in r.json["tensors"]}
    assert rows["layers.0.weight"]["dtype"] == "int8" and rows["layers.0.bias"]["dtype"] == "float32"


def test_predict_runs_on_the_compressed_model(cli, run, tmp_path):
    import csv

    params = _params(run)
    x = np.random.default_rng(1).standard_normal((5, 6))
    with open(tmp_path / "new.csv", "w", newline="") as f:
        csv.writer(f).writerows([[f"x{i}" for i in range(6)], *x.tolist()])
    dense = cli("predict", run, "--data", tmp_path / "new.csv")
    assert dense.code == 0, dense.stderr
    cli("compress", run, "--sparsity", "0.0", "--name", "same")  # float32, nothing pruned: the same model
    assert cli("predict", run, "--data", tmp_path / "new.csv", "--model", "same").stdout == dense.stdout
    cli("compress", run, "--sparsity", "0.95", "--scope", "layer")
    pruned = cli("predict", run, "--data", tmp_path / "new.csv", "--model", "compressed")
    assert pruned.code == 0 and pruned.stdout != dense.stdout
    # by hand: the decoded weights through the MLP (ReLU), softmax
    t, _ = read(run / "model.compressed.npz")
    h = x.astype(np.float32)
    for i in (0, 2, 4):
        h = h @ t[f"layers.{i}.weight"].T + t[f"layers.{i}.bias"]
        h = np.maximum(h, 0) if i < 4 else h
    p = np.exp(h - h.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    rows = [line.split(",") for line in pruned.stdout.strip().splitlines()[1:]]
    np.testing.assert_allclose([[float(v) for v in r[1:]] for r in rows], p, rtol=1e-5)
    assert set(params) == set(t)


def test_existing_file_is_refused_without_force(cli, run):
    assert cli("compress", run, "--sparsity", "0.5").code == 0
    first = (run / "model.compressed.npz").read_bytes()
    r = cli("compress", run, "--sparsity", "0.9")
    assert r.code == 2 and "already exists" in r.stderr and "--force" in r.stderr and "Traceback" not in r.stderr
    assert (run / "model.compressed.npz").read_bytes() == first
    assert cli("compress", run, "--sparsity", "0.9", "--force").code == 0
    assert (run / "model.compressed.npz").read_bytes() != first
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_a_stale_temp_file_of_a_killed_write_is_removed(cli, run):
    stale = run / ".model.compressed.npz.abcd1234.tmp"
    stale.write_bytes(b"half a file")
    assert cli("compress", run, "--int8").code == 0
    assert not stale.exists()


def test_model_compressed_without_a_compressed_file(cli, run, tmp_path):
    for args in (("evaluate", run), ("predict", run, "--data", tmp_path / "x.csv")):
        r = cli(*args, "--model", "compressed")
        assert r.code == 2 and "Traceback" not in r.stderr
        assert "no compressed model" in r.stderr and f"trainkit compress {run}" in r.stderr
    r = cli("evaluate", run, "--model", "compressed", "--json")
    hint = f"make it with: trainkit compress {run} --sparsity 0.9 --int8 (or either option alone)"
    assert r.code == 2 and r.json["error"]["hint"] == hint
    r = cli("evaluate", run, "--model", "small", "--json")
    assert r.json["error"]["hint"].startswith(
        f"make it with: trainkit compress {run} --sparsity 0.9 --int8 --name small"
    )
    assert cli(*r.json["error"]["hint"].split(" (")[0].split()[4:]).code == 0  # the hint is a command that works
    assert cli("evaluate", run, "--model", "small").code == 0


def test_compressed_model_of_an_earlier_checkpoint_is_refused(cli, run):
    assert cli("compress", run, "--int8").code == 0
    r = cli("resume", run, "--set", "train.epochs=10", "--progress", "none")
    assert r.code == 0, r.stderr
    r = cli("evaluate", run, "--model", "compressed")
    assert r.code == 2 and "another checkpoint" in r.stderr and "--force" in r.stderr


def test_the_hint_for_a_stale_file_remakes_it_with_its_own_settings(cli, run):
    """The hint is a command that works: the file's sparsity, scope, fine-tuning, int8 and
    name, not a bare --force (refused: nothing to do)."""
    assert (
        cli("compress", run, "--sparsity", "0.5", "--scope", "layer", "--int8", "--per-tensor", "--name", "s").code == 0
    )
    assert cli("compress", run, "--int8", "--name", "q").code == 0
    assert cli("compress", run, "--sparsity", "0.123456789", "--name", "p").code == 0
    assert cli("resume", run, "--set", "train.epochs=10", "--progress", "none").code == 0
    for name, hint in [
        ("s", f"trainkit compress {run} --sparsity 0.5 --scope layer --int8 --per-tensor --name s --force"),
        ("q", f"trainkit compress {run} --int8 --name q --force"),
        ("p", f"trainkit compress {run} --sparsity 0.123456789 --name p --force"),
    ]:
        r = cli("evaluate", run, "--model", name, "--json")
        assert r.code == 2 and r.json["error"]["hint"] == f"compress it again: {hint}"
        again = cli(*hint.split()[1:])
        assert again.code == 0, again.stderr
        assert cli("evaluate", run, "--model", name).code == 0


def test_model_option_is_a_name_not_a_path(cli, run, tmp_path):
    """`--model sub/../../x` must not read RUN/model.sub/../../x.npz: a file outside the run dir."""
    assert cli("compress", run, "--int8").code == 0
    (run / "model.sub").mkdir()
    shutil.copy(run / "model.compressed.npz", run.parent / "x.npz")  # where the path would lead
    for args in (("evaluate", run), ("predict", run, "--data", tmp_path / "x.csv")):
        r = cli(*args, "--model", "sub/../../x")
        assert r.code == 2 and "--model: 'sub/../../x' is not a model name" in r.stderr, r.stderr
    r = cli("evaluate", run, "--model", "sub/../../x", "--json")
    assert r.code == 2 and r.json["status"] == "error" and r.stderr == ""


def test_damaged_compressed_file_is_a_clear_error(cli, run):
    (run / "model.compressed.npz").write_bytes(b"not a zip")
    r = cli("evaluate", run, "--model", "compressed")
    assert r.code == 2 and "cannot read the compressed model" in r.stderr and "Traceback" not in r.stderr
    hint = f"write it again: trainkit compress {run} --sparsity S and/or --int8 --force"
    assert cli("evaluate", run, "--model", "compressed", "--json").json["error"]["hint"] == hint  # not a literal RUN


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--sparsity", "1.0"], r"--sparsity: must be in \[0, 1\), got 1"),
        (["--sparsity", "-0.1"], r"--sparsity: must be in \[0, 1\)"),
        (["--sparsity", "0.5", "--scope", "row"], "--scope: must be global or layer"),
        (["--finetune", "2", "--int8"], "--finetune: fine-tunes a pruned model"),
        (["--per-tensor", "--sparsity", "0.5"], "--per-tensor"),
        ([], "nothing to do"),
        (["--int8", "--name", "a/b"], "--name: 'a/b' is not a model name"),
        (["--int8", "--name", "dense"], "--name"),
        (["--quantize", "int4"], "--quantize: unknown quantization 'int4'"),
    ],
)
def test_bad_options_exit_2_before_any_work(cli, run, args, expect):
    import re

    r = cli("compress", run, *args)
    assert r.code == 2 and re.search(expect, r.stderr), r.stderr
    assert not list(run.glob("model.*"))
    doc = cli("compress", run, *args, "--json")
    assert doc.code == 2 and doc.json["status"] == "error" and doc.stderr == ""


def test_run_without_checkpoint_or_not_a_run(cli, run, tmp_path):
    (run / "checkpoint.npz").unlink()
    r = cli("compress", run, "--sparsity", "0.9")
    assert r.code == 2 and "no checkpoint" in r.stderr and "Traceback" not in r.stderr
    r = cli("compress", tmp_path, "--sparsity", "0.9")
    assert r.code == 2 and "not a run directory" in r.stderr


def test_human_table_lists_tensors_total_file_and_metrics(cli, run):
    r = cli("compress", run, "--sparsity", "0.9", "--int8")
    assert r.code == 0
    for word in ("layers.0.weight", "total", "file", "val_accuracy", "before", "after", "bitmask int8", "wrote"):
        assert word in r.stdout, word
    assert json.loads(json.dumps(read(run / "model.compressed.npz")[1]))["finetune_epochs"] == 0


def test_finetune_keeps_the_one_shot_mask_and_writes_nothing_else(cli, run):
    files = sorted(p.name for p in run.iterdir())
    shas = {p.name: _sha(p) for p in run.iterdir() if p.is_file()}
    oneshot = cli("compress", run, "--sparsity", "0.9", "--name", "oneshot", "--json").json
    r = cli("compress", run, "--sparsity", "0.9", "--finetune", "4", "--json")
    assert r.code == 0, r.stderr
    assert r.stderr.count("fine-tune epoch") == 4  # progress on stderr, the document alone on stdout
    doc = r.json
    assert doc["settings"]["finetune_epochs"] == 4
    params = _params(run)
    masks = magnitude_masks({k: params[k] for k in WEIGHTS}, 0.9, "global")
    tensors, _ = read(run / "model.compressed.npz")
    for k, m in masks.items():
        assert not tensors[k][~m].any()  # every one-shot-pruned weight is still zero
        assert not np.array_equal(tensors[k][m], params[k][m].astype(np.float32))  # the kept ones trained on
    assert doc["total"]["nonzeros"] == oneshot["total"]["nonzeros"]
    assert doc["metrics"]["after"]["val_loss"] < oneshot["metrics"]["after"]["val_loss"]
    assert doc["metrics"]["before"] == oneshot["metrics"]["before"]
    # the run dir: the same files, unchanged, plus the two compressed models
    assert sorted(p.name for p in run.iterdir()) == sorted([*files, "model.compressed.npz", "model.oneshot.npz"])
    assert shas == {name: _sha(run / name) for name in shas}


def _finetune_process(run, signum):
    """Start `compress --finetune` in its own process and send `signum` once it is training."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    p = subprocess.Popen(
        [sys.executable, "-m", "trainkit", "compress", str(run), "--sparsity", "0.9", "--finetune", "5000"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = p.stderr.readline()
    assert line.startswith("fine-tune epoch 1/5000"), line + p.stderr.read()
    os.kill(p.pid, signum)
    out, err = p.communicate(timeout=60)
    return p.returncode, err


def test_sigkill_during_finetune_leaves_the_checkpoint_and_no_file_and_a_rerun_succeeds(cli, run):
    import signal

    before = _sha(run / "checkpoint.npz")
    code, _ = _finetune_process(run, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert _sha(run / "checkpoint.npz") == before
    assert not [p.name for p in run.iterdir() if "model." in p.name]  # no file, no temp file
    r = cli("compress", run, "--sparsity", "0.9", "--finetune", "2", "--json")
    assert r.code == 0 and (run / "model.compressed.npz").exists()
    assert cli("evaluate", run, "--model", "compressed").code == 0


def test_ctrl_c_during_finetune_exits_130_writing_nothing(run):
    import signal

    code, err = _finetune_process(run, signal.SIGINT)
    assert code == 130 and "nothing was written" in err and "Traceback" not in err
    assert not [p.name for p in run.iterdir() if "model." in p.name]


def test_design_md_spellings_of_the_options(cli, run):
    """DESIGN.md writes `compress RUN --sparsity S --fine-tune-epochs N --quantize int8`."""
    r = cli("compress", run, "--sparsity", "0.5", "--fine-tune-epochs", "1", "--quantize", "int8", "--json")
    assert r.code == 0, r.stderr
    assert r.json["settings"] == {
        "sparsity": 0.5, "scope": "global", "finetune_epochs": 1, "int8": "per_channel", "name": "compressed"
    }  # fmt: skip
