"""Run directories: files, atomic writes, refusal to overwrite, locks, bit-exact resume,
signals, evaluate and predict."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import CONFIGS, ROOT, run_process

import trainkit
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
    assert r.code == 0 and r.json["n"] == 150 and r.json["metrics"]["data_accuracy"] >= 0.95
    assert r.json["split"] == "data" and r.json["data"] == str(CONFIGS / "data" / "iris.csv")
    assert not any(k.startswith("test_") for k in r.json["metrics"])  # the file is not the test split
    r = cli("evaluate", run, "--data", CONFIGS / "data" / "iris.csv")
    assert r.code == 0 and "iris.csv (150 samples)" in r.stdout and re.search(r"metric\s+\S\s+data\b", r.stdout)
    assert not re.search(r"\btest\b", r.stdout), r.stdout
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


# ------------------------------------------------------------------ restore-best, decided once

# Early stopping that "improves" only on the first epoch (val_loss is falling, mode max):
# the best epoch is 1, so best and last parameters always differ.
BEST_FIRST = """
seed: 0
data: {name: linear, n_samples: 60, val_fraction: 0.25}
model: {name: linear}
optimizer: {name: adam, lr: 0.05}
train:
  epochs: 6
  batch_size: 15
  dtype: float64
  early_stopping: {monitor: val_loss, mode: max, patience: 100}
