"""compare-optimizers: fairness, determinism across worker counts, seeds, lr search, output."""

from __future__ import annotations

import json
import statistics
import sys

import numpy as np
import pytest
from conftest import CONFIGS

from trainkit import api
from trainkit.compare import runner as compare
from trainkit.config import load_config
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
    pytest.importorskip("matplotlib")
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
