"""End-to-end training: known answers, the JSON contract, determinism, divergence, exit codes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import CONFIGS, LINREG_SMALL, run_process

import trainkit

# ------------------------------------------------------------------ known answers


def test_linreg_recovers_slope_and_intercept():
    result = trainkit.train(CONFIGS / "linreg.yaml")
    assert result.status == "completed" and result.epochs_run == 1000
    assert result.params["weight"].shape == (1, 1) and result.params["bias"].shape == (1,)
    assert abs(result.params["weight"][0, 0] - 3.0) < 0.15
    assert abs(result.params["bias"][0] - 2.5) < 0.15  # 2 + the noise mean 0.5


def test_linreg_matches_closed_form_least_squares():
    """Gradient descent converges to the normal-equation solution on the training split."""
    result = trainkit.train(CONFIGS / "linreg.yaml", overrides=["train.epochs=3000"])
    from trainkit import api

    exp = api.build(trainkit.load_config(CONFIGS / "linreg.yaml"))
    X, y = exp.arrays["X_train"], exp.arrays["T_train"][:, 0]
    A = np.c_[X, np.ones(len(X))]
    w, b = np.linalg.lstsq(A, y, rcond=None)[0]
    assert result.params["weight"][0, 0] == pytest.approx(w, abs=1e-9)
    assert result.params["bias"][0] == pytest.approx(b, abs=1e-9)


def test_json_document_contract(cli):
    r = cli("train", CONFIGS / "linreg.yaml", "--json")
    assert r.code == 0
    doc = json.loads(r.stdout)  # stdout holds exactly one JSON document
    assert doc["status"] == "completed" and doc["epochs_run"] == 1000
    assert set(doc["metrics"]) >= {"train_loss", "val_loss", "val_r2"}
    assert abs(doc["params"]["weight"][0][0] - 3) < 0.15 and abs(doc["params"]["bias"][0] - 2.5) < 0.15
    assert len(doc["history"]) == 1000
    assert doc["history"][0]["epoch"] == 1 and {"train_loss", "val_loss", "lr"} <= set(doc["history"][0])
    assert all(set(row) == set(doc["history"][0]) for row in doc["history"])
    assert doc["history"][-1]["train_loss"] == doc["metrics"]["train_loss"]
    assert doc["timing"]["wall_s"] >= doc["timing"]["train_s"] > 0 and doc["timing"]["epoch_s_median"] > 0
    assert doc["config"]["optimizer"] == {"name": "gd", "lr": 0.5}
    assert doc["config"]["train"]["batch_size"] == "full"  # defaults resolved


def test_same_seed_is_bit_identical_across_processes():
    a = run_process("train", CONFIGS / "mlp_moons.yaml", "--json", "--set", "train.epochs=5")
    b = run_process("train", CONFIGS / "mlp_moons.yaml", "--json", "--set", "train.epochs=5")
    assert a.code == b.code == 0, a.stderr
    da, db = a.json, b.json
    assert da["params"] == db["params"] and da["history"] == db["history"]
    c = run_process("train", CONFIGS / "mlp_moons.yaml", "--json", "--set", "train.epochs=5", "--seed", "1")
    assert c.json["params"] != da["params"]


def test_dropout_is_deterministic_in_process():
    args = ["model.dropout=0.5", "train.epochs=3"]
    a = trainkit.train(CONFIGS / "mlp_moons.yaml", overrides=args)
    b = trainkit.train(CONFIGS / "mlp_moons.yaml", overrides=args)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    without = trainkit.train(CONFIGS / "mlp_moons.yaml", overrides=["train.epochs=3"])
    assert not np.array_equal(a.params["layers.0.weight"], without.params["layers.0.weight"])  # the masks acted


# ------------------------------------------------------------------ every example config


EXPECTATIONS = {
    "linreg.yaml": lambda r: abs(r.params["weight"][0, 0] - 3) < 0.15 and abs(r.params["bias"][0] - 2.5) < 0.15,
    "logistic.yaml": lambda r: r.metrics["val_accuracy"] >= 0.9,
    "mlp_moons.yaml": lambda r: r.metrics["val_accuracy"] >= 0.95,
    "softmax_blobs.yaml": lambda r: r.metrics["val_accuracy"] >= 0.9,
    "iris.yaml": lambda r: r.metrics["test_accuracy"] >= 0.93,
    "digits_cnn.yaml": lambda r: r.metrics["val_accuracy"] >= 0.98,
    "signals_cnn.yaml": lambda r: r.metrics["val_accuracy"] >= 0.85,
    "signals_mlp.yaml": lambda r: r.metrics["train_accuracy"] >= 0.99 and r.metrics["val_accuracy"] < 0.5,  # memorises
    "compare_linreg.yaml": lambda r: abs(r.params["weight"][0, 0] - 3) < 0.15,
    "compare_mlp.yaml": lambda r: r.metrics["val_accuracy"] >= 0.95,
    "compare_new_mlp.yaml": lambda r: r.metrics["val_accuracy"] >= 0.95,
    "overfit_regularized.yaml": lambda r: r.status == "early_stopped" and r.metrics["val_loss"] < 0.4,
    "sweep_moons.yaml": lambda r: r.metrics["val_accuracy"] >= 0.92,
    "digits_pruned.yaml": lambda r: r.metrics["val_accuracy"] >= 0.98 and r.history[-1]["sparsity"] > 0.899,
    "digits_distilled.yaml": lambda r: r.metrics["val_accuracy"] >= 0.92,  # from a 3-epoch teacher (SETUP)
}


def teacher_for_distillation(tmp_path) -> list[str]:
    """digits_distilled.yaml learns from a trained digits_cnn.yaml run: a short one here."""
    trainkit.train(CONFIGS / "digits_cnn.yaml", overrides=["train.epochs=3"], output_dir=tmp_path / "teacher")
    return [f"distill.teacher={tmp_path / 'teacher'}"]


SETUP = {"digits_distilled.yaml": teacher_for_distillation}  # what a config needs first: its overrides


PLAYGROUNDS = {"rosenbrock.yaml", "saddle.yaml"}  # no data: run by compare-optimizers (test_compare.py)
PLAYGROUNDS.add("compare_new_quadratic.yaml")  # run in test_new_optimizers.py


def test_every_config_is_covered():
    assert {p.name for p in CONFIGS.glob("*.yaml")} == set(EXPECTATIONS) | PLAYGROUNDS


@pytest.mark.parametrize(
    "path", sorted(p for p in CONFIGS.glob("*.yaml") if p.name not in PLAYGROUNDS), ids=lambda p: p.name
)
def test_every_example_config_trains_to_its_goal(path, tmp_path):
    result = trainkit.train(path, overrides=SETUP[path.name](tmp_path) if path.name in SETUP else ())
    assert result.status in ("completed", "early_stopped")
    assert EXPECTATIONS[path.name](result), result.metrics


def test_overfitting_demo_overfits_without_its_cures():
    r = trainkit.train(
        CONFIGS / "overfit_regularized.yaml",
        overrides=["model.dropout=0", "regularization.l2=0", "train.early_stopping=null"],
    )
    losses = [row["val_loss"] for row in r.history]
    assert r.metrics["train_loss"] < 0.05 and losses[-1] > 3 * min(losses)


# ------------------------------------------------------------------ exit codes and messages


def test_divergence_exits_1_with_a_hint(cli):
    r = cli("train", CONFIGS / "linreg.yaml", "--set", "optimizer.lr=5", "--json")
    assert r.code == 1
    doc = json.loads(r.stdout)
    assert doc["status"] == "diverged" and doc["epochs_run"] < 1000
    assert "smaller learning rate" in doc["message"]
    r = cli("train", CONFIGS / "linreg.yaml", "--set", "optimizer.lr=5", "--progress", "none")
    assert r.code == 1 and "diverged" in r.stdout and "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize(
    "overrides,key,message",
    [
        (["optimizer.learning_rate=0.1"], "optimizer.learning_rate", "did you mean 'lr'"),
        (["optimizer.lr=-1"], "optimizer.lr", "greater than or equal to 0"),
        (["optimizer.name=adma"], "optimizer.name", "did you mean 'adam'"),
        (["train.epochs=lots"], "train.epochs", "valid integer"),
    ],
)
def test_bad_config_exits_2_without_traceback(cli, overrides, key, message):
    args = [a for o in overrides for a in ("--set", o)]
    r = cli("train", CONFIGS / "linreg.yaml", *args)
    assert r.code == 2
    assert key in r.stderr and message in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""
    j = cli("train", CONFIGS / "linreg.yaml", *args, "--json")
    assert j.code == 2
    doc = json.loads(j.stdout)
    assert doc["status"] == "error" and doc["error"]["type"] == "config"
    assert doc["error"]["issues"][0]["key"] == key


def test_yaml_syntax_error_exits_2_with_file_and_line(cli, write_config):
    p = write_config("seed: 0\ndata: {name: linear\nmodel: linear\n")
    r = cli("train", p)
    assert r.code == 2 and re.search(rf"{re.escape(str(p))}:\d+:\d+: invalid YAML", r.stderr)


def test_real_process_never_prints_a_traceback(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("data: {name: linear}\nmodel: {name: linear}\noptimizer: {name: sgd, lr: -1}\n")
    r = run_process("train", p)
    assert r.code == 2 and "Traceback" not in r.stderr and f"{p}:3:" in r.stderr


def test_batch_size_larger_than_training_set(cli, write_config):
    p = write_config(LINREG_SMALL.replace("name: gd", "name: sgd").replace("epochs: 20", "epochs: 2, batch_size: 500"))
    r = cli("train", p)
    assert r.code == 2 and "larger than the training set (40 samples)" in r.stderr and "train.batch_size" in r.stderr


def test_init_from_file(tmp_path, write_config, cli):
    np.savez(tmp_path / "init.npz", weight=np.array([[3.0]]), bias=np.array([2.5]))
    p = write_config(
        LINREG_SMALL.replace("model: {name: linear}", "model: {name: linear, init: {from: init.npz}}")
        .replace("epochs: 20", "epochs: 1")
        .replace("lr: 0.5", "lr: 0.0")
    )
    r = trainkit.train(p)
    assert r.params["weight"][0, 0] == 3.0 and r.params["bias"][0] == 2.5
    np.savez(tmp_path / "init.npz", weight=np.array([[3.0]]))
    r = cli("train", p)
    assert r.code == 2 and "missing bias" in r.stderr and "model.init.from" in r.stderr
    np.savez(tmp_path / "init.npz", weight=np.array([[3.0, 1.0]]), bias=np.array([2.5]))
    r = cli("train", p)
    assert r.code == 2 and "weight has shape (1, 2), the model needs (1, 1)" in r.stderr


def test_model_output_size_must_match_data(cli, write_config):
    p = write_config("data: {name: blobs, n_classes: 3}\nmodel: {name: mlp, out_features: 2}\noptimizer: adam\n")
    r = cli("train", p)
    assert r.code == 2 and "the model has 2 outputs but the data has 3 classes" in r.stderr


def test_classification_loss_on_regression_data(cli, write_config):
    p = write_config("data: linear\nmodel: linear\nloss: cross_entropy\noptimizer: sgd\n")
    r = cli("train", p)
    assert r.code == 2 and "cross_entropy is a classification loss but the task is regression" in r.stderr


# ------------------------------------------------------------------ output habits


def test_plain_progress_has_no_ansi_and_few_lines(cli):
    r = cli("train", CONFIGS / "linreg.yaml", "--progress", "plain")
    assert r.code == 0 and "\x1b[" not in r.stdout
    epoch_lines = [line for line in r.stdout.splitlines() if line.startswith("epoch")]
    assert 40 <= len(epoch_lines) <= 52
    assert epoch_lines[0].startswith("epoch    1/1000") and epoch_lines[-1].startswith("epoch 1000/1000")
    assert "weight" in r.stdout and "3.03" in r.stdout


def test_not_a_terminal_means_plain(tmp_path):
    r = run_process("train", CONFIGS / "linreg.yaml", env={"CI": "", "NO_COLOR": ""})
    assert r.code == 0 and "\x1b[" not in r.stdout and "epoch 1000/1000" in r.stdout


def test_print_config_shows_resolved_defaults(cli):
    r = cli("train", CONFIGS / "linreg.yaml", "--print-config", "--set", "optimizer.lr=0.25")
    assert r.code == 0
    import yaml

    cfg = yaml.safe_load(r.stdout)
    assert cfg["optimizer"]["lr"] == 0.25 and cfg["train"]["shuffle"] is True and cfg["seed"] == 0


def test_validate(cli, write_config):
    r = cli("validate", CONFIGS / "linreg.yaml")
    assert r.code == 0 and r.stdout.startswith("OK ") and len(r.stdout.strip().splitlines()) == 1
    p = write_config(LINREG_SMALL.replace("lr: 0.5", "lr: -0.5"))
    r = cli("validate", p)
    assert r.code == 2 and "optimizer.lr" in r.stderr


def test_list_shows_components_with_defaults(cli):
    r = cli("list", "optimizers")
    assert r.code == 0
    for name in ("gd", "sgd", "adagrad", "rmsprop", "adam", "adamw", "nadam", "radam"):
        assert re.search(rf"\b{name}\b", r.stdout)
    assert "momentum=0.0" in r.stdout and "betas=(0.9, 0.999)" in r.stdout
    r = cli("list")
    for kind in ("datasets", "models", "layers", "losses", "optimizers", "schedules"):
        assert kind in r.stdout
    r = cli("list", "optimiser")
    assert r.code == 2 and "did you mean 'optimizers'" in r.stderr


def test_help_is_fast_to_import():
    """`trainkit --help` must not import numpy or pydantic (they load on first use)."""
    r = run_process("--help")
    assert r.code == 0 and "train" in r.stdout
    import subprocess
    import sys

    # through main(), as the console script runs it (it once imported numpy for MPI's launch check)
    code = (
        "import sys, trainkit.cli\nsys.argv = ['trainkit', '--help']\ntry:\n    trainkit.cli.main()\n"
        "except SystemExit:\n    pass\nprint('numpy' in sys.modules, 'pydantic' in sys.modules, file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stderr
    assert out.strip() == "False False"