"""


@pytest.fixture
def best_first(write_config):
    return write_config(BEST_FIRST, "best_first.yaml")


def test_interrupted_run_reports_the_epoch_whose_parameters_it_holds(tmp_path, best_first):
    result = train_into(tmp_path / "run", best_first, stop_after_epoch=4)
    assert result.status == "interrupted" and result.best_epoch == 1
    assert result.metrics["val_loss"] == result.history[3]["val_loss"]  # not the best epoch's
    assert result.metrics["train_loss"] == result.history[3]["train_loss"]
    assert result.params_epoch == 4
    doc = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert doc["metrics"] == result.metrics and doc["params_epoch"] == 4


def test_finished_run_reports_the_best_epoch_it_restored(tmp_path, best_first, cli):
    result = train_into(tmp_path / "run", best_first)
    assert result.status == "completed" and result.params_epoch == 1
    assert result.metrics["val_loss"] == result.history[0]["val_loss"]
    arrays, meta = checkpoint.load(tmp_path / "run" / "checkpoint.npz")
    for k, v in result.params.items():  # the checkpoint holds the parameters the run reports
        np.testing.assert_array_equal(arrays[f"param/{k}"], v)
    assert meta["result"]["params_epoch"] == 1
    r = cli("resume", tmp_path / "run")
    assert r.code == 0 and "metrics and parameters of epoch 1, the best" in r.stdout


def test_resuming_a_run_that_restored_its_best_epoch_continues_from_its_last(tmp_path, write_config):
    """The optimizer's moments belong to the last epoch's parameters: 6 epochs + resume to 9
    must equal 9 epochs straight, row by row."""
    straight = train_into(tmp_path / "a", write_config(BEST_FIRST.replace("epochs: 6", "epochs: 9"), "nine.yaml"))
    six = write_config(BEST_FIRST, "six.yaml")
    train_into(tmp_path / "b", six)
    resumed = api.train(tmp_path / "b" / "config.yaml", ["train.epochs=9"], resume=True)
    assert resumed.epochs_run == 9
    assert resumed.history == straight.history
    assert read(tmp_path / "b") == read(tmp_path / "a")


# ------------------------------------------------------------------ resume is honest


def test_resuming_a_finished_run_has_nothing_to_do(tmp_path, cli, write_config):
    early = write_config(BEST_FIRST.replace("patience: 100", "patience: 2"), "early.yaml")
    for config, status, epochs in ((early, "early_stopped", 3), (CONFIGS / "linreg.yaml", "completed", 5)):
        run = tmp_path / status
        assert cli("train", config, "-d", run, "--set", "train.epochs=5").code == 0
        files = {f: (run / f).read_bytes() for f in ("metrics.jsonl", "checkpoint.npz", "summary.json", "config.yaml")}
        for _ in range(2):
            r = cli("resume", run, "--json")
            assert r.code == 0, r.stderr
            assert r.json["status"] == status and r.json["epochs_run"] == epochs
            assert r.json["message"] == "already finished, nothing to do"
            assert r.json["metrics"] == json.loads(files["summary.json"])["metrics"]
        assert {f: (run / f).read_bytes() for f in files} == files  # nothing rewritten
        r = cli("resume", run)
        assert r.code == 0 and "already finished, nothing to do" in r.stdout


def test_resume_with_more_epochs_rewrites_the_config(tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", CONFIGS / "linreg.yaml", "-d", run, "--set", "train.epochs=5").code == 0
    r = cli("resume", run, "--set", "train.epochs=8", "--json")
    assert r.code == 0 and r.json["epochs_run"] == 8
    saved = load_config(run / "config.yaml").config
    assert saved.train.epochs == 8  # the run dir describes the run it holds
    assert cli("resume", run, "--json").json["message"] == "already finished, nothing to do"


@pytest.mark.parametrize(
    "override,message",
    [
        ("optimizer={name: sgd, lr: 0.1}", "optimizer adam vs sgd"),
        ("model.hidden=[8]", "model.hidden [4] vs [8]"),
        ("schedule={name: step, step_size: 2}", "schedule (none) vs step"),
        ("seed=5", "seed 0 vs 5"),
    ],
)
def test_resume_refuses_a_config_the_checkpoint_cannot_honour(tmp_path, cli, write_config, override, message):
    config = write_config(
        "seed: 0\ndata: {name: moons, n_samples: 60}\nmodel: {name: mlp, hidden: [4]}\n"
        "optimizer: {name: adam, lr: 0.01}\ntrain: {epochs: 4, batch_size: 16}\n"
    )
    run = tmp_path / "run"
    assert cli("train", config, "-d", run, "--set", "train.epochs=2").code == 0
    before = (run / "config.yaml").read_bytes()
    r = cli("resume", run, "--set", override, "--set", "train.epochs=4")
    assert r.code == 2 and r.stdout == ""
    assert f"checkpoint does not match the config: {message}" in r.stderr and "Traceback" not in r.stderr
    assert (run / "config.yaml").read_bytes() == before


def _rewrite_checkpoint(path, drop=(), meta_changes=None):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.keys() if k not in drop}
    meta = json.loads(str(arrays.pop("meta")))
    for k, v in (meta_changes or {}).items():
        if v is None:
            meta.pop(k)
        else:
            meta[k] = v
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


@pytest.mark.parametrize(
    "damage",
    [
        {"meta_changes": {"schedule": None}},
        {"meta_changes": {"rng": {"shuffle": "nonsense"}}},
        {"meta_changes": {"epoch": "x"}},
        {"meta_changes": {"history": [{"epoch": 1}]}},
        {"meta_changes": {"config": "nonsense"}},
        {"drop": ("optim/exp_avg",)},
        {"drop": ("param/weight",)},
    ],
    ids=["no_schedule", "bad_rng", "bad_epoch", "short_history", "bad_config", "no_moments", "no_param"],
)
def test_resume_of_a_damaged_checkpoint_exits_2(tmp_path, cli, damage):
    run = tmp_path / "run"
    args = ("train", CONFIGS / "linreg.yaml", "-d", run, "--set", "optimizer={name: adam, lr: 0.1}")
    assert cli(*args, "--set", "train.epochs=3", "--set", "train.batch_size=16").code == 0
    _rewrite_checkpoint(run / "checkpoint.npz", **damage)
    r = cli("resume", run, "--set", "train.epochs=5")
    assert r.code == 2 and "Traceback" not in r.stderr, r.stderr
    assert "checkpoint" in r.stderr and str(run / "checkpoint.npz") in r.stderr


# ------------------------------------------------------------------ where a run goes


def test_saved_config_reruns_into_its_own_run_dir_from_any_directory(tmp_path):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    config = here / "linreg.yaml"
    config.write_text((CONFIGS / "linreg.yaml").read_text())
    args = ("--set", "train.epochs=5", "--json")
    env = {"PYTHONPATH": str(ROOT)}  # run from other folders: find this checkout's trainkit
    first = run_process("train", "linreg.yaml", "-d", "runs/a", *args, cwd=here, env=env)
    assert first.code == 0, first.stderr
    saved = here / "runs" / "a" / "config.yaml"
    r = run_process("train", saved, cwd=elsewhere, env=env)
    assert r.code == 2 and "already holds a run" in r.stderr  # the same run, not a new one elsewhere
    r = run_process("train", saved, "--overwrite", *args, cwd=elsewhere, env=env)
    assert r.code == 0, r.stderr
    assert r.json["params"] == first.json["params"] and r.json["run_dir"] == str(saved.parent.resolve())
    assert list(elsewhere.iterdir()) == []


def test_overwrite_replaces_the_old_run_only_once_the_new_one_builds(tmp_path, cli, write_config):
    run = tmp_path / "run"
    assert cli("train", CONFIGS / "linreg.yaml", "-d", run, "--set", "train.epochs=3").code == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    bad = write_config("data: {name: npz, path: missing.npz}\nmodel: linear\noptimizer: sgd\n")
    r = cli("train", bad, "-d", run, "--overwrite")
    assert r.code == 2 and "missing.npz" in r.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_stale_temp_sweep_removes_only_trainkits_own_temp_files(tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", CONFIGS / "linreg.yaml", "-d", run, "--set", "train.epochs=3").code == 0
    mine = [run / ".notes.tmp", run / ".lock", run / ".x.npz.tmp", run / ".config.yaml.my-backup.tmp"]
    for p in mine:
        p.write_text("the user's")
    (run / ".checkpoint.npz.k2j3h4_x.tmp").write_bytes(b"half a checkpoint")
    assert cli("train", CONFIGS / "linreg.yaml", "-d", run, "--set", "train.epochs=3", "--overwrite").code == 0
    assert all(p.read_text() == "the user's" for p in mine)
    assert not (run / ".checkpoint.npz.k2j3h4_x.tmp").exists()


def test_a_run_killed_before_its_first_checkpoint_can_be_resumed(tmp_path, cli):
    """As SIGKILL during the first epochs leaves it: config and metrics, no checkpoint."""
    run = tmp_path / "run"
    straight = cli("train", CONFIGS / "linreg.yaml", "-d", run, "--set", "train.epochs=5", "--json").json
    (run / "checkpoint.npz").unlink()
    (run / "summary.json").unlink()
    r = cli("train", CONFIGS / "linreg.yaml", "-d", run, "--set", "train.epochs=5")
    assert r.code == 2 and "--resume" in r.stderr
    r = cli("resume", run, "--json")  # starts it again: there is nothing to continue
    assert r.code == 0, r.stderr
    assert "started again from the beginning" in r.json["message"]
    assert r.json["params"] == straight["params"] and r.json["history"] == straight["history"]
    assert checkpoint.load(run / "checkpoint.npz")[1]["epoch"] == 5


def test_a_config_error_leaves_no_empty_run_dir(tmp_path, cli, write_config):
    bad = write_config("data: {name: npz, path: missing.npz}\nmodel: linear\noptimizer: sgd\n")
    assert cli("train", bad, "-d", tmp_path / "new" / "run").code == 2
    assert not (tmp_path / "new" / "run").exists()


# ------------------------------------------------------------------ write failures


def test_output_dir_under_a_file_exits_2(tmp_path, cli):
    (tmp_path / "afile").write_text("x")
    for target in (tmp_path / "afile", tmp_path / "afile" / "run"):
        r = cli("train", CONFIGS / "linreg.yaml", "-d", target)
        assert r.code == 2 and "Traceback" not in r.stderr
        assert str(target) in r.stderr and "help:" in r.stderr
    assert (tmp_path / "afile").read_text() == "x"


def test_disk_full_exits_2_and_keeps_the_last_checkpoint(tmp_path, cli, monkeypatch):
    import errno

    run = tmp_path / "run"
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > 4:  # config.yaml, then checkpoints (and best.npz) of epochs 1, 2 ...
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    r = cli("train", CONFIGS / "linreg.yaml", "-d", run, "--set", "train.checkpoint_every=1", "--json")
    assert r.code == 2 and r.json["status"] == "error"
    message = r.json["error"]["message"]
    assert str(run) in message and "No space left" in message and "disk is full" in message
    assert "trainkit resume" in message
    monkeypatch.setattr(os, "fsync", real_fsync)
    arrays, meta = checkpoint.load(run / "checkpoint.npz")  # the last good one, complete
    assert meta["epoch"] >= 1 and not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    r = cli("resume", run, "--set", "train.epochs=" + str(meta["epoch"] + 2), "--json")
    assert r.code == 0 and r.json["epochs_run"] == meta["epoch"] + 2


@pytest.mark.parametrize(
    "err,hint",
    [("EROFS", "read-only"), ("EACCES", "not writable"), ("ENOENT", "does not exist"), ("EDQUOT", "quota")],
)
def test_unwritable_run_dir_exits_2_with_a_hint(tmp_path, cli, monkeypatch, err, hint):
    """chmod does not stop root, so the refusal of the file system is simulated (ENOENT: the
    folder was removed while the run was being built)."""
    import errno
    import tempfile

    def refuse(*a, **k):
        raise OSError(getattr(errno, err), os.strerror(getattr(errno, err)))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    r = cli("train", CONFIGS / "linreg.yaml", "-d", tmp_path / "run")
    assert r.code == 2 and "Traceback" not in r.stderr
    assert str(tmp_path / "run" / "config.yaml") in r.stderr and hint in r.stderr


# ------------------------------------------------------------------ run policy in the API


def test_python_api_follows_the_run_policy_of_the_cli(tmp_path, write_config):
    run = tmp_path / "run"
    config = write_config((CONFIGS / "linreg.yaml").read_text() + f"output: {{dir: {run}}}\n")
    first = trainkit.train(config, ["train.epochs=5"])
    assert first.run_dir == str(run) and (run / "summary.json").is_file()
    with pytest.raises(RunDirError, match="refusing to overwrite"):
        trainkit.train(config, ["train.epochs=5"])
    again = trainkit.train(config, ["train.epochs=5"], overwrite=True)
    assert again.history == first.history
    more = trainkit.train(config, ["train.epochs=7"], resume=True)
    assert more.epochs_run == 7 and more.history[:5] == first.history
    assert trainkit.train(config, ["train.epochs=7"], resume=True).message == "already finished, nothing to do"
    other = trainkit.train(config, ["train.epochs=2"], output_dir=tmp_path / "other")
    assert other.run_dir == str(tmp_path / "other") and (tmp_path / "other" / "checkpoint.npz").is_file()


def test_tiny_runs_checkpoint_by_time_not_every_epoch(tmp_path, monkeypatch):
    """1000 one-step epochs: a handful of fsync'd writes, not one per epoch or improvement."""
    from trainkit.runs import rundir

    writes = []
    real = rundir.atomic_write
    monkeypatch.setattr(rundir, "atomic_write", lambda path, data: (writes.append(path.name), real(path, data)))
    result = trainkit.train(CONFIGS / "linreg.yaml", output_dir=tmp_path / "run")
    assert result.epochs_run == 1000
    assert sorted(writes) == ["best.npz", "checkpoint.npz", "config.yaml", "summary.json"]
    best = int(np.argmin([r["val_loss"] for r in result.history])) + 1
    at_best = trainkit.train(CONFIGS / "linreg.yaml", [f"train.epochs={best}"]).params
    with np.load(tmp_path / "run" / "best.npz") as f:  # still the best epoch's parameters
        assert f["weight"] == at_best["weight"] and f["bias"] == at_best["bias"]


