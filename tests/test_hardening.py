"""Hardening: fuzzed configs and overrides, random small trainings, safety, kills, locks.

Hypothesis runs a bounded number of examples by default; set TRAINKIT_FUZZ=long for a
longer search (`TRAINKIT_FUZZ=long make test`).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CONFIGS, ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainkit.config import load_config_text
from trainkit.errors import ConfigError, DataError
from trainkit.runs import checkpoint

settings.register_profile("default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("long" if os.environ.get("TRAINKIT_FUZZ") == "long" else "default")

KEYS = [
    "seed",
    "data",
    "model",
    "loss",
    "optimizer",
    "schedule",
    "train",
    "name",
    "lr",
    "epochs",
    "batch_size",
    "hidden",
    "val_fraction",
    "momentum",
    "betas",
    "init",
    "from",
    "path",
    "regularization",
    "l2",
    "early_stopping",
    "layers",
    "out_features",
    "p",
    "augment",
    "ünïcode",
    "",
]
NAMES = ["linear", "mlp", "sgd", "adam", "gd", "moons", "mse", "cross_entropy", "relu", "step", "full", "npz"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.sampled_from(NAMES),
    st.text(max_size=8),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=20,
)


@given(documents)
def test_any_yaml_document_loads_or_raises_config_error(doc):
    text = yaml.safe_dump(doc)
    try:
        load_config_text(text, "fuzz.yaml")
    except ConfigError as e:
        assert e.issues and all(i.message for i in e.issues)


@given(st.text(max_size=200))
def test_any_text_loads_or_raises_config_error(text):
    try:
        load_config_text(text, "fuzz.yaml")
    except ConfigError as e:
        assert e.issues


override_values = st.one_of(
    st.sampled_from(["0.1", "-1", "[1,2]", "{a: 1}", "full", "null", "adam", "[", "'x"]), st.text(max_size=6)
)
overrides = st.lists(
    st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(
            [
                "optimizer.lr",
                "model.hidden",
                "train.batch_size",
                "train",
                "optimizer",
                "data.name",
                "model.hidden.0",
                "x.y.z",
                "seed",
                "optimizer.betas.1",
                "",
            ]
        ),
        override_values,
    )
    | st.text(max_size=12),
    max_size=3,
)


@given(overrides)
def test_any_override_applies_or_raises_config_error(ovs):
    base = (CONFIGS / "mlp_moons.yaml").read_text()
    try:
        load_config_text(base, "mlp_moons.yaml", ovs)
    except ConfigError as e:
        assert e.issues


@settings(max_examples=15)
@given(overrides)
def test_validate_command_never_crashes(ovs):
    from typer.testing import CliRunner

    from trainkit.cli import app

    args = ["validate", str(CONFIGS / "linreg.yaml"), *[a for o in ovs for a in ("--set", o)]]
    r = CliRunner().invoke(app, args, catch_exceptions=False)
    assert r.exit_code in (0, 2) and "Traceback" not in r.stderr


@settings(max_examples=25)
@given(
    n=st.integers(4, 40),
    features=st.integers(1, 4),
    hidden=st.lists(st.integers(1, 6), max_size=2),
    activation=st.sampled_from(["relu", "tanh", "sigmoid", "gelu", "leaky_relu", "softplus"]),
    optimizer=st.sampled_from(["sgd", "adam", "rmsprop", "adagrad", "adamw", "nadam", "radam"]),
    lr=st.floats(1e-4, 10.0),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 1000),
)
def test_random_small_trainings_finish_or_report_divergence(
    tmp_path_factory, n, features, hidden, activation, optimizer, lr, scale, seed
):
    import trainkit

    rng = np.random.default_rng(seed)
    d = tmp_path_factory.mktemp("d")
    np.savez(d / "d.npz", X=rng.normal(scale=scale, size=(n, features)), y=rng.normal(scale=scale, size=n))
    text = (
        f"seed: {seed}\ndata: {{name: npz, path: d.npz, val_fraction: 0}}\n"
        f"model: {{name: mlp, hidden: {hidden}, activation: {activation}}}\n"
        f"optimizer: {{name: {optimizer}, lr: {lr}}}\ntrain: {{epochs: 5, batch_size: {max(1, n // 3)}, dtype: float64}}\n"
    )
    result = trainkit.train(load_config_text(text, str(d / "c.yaml"), base_dir=d))
    finite = all(np.isfinite(v).all() for v in result.params.values())
    if result.status == "diverged":
        assert result.message and "learning rate" in result.message
    else:
        assert result.status == "completed" and finite
        assert all(math.isfinite(row["train_loss"]) for row in result.history)


# ------------------------------------------------------------------ safety


def test_no_pickle_eval_or_exec_on_any_load_path():
    src = "\n".join(p.read_text() for p in (ROOT / "trainkit").rglob("*.py"))
    assert "allow_pickle=True" not in src
    assert not re.search(r"\b(eval|exec)\(", src)
    assert "import pickle" not in src and "yaml.load(" not in src and "yaml.unsafe_load" not in src
    assert src.count("allow_pickle=False") >= 3


def test_run_files_stay_inside_the_run_dir(tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", CONFIGS / "linreg.yaml", "-d", run, "--set", "train.epochs=3").code == 0
    outside = {p for p in tmp_path.rglob("*") if run not in p.parents and p != run}
    assert outside == set()


def test_compare_labels_cannot_escape_the_output_dir(tmp_path):
    from trainkit.compare import runner as compare

    spec = {"name": "sgd", "lr": 0.1, "label": "../../escape"}
    loaded = load_config_text((CONFIGS / "linreg.yaml").read_text(), str(CONFIGS / "linreg.yaml"))
    (job,) = compare._jobs(loaded, compare.Contender("../../escape", spec), 0.1, [0], tmp_path, playground=False)
    assert Path(job.run_dir).resolve().parent == tmp_path.resolve()


# ------------------------------------------------------------------ processes: locks and kills


LONG = """
seed: 0
data: {name: moons, n_samples: 4000, val_fraction: 0.2}
model: {name: mlp, hidden: [64, 64]}
optimizer: {name: adam, lr: 0.001}
train: {epochs: 100000, batch_size: 16, checkpoint_every: 1}
"""


def start_training(cfg: Path, run: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "trainkit", "train", str(cfg), "-d", str(run), "--progress", "none", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_rows(run: Path, rows: int, timeout: float = 60) -> None:
    metrics = run / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= rows:
            return
        time.sleep(0.02)
    raise AssertionError(f"{metrics} never reached {rows} rows")


def test_second_process_is_refused_and_the_first_unharmed(tmp_path):
    cfg = tmp_path / "long.yaml"
    cfg.write_text(LONG)
    first = start_training(cfg, tmp_path / "run")
    try:
        wait_for_rows(tmp_path / "run", 1)
        second = subprocess.run(
            [sys.executable, "-m", "trainkit", "train", str(cfg), "-d", str(tmp_path / "run"), "--overwrite"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2 and "another trainkit process" in second.stderr
        assert first.poll() is None  # still training
        wait_for_rows(tmp_path / "run", 2)
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 143
    arrays, meta = checkpoint.load(tmp_path / "run" / "checkpoint.npz")
    assert meta["epoch"] >= 2


@pytest.mark.parametrize("rows", [2, 3, 5])
def test_sigkill_leaves_a_loadable_checkpoint(tmp_path, rows):
    cfg = tmp_path / "long.yaml"
    cfg.write_text(LONG)
    run = tmp_path / "run"
    proc = start_training(cfg, run)
    try:
        wait_for_rows(run, rows)
        time.sleep(0.013 * rows)  # land at varied points inside an epoch
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    arrays, meta = checkpoint.load(run / "checkpoint.npz")  # complete, whatever the moment of the kill
    assert meta["epoch"] >= rows - 1
    r = subprocess.run(
        [sys.executable, "-m", "trainkit", "resume", str(run), "--json", "--set", f"train.epochs={meta['epoch'] + 1}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["epochs_run"] == meta["epoch"] + 1
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]  # a killed write's temp file is cleared


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, cli):
    run = tmp_path / "run"
    r = cli(
        "train",
        CONFIGS / "linreg.yaml",
        "-d",
        run,
        "--set",
        "optimizer.lr=5",
        "--set",
        "train.checkpoint_every=2",
        "--json",
    )
    assert r.code == 1
    doc = r.json  # the explosion rule stops it at epoch 5, long before the loss is inf
    assert doc["status"] == "diverged" and re.search(r"loss explosion: .* at epoch 5 ", doc["message"])
    arrays, meta = checkpoint.load(run / "checkpoint.npz")
    assert meta["epoch"] < doc["epochs_run"] + 1 and all(
        np.isfinite(v).all() for v in arrays.values() if v.dtype.kind == "f"
    )
    assert json.loads((run / "summary.json").read_text())["status"] == "diverged"


def test_data_errors_are_json_too(cli, tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data: {name: csv, path: missing.csv, target: y}\nmodel: linear\noptimizer: sgd\n")
    r = cli("train", p, "--json")
    assert r.code == 2 and r.json["status"] == "error" and r.json["error"]["type"] == "data"
    with pytest.raises(DataError):
        import trainkit

        trainkit.train(p)


def test_no_color_and_dumb_terminals_get_plain_output(tmp_path):
    for env in ({"NO_COLOR": "1"}, {"TERM": "dumb"}, {"CI": "true"}):
        r = subprocess.run(
            [sys.executable, "-m", "trainkit", "train", str(CONFIGS / "linreg.yaml")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        assert r.returncode == 0 and "\x1b[" not in r.stdout and "epoch 1000/1000" in r.stdout


# ------------------------------------------------------------------ strict JSON, tables, pipes


# One float32 step with this rate overflows the bias to inf.
OVERFLOW = ("--set", "optimizer.lr=1e38", "--set", "train.dtype=float32")


def _strict(text: str):
    def refuse(name):
        raise AssertionError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_json_outputs_are_strict_when_values_are_not_finite(tmp_path, cli):
    """A diverged run's parameters are NaN/inf; a float32 validation set with one huge
    input overflows val_loss to inf while training goes on."""
    r = cli("train", CONFIGS / "linreg.yaml", *OVERFLOW, "--json")
    assert r.code == 1
    doc = _strict(r.stdout)
    assert doc["status"] == "diverged" and doc["params"]["bias"] == [None]

    rng = np.random.default_rng(0)
    X = rng.uniform(size=(40, 1))
    np.savez(tmp_path / "train.npz", X=X, y=3 * X[:, 0] + 2)
    np.savez(tmp_path / "val.npz", X=np.array([[0.5], [1e20]]), y=np.array([3.5, 5.0]))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data: {name: npz, path: train.npz, val_path: val.npz}\nmodel: linear\n"
        "optimizer: {name: gd, lr: 0.1}\ntrain: {epochs: 3}\n"
    )
    run = tmp_path / "run"
    r = cli("train", cfg, "-d", run, "--json")
    assert r.code == 0, r.stderr
    doc = _strict(r.stdout)
    assert doc["metrics"]["val_loss"] is None and "val_loss" in doc["message"]
    assert _strict((run / "summary.json").read_text())["metrics"]["val_loss"] is None
    rows = [_strict(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(row["val_loss"] is None for row in rows)


def test_human_tables_show_nan_and_inf(cli):
    r = cli("train", CONFIGS / "linreg.yaml", *OVERFLOW, "--progress", "none")
    assert r.code == 1
    table = r.stdout[r.stdout.index("parameters") :]
    assert re.search(r"bias +│ \(1,\) +│ \[inf\] ", table), table  # not eaten as rich markup


def test_a_closed_pipe_exits_quietly(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainkit", "train", str(CONFIGS / "linreg.yaml"), "--progress", "plain"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.readline()  # as `| head -1` does, then goes away
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err
