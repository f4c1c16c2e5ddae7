"""Data-parallel training over MPI (trainkit.parallel): N ranks give the single process's answer.

The MPI tests launch `mpiexec -n 2` and `-n 3` (the mpich wheel's, next to this Python); they
skip without mpi4py and fail instead under TRAINKIT_TEST_ALL=1 (conftest.require)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, Result, require

from trainkit import api
from trainkit.metrics import MetricAccumulator
from trainkit.parallel import mpi
from trainkit.runs import checkpoint

WORKER = Path(__file__).with_name("mpi_worker.py")
DIGITS = ROOT / "configs" / "data" / "digits.csv"

# 101 training samples in batches of 25: 25 splits unevenly over 2 and 3 ranks, and the last
# batch of 1 row leaves ranks empty. Dropout, two augmentations (mixup mixes across the batch),
# l2 and clipping all act on the global batch.
MLP = """
seed: 3
data:
  name: moons
  n_samples: 127
  noise: 0.2
  val_fraction: 0.2
  augment: [{name: gaussian_noise, std: 0.05}, {name: mixup, alpha: 0.4}]
model: {name: mlp, hidden: [16, 16], activation: tanh, dropout: 0.2}
optimizer: {name: adam, lr: 0.01}
regularization: {l2: 0.001}
train: {epochs: 4, batch_size: 25, dtype: float64, clip_grad_norm: 1.0}
"""
# A sum loss (no n_r/m weight), regression metrics, momentum; 49 samples in batches of 10.
REGRESSION = """
seed: 1
data: {name: linear, n_samples: 61, n_features: 3, val_fraction: 0.2}
model: {name: mlp, hidden: [8], activation: relu}
loss: {name: mse, reduction: sum}
optimizer: {name: sgd, lr: 0.002, momentum: 0.9}
train: {epochs: 3, batch_size: 10, dtype: float64, metrics: [mse, mae, r2]}
"""
CNN2D = f"""
seed: 0
data: {{name: csv, path: {DIGITS}, target: label, shape: [1, 8, 8], scale: standardize, val_fraction: 0.2}}
model:
  name: sequential
  layers:
    - {{name: conv2d, out_channels: 4, kernel_size: 3, padding: 1}}
    - relu
    - {{name: max_pool2d, kernel_size: 2}}
    - {{name: dropout, p: 0.1}}
    - flatten
    - {{name: linear, out_features: 16}}
    - relu
    - linear
