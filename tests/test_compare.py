"""compare-optimizers: fairness, determinism across worker counts, seeds, lr search, output."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import CONFIGS, ROOT, require

from trainkit import api
from trainkit.backend import pool
from trainkit.compare import ranking
from trainkit.compare import runner as compare
from trainkit.config import load_config
from trainkit.errors import Issue
from trainkit.runs.trainer import _Batches


def test_default_set_is_gd_sgd_momentum_adam():
    comp = compare.compare(CONFIGS / "linreg.yaml", jobs=1, overrides=["train.epochs=5"])
    assert [r["optimizer"] for r in comp.summary] == ["gd", "sgd", "momentum", "adam"]
    assert comp.runs[2]["optimizer"] == {"label": "momentum", "name": "sgd", "momentum": 0.9, "lr": 0.001}


def test_every_optimizer_starts_from_the_same_parameters_and_batches():
    """Fairness: same initial parameters, same batch order, so the same first-step gradient."""
    loaded = load_config(CONFIGS / "compare_mlp.yaml")
    contenders = compare.contenders_for(loaded, None)
    grads, params = [], []
    for c in contenders:
        (job,) = compare._jobs(loaded, c, 0.01, [0], None, playground=False)
        exp = api.build(load_config(CONFIGS / "compare_mlp.yaml", job.overrides))
        params.append(exp.net.flat.copy())
        tr, a = exp.trainer, exp.arrays
        xb, tb = next(_Batches(a["X_train"], a["T_train"], tr.cfg.batch_size, True).epoch(tr.rng))
        tr.loss.forward(exp.net.forward(xb, training=True), tb)
        exp.net.backward(tr.loss.backward())
        grads.append(exp.net.grad.copy())
    for p, g in zip(params[1:], grads[1:]):
        np.testing.assert_array_equal(p, params[0])
        np.testing.assert_array_equal(g, grads[0])


def _strip_timing(comp):
    return [{k: v for k, v in r.items() if k != "timing"} for r in comp.runs]


def test_jobs_2_equals_jobs_1_bit_for_bit():
    one = compare.compare(CONFIGS / "compare_mlp.yaml", jobs=1, overrides=["train.epochs=3"])
    two = compare.compare(CONFIGS / "compare_mlp.yaml", jobs=2, overrides=["train.epochs=3"])
    assert _strip_timing(one) == _strip_timing(two)


def test_seeds_are_aggregated_as_mean_and_std():
    comp = compare.compare(CONFIGS / "compare_linreg.yaml", seeds=3, jobs=1, overrides=["train.epochs=10"])
    assert len(comp.runs) == 4 * 3
    for row in comp.summary:
        mine = [r for r in comp.runs if r["optimizer"]["label"] == row["optimizer"]]
        assert sorted(r["seed"] for r in mine) == [0, 1, 2]
        vals = [r["metrics"]["val_loss"] for r in mine]
        assert row["val_loss"] == pytest.approx(statistics.fmean(vals))
        assert row["val_loss_std"] == pytest.approx(statistics.stdev(vals))
    assert len({json.dumps(r["params"]) for r in comp.runs if r["optimizer"]["label"] == "gd"}) == 3


def test_lr_grid_picks_the_largest_stable_rate_for_gd():
    """On linreg the MSE Hessian's largest eigenvalue is about 2.5: gd is stable below 0.8.
    With a short budget the largest stable rate wins and 5.0 explodes."""
    comp = compare.compare(
        CONFIGS / "linreg.yaml",
        specs=["gd"],
        lr_grid=[0.001, 0.01, 0.1, 0.5, 5.0],
        jobs=1,
        overrides=["train.epochs=30"],
    )
    (search,) = comp.lr_search
    assert search["chosen_lr"] == 0.5
    assert search["scores"][-1] == {"lr": 5.0, "score": None, "status": "diverged"}  # the explosion rule stopped it
    assert comp.summary[0]["lr"] == 0.5


def test_a_diverging_optimizer_is_a_row_not_a_crash(cli):
    r = cli(
        "compare-optimizers",
        CONFIGS / "linreg.yaml",
        "-o",
        "gd lr=5",
        "-o",
        "gd lr=0.5",
        "--json",
        "--set",
        "train.epochs=200",
    )
    assert r.code == 0
    doc = json.loads(r.stdout)
    rows = {row["optimizer"]: row for row in doc["summary"]}
    assert rows["gd lr=5"]["status"] == "diverged" and not rows["gd lr=5"].get("winner")
    assert rows["gd lr=0.5"]["winner"]


def test_json_document_shape(cli):
    r = cli("compare-optimizers", CONFIGS / "compare_linreg.yaml", "--json", "-j", "1", "--target-loss", "0.1")
    assert r.code == 0
    doc = json.loads(r.stdout)
    assert set(doc) >= {"runs", "summary", "config"}
    run = doc["runs"][0]
    assert set(run) >= {"optimizer", "seed", "status", "metrics", "history", "timing", "to_target"}
    assert run["optimizer"]["name"] == "gd" and run["to_target"]["epoch"] >= 1
    assert len(doc["summary"]) == 4 and sum(bool(s.get("winner")) for s in doc["summary"]) == 1
    assert doc["config"]["model"]["name"] == "linear"


def test_playgrounds(cli):
    rosen = compare.compare(CONFIGS / "rosenbrock.yaml", jobs=1)
    by = {r["optimizer"]: r for r in rosen.summary}
    assert by["adam"]["status"] == "converged" and by["adam"]["distance_to_minimum"] < 1e-6
    assert by["gd"]["distance_to_minimum"] > 0.1  # crawls along the valley
    assert by["momentum"]["distance_to_minimum"] < by["gd"]["distance_to_minimum"]
    saddle = compare.compare(CONFIGS / "saddle.yaml", jobs=1)
    by = {r["optimizer"]: r for r in saddle.summary}
    assert by["gd"]["final_value"] > 0  # still near the saddle point
    assert all(by[k]["final_value"] < by["gd"]["final_value"] for k in ("momentum", "rmsprop", "adam"))
    r = cli("compare-optimizers", CONFIGS / "saddle.yaml")
    assert r.code == 0 and "final point" in r.stdout


def test_playground_config_cannot_be_trained(cli):
    r = cli("train", CONFIGS / "rosenbrock.yaml")
    assert r.code == 2 and "compare-optimizers" in r.stderr


def test_compare_configs_run():
    comp = compare.compare(CONFIGS / "compare_mlp.yaml", jobs=1)
    assert all(r["status"] == "completed" for r in comp.summary)
    best = next(r for r in comp.summary if r.get("winner"))
    assert best["val_accuracy"] >= 0.95
    comp = compare.compare(CONFIGS / "compare_linreg.yaml", jobs=1)
    assert all(abs(r["params"]["weight"][0][0] - 3) < 0.2 for r in comp.runs)


@pytest.mark.parametrize(
    "args,message",
    [
        (["-o", "adma"], "did you mean 'adam'"),
        (["-o", "sgd momentum"], "must be key=value"),
        (["-o", "sgd nesterov=true"], "Nesterov momentum requires"),
        (["--lr-grid", "fast"], "expected numbers"),
    ],
)
def test_bad_optimizer_specs_exit_2(cli, args, message):
    r = cli("compare-optimizers", CONFIGS / "linreg.yaml", *args)
    assert r.code == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_output_dir_holds_runs_and_comparison(tmp_path):
    compare.compare(CONFIGS / "compare_linreg.yaml", jobs=1, output_dir=tmp_path, overrides=["train.epochs=5"])
    assert (tmp_path / "comparison.csv").is_file() and (tmp_path / "comparison.json").is_file()
    run_dirs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(run_dirs) == 4 and all((p / "summary.json").is_file() for p in run_dirs)


def test_plot_writes_png(tmp_path, cli):
    require("matplotlib")
    for cfg in ("compare_linreg.yaml", "rosenbrock.yaml"):
        out = tmp_path / (cfg + ".png")
        r = cli("compare-optimizers", CONFIGS / cfg, "-j", "1", "--plot", out)
        assert r.code == 0
        data = out.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_plot_without_matplotlib_says_how_to_install(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = cli("compare-optimizers", CONFIGS / "linreg.yaml", "--plot", "x.png")
    assert r.code == 2 and "pip install 'trainkit[plot]'" in r.stderr


# --------------------------------------------------------------------------- broken runs never win


def _run(label, lr, seed, val, history=(1.0, 0.5), status="completed", test=None):
    metrics = {"train_loss": history[-1], "val_loss": val, **({"test_loss": test} if test is not None else {})}
    return {
        "optimizer": {"label": label, "name": "sgd", "lr": lr},
        "seed": seed,
        "status": status,
        "metrics": metrics,
        "history": [{"epoch": i + 1, "train_loss": v, "val_loss": val} for i, v in enumerate(history)],
        "timing": {"train_s": 0.1, "wall_s": 0.1},
    }


def _contenders(*labels):
    return [compare.Contender(label, {"name": "sgd"}) for label in labels]


def test_a_run_exploding_with_an_underflowed_val_loss_never_wins_the_lr_search():
    """A float32 val loss can be exactly 0.0 on the way to 5e17: the run's history shows it."""
    exploding = _run("sgd", 10.0, 0, val=0.0, history=(2.0, 3e4, 5e17))
    fine = _run("sgd", 0.1, 0, val=0.2)
    lr, entry = ranking.pick_lr([(10.0, exploding), (0.1, fine)], playground=False)
    assert lr == 0.1 and entry["chosen_lr"] == 0.1
    assert entry["scores"][0] == {"lr": 10.0, "score": None, "status": "exploding"}


