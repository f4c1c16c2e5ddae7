"""trainkit lr-find: the smoothing and suggestions by hand, the suggestion on moons against the
best rate a grid search finds, the CLI contract (JSON for --set, plot, bad inputs, Ctrl-C)."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import CONFIGS, ROOT, require
from test_bad_inputs import CASES, expectation

from trainkit.optim.lr_find import SMOOTHING, smooth, suggestions


def test_smoothing_is_a_bias_corrected_moving_average():
    losses = [1.0, 0.5, 0.25]
    b = SMOOTHING
    a1 = (1 - b) * 1.0
    a2 = b * a1 + (1 - b) * 0.5
    a3 = b * a2 + (1 - b) * 0.25
    assert smooth(losses) == pytest.approx([a1 / (1 - b), a2 / (1 - b**2), a3 / (1 - b**3)], rel=1e-15)
    assert smooth([2.0] * 5) == pytest.approx([2.0] * 5)  # no bias towards 0 at the start


def test_suggestions_on_a_known_curve():
    """loss = −tanh(log10 lr + 3) then rising past lr = 1: steepest fall at 1e-3, minimum near 1."""
    lrs = list(np.logspace(-7, 1, 161))
    curve = [-math.tanh(math.log10(lr) + 3) + (max(0.0, math.log10(lr)) * 5) ** 2 for lr in lrs]
    minimum, steepest = suggestions(lrs, curve)
    assert steepest == pytest.approx(1e-3, rel=0.13)  # one grid step is a factor 10^0.05 = 1.12
    best = lrs[int(np.argmin(curve))]
    assert minimum == pytest.approx(best / 10) and 0.1 < best <= 1.0


def test_no_suggestion_when_the_loss_never_falls():
    lrs = list(np.logspace(-7, 1, 50))
    assert suggestions(lrs, [float(i) for i in range(50)]) == (None, None)


def test_moons_suggestion_is_within_3x_of_the_grid_search_best(cli):
    """The issue's target: lr-find on configs/mlp_moons.yaml against compare-optimizers --lr-grid for adam."""
    found = cli("lr-find", CONFIGS / "mlp_moons.yaml", "--json")
    assert found.code == 0, found.stderr
    grid = cli(
        "compare-optimizers", CONFIGS / "mlp_moons.yaml", "-o", "adam", "--lr-grid", "0.003,0.01,0.03,0.1,0.3",
        "-j", "1", "--json",
    )  # fmt: skip
    best = grid.json["lr_search"][0]["chosen_lr"]
    doc = found.json
    assert best / 3 <= doc["suggested_lr"] <= best * 3, (doc["suggested_lr"], best)
    assert best / 3 <= doc["steepest_lr"] <= best * 3, (doc["steepest_lr"], best)


def test_json_is_one_document_and_its_rate_sets_the_optimizer(cli, tmp_path):
    r = cli("lr-find", CONFIGS / "mlp_moons.yaml", "--json", "--steps", "60", "--set", "train.batch_size=32")
    assert r.code == 0
    doc = json.loads(r.stdout)  # nothing else on stdout
    assert isinstance(doc["suggested_lr"], float) and doc["suggestion"] == "minimum"
    assert doc["steps"] == len(doc["lrs"]) == len(doc["losses"]) <= 60
    assert doc["lrs"][0] == pytest.approx(1e-7)
    # what `--set optimizer.lr=$(trainkit lr-find c.yaml --json | jq .suggested_lr)` passes on
    v = cli("validate", CONFIGS / "mlp_moons.yaml", "--set", f"optimizer.lr={json.dumps(doc['suggested_lr'])}")
    assert v.code == 0, v.stderr


def test_table_sparkline_plot_and_steepest(cli, tmp_path):
    require("matplotlib")
    png = tmp_path / "lr.png"
    r = cli("lr-find", CONFIGS / "mlp_moons.yaml", "--suggest", "steepest", "--plot", png, "--steps", "120")
    assert r.code == 0, r.stderr
    assert re.search(r"suggested lr: [0-9.e-]+ \(steepest\)", r.stdout)
    assert "stopped:" in r.stdout and "smoothed loss" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stops_at_divergence():
    from trainkit.config import load_config
    from trainkit.optim.lr_find import lr_find

    result = lr_find(load_config(CONFIGS / "mlp_moons.yaml"), end_lr=1e3, steps=300)
    assert len(result.lrs) < 300 and ("passed 4×" in result.stop_reason or "loss became" in result.stop_reason)


BAD_OPTIONS = [
    (["--start-lr", "0"], r"--start-lr: must be a positive number"),
    (["--start-lr", "1", "--end-lr", "0.1"], r"--end-lr: must be larger than --start-lr \(1\), got 0.1"),
    (["--steps", "2"], r"--steps: the ramp needs at least 3 steps"),
    (["--diverge", "0.5"], r"--diverge: must be above 1"),
    (["--end-lr", "inf"], r"--end-lr: must be a finite number, got inf\n.*help: e.g. --end-lr 10"),
    (["--start-lr", "nan"], r"--start-lr: must be a finite number, got nan"),
    (["--start-lr", "-inf"], r"--start-lr: must be a finite number, got -inf"),
    (["--diverge", "inf"], r"--diverge: must be a finite number, got inf"),
    (["--start-lr", "-1"], r"--start-lr: must be a positive number, got -1"),
    (["--suggest", "valley"], r"--suggest: choose minimum or steepest"),
    (["--plot", "no/such/folder/lr.png"], r"--plot no/such/folder/lr.png: the folder no/such/folder does not exist"),
    (["--plot", "lr.txt"], r"--plot lr.txt: extension .txt"),
]


@pytest.mark.parametrize("args,message", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_options_exit_2(cli, args, message):
    r = cli("lr-find", CONFIGS / "mlp_moons.yaml", *args)
    assert r.code == 2 and r.stdout == "" and re.search(message, r.stderr), r.stderr
    j = cli("lr-find", CONFIGS / "mlp_moons.yaml", *args, "--json")
    assert j.code == 2 and json.loads(j.stdout)["status"] == "error" and j.stderr == ""


@pytest.mark.parametrize("case", [c for c in CASES if expectation(c)[0][0] == "train"][::5], ids=lambda p: p.stem)
def test_bad_input_corpus_exits_2_under_lr_find_too(cli, case):
    (_, *args), expect = expectation(case)  # the corpus's `train` cases, run through lr-find
    r = cli("lr-find", case, *args)
    assert r.code == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert re.search(expect, r.stderr), r.stderr


def test_ctrl_c_exits_130(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainkit", "lr-find", str(CONFIGS / "mlp_moons.yaml"),
         "--steps", "10000000", "--start-lr", "1e-9", "--end-lr", "1e-8"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(5)  # imports done, ramping (the tiny rates never diverge)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and out == ""
