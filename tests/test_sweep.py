"""trainkit sweep: spec validation, determinism, the sweep dir, resume after Ctrl-C / SIGKILL,
failed trials, max_failures."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from trainkit.sweep import cost, runner, search
from trainkit.sweep.spec import SweepSpec

GRID = """
seed: 0
data: {name: linear, n_samples: 200, val_fraction: 0.2}
model: {name: linear}
optimizer: {name: sgd, lr: 0.01}
train: {epochs: 15, batch_size: 16, dtype: float64}
sweep:
  method: grid
  metric: {name: val_loss, goal: minimize}
  parameters:
    optimizer.lr: {values: [0.001, 0.01, 0.1, 0.5]}
    train.batch_size: {values: [8, 32]}
"""


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return p


def results(path: Path, drop=("seconds",)) -> list[dict]:
    with open(path / "results.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


# --------------------------------------------------------------------------- spec and search


def test_grid_is_every_combination_first_key_slowest():
    spec = SweepSpec.model_validate(
        {"method": "grid", "parameters": {"a": {"values": [1, 2]}, "b": {"values": ["x", "y", "z"]}}}
    )
    assert search.points(spec) == [{"a": a, "b": b} for a in (1, 2) for b in ("x", "y", "z")]


def test_random_draws_stay_in_their_ranges_and_repeat_with_the_seed():
    spec = SweepSpec.model_validate(
        {
            "method": "random",
            "num_samples": 200,
            "seed": 7,
            "parameters": {
                "u": {"distribution": "uniform", "min": -1, "max": 2},
                "l": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-1},
                "i": {"distribution": "int_uniform", "min": 1, "max": 3},
                "v": {"values": [[32], [64, 64]]},
            },
        }
    )
    pts = search.points(spec)
    assert pts == search.points(spec)
    assert all(-1 <= p["u"] <= 2 and 1e-4 <= p["l"] <= 1e-1 for p in pts)
    assert {p["i"] for p in pts} == {1, 2, 3} and {json.dumps(p["v"]) for p in pts} == {"[32]", "[64, 64]"}
    # log_uniform: about as many draws per decade
    decades = [sum(10**-k <= p["l"] < 10 ** (1 - k) for p in pts) for k in (4, 3, 2)]
    assert min(decades) > 40, decades


def test_a_trials_seed_depends_on_its_values_not_its_order():
    assert search.trial_seed(0, {"a": 1, "b": 2}, 0) == search.trial_seed(0, {"b": 2, "a": 1}, 0)
    assert len({search.trial_seed(s, {"a": 1}, r) for s in (0, 1) for r in (0, 1)}) == 4


# --------------------------------------------------------------------------- running


def test_grid_sweep_writes_run_dirs_rows_and_a_ranking(tmp_path, cli):
    spec = write(tmp_path, GRID)
    r = cli("sweep", spec, "-d", tmp_path / "out", "--json")
    assert r.code == 0, r.stderr
    doc = r.json
    assert doc["status"] == "completed" and len(doc["trials"]) == 8
    rows = results(tmp_path / "out")
    assert [row["trial"] for row in rows] == [f"{i:03d}" for i in range(8)]
    assert rows[5]["optimizer.lr"] == "0.1" and rows[5]["train.batch_size"] == "32"
    finals = [m["mean"] for m in doc["ranking"]]
    assert finals == sorted(finals)
    assert doc["best_command"].startswith(f"trainkit train {spec} --set optimizer.lr=")
    # every trial is an ordinary run dir: evaluate works on it and agrees with the row
    best = doc["ranking"][0]["trials"][0]
    ev = cli("evaluate", tmp_path / "out" / "trials" / best, "--json")
    assert ev.code == 0, ev.stderr
    assert ev.json["metrics"]["val_loss"] == pytest.approx(doc["ranking"][0]["mean"], rel=1e-9)
    assert len((tmp_path / "out" / "trials.jsonl").read_text().splitlines()) == 8


def test_best_command_reproduces_the_best_trial(tmp_path, cli):
    import shlex

    spec = write(tmp_path, GRID)
    doc = cli("sweep", spec, "-d", tmp_path / "out", "--json").json
    args = shlex.split(doc["best_command"])[2:]
    r = cli("train", *args, "--json")
    assert r.code == 0, r.stderr
    assert r.json["metrics"]["val_loss"] == doc["ranking"][0]["mean"]


def test_jobs_2_gives_the_same_results_as_jobs_1(tmp_path):
    spec = write(tmp_path, GRID)
    runner.sweep(spec, jobs=1, output_dir=tmp_path / "a")
    runner.sweep(spec, jobs=2, output_dir=tmp_path / "b")
    assert results(tmp_path / "a") == results(tmp_path / "b")


MIXED = """
seed: 0
data: {name: moons, n_samples: 200, val_fraction: 0.2}
model: {name: mlp, hidden: [8]}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 2, batch_size: 32}
sweep:
  method: grid
  metric: {name: val_loss, goal: minimize}
  parameters:
    model.hidden: {values: [[4], [64, 64], [16]]}
    train.epochs: {values: [2, 6]}