def test_an_optimizer_that_diverged_on_any_seed_ranks_below_every_one_that_did_not():
    runs = [
        _run("a", 0.1, 0, val=0.01),
        _run("a", 0.1, 1, val=float("nan"), status="diverged"),
        _run("b", 0.1, 0, val=0.5),
        _run("b", 0.1, 1, val=0.7),
        _run("c", 0.1, 0, val=0.0, history=(2.0, 3e4, 5e17)),  # exploding, never stopped
        _run("c", 0.1, 1, val=0.3),
    ]
    rows = ranking.summarize(_contenders("a", "b", "c"), runs, playground=False, target=None)
    by = {r["optimizer"]: r for r in rows}
    assert by["b"]["winner"] and by["b"]["rank"] == 1
    assert not by["a"].get("winner") and not by["c"].get("winner")
    assert (by["a"]["diverged_seeds"], by["c"]["diverged_seeds"]) == (1, 1)
    assert by["c"]["status"] == "completed 1, exploding 1"
    assert by["c"]["val_loss"] == 0.3  # the exploding seed's 0.0 is not averaged in
    assert ranking.verdict(rows) == "winner: b (lr 0.1)"


def test_ties_and_no_winner_are_said():
    tie = [_run("a", 0.1, 0, val=0.25), _run("b", 0.2, 0, val=0.25)]
    rows = ranking.summarize(_contenders("a", "b"), tie, playground=False, target=None)
    assert not any(r.get("winner") for r in rows)
    assert ranking.verdict(rows) == "no winner: a tie between a, b"
    broken = [_run("a", 0.1, 0, val=1.0, status="diverged"), _run("b", 0.2, 0, val=0.0, history=(1.0, 1e9))]
    rows = ranking.summarize(_contenders("a", "b"), broken, playground=False, target=None)
    assert not any(r.get("winner") for r in rows)
    assert ranking.verdict(rows).startswith("no winner: every optimizer diverged")
    lr, entry = ranking.pick_lr([(0.1, tie[0]), (0.2, tie[1])], playground=False)
    assert lr == 0.2 and entry["note"] == "tie between lr 0.1, 0.2; took the largest"
    lr, entry = ranking.pick_lr([(1.0, broken[0]), (3.0, broken[1])], playground=False)
    assert lr == 1.0 and entry["note"].startswith("every rate diverged or exploded")


