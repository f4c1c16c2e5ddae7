"""evaluate and predict on files of the user's own: columns by name, checked files, target
units, and an --output that never overwrites what the user did not name.

The tables are built here (the way a new user exports one from a spreadsheet or a library),
so the suite needs no dataset package."""

from __future__ import annotations

import csv

import numpy as np
import pytest

CLASSES = ["alpha", "beta", "gamma"]


def write_table(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def classification_table(n=150, seed=0):
    """Three classes told apart by `signal`; `noise` is larger and carries nothing, so
    reading the columns in the wrong order costs most of the accuracy."""
    rng = np.random.default_rng(seed)
    k = np.arange(n) % 3
    signal = k * 3.0 + rng.normal(0, 0.3, n)
    noise = rng.normal(0, 10.0, n)
    other = rng.normal(0, 1.0, n)
    header = ["signal", "noise", "other", "label"]
    rows = [[f"{a:.6f}", f"{b:.6f}", f"{c:.6f}", CLASSES[i]] for a, b, c, i in zip(signal, noise, other, k)]
    return header, rows


def reorder(header, rows, order):
    return [header[i] for i in order], [[r[i] for i in order] for r in rows]


CONFIG = """
seed: 0
data: {{name: csv, path: train.csv, target: label, val_fraction: 0.2, scale: standardize{extra}}}
model: softmax
optimizer: {{name: adam, lr: 0.1}}
train: {{epochs: 60, batch_size: full}}
"""


@pytest.fixture
def table_run(tmp_path, cli):
    """A classifier trained on train.csv (signal, noise, other, label) in tmp_path/run."""
    header, rows = classification_table()
    write_table(tmp_path / "train.csv", header, rows)
    (tmp_path / "c.yaml").write_text(CONFIG.format(extra=""))
    r = cli("train", tmp_path / "c.yaml", "-d", tmp_path / "run", "--progress", "none")
    assert r.code == 0, r.stderr
    return tmp_path, header, rows


def test_swapped_columns_give_the_same_answer(table_run, cli):
    tmp_path, header, rows = table_run
    write_table(tmp_path / "swapped.csv", *reorder(header, rows, [1, 0, 3, 2]))
    same = cli("evaluate", tmp_path / "run", "--data", tmp_path / "train.csv", "--json")
    swapped = cli("evaluate", tmp_path / "run", "--data", tmp_path / "swapped.csv", "--json")
    assert same.code == 0 and swapped.code == 0, swapped.stderr
    assert same.json["metrics"]["test_accuracy"] >= 0.95
    assert swapped.json["metrics"] == same.json["metrics"]
    p_same = cli("predict", tmp_path / "run", "--data", tmp_path / "train.csv")
    p_swapped = cli("predict", tmp_path / "run", "--data", tmp_path / "swapped.csv")
    assert p_swapped.code == 0 and p_swapped.stdout == p_same.stdout


@pytest.mark.parametrize("command", ["evaluate", "predict"])
@pytest.mark.parametrize(
    "order,extra,message",
    [
        ([0, 2, 3], None, "missing 'noise'"),
        ([2, 3], None, "missing 'signal', 'noise'"),
        ([0, 1, 2, 3], "id", "unknown 'id'"),
        ([1, 2, 3], "id", "missing 'signal'; unknown 'id'"),
    ],
)
def test_missing_and_unknown_columns_exit_2_naming_them(table_run, cli, command, order, extra, message):
    tmp_path, header, rows = table_run
    h, body = reorder(header, rows, order)
    if extra:
        h, body = h + [extra], [r + ["7"] for r in body]
    write_table(tmp_path / "new.csv", h, body)
    r = cli(command, tmp_path / "run", "--data", tmp_path / "new.csv")
    assert r.code == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert "new.csv: the columns differ from the training data: " + message in r.stderr
    assert "'signal', 'noise', 'other'" in r.stderr  # the columns the run needs
    assert ("--ignore-extra" in r.stderr) == ("unknown" in message)


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_ignore_extra_skips_unknown_columns(table_run, cli, command):
    tmp_path, header, rows = table_run
    write_table(tmp_path / "new.csv", ["id"] + header, [[str(i)] + r for i, r in enumerate(rows)])
    plain = cli(command, tmp_path / "run", "--data", tmp_path / "train.csv")
    r = cli(command, tmp_path / "run", "--data", tmp_path / "new.csv", "--ignore-extra")
    assert r.code == 0 and r.stdout.replace("new.csv", "train.csv") == plain.stdout


def test_predict_needs_no_target_column_but_a_known_one_is_no_extra(table_run, cli):
    tmp_path, header, rows = table_run
    write_table(tmp_path / "features.csv", *reorder(header, rows, [2, 1, 0]))
    r = cli("predict", tmp_path / "run", "--data", tmp_path / "features.csv")
    assert r.code == 0 and r.stdout == cli("predict", tmp_path / "run", "--data", tmp_path / "train.csv").stdout


def test_one_hot_columns_are_read_by_name_too(tmp_path, cli):
    header, rows = classification_table()
    header = header[:2] + ["color"] + header[3:]
    rows = [r[:2] + [["red", "green", "blue"][i % 3]] + r[3:] for i, r in enumerate(rows)]
    write_table(tmp_path / "train.csv", header, rows)
    (tmp_path / "c.yaml").write_text(CONFIG.format(extra=", one_hot: [color]"))
    assert cli("train", tmp_path / "c.yaml", "-d", tmp_path / "run", "--progress", "none").code == 0
    write_table(tmp_path / "swapped.csv", *reorder(header, rows, [2, 1, 0]))
    r = cli("predict", tmp_path / "run", "--data", tmp_path / "swapped.csv")
    assert r.code == 0 and r.stdout == cli("predict", tmp_path / "run", "--data", tmp_path / "train.csv").stdout
    write_table(tmp_path / "no_color.csv", *reorder(header, rows, [0, 1]))
    r = cli("predict", tmp_path / "run", "--data", tmp_path / "no_color.csv")
    assert r.code == 2 and "missing 'color'" in r.stderr


def test_npz_files_are_checked_by_shape(tmp_path, cli):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    np.savez(tmp_path / "train.npz", X=X, y=X @ [1.0, -2.0])
    (tmp_path / "c.yaml").write_text(
        "data: {name: npz, path: train.npz}\nmodel: linear\noptimizer: {name: gd, lr: 0.1}\ntrain: {epochs: 5}\n"
    )
    assert cli("train", tmp_path / "c.yaml", "-d", tmp_path / "run", "--progress", "none").code == 0
    np.savez(tmp_path / "three.npz", X=rng.normal(size=(5, 3)), y=np.zeros(5))
    for command in ("predict", "evaluate"):
        r = cli(command, tmp_path / "run", "--data", tmp_path / "three.npz")
        assert r.code == 2 and "three.npz: has 3 feature columns, the run was trained on 2" in r.stderr
    np.savez(tmp_path / "two.npz", X=rng.normal(size=(5, 2)))
    assert cli("predict", tmp_path / "run", "--data", tmp_path / "two.npz").code == 0


def test_a_value_beyond_float32_in_a_predict_file_is_exit_2(table_run, cli):
    tmp_path, header, rows = table_run
    rows = [list(r) for r in rows]
    rows[4][2] = "1e40"  # file line 6, column 'other'
    write_table(tmp_path / "big.csv", header, rows)
    for command in ("predict", "evaluate"):
        r = cli(command, tmp_path / "run", "--data", tmp_path / "big.csv")
        assert r.code == 2, r.stdout
        assert "big.csv: line 6, column 'other': 1e+40 is beyond float32's range" in r.stderr


# ------------------------------------------------------------------ predict --output


def test_predict_output_refuses_an_existing_file_without_overwrite(table_run, cli):
    tmp_path, _, _ = table_run
    out = tmp_path / "preds.csv"
    out.write_text("precious\n")
    r = cli("predict", tmp_path / "run", "--data", tmp_path / "train.csv", "--output", out)
    assert r.code == 2 and "preds.csv: already exists" in r.stderr and "--overwrite" in r.stderr
    assert out.read_text() == "precious\n"
    r = cli("predict", tmp_path / "run", "--data", tmp_path / "train.csv", "--output", out, "--overwrite")
    assert r.code == 0 and out.read_text().startswith("prediction,prob_alpha")


@pytest.mark.parametrize("target", ["run/checkpoint.npz", "run/config.yaml", "run/new.csv", "train.csv"])
def test_predict_never_writes_into_the_run_or_onto_its_input(table_run, cli, target):
    tmp_path, _, _ = table_run
    out = tmp_path / target
    before = out.read_bytes() if out.exists() else None
    r = cli("predict", tmp_path / "run", "--data", tmp_path / "train.csv", "--output", out, "--overwrite")
    assert r.code == 2 and r.stdout == ""
    assert ("input file" if target == "train.csv" else "inside the run directory") in r.stderr
    assert (out.read_bytes() if out.exists() else None) == before


def test_predict_output_in_a_missing_folder_is_exit_2(table_run, cli):
    tmp_path, _, _ = table_run
    r = cli("predict", tmp_path / "run", "--data", tmp_path / "train.csv", "--output", tmp_path / "no" / "p.csv")
    assert r.code == 2 and "does not exist" in r.stderr


# ------------------------------------------------------------------ echoes


def test_errors_do_not_echo_a_file_that_is_no_table(table_run, cli):
    tmp_path, _, _ = table_run
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$SECRETHASH:19000:0:99999:7:::\n" + "daemon:*:19000:0:99999:7:::\n" * 3)
    r = cli("predict", tmp_path / "run", "--data", secret)
    assert r.code == 2 and "SECRETHASH" not in r.stderr and "none of the training data's columns" in r.stderr
    r = cli("train", tmp_path / "c.yaml", "--set", f"data.path={secret}", "--progress", "none")
    assert r.code == 2 and "SECRETHASH" not in r.stderr and "is this a CSV file?" in r.stderr


def test_echoed_values_are_capped(table_run, cli):
    tmp_path, header, rows = table_run
    rows = [list(r) for r in rows]
    rows[0][3] = "x" * 100_000  # an unknown label, 100 kB
    write_table(tmp_path / "huge.csv", header, rows)
    r = cli("evaluate", tmp_path / "run", "--data", tmp_path / "huge.csv")
    assert r.code == 2 and "line 2, column 'label': label 'xxx" in r.stderr and len(r.stderr) < 1000
    rows[0][3], rows[0][1] = "alpha", "y" * 100_000  # a 100 kB cell that is not a number
    write_table(tmp_path / "huge.csv", header, rows)
    r = cli("evaluate", tmp_path / "run", "--data", tmp_path / "huge.csv")
    assert r.code == 2 and "line 2, column 'noise'" in r.stderr and len(r.stderr) < 1000


# ------------------------------------------------------------------ target scaling


REGRESSION = """
seed: 0
data: {name: csv, path: house.csv, target: price, val_fraction: 0.25, scale: standardize, scale_target: standardize}
model: linear
optimizer: {name: gd, lr: 0.5}
train: {epochs: 200, dtype: float64}
"""


def test_scale_target_is_undone_in_predictions_and_metrics(tmp_path, cli):
    """price = 1000·size + 50000 (+ noise): the model learns standardized prices; predict
    and evaluate answer in dollars."""
    rng = np.random.default_rng(0)
    size = rng.uniform(50, 250, 80)
    price = np.round(1000 * size + 50_000 + rng.normal(0, 500, 80), 2)
    write_table(tmp_path / "house.csv", ["size", "price"], [[f"{s:.3f}", f"{p:.2f}"] for s, p in zip(size, price)])
    (tmp_path / "c.yaml").write_text(REGRESSION)
    r = cli("train", tmp_path / "c.yaml", "-d", tmp_path / "run", "--json")
    assert r.code == 0 and r.json["status"] == "completed"

    write_table(tmp_path / "new.csv", ["size"], [["100"], ["200"]])
    r = cli("predict", tmp_path / "run", "--data", tmp_path / "new.csv")
    assert r.code == 0
    preds = [float(v) for v in r.stdout.split()[1:]]
    np.testing.assert_allclose(preds, [150_000, 250_000], rtol=0.01)

    r = cli("evaluate", tmp_path / "run", "--data", tmp_path / "house.csv", "--json")
    m = r.json["metrics"]
    r2 = cli("predict", tmp_path / "run", "--data", tmp_path / "house.csv")
    p = np.array([float(v) for v in r2.stdout.split()[1:]])
    np.testing.assert_allclose(m["test_mae"], np.abs(p - price).mean(), rtol=1e-6)  # in dollars
    np.testing.assert_allclose(m["test_loss"], ((p - price) ** 2).mean(), rtol=1e-6)
    assert 300 < m["test_mae"] < 700 and m["test_r2"] > 0.99


def test_scale_target_is_fitted_on_the_training_split_only(tmp_path):
    from trainkit import api
    from trainkit.config import load_config_text

    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 2))
    np.savez(tmp_path / "d.npz", X=X, y=np.c_[X[:, 0] * 100 + 7, X[:, 1] - 3])
    text = (
        "data: {name: npz, path: d.npz, val_fraction: 0.25, scale_target: standardize}\nmodel: linear\noptimizer: sgd\n"
    )
    exp = api.build(load_config_text(text, str(tmp_path / "c.yaml"), base_dir=tmp_path))
    y = exp.data["train"].y
    np.testing.assert_allclose(exp.state.target_offset, y.mean(axis=0))
    np.testing.assert_allclose(exp.state.target_factor, y.std(axis=0))
    np.testing.assert_allclose(exp.arrays["T_train"].mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(exp.arrays["T_train"].std(axis=0), 1, atol=1e-6)
    # the validation split is evaluated in the target's own units: its targets are not scaled
    np.testing.assert_array_equal(exp.arrays["T_val"], exp.data["val"].y)
    out = exp.net.predict(exp.arrays["X_val"])
    np.testing.assert_allclose(exp.trainer.unscale(out), out * y.std(axis=0) + y.mean(axis=0), rtol=1e-12)


def test_scale_target_on_a_classification_task_is_exit_2(table_run, cli):
    tmp_path, _, _ = table_run
    r = cli("validate", tmp_path / "c.yaml", "--set", "data.scale_target=standardize")
    assert r.code == 2 and "data.scale_target: scales regression targets, but the task is multiclass" in r.stderr