"""


class _Recorder:
    """In this process, in order, but says it has two workers: records the order trials start."""

    workers, stopping = 2, False

    def __init__(self):
        self.started = []

    def run(self, fn, args):
        for i, a in enumerate(args):
            self.started.append(Path(a[2]).name)
            yield i, fn(*a)

    def stop(self):
        self.stopping = True

    def start(self):
        pass

    def close(self):
        pass


def test_with_several_workers_the_costliest_trials_start_first_and_results_stay_the_same(tmp_path, monkeypatch):
    # grid order would start a big model third and last: a worker then ends a whole trial late
    spec = write(tmp_path, MIXED)
    one = runner.sweep(spec, jobs=1, output_dir=tmp_path / "a")
    rec = _Recorder()
    monkeypatch.setattr(runner, "_executor", lambda *a: rec)
    runner.sweep(spec, jobs=2, output_dir=tmp_path / "b")
    ids = {json.dumps(t.values, sort_keys=True): t.id for t in one.trials}
    by = lambda hidden, epochs: ids[json.dumps({"model.hidden": hidden, "train.epochs": epochs}, sort_keys=True)]  # noqa: E731
    # 5 steps an epoch: a step's fixed work outweighs the small models' multiply-adds
    assert rec.started == [by([64, 64], 6), by([16], 6), by([4], 6), by([64, 64], 2), by([16], 2), by([4], 2)]
    assert results(tmp_path / "a") == results(tmp_path / "b")


def test_the_cost_order_keeps_the_grid_order_when_nothing_swept_changes_the_cost(tmp_path):
    spec = write(tmp_path, GRID)
    trials = runner.plan(runner.load_sweep(spec)[1])
    assert cost.order(str(spec), [t.overrides() for t in trials], None, ["optimizer.lr"]) == list(range(8))


def test_seeds_repeat_each_point_and_aggregate(tmp_path):
    spec = write(tmp_path, GRID.replace("method: grid", "method: grid\n  seeds: 3"))
    sw = runner.sweep(spec, output_dir=tmp_path / "out")
    assert len(sw.rows) == 24 and "000-s2" in sw.rows
    top = runner.ranking(sw)[0]
    finals = [sw.rows[t]["final"] for t in top["trials"]]
    assert len(set(finals)) == 3  # three seeds, three different runs
    assert top["mean"] == pytest.approx(sum(finals) / 3)


# --------------------------------------------------------------------------- bad input


def test_optunas_name_for_the_trial_count_points_to_num_samples(tmp_path, cli):
    spec = write(tmp_path, GRID.replace("method: grid", "method: random\n  max_trials: 4"))
    r = cli("sweep", spec, "-d", tmp_path / "out")
    assert r.code == 2 and "unknown key 'max_trials'" in r.stderr
    assert "did you mean 'num_samples'?" in r.stderr  # not 'max_failures', nearest in spelling


def test_an_unknown_swept_key_is_exit_2_at_its_line_before_any_trial_runs(tmp_path, cli):
    spec = write(tmp_path, GRID.replace("optimizer.lr:", "optimizer.lrr:"))
    r = cli("sweep", spec, "-d", tmp_path / "out")
    assert r.code == 2 and r.stdout == ""
    assert f"{spec}:10:5: optimizer.lrr: unknown key 'lrr'" in r.stderr
    assert "did you mean 'lr'?" in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_value_bad_for_one_point_only_is_found_before_any_trial_runs(tmp_path, cli):
    spec = write(tmp_path, GRID.replace("[8, 32]", "[8, 0]"))
    r = cli("sweep", spec, "-d", tmp_path / "out")
    assert r.code == 2 and f"{spec}:11:5: train.batch_size" in r.stderr and "train.batch_size=0" in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_config_without_a_sweep_block_is_exit_2(cli):
    r = cli("sweep", ROOT / "configs" / "linreg.yaml")
    assert r.code == 2 and "no `sweep:` block" in r.stderr


def test_a_second_sweep_into_the_same_dir_is_refused_with_the_ways_out(tmp_path, cli):
    spec = write(tmp_path, GRID)
    assert cli("sweep", spec, "-d", tmp_path / "out").code == 0
    r = cli("sweep", spec, "-d", tmp_path / "out")
    assert r.code == 2 and "--resume" in r.stderr and "another --output-dir" in r.stderr
    r = cli("sweep", write(tmp_path, GRID.replace("0.5]", "0.4]")), "-d", tmp_path / "out", "--resume")
    assert r.code == 2 and "the spec has changed" in r.stderr


# --------------------------------------------------------------------------- failures and resume


def test_failed_trials_are_rows_and_rerun_only_with_retry_failed(tmp_path, cli):
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2))
    np.savez(tmp_path / "good.npz", X=X, y=X @ [1.0, -2.0])
    spec = write(
        tmp_path,
        GRID.replace("{name: linear, n_samples: 200,", "{name: npz, path: good.npz,").replace(
            "train.batch_size: {values: [8, 32]}", "data.path: {values: [good.npz, later.npz]}"
        ),
    )
    out = tmp_path / "out"
    r = cli("sweep", spec, "-d", out, "--json")
    assert r.code == 0, r.stderr
    rows = {row["trial"]: row for row in results(out)}
    assert [rows[t]["status"] for t in ("000", "001")] == ["completed", "failed"]
    assert "later.npz" in rows["001"]["error"]
    lines = lambda: len((out / "trials.jsonl").read_text().splitlines())  # noqa: E731
    assert cli("sweep", spec, "-d", out, "--resume").code == 0 and lines() == 8  # nothing to run
    np.savez(tmp_path / "later.npz", X=X, y=X @ [1.0, -2.0])
    r = cli("sweep", spec, "-d", out, "--resume", "--retry-failed", "--json")
    assert r.code == 0 and lines() == 12
    rows = results(out)
    assert all(row["status"] == "completed" for row in rows) and len(rows) == 8
    # the same data under both names: the retried trials match their good twins
    by = {(row["optimizer.lr"], row["data.path"]): row["final_val_loss"] for row in rows}
    assert all(by[(lr, "good.npz")] != "" for lr, _ in by)


def test_max_failures_stops_the_sweep_with_exit_1(tmp_path, cli):
    spec = write(tmp_path, GRID.replace("[0.001, 0.01, 0.1, 0.5]", "[1.0e+6, 0.01]") + "  max_failures: 2\n")
    r = cli("sweep", spec, "-d", tmp_path / "out", "--json")
    assert r.code == 1
    doc = r.json
    assert doc["status"] == "stopped" and "max_failures 2" in doc["message"]
    assert [t["status"] for t in doc["trials"]] == ["diverged", "diverged"]


SLOW = """
seed: 0
data: {name: moons, n_samples: 400, noise: 0.2, val_fraction: 0.25}
model: {name: mlp, hidden: [16], activation: tanh}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 40, batch_size: 8, checkpoint_every: 5}
sweep:
  method: grid
  metric: {name: val_accuracy, goal: maximize}
  parameters:
    optimizer.lr: {values: [0.003, 0.01, 0.03]}
    model.hidden: {values: [[8], [16]]}