optimizer: {{name: adam, lr: 0.005}}
train: {{epochs: 1, batch_size: 301, dtype: float64}}
"""
# 79 samples in batches of 13: the last batch has 1 row.
CNN1D = """
seed: 0
data: {name: shifted_patterns, n_samples: 100, n_classes: 3, length: 32, pattern_length: 6, noise: 0.5, val_fraction: 0.2}
model: {name: cnn, channels: [4], kernel_size: 5, pool: none, global_pool: true, hidden: [], dims: 1}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 2, batch_size: 13, dtype: float64}
"""
CONFIGS = {"mlp": MLP, "regression": REGRESSION, "cnn2d": CNN2D, "cnn1d": CNN1D}


def mpiexec() -> str:
    require("mpi4py")
    exe = mpi.mpiexec()
    if exe is None:
        if os.environ.get("TRAINKIT_TEST_ALL") == "1":
            pytest.fail(f"no mpiexec next to {sys.executable} or on PATH: {mpi.INSTALL}")
        pytest.skip("no mpiexec")
    return exe


def run_mpi(n: int, *args, worker: bool = False, env=None, timeout: float = 120) -> Result:
    """`mpiexec -n N python -m trainkit ARGS` (or tests/mpi_worker.py ARGS)."""
    target = [str(WORKER)] if worker else ["-m", "trainkit"]
    p = subprocess.run(
        [mpiexec(), "-n", str(n), sys.executable, *target, *map(str, args)],
        capture_output=True,
        text=True,
        env=dict(os.environ, **(env or {})),
        cwd=ROOT,
        timeout=timeout,
    )
    return Result(p.returncode, p.stdout, p.stderr)


def start_mpi(n: int, *args, env=None, worker: bool = False) -> subprocess.Popen:
    target = [str(WORKER), "cli"] if worker else ["-m", "trainkit"]
    return subprocess.Popen(
        [mpiexec(), "-n", str(n), sys.executable, *target, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, **(env or {})),
        cwd=ROOT,
    )


def wait_for_rows(path: Path, rows: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until metrics.csv holds `rows` epochs (a checkpoint of each, with checkpoint_every: 1)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and len(path.read_text().splitlines()) > rows:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{path} did not reach {rows} rows")


def assert_same(run, params: dict, history: list[dict], rtol: float) -> None:
    """Parameters and every history value equal to rtol (relative to 1 + |value|)."""
    assert len(history) == len(run.history)
    for k, v in run.params.items():
        np.testing.assert_allclose(np.asarray(params[k]), v, rtol=0, atol=rtol * (1 + np.abs(v).max()), err_msg=k)
    for mine, theirs in zip(run.history, history):
        assert mine.keys() == theirs.keys()
        for k in mine:
            assert theirs[k] == pytest.approx(mine[k], rel=rtol, abs=rtol), (mine["epoch"], k)


# ---------------------------------------------------------------------- without MPI


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_rank_rows_split_every_batch_into_contiguous_near_equal_parts(size):
    for m in range(0, 30):
        parts = [mpi.rank_rows(r, size, m) for r in range(size)]
        assert parts[0][0] == 0 and parts[-1][1] == m
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))  # contiguous, in rank order
        sizes = [hi - lo for lo, hi in parts]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("task, loss, names", [("regression", "mse", ["mse", "mae", "r2"]), ("binary", "bce", None)])
def test_merged_metric_sums_equal_one_accumulator_over_all_rows(task, loss, names):
    rng = np.random.default_rng(0)
    pred = rng.random((20, 1)) if task == "binary" else rng.normal(size=(20, 2))
    t = (rng.random((20, 1)) > 0.5).astype(float) if task == "binary" else rng.normal(size=(20, 2))
    whole = MetricAccumulator(task, loss, names, sst=np.ones(2) if task == "regression" else None)
    whole.add(pred, t, 0.7, 20)
    parts = []
    for lo, hi in ((0, 7), (7, 7), (7, 20)):
        acc = MetricAccumulator(task, loss, names, sst=np.ones(2) if task == "regression" else None)
        if hi > lo:
            acc.add(pred[lo:hi], t[lo:hi], 0.7, hi - lo)
        parts.append(acc.state_dict())
    merged = MetricAccumulator(task, loss, names, sst=np.ones(2) if task == "regression" else None)
    merged.load_state_dict(mpi.merge_sums(parts))
    assert merged.result("train") == pytest.approx(whole.result("train"), rel=1e-14)


def test_trainkit_mpiexec_names_the_launcher_over_the_one_next_to_python(monkeypatch, tmp_path):
    """A machine with several MPIs (the device run carries mpich beside the image's own)."""
    monkeypatch.delenv("TRAINKIT_MPIEXEC", raising=False)
    default = mpi.mpiexec()
    monkeypatch.setenv("TRAINKIT_MPIEXEC", str(tmp_path / "mpiexec"))
    assert mpi.mpiexec() == str(tmp_path / "mpiexec") != default


def test_workers_without_mpi_exits_2_with_the_install_line(cli, monkeypatch, tmp_path):
    monkeypatch.setattr(mpi, "mpiexec", lambda: None)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(MLP)
    r = cli("train", cfg, "--workers", "2")
    assert r.code == 2
    assert "pip install 'trainkit[mpi]'" in r.stderr
    r = cli("train", cfg, "--workers", "2", "--json")
    assert r.code == 2 and "trainkit[mpi]" in r.json["error"]["message"]


def test_workers_with_a_bad_config_reports_it_once_without_launching(cli, monkeypatch, tmp_path):
    """The config is read before mpiexec: one message and exit 2, not one per rank plus the
    launcher's abort lines."""
    monkeypatch.setattr(mpi, "launch", lambda *a: pytest.fail("launched mpiexec for a bad config"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(MLP.replace("model:", "modle:"))
    r = cli("train", cfg, "--workers", "2")
    assert r.code == 2 and "c.yaml" in r.stderr and "did you mean 'model'" in r.stderr
    r = cli("train", cfg, "--workers", "2", "--json")
    assert r.code == 2 and r.json["error"]["type"] == "config"


# ---------------------------------------------------------------------- under mpiexec


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """Each config's single-process run, and its file."""
    d = tmp_path_factory.mktemp("configs")
    out = {}
    for name, text in CONFIGS.items():
        (d / f"{name}.yaml").write_text(text)
        out[name] = (d / f"{name}.yaml", api.train(d / f"{name}.yaml"))
    return out


@pytest.mark.parametrize("n", [2, 3])
def test_n_ranks_give_the_single_process_parameters_and_history_float64(n, single, tmp_path):
    out = tmp_path / "out.json"
    r = run_mpi(n, "results", out, *(path for path, _ in single.values()), worker=True)
    assert r.code == 0, r.stderr
    for (name, (_, run)), got in zip(single.items(), json.loads(out.read_text())):
        try:
            assert_same(run, got["params"], got["history"], 1e-10)
        except AssertionError as e:
            raise AssertionError(f"{name} with {n} ranks: {e}") from None


def test_float32_equal_to_round_off(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(MLP.replace("dtype: float64", "dtype: float32"))
    one = api.train(cfg)
    out = tmp_path / "out.json"
    r = run_mpi(3, "results", out, cfg, worker=True)
    assert r.code == 0, r.stderr
    got = json.loads(out.read_text())[0]
    assert_same(one, got["params"], got["history"], 1e-6)  # measured: ~5e-8


def test_rank_0_alone_prints_writes_the_run_dir_and_one_json_document(tmp_path, single):
    cfg, run = single["mlp"]
    r = run_mpi(2, "train", cfg, "--json", "-d", tmp_path / "run")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)  # exactly one document
    assert doc["info"]["workers"] == 2
    assert_same(run, doc["params"], doc["history"], 1e-10)
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 1 + len(run.history)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["epochs_run"] == len(run.history)
    assert "rank" not in r.stderr


def test_workers_flag_launches_mpiexec(tmp_path, single):
    mpiexec()
    cfg, run = single["regression"]
    p = subprocess.run(
        [sys.executable, "-m", "trainkit", "train", cfg, "--workers", "3", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["info"]["workers"] == 3
    assert_same(run, doc["params"], doc["history"], 1e-10)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_every_rank_and_the_run_resumes_with_other_n(sig, code, tmp_path, single):
    cfg, _ = single["mlp"]
    run = tmp_path / "run"
    proc = start_mpi(2, "train", cfg, "--set", "train.epochs=5000", "--set", "train.checkpoint_every=1", "-d", run)
    wait_for_rows(run / "metrics.csv", 3, proc)
    proc.send_signal(sig)  # mpiexec passes it to every rank
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "resume with: trainkit resume" in err
    stopped = json.loads((run / "summary.json").read_text())["epochs_run"]
    epochs = stopped + 3
    r = run_mpi(3, "train", cfg, "-d", run, "--resume", "--json", "--set", f"train.epochs={epochs}")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["epochs_run"] == epochs
    straight = api.train(cfg, [f"train.epochs={epochs}"])
    assert_same(straight, doc["params"], doc["history"], 1e-10)


def test_a_rank_that_raises_takes_the_job_down_naming_the_rank(tmp_path, single):
    cfg, _ = single["mlp"]
    run = tmp_path / "run"
    t0 = time.monotonic()
    r = run_mpi(
        2, "cli", "train", cfg, "--set", "train.checkpoint_every=1", "-d", run, "--json",
        worker=True, env={"MPI_TEST_RAISE": "1:3"}, timeout=60,
    )  # fmt: skip
    assert r.code == 1
    assert time.monotonic() - t0 < 30
    assert "rank 1 of 2 failed" in r.stderr and "injected failure in epoch 3" in r.stderr
    assert r.stdout == ""
    r = run_mpi(2, "resume", run, "--json")  # the checkpoint of epoch 2 is intact
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["epochs_run"] == 4


def test_a_killed_rank_ends_every_rank_within_seconds_and_the_run_resumes(tmp_path, single):
    cfg, _ = single["mlp"]
    run, pids = tmp_path / "run", tmp_path / "pids"
    pids.mkdir()
    proc = start_mpi(
        2, "train", cfg, "--set", "train.epochs=5000", "--set", "train.checkpoint_every=1", "-d", run,
        "--progress", "none", worker=True, env={"MPI_TEST_PIDS": str(pids)},
    )  # fmt: skip
    wait_for_rows(run / "metrics.csv", 3, proc)
    os.kill(int((pids / "rank1.pid").read_text()), signal.SIGKILL)
    t0 = time.monotonic()
    proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode != 0
    rank0 = int((pids / "rank0.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(rank0, 0)
    # the ranks may have run on past the 3 rows waited for before the kill took effect
    target = len((run / "metrics.csv").read_text().splitlines()) + 2
    r = run_mpi(2, "resume", run, "--json", "--set", f"train.epochs={target}")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["epochs_run"] == target


def test_an_error_every_rank_shares_is_reported_by_rank_0(tmp_path, single):
    cfg, _ = single["mlp"]
    r = run_mpi(3, "train", cfg, "--set", "optimizer.lrr=3", "--json")
    assert r.code == 2
    assert json.loads(r.stdout)["error"]["type"] == "config"
    assert "rank 0 of 3 failed" in r.stderr and "rank 1" not in r.stderr and "rank 2" not in r.stderr


BATCH_NORM = """
seed: 0
data: {name: moons, n_samples: 120, noise: 0.2, val_fraction: 0.2}
model:
  name: sequential
  layers: [{name: linear, out_features: 8}, {name: batch_norm1d}, relu, linear]
optimizer: {name: adam, lr: 0.01}
train: {epochs: 3, batch_size: 24, dtype: float64}
"""


def test_batch_norm_uses_per_rank_statistics(tmp_path):
    """As torch DDP by default: each rank normalizes its rows by their own mean and variance,
    so N ranks are not 1 process for a model with batch norm (the README says so)."""
    cfg = tmp_path / "bn.yaml"
    cfg.write_text(BATCH_NORM)
    one = api.train(cfg)
    out = tmp_path / "out.json"
    r = run_mpi(2, "results", out, cfg, worker=True)
    assert r.code == 0, r.stderr
    got = json.loads(out.read_text())[0]
    assert len(got["history"]) == 3 and all(np.isfinite(row["train_loss"]) for row in got["history"])
    w = one.params["layers.0.weight"]
    assert np.abs(np.asarray(got["params"]["layers.0.weight"]) - w).max() > 1e-6


# Batch norm over the global batch. Layers before it have no bias: its gradient is zero up to
# round-off, which Adam's normalization would turn into a parameter made of summation noise.
SYNC_BN_MLP = """
seed: 3
data: {name: moons, n_samples: 127, noise: 0.2, val_fraction: 0.2}
model:
  name: sequential
  layers:
    - {name: linear, out_features: 8, bias: false}
    - batch_norm1d
    - relu
    - {name: linear, out_features: 8, bias: false}
    - {name: batch_norm1d, momentum: null}
    - relu
    - linear
optimizer: {name: adam, lr: 0.01}
train: {epochs: 3, batch_size: 24, dtype: float64, sync_batch_norm: true}  # last batch 5: 3+2, 2+2+1 rows
"""
SYNC_BN_CNN = CNN2D.replace("padding: 1}", "padding: 1, bias: false}\n    - batch_norm2d").replace(
    "dtype: float64", "dtype: float64, sync_batch_norm: true"
)


@pytest.mark.parametrize("n", [2, 3])
def test_sync_batch_norm_gives_the_single_process_answer(n, tmp_path):
    paths = []
    for name, text in (("mlp", SYNC_BN_MLP), ("cnn", SYNC_BN_CNN)):
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(text)
    out = tmp_path / "out.json"
    r = run_mpi(n, "results", out, *paths, worker=True)
    assert r.code == 0, r.stderr
    for path, got in zip(paths, json.loads(out.read_text())):
        assert_same(api.train(path), got["params"], got["history"], 1e-10)


PRUNED = MLP + "prune: {sparsity: 0.8, start_epoch: 1, end_epoch: 3, frequency: 2}\n"  # masks move every 2 steps
BLOBS = "data: {name: blobs, n_samples: 127, n_classes: 3, n_features: 2, cluster_std: 2.0, val_fraction: 0.2}"
TEACHER = f"""
seed: 0
{BLOBS}
model: {{name: mlp, hidden: [16], activation: tanh}}
optimizer: {{name: adam, lr: 0.02}}
train: {{epochs: 3, batch_size: 25, dtype: float64}}
"""
STUDENT = f"""
seed: 3
{BLOBS}
model: {{name: mlp, hidden: [8], activation: tanh, dropout: 0.1}}
optimizer: {{name: adam, lr: 0.01}}
train: {{epochs: 3, batch_size: 25, dtype: float64}}
distill: {{teacher: teacher, temperature: 2.0, alpha: 0.7}}
"""


def test_pruning_on_2_ranks_gives_the_single_process_masks_weights_and_sparsity(tmp_path):
    cfg = tmp_path / "pruned.yaml"
    cfg.write_text(PRUNED)
    one = api.train(cfg, output_dir=tmp_path / "one")
    r = run_mpi(2, "train", cfg, "--json", "-d", tmp_path / "two")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert_same(one, doc["params"], doc["history"], 1e-10)  # the history holds sparsity and sparsity/<tensor>
    assert [row["sparsity"] for row in doc["history"]] == [row["sparsity"] for row in one.history]
    assert one.history[-1]["sparsity"] > 0.75
    masks = [
        {k: v for k, v in checkpoint.load(tmp_path / d / "checkpoint.npz")[0].items() if k.startswith("prune/mask/")}
        for d in ("one", "two")
    ]
    assert masks[0].keys() == masks[1].keys() and len(masks[0]) == 3
    for k in masks[0]:
        np.testing.assert_array_equal(masks[1][k], masks[0][k], err_msg=k)


def test_distillation_on_2_ranks_gives_the_single_process_parameters(tmp_path):
    (tmp_path / "teacher.yaml").write_text(TEACHER)
    api.train(tmp_path / "teacher.yaml", output_dir=tmp_path / "teacher")
    cfg = tmp_path / "student.yaml"
    cfg.write_text(STUDENT)
    out = tmp_path / "out.json"
    r = run_mpi(2, "results", out, cfg, worker=True)
    assert r.code == 0, r.stderr
    (got,) = json.loads(out.read_text())
    assert_same(api.train(cfg), got["params"], got["history"], 1e-10)


def test_data_parallel_on_a_gpu_is_refused_naming_train_device(monkeypatch):
    require("mpi4py")
    from mpi4py import MPI

    from trainkit.backend.strict import strict
    from trainkit.errors import ConfigError

    monkeypatch.setattr(api, "array_module", lambda spec: strict if spec.startswith("cuda") else np)
    exp = api.build(api.load_config(ROOT / "configs" / "mlp_moons.yaml", ["train.device=cuda"]))
    with pytest.raises(ConfigError, match="CPU only") as e:
        mpi.DataParallel(MPI.COMM_WORLD).attach(exp)
    assert e.value.issues[0].key == "train.device"


def test_data_parallel_lbfgs_is_refused_with_the_rule_and_a_runnable_fix():
    require("mpi4py")
    from mpi4py import MPI

    from trainkit.errors import ConfigError

    exp = api.build(api.load_config(ROOT / "configs" / "linreg.yaml", ["optimizer.name=lbfgs"]))
    with pytest.raises(ConfigError) as e:
        mpi.DataParallel(MPI.COMM_WORLD).attach(exp)
    (issue,) = e.value.issues
    assert issue.key == "optimizer.name" and "one gradient per step" in issue.message
    assert "--set optimizer.name=adam" in issue.hint and "without mpiexec or --workers" in issue.hint