def test_the_lr_search_picks_on_val_and_the_test_split_is_reported_beside_it(cli):
    r = cli("compare-optimizers", CONFIGS / "iris.yaml", "-o", "sgd", "-o", "adam", "--lr-grid", "0.01,0.1", "-j", "1")
    assert r.code == 0, r.stderr
    assert "lr picked on val loss, never on test" in r.stdout
    assert " test " in r.stdout.splitlines()[1]  # a column of its own
    assert re.search(r"lr search sgd on val loss: .*; chose 0\.1", r.stdout)
    assert "its test loss" in r.stdout
    doc = json.loads(cli("compare-optimizers", CONFIGS / "iris.yaml", "-o", "sgd", "--lr-grid", "0.1", "--json").stdout)
    assert doc["picked_on"] == "val loss" and doc["lr_search"][0]["picked_on"] == "val loss"
    assert "test_loss" in doc["summary"][0] and doc["verdict"] == "winner: sgd (lr 0.1)"


# --------------------------------------------------------------------------- errors cross processes


def _error_classes():
    import trainkit.compare.runner  # noqa: F401 - every module that defines one
    import trainkit.report.plots  # noqa: F401
    import trainkit.runs.rundir  # noqa: F401
    from trainkit.errors import TrainkitError

    out, todo = [], [TrainkitError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo += cls.__subclasses__()
    return out


SAMPLES = {
    "ConfigError": lambda c: c([Issue("a.yaml", 3, 5, "optimizer.lr", "must be > 0", "try 0.01")]),
    "DataError": lambda c: c("bad row", "x.csv", "fix it", "a.yaml:2:3: data.path"),
    "Interrupted": lambda c: c("SIGTERM"),
}


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_survives_pickling(cls):
    err = SAMPLES.get(cls.__name__, lambda c: c("something is wrong\n    help: fix it"))(cls)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert str(back) == str(err) and back.to_dict() == err.to_dict() and back.exit_code == err.exit_code


def test_a_config_error_in_a_worker_process_is_exit_2_with_its_message(cli, write_config):
    """The batch size is checked against the data when the run is built, i.e. in the worker."""
    cfg = write_config(
        """
        data: {name: linear, n_samples: 50}
        model: {name: linear}
        optimizer: {name: sgd, lr: 0.1}
        train: {epochs: 2, batch_size: 1000}
        """
    )
    r = cli("compare-optimizers", cfg, "-o", "sgd", "-o", "adam", "--jobs", "2")
    assert r.code == 2 and "batch_size 1000 is larger than the training set" in r.stderr
    assert "Traceback" not in r.stderr and "BrokenProcessPool" not in r.stderr
    r = cli("compare-optimizers", cfg, "-o", "sgd", "-o", "adam", "--jobs", "2", "--json")
    assert r.code == 2 and r.json["error"]["issues"][0]["key"] == "train.batch_size"


# --------------------------------------------------------------------------- signals


LONG = """
seed: 0
data: {name: moons, n_samples: 400, val_fraction: 0.2}
model: {name: mlp, hidden: [32, 32]}
optimizer: {name: sgd, lr: 0.05}
train: {epochs: 100000, batch_size: 16, checkpoint_every: 1000}
"""


def _children(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d))
    return kids