"""


def _sweep_process(spec: Path, out: Path, *extra, jobs: str = "2") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "trainkit", "sweep", str(spec), "-d", str(out), "--jobs", jobs, *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for_rows(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        p = out / "trials.jsonl"
        if p.exists() and len(p.read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the sweep recorded no trials in time")


def _live_in_group(pgid: int) -> list[int]:
    """Processes of the group that still run (zombies waiting for a reaper do not)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


def _wait_group_gone(pgid: int, timeout: float = 60) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not _live_in_group(pgid):
            return
        time.sleep(0.05)
    raise AssertionError(f"workers outlived the killed sweep: {_live_in_group(pgid)}")


def _epoch_rows(out: Path) -> dict[str, list[int]]:
    return {
        d.name: [json.loads(line)["epoch"] for line in (d / "metrics.jsonl").read_text().splitlines()]
        for d in sorted((out / "trials").iterdir())
        if (d / "metrics.jsonl").exists()
    }


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize(
    "how, jobs",
    [(signal.SIGKILL, "2"), (signal.SIGINT, "2"), (signal.SIGINT, "1")],
    ids=["kill-9", "ctrl-c", "ctrl-c-jobs-1"],
)
def test_a_killed_sweep_resumes_to_the_uninterrupted_results(tmp_path, how, jobs):
    spec = write(tmp_path, SLOW)
    full = tmp_path / "full"
    assert runner.sweep(spec, jobs=1, output_dir=full).status == "completed"

    out = tmp_path / "out"
    proc = _sweep_process(spec, out, jobs=jobs)
    _wait_for_rows(out, 2, proc)
    if jobs == "1":
        time.sleep(0.1)  # into the next trial's training (each takes ~0.3 s), past its build
    if how == signal.SIGKILL:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    else:
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "--resume" in err
    _wait_group_gone(proc.pid)
    before = {json.loads(line)["trial"] for line in (out / "trials.jsonl").read_text().splitlines()}
    assert 2 <= len(before) < 6

    proc = _sweep_process(spec, out, "--resume", jobs=jobs)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    ran = [line.split()[1] for line in err.splitlines() if line.startswith("trial ")]
    assert sorted(ran) == sorted({f"{i:03d}" for i in range(6)} - before)  # only what had not ended
    if jobs == "1":  # one at a time: the stop came mid-trial, and nothing started after it
        assert ran == [f"{i:03d}" for i in range(len(before), 6)]
    assert results(out) == results(full)
    # no trial ran twice to completion: every run dir has each epoch once, 1..40
    assert all(epochs == list(range(1, 41)) for epochs in _epoch_rows(out).values())
    assert len(_epoch_rows(out)) == 6


