"""Run directories: files, atomic writes, refusal to overwrite, locks, bit-exact resume,
signals, evaluate and predict."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import CONFIGS, ROOT

from trainkit import api
from trainkit.config import load_config
from trainkit.runs import checkpoint
from trainkit.runs.rundir import RunDir, RunDirError, atomic_write

# Shuffling, dropout, two augmentations, a plateau schedule and early stopping: every piece
# of state a resume has to restore.
STATEFUL = """
seed: 3
data:
  name: spirals
  n_samples: 300
  n_classes: 3
  val_fraction: 0.2
  augment: [{name: gaussian_noise, std: 0.05}, {name: mixup, alpha: 0.4}]
model: {name: mlp, hidden: [16, 16], activation: tanh, dropout: 0.2}
optimizer: {name: adam, lr: 0.01}
schedule: {name: reduce_on_plateau, patience: 1, factor: 0.5}
train:
  epochs: 10
  batch_size: 32
  early_stopping: {monitor: val_loss, patience: 50}
  checkpoint_every: 1
"""


def train_into(path, config, stop_after_epoch=None, stop_after_step=None, resume=False):
    """Train into a run dir; optionally stop (as SIGINT would) after an epoch or a global step."""
    loaded = load_config(config)
    run = RunDir(path, resume=resume, checkpoint_every=loaded.config.train.checkpoint_every)
    state = {"trainer": None, "steps": 0}

    def on_start(exp):
        state["trainer"] = exp.trainer
        if stop_after_step is not None:
            step = exp.trainer.opt.step

            def counting_step(lr):
                step(lr)
                state["steps"] += 1
                if state["steps"] == stop_after_step:
                    exp.trainer.stop_requested = "SIGINT"

            exp.trainer.opt.step = counting_step

    def on_epoch(row):
        if row["epoch"] == stop_after_epoch:
            state["trainer"].stop_requested = "SIGINT"

    try:
        return api.train(loaded, on_epoch=on_epoch, on_start=on_start, run_dir=run)
    finally:
        run.close()


@pytest.fixture
def stateful(write_config):
    return write_config(STATEFUL)


def read(path):
    return (path / "metrics.jsonl").read_text()


def test_run_dir_holds_every_file(tmp_path, stateful):
    result = train_into(tmp_path / "run", stateful)
    run = tmp_path / "run"
    for f in ("config.yaml", "metrics.csv", "metrics.jsonl", "checkpoint.npz", "best.npz", "summary.json"):
        assert (run / f).is_file(), f
    rows = [json.loads(line) for line in read(run).splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 11))
    with open(run / "metrics.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == 10 and list(csv_rows[0]) == list(rows[0])
    assert float(csv_rows[-1]["val_loss"]) == rows[-1]["val_loss"]  # exact: written with repr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == result.status and summary["history"] == rows
    with np.load(run / "best.npz", allow_pickle=False) as f:
        assert set(f.keys()) == set(result.params)


@pytest.mark.parametrize("stop", [{"stop_after_epoch": 4}, {"stop_after_step": 43}], ids=["epoch_end", "mid_epoch"])
def test_resume_is_bit_exact(tmp_path, stateful, stop):
    straight = train_into(tmp_path / "a", stateful)
    first = train_into(tmp_path / "b", stateful, **stop)
    assert first.status == "interrupted"
    resumed = train_into(tmp_path / "b", stateful, resume=True)
    assert resumed.epochs_run == 10
    for k in straight.params:
        np.testing.assert_array_equal(resumed.params[k], straight.params[k])
    assert read(tmp_path / "b") == read(tmp_path / "a")
    assert resumed.history == straight.history


def test_rerunning_the_saved_config_reproduces_the_run(tmp_path, cli):
    r = cli("train", CONFIGS / "iris.yaml", "-d", tmp_path / "iris", "--json")
    assert r.code == 0
    again = cli("train", tmp_path / "iris" / "config.yaml", "-d", tmp_path / "again", "--json")
    assert again.code == 0
    assert again.json["params"] == r.json["params"] and again.json["history"] == r.json["history"]


def test_existing_run_dir_is_never_overwritten(tmp_path, cli):
    args = ("train", CONFIGS / "linreg.yaml", "-d", tmp_path / "run", "--set", "train.epochs=3")
    assert cli(*args).code == 0
    before = (tmp_path / "run" / "summary.json").read_bytes()
    r = cli(*args)
    assert r.code == 2 and "refusing to overwrite" in r.stderr
    assert "--resume" in r.stderr and "--overwrite" in r.stderr and "--output-dir" in r.stderr
    assert (tmp_path / "run" / "summary.json").read_bytes() == before
    assert cli(*args, "--overwrite").code == 0


def test_second_process_on_the_same_run_dir_is_refused(tmp_path):
    first = RunDir(tmp_path / "run")
    try:
        with pytest.raises(RunDirError, match="another trainkit process"):
            RunDir(tmp_path / "run", overwrite=True)
    finally:
        first.close()
    RunDir(tmp_path / "run", overwrite=True).close()  # free again once the first is done


def test_atomic_write_keeps_the_old_file_when_a_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.npz"
    atomic_write(target, b"old and complete")

    def crash(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        atomic_write(target, b"new but never finished")
    assert target.read_bytes() == b"old and complete"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]  # no temp file left behind


def test_checkpoint_round_trip(tmp_path, stateful):
    train_into(tmp_path / "run", stateful, stop_after_epoch=3)
    arrays, meta = checkpoint.load(tmp_path / "run" / "checkpoint.npz")
    assert meta["epoch"] == 3 and len(meta["history"]) == 3
    assert {"shuffle", "dropout", "augment"} <= set(meta["rng"])
    assert any(k.startswith("optim/") for k in arrays) and meta["optimizer"]["t"] > 0


def test_sigint_writes_a_resumable_checkpoint(tmp_path):
    cfg = tmp_path / "long.yaml"
    cfg.write_text(STATEFUL.replace("epochs: 10", "epochs: 100000").replace("n_samples: 300", "n_samples: 3000"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainkit", "train", str(cfg), "-d", str(tmp_path / "run"), "--progress", "none"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "resume with: trainkit resume" in err and "Traceback" not in err
    arrays, meta = checkpoint.load(tmp_path / "run" / "checkpoint.npz")
    assert meta["epoch"] >= 2
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainkit",
            "resume",
            str(tmp_path / "run"),
            "--json",
            "--set",
            "train.epochs=" + str(meta["epoch"] + 1),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["epochs_run"] == meta["epoch"] + 1


def test_evaluate_and_predict_on_iris(tmp_path, cli):
    run = tmp_path / "iris"
    assert cli("train", CONFIGS / "iris.yaml", "-d", run).code == 0
    r = cli("evaluate", run, "--json")
    assert r.code == 0 and r.json["split"] == "test" and r.json["n"] == 30
    assert r.json["metrics"]["test_accuracy"] >= 0.93
    r = cli("evaluate", run, "--data", CONFIGS / "data" / "iris.csv", "--json")
    assert r.code == 0 and r.json["n"] == 150 and r.json["metrics"]["test_accuracy"] >= 0.95
    r = cli("predict", run, "--data", CONFIGS / "data" / "iris.csv", "--output", tmp_path / "preds.csv")
    assert r.code == 0
    with open(tmp_path / "preds.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 150
    assert set(rows[0]) == {"prediction", "prob_setosa", "prob_versicolor", "prob_virginica"}
    assert rows[0]["prediction"] == "setosa"  # labels come back with their original names
    probs = np.array([[float(r[k]) for k in list(r)[1:]] for r in rows])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    truth = [line.split(",")[-1] for line in (CONFIGS / "data" / "iris.csv").read_text().splitlines()[1:]]
    assert np.mean([r["prediction"] == t for r, t in zip(rows, truth)]) >= 0.95


def test_predict_without_target_column_and_regression(tmp_path, cli):
    run = tmp_path / "lin"
    assert cli("train", CONFIGS / "linreg.yaml", "-d", run).code == 0
    np.savez(tmp_path / "new.npz", X=np.array([[0.0], [1.0]]))
    r = cli("predict", run, "--data", tmp_path / "new.npz")
    assert r.code == 0
    lines = r.stdout.splitlines()
    assert lines[0] == "prediction" and abs(float(lines[1]) - 2.47) < 0.05 and abs(float(lines[2]) - 5.51) < 0.05


def test_evaluate_bad_run_dir(tmp_path, cli):
    r = cli("evaluate", tmp_path)
    assert r.code == 2 and "not a run directory" in r.stderr


def test_resume_without_checkpoint(tmp_path, cli):
    r = cli("resume", tmp_path)
    assert r.code == 2 and "Traceback" not in r.stderr


def test_trainkit_train_api_result_matches_summary(tmp_path, stateful):
    result = train_into(tmp_path / "r", stateful)
    doc = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert doc["params"] == {k: v.tolist() for k, v in result.params.items()}
