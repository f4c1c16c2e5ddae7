"""The explosion rule: a run whose loss or parameters explode stops as `diverged` (exit 1),
though every number is still finite, and a resumed run decides exactly as a straight one."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CONFIGS
from test_runs import train_into

from trainkit import api
from trainkit.config import load_config
from trainkit.runs import divergence

EXPLODING = """
seed: 0
data: {name: linear, n_samples: 100, val_fraction: 0.2, noise: {kind: uniform, low: 0.0, high: 1.0}}
model: {name: linear}
optimizer: {name: gd, lr: 3.0}
train: {epochs: 100, dtype: float64, checkpoint_every: 1}
"""


def test_gd_lr_3_on_linreg_is_diverged_not_completed(cli):
    """Before the rule: `completed` after 100 epochs at a train loss of about 9e162."""
    r = cli("train", CONFIGS / "linreg.yaml", "--set", "optimizer.lr=3", "--set", "train.epochs=100", "--json")
    assert r.code == 1
    doc = r.json
    assert doc["status"] == "diverged"
    assert "loss explosion" in doc["stop_reason"] and "3 epochs in a row" in doc["stop_reason"]
    # the first epoch's loss is 8.74: epochs 4, 5 and 6 are above 1e4 times that
    assert doc["epochs_run"] == 5
    assert max(h["train_loss"] for h in doc["history"]) < 1e9


def test_lr_10_stops_within_a_few_epochs_not_111():
    result = api.train(CONFIGS / "linreg.yaml", ["optimizer.lr=10"])
    assert result.status == "diverged" and result.epochs_run <= 5
    assert "loss explosion" in result.message


def test_the_rule_fires_only_after_patience_consecutive_epochs():
    flat = np.zeros(2)
    first = {"epoch": 1, "train_loss": 2.0}
    big = 2.0 * divergence.FACTOR * 1.01
    rows = [first, {"epoch": 2, "train_loss": big}, {"epoch": 3, "train_loss": 1.0}, {"epoch": 4, "train_loss": big}]
    assert divergence.check(rows[:1], rows[1], flat) is None
    assert divergence.check(rows[:3], rows[3], flat) is None  # a spike that came back resets the streak
    five = {"epoch": 5, "train_loss": big}
    assert divergence.check(rows, five, flat) is None  # two in a row
    assert "loss explosion" in divergence.check([*rows, five], {"epoch": 6, "train_loss": big}, flat)


def test_the_floor_keeps_a_run_that_starts_near_zero_alive():
    flat = np.zeros(2)
    hist = [{"epoch": 1, "train_loss": 1e-8}, {"epoch": 2, "train_loss": 0.5}, {"epoch": 3, "train_loss": 0.5}]
    assert divergence.check(hist, {"epoch": 4, "train_loss": 0.5}, flat) is None  # 5e7 x the first, below 1.0
    assert divergence.check(hist[:1] + [{"epoch": 2, "train_loss": 2}] * 2, {"epoch": 4, "train_loss": 2}, flat)


def test_parameters_beyond_float32_range_are_divergence_in_float64():
    row = {"epoch": 7, "train_loss": 1.0}
    assert "parameter overflow" in divergence.check([], row, np.array([1.0, -1e39]))
    assert divergence.check([], row, np.array([1.0, -1e38])) is None
    assert divergence.check([], row, np.array([1.0, -3e38], dtype=np.float32)) is None


def test_exploding_history():
    assert divergence.exploding([{"train_loss": 1.0}, {"train_loss": 2e4}])
    assert divergence.exploding([{"train_loss": 1.0}, {"train_loss": float("nan")}])
    assert not divergence.exploding([{"train_loss": 1.0}, {"train_loss": 9e3}])
    assert not divergence.exploding([])


def test_example_configs_do_not_trip_the_rule():
    for name in ("linreg.yaml", "logistic.yaml", "mlp_moons.yaml", "softmax_blobs.yaml"):
        loaded = load_config(CONFIGS / name, ["train.epochs=30"])
        assert api.train(loaded).status != "diverged", name


@pytest.mark.parametrize("stop_after_epoch", [4, 5])
def test_resume_mid_explosion_diverges_at_the_same_epoch(tmp_path, write_config, stop_after_epoch):
    """The streak lives in the history, which the checkpoint holds: no state is lost."""
    cfg = write_config(EXPLODING)
    straight = train_into(tmp_path / "a", cfg)
    assert straight.status == "diverged" and straight.epochs_run == 5
    first = train_into(tmp_path / "b", cfg, stop_after_epoch=stop_after_epoch)
    assert first.status == "interrupted"
    resumed = train_into(tmp_path / "b", cfg, resume=True)
    assert (resumed.status, resumed.epochs_run, resumed.stop_reason) == (
        straight.status,
        straight.epochs_run,
        straight.stop_reason,
    )
    assert resumed.history == straight.history


def test_a_loss_that_jumps_to_inf_is_still_caught_by_the_nan_inf_check():
    result = api.train(CONFIGS / "linreg.yaml", ["optimizer.lr=1e30", "train.dtype=float32"])
    assert result.status == "diverged" and "loss became inf at epoch 2, step 1" in result.stop_reason