ASHA = """
seed: 0
data: {name: moons, n_samples: 300, noise: 0.25, val_fraction: 0.25}
model: {name: mlp, hidden: [8], activation: tanh}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 9, batch_size: 32}
sweep:
  method: random
  num_samples: 9
  seed: 3
  metric: {name: val_loss, goal: minimize}
  parameters:
    optimizer.lr: {distribution: log_uniform, min: 1.0e-4, max: 0.3}
"""


def test_asha_halves_rung_by_rung_and_a_survivor_ends_as_in_a_full_run(tmp_path):
    full = runner.sweep(write(tmp_path, ASHA), output_dir=tmp_path / "full")
    spec = write(tmp_path, ASHA + "  early_terminate: {type: asha, min_epochs: 1, eta: 3}\n", "asha.yaml")
    sw = runner.sweep(spec, output_dir=tmp_path / "asha")
    assert runner.rungs(sw.spec, 9) == [1, 3, 9]
    statuses = sorted(r["status"] for r in sw.rows.values())
    assert statuses == ["completed"] + ["pruned"] * 8
    assert sorted(r["epochs"] for r in sw.rows.values()) == [1] * 6 + [3] * 2 + [9]
    assert sum(r["epochs"] for r in sw.rows.values()) == 6 + 6 + 9  # of 81 for the full search
    # the survivor went 1 -> 3 -> 9 epochs through its checkpoint: it ends where a full run ends
    winner = runner.ranking(sw)[0]
    assert winner["complete"]
    assert winner["mean"] == full.rows[winner["trials"][0]]["final"]
    # the promoted points were the best of their rung
    rung0 = sorted((r["final"], t) for (t, k), r in sw.rung_rows.items() if k == 0)
    assert {t for _, t in rung0[:3]} == {t for (t, k) in sw.rung_rows if k == 1}