def _running(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _snapshot(folder):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads worker processes from /proc")
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_every_worker_before_the_parent_exits(tmp_path, write_config, sig, code):
    cfg, out = write_config(LONG), tmp_path / "out"
    args = ["compare-optimizers", cfg, "--jobs", "2", "--output-dir", out, "-o", "sgd", "-o", "adam", "-o", "rmsprop"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainkit", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while len([f for f in out.glob("*/metrics.jsonl") if f.stat().st_size]) < 2:  # both workers training
            assert time.monotonic() < deadline and proc.poll() is None, "the workers never started"
            time.sleep(0.1)
        workers = _children(proc.pid)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code and f"interrupted by {sig.name}" in stderr and "Traceback" not in stderr
    before = _snapshot(out)
    time.sleep(1.0)
    assert _snapshot(out) == before  # nothing writes after the parent is gone
    assert not [pid for pid in workers if _running(pid)]
    assert not (out / "comparison.json").exists()
    for run in ("sgd-lr0.05-seed0", "adam-lr0.001-seed0"):  # each stopped cleanly, resumable
        assert json.loads((out / run / "summary.json").read_text())["status"] == "interrupted"
        assert (out / run / "checkpoint.npz").is_file()


# --------------------------------------------------------------------------- bad input, exit 2


def test_a_playground_may_target_a_negative_value():
    from trainkit.compare import runner
    from trainkit.config import load_config

    runner._check_numbers(load_config(CONFIGS / "saddle.yaml", kind="any"), None, -0.5, False, True)  # f < 0 there


@pytest.mark.parametrize(
    "args,message",
    [
        (["-o", ""], "empty optimizer spec"),
        (["-o", "sgd name=adam"], "the optimizer's name comes first"),
        (["-o", "sgd lr=0.1 lr=0.2"], "lr is given twice"),
        (["-o", "sgd", "-o", "sgd"], "the same optimizer as -o 'sgd'"),
        (["-o", "momentum", "-o", "sgd momentum=0.9"], "the same optimizer as -o 'momentum'"),
        (["-o", "sgd momentun=0.9"], "did you mean 'momentum'?"),
        (["-o", "adam betas=[0.9,0.999] eps_=1"], "did you mean 'eps'?"),
        (["-o", "sgd learning_rate=0.1"], "did you mean 'lr'?"),
        (["-o", "sgd lr=-1"], "lr: input should be greater than or equal to 0, got -1"),
        (["--lr-grid", "inf"], "learning rates must be finite positive numbers, got inf"),
        (["--lr-grid", "0.1,nan"], "got nan"),
        (["--lr-grid", ","], "got none"),
        (["--target-loss", "nan"], "the target loss must be a finite number"),
        (["--target-loss", "-1"], "every trainkit loss is 0 or more, so a target loss of -1 is never reached"),
    ],
)
def test_bad_compare_options_exit_2_before_any_run(cli, monkeypatch, args, message):
    monkeypatch.setattr(pool, "run_all", lambda *a, **k: pytest.fail("ran before checking its options"))
    r = cli("compare-optimizers", CONFIGS / "linreg.yaml", *args)
    assert r.code == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = cli("compare-optimizers", CONFIGS / "linreg.yaml", *args, "--json")
    assert r.code == 2 and r.json["status"] == "error" and message in r.json["error"]["message"]


@pytest.mark.parametrize(
    "args,message",
    [(["--seeds", "0"], "--seeds"), (["--jobs", "two"], "--jobs"), (["--bogus"], "--bogus"), ([], "Missing argument")],
)
def test_usage_errors_under_json_are_one_json_document(cli, args, message):
    target = [] if not args else [CONFIGS / "linreg.yaml"]
    r = cli("compare-optimizers", *target, *args, "--json")
    assert r.code == 2
    doc = r.json  # the whole of stdout is one document
    assert doc["status"] == "error" and doc["error"]["type"] == "usage" and message in doc["error"]["message"]


def test_plot_path_is_checked_before_any_training(cli, monkeypatch, tmp_path):
    require("matplotlib")
    monkeypatch.setattr(pool, "run_all", lambda *a, **k: pytest.fail("trained before checking --plot"))
    r = cli("compare-optimizers", CONFIGS / "linreg.yaml", "--plot", tmp_path / "curves.txt")
    assert r.code == 2 and "extension .txt" in r.stderr and ".png" in r.stderr
    r = cli("compare-optimizers", CONFIGS / "linreg.yaml", "--plot", tmp_path / "curves")
    assert r.code == 2 and "no extension" in r.stderr
    r = cli("compare-optimizers", CONFIGS / "linreg.yaml", "--plot", tmp_path / "nowhere" / "curves.png")
    assert r.code == 2 and "does not exist" in r.stderr and str(tmp_path / "nowhere") in r.stderr
    r = cli("compare-optimizers", CONFIGS / "linreg.yaml", "--plot", tmp_path / "curves.txt", "--json")
    assert r.code == 2 and "extension .txt" in r.json["error"]["message"]


@pytest.mark.parametrize("command", ["compare-optimizers", "lr-find"])
def test_plot_onto_an_existing_file_is_refused_before_any_training(cli, monkeypatch, tmp_path, command):
    require("matplotlib")
    monkeypatch.setattr(pool, "run_all", lambda *a, **k: pytest.fail("trained before checking --plot"))
    png = tmp_path / "mine.png"
    png.write_bytes(b"the user's own picture")
    r = cli(command, CONFIGS / "linreg.yaml", "--plot", png)
    assert r.code == 2 and "already exists" in r.stderr and str(png) in r.stderr, r.stderr
    assert png.read_bytes() == b"the user's own picture"


def test_a_second_comparison_into_the_same_output_dir_is_refused(cli, tmp_path):
    args = ["compare-optimizers", CONFIGS / "compare_linreg.yaml", "-j", "1", "--output-dir", tmp_path / "out"]
    assert cli(*args, "--set", "train.epochs=3").code == 0
    before = _snapshot(tmp_path / "out")
    r = cli(*args, "--set", "train.epochs=3")
    assert r.code == 2 and "already holds a comparison" in r.stderr and "Traceback" not in r.stderr
    assert "--output-dir" in r.stderr and "--resume" not in r.stderr and "--overwrite" not in r.stderr
    assert _snapshot(tmp_path / "out") == before


# --------------------------------------------------------------------------- output


def test_progress_goes_to_stderr_as_plain_lines(cli):
    r = cli("compare-optimizers", CONFIGS / "compare_linreg.yaml", "-j", "1", "--set", "train.epochs=3")
    lines = [x for x in r.stderr.splitlines() if x.startswith("[")]
    assert lines[0].startswith("[1/4] gd lr=0.5 seed 0: completed val_loss=") and lines[-1].startswith("[4/4] adam")
    assert "\x1b[" not in r.stderr and "[1/4]" not in r.stdout
    r = cli("compare-optimizers", CONFIGS / "compare_linreg.yaml", "-j", "1", "--set", "train.epochs=3", "--json")
    assert json.loads(r.stdout)["summary"] and "[4/4]" in r.stderr


@pytest.mark.parametrize(
    "config,extra",
    [
        ("compare_linreg.yaml", ["--seeds", "3"]),
        ("compare_mlp.yaml", []),
        ("iris.yaml", ["--lr-grid", "0.01,0.1", "--seeds", "2"]),
        ("rosenbrock.yaml", []),
    ],
)
def test_the_table_fits_80_columns(cli, config, extra):
    r = cli("compare-optimizers", CONFIGS / config, "-j", "2", *extra)
    assert r.code == 0
    table = r.stdout.split("★ lowest")[0].splitlines()
    assert max(len(line.rstrip()) for line in table) <= 80, "\n" + "\n".join(table)


def _saved_figure(monkeypatch):
    import matplotlib.figure

    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, path, **k: saved.append(fig))
    return saved


def test_curves_show_the_mean_with_a_band_and_each_lr(monkeypatch, tmp_path):
    require("matplotlib")
    from matplotlib.collections import PolyCollection

    from trainkit.report.plots import plot_comparison

    saved = _saved_figure(monkeypatch)
    comp = compare.compare(CONFIGS / "compare_linreg.yaml", seeds=3, jobs=1, overrides=["train.epochs=10"])
    plot_comparison(comp, tmp_path / "c.png")
    (ax,) = saved[0].axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "gd (lr 0.5) train" in labels and "momentum (lr 0.05) val" in labels
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 8  # a band per optimizer and split
    gd = [r["history"] for r in comp.runs if r["optimizer"]["label"] == "gd"]
    mean = np.mean([[h["train_loss"] for h in hist] for hist in gd], axis=0)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), mean)
    assert "mean of 3 seeds" in ax.get_ylabel()