def _strict_json(text: str):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_comparison_json_is_strict_json(tmp_path):
    """A non-finite number anywhere in a comparison (a run's metric) is null in the file."""
    from trainkit.compare import runner as compare

    comp = compare.Comparison(
        runs=[{"optimizer": "gd", "metrics": {"val_loss": float("inf"), "train_loss": float("nan")}}],
        summary=[{"optimizer": "gd", "curve": [1.0, float("inf")]}],
        config={},
        kind="train",
    )
    compare.write_outputs(comp, tmp_path)
    doc = _strict_json((tmp_path / "comparison.json").read_text())
    assert doc["runs"][0]["metrics"] == {"val_loss": None, "train_loss": None}
    assert doc["summary"][0]["curve"] == [1.0, None]


def test_checkpoint_every_says_its_default():
    from trainkit.config.loader import TrainConfig
    from trainkit.runs.rundir import CHECKPOINT_SECONDS

    assert f"every ~{CHECKPOINT_SECONDS:g} s" in TrainConfig.model_fields["checkpoint_every"].description


def test_bar_mode_shows_no_bar_for_a_finished_run_and_resumes_where_it_stopped(tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", CONFIGS / "linreg.yaml", "-d", run, "--set", "train.epochs=3", "--progress", "none").code == 0
    r = cli("resume", run, "--progress", "bar")
    assert r.code == 0 and "already finished, nothing to do" in r.stdout
    assert not any(line.startswith("epoch") for line in r.stdout.splitlines())  # no empty 0/3 bar
    r = cli("resume", run, "--set", "train.epochs=5", "--progress", "bar")
    assert r.code == 0 and r.stdout.splitlines()[0].startswith("epoch") and "5/5" in r.stdout.splitlines()[0]