def test_plot_draws_the_metric_against_each_parameter(tmp_path, cli):
    spec = write(tmp_path, GRID)
    r = cli("sweep", spec, "-d", tmp_path / "out", "--plot", tmp_path / "sweep.png")
    assert r.code == 0, r.stderr
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


TPE = """
seed: 0
data: {name: linear, n_samples: 200, val_fraction: 0.2}
model: {name: linear}
optimizer: {name: sgd, lr: 0.01}
train: {epochs: 10, batch_size: 16, dtype: float64}
sweep:
  method: tpe
  num_samples: 14
  metric: {name: val_loss, goal: minimize}
  parameters:
    optimizer.lr: {distribution: log_uniform, min: 1.0e-4, max: 0.5}
    optimizer.momentum: {values: [0.0, 0.9]}
"""


def test_tpe_is_deterministic_resumable_and_keeps_its_study_in_a_journal(tmp_path, cli):
    from tests.conftest import require

    require("optuna")
    spec = write(tmp_path, TPE)
    a = runner.sweep(spec, jobs=2, output_dir=tmp_path / "a")
    runner.sweep(spec, jobs=2, output_dir=tmp_path / "b")
    assert results(tmp_path / "a") == results(tmp_path / "b") and len(results(tmp_path / "a")) == 14
    assert (tmp_path / "a" / "optuna.journal").stat().st_size > 0
    assert not list((tmp_path / "a").glob("*.db"))
    # TPE leans on what it was told: its later points beat its first (random startup) ones
    finals = [a.rows[t.id]["final"] for t in a.trials]
    assert min(finals[10:]) <= sorted(finals[:10])[1]
    # a resumed finished sweep asks nothing new and runs nothing
    r = cli("sweep", spec, "-d", tmp_path / "a", "--resume", "--jobs", "2", "--json")
    assert r.code == 0 and len(r.json["trials"]) == 14
    assert len((tmp_path / "a" / "trials.jsonl").read_text().splitlines()) == 14


def test_an_internal_error_in_a_trial_is_its_row(tmp_path, monkeypatch):
    from trainkit import api

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(api, "train", boom)
    row = runner.run_trial(str(write(tmp_path, GRID)), ["sweep=null"], str(tmp_path / "t"), "val_loss")
    assert row["status"] == "failed" and row["error"] == "internal error: RuntimeError: boom"


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--executor", "spark"], "unknown executor 'spark'"),
        (["--retry-failed"], "add --resume"),
        (["--resume"], "no sweep to resume"),
    ],
)
def test_bad_sweep_options_are_exit_2(tmp_path, cli, args, expect):
    r = cli("sweep", write(tmp_path, GRID), "-d", tmp_path / "out", *args, "--json")
    assert r.code == 2 and expect in r.json["error"]["message"] and r.stderr == ""


@pytest.mark.parametrize("stop_after", [4, 7])  # in rung 0; in rung 1
def test_an_interrupted_asha_sweep_resumes_to_the_same_decisions(tmp_path, stop_after):
    spec = write(tmp_path, ASHA + "  early_terminate: {type: asha, min_epochs: 1, eta: 3}\n")
    full = runner.sweep(spec, output_dir=tmp_path / "full")
    seen = []

    def ctrl_c(row):
        seen.append(row)
        if len(seen) == stop_after:
            os.kill(os.getpid(), signal.SIGINT)

    part = runner.sweep(spec, output_dir=tmp_path / "out", on_trial=ctrl_c)
    assert part.status == "interrupted" and len(seen) == stop_after
    rest = runner.sweep(spec, output_dir=tmp_path / "out", resume=True)
    assert rest.status == "completed"
    assert results(tmp_path / "out") == results(tmp_path / "full")
    assert sorted(rest.rung_rows) == sorted(full.rung_rows)