def test_playground_plot_labels_axes_and_draws_paths_above_the_contours(monkeypatch, tmp_path):
    require("matplotlib")
    from trainkit.report.plots import plot_comparison

    saved = _saved_figure(monkeypatch)
    plot_comparison(compare.compare(CONFIGS / "rosenbrock.yaml", jobs=1), tmp_path / "p.png")
    (ax,) = saved[0].axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x", "y")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "adam (lr 0.05, converged)" in labels
    contour_z = max(c.get_zorder() for c in ax.collections)
    paths = [line for line in ax.get_lines() if line.get_label().startswith("gd")]
    assert paths and all(line.get_zorder() > contour_z for line in paths)


@pytest.mark.parametrize("config", ["rosenbrock.yaml", "saddle.yaml"])
def test_validate_accepts_playground_configs(cli, config):
    r = cli("validate", CONFIGS / config)
    assert r.code == 0 and r.stdout.startswith(f"OK {CONFIGS / config}: optimizer playground")
    assert cli("validate", CONFIGS / config, "--json").json["status"] == "ok"
    r = cli("validate", CONFIGS / config, "--set", "compare.optimizers=[adma]")
    assert r.code == 2 and "did you mean 'adam'" in r.stderr


def test_comparison_csv_has_every_rows_columns_when_the_first_optimizer_diverged(tmp_path):
    compare.compare(
        CONFIGS / "linreg.yaml",
        specs=["gd lr=5", "gd lr=0.5"],
        jobs=1,
        output_dir=tmp_path,
        overrides=["train.epochs=20"],
    )
    header = (tmp_path / "comparison.csv").read_text().splitlines()[0].split(",")
    assert "val_loss" in header and "diverged_seeds" in header and "rank" in header
