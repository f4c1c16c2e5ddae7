"""evaluate and predict on files of the user's own: columns by name, checked files, target
units, and an --output that never overwrites what the user did not name.

The tables are built here (the way a new user exports one from a spreadsheet or a library),
so the suite needs no dataset package."""

from __future__ import annotations

import csv
import json

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
    assert same.json["metrics"]["data_accuracy"] >= 0.95
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


def test_predict_output_under_a_file_says_it_is_a_file_not_a_missing_folder(table_run, cli):
    tmp_path, _, _ = table_run
    data = tmp_path / "train.csv"
    r = cli("predict", tmp_path / "run", "--data", data, "--output", data / "p.csv")
    assert r.code == 2 and f"{data} is a file, not a folder" in r.stderr and "does not exist" not in r.stderr


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
    np.testing.assert_allclose(m["data_mae"], np.abs(p - price).mean(), rtol=1e-6)  # in dollars
    np.testing.assert_allclose(m["data_loss"], ((p - price) ** 2).mean(), rtol=1e-6)
    assert 300 < m["data_mae"] < 700 and m["data_r2"] > 0.99


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


def test_train_reports_scaled_targets_in_their_units_and_evaluate_agrees(tmp_path, cli):
    """With scale_target, every reported mae/mse (history, final metrics, metrics files) and
    the train/val/test losses are in the target's units, and `evaluate` on the run's test split
    gives exactly the test metrics that `train` reported."""
    rng = np.random.default_rng(0)
    size = rng.uniform(50, 250, 120)
    price = np.round(1000 * size + 50_000 + rng.normal(0, 500, 120), 2)
    write_table(tmp_path / "house.csv", ["size", "price"], [[f"{s:.3f}", f"{p:.2f}"] for s, p in zip(size, price)])
    (tmp_path / "c.yaml").write_text(REGRESSION.replace("val_fraction: 0.25", "val_fraction: 0.2, test_fraction: 0.2"))
    r = cli("train", tmp_path / "c.yaml", "-d", tmp_path / "run", "--json")
    assert r.code == 0, r.stderr
    m, last = r.json["metrics"], r.json["history"][-1]
    for row in (m, last):
        assert 300 < row["train_mae"] < 700 and 300 < row["val_mae"] < 700  # dollars, not standard deviations
        assert row["val_loss"] == pytest.approx(row["val_mse"], rel=1e-12)  # mse loss on val: in dollars²
        assert row["train_loss"] == pytest.approx(row["train_mse"], rel=1e-9)  # dollars², as val_loss
        assert row["train_loss"] > 1e4  # not the optimizer's loss on standardized prices (~1e-4)
    assert 300 < m["test_mae"] < 700 and m["test_loss"] == pytest.approx(m["test_mse"], rel=1e-12)
    with open(tmp_path / "run" / "metrics.csv") as f:
        assert float(list(csv.DictReader(f))[-1]["val_mae"]) == last["val_mae"]
    ev = cli("evaluate", tmp_path / "run", "--json")
    assert ev.code == 0 and ev.json["split"] == "test"
    assert ev.json["metrics"] == {k: v for k, v in m.items() if k.startswith("test_")}


# ------------------------------------------------------------------ a run on its own

TWO_OUTPUTS = """
seed: 0
data: {name: npz, path: data/train.npz, test_fraction: 0.25, scale: minmax, scale_target: standardize}
model: {name: mlp, hidden: [8]}
optimizer: {name: adam, lr: 0.05}
train: {epochs: 30, batch_size: 16, dtype: float64}
"""


def _two_output_run(tmp_path):
    """An MLP with two regression outputs in their own units, trained on data/train.npz."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 3))
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "train.npz", X=X, y=np.c_[X @ [100.0, 0, 5] + 900, X[:, 1] - 3])
    np.savez(tmp_path / "new.npz", X=X[:20], y=np.c_[X[:20] @ [100.0, 0, 5] + 900, X[:20, 1] - 3])
    (tmp_path / "c.yaml").write_text(TWO_OUTPUTS)
    return tmp_path / "data" / "train.npz", tmp_path / "new.npz"


def _table_run_data(tmp_path):
    """The classifier of `table_run`, trained on data/train.csv."""
    (tmp_path / "data").mkdir()
    header, rows = classification_table()
    write_table(tmp_path / "data" / "train.csv", header, rows)
    write_table(tmp_path / "new.csv", *reorder(header, rows[:30], [2, 0, 1, 3]))
    (tmp_path / "c.yaml").write_text(CONFIG.format(extra=", test_fraction: 0.2").replace("train.csv", "data/train.csv"))
    return tmp_path / "data" / "train.csv", tmp_path / "new.csv"


@pytest.mark.parametrize("make", [_table_run_data, _two_output_run], ids=["csv-classifier", "npz-two-outputs"])
def test_a_trained_run_needs_no_training_data(tmp_path, cli, make):
    """evaluate --data and predict read the run dir alone: the training file deleted, their
    answers are the same; evaluate on the run's own test split says the data is gone."""
    train_file, new = make(tmp_path)
    r = cli("train", tmp_path / "c.yaml", "-d", tmp_path / "run", "--json")
    assert r.code == 0, r.stderr
    before = [cli("evaluate", tmp_path / "run", "--json").json["metrics"]]
    assert before[0] == {k: v for k, v in r.json["metrics"].items() if k.startswith("test_")}
    before += [cli("evaluate", tmp_path / "run", "--data", new, "--json").stdout]
    before += [cli("predict", tmp_path / "run", "--data", new).stdout]
    train_file.unlink()
    after = cli("evaluate", tmp_path / "run", "--data", new, "--json")
    assert after.code == 0, after.stderr
    assert [after.stdout, cli("predict", tmp_path / "run", "--data", new).stdout] == before[1:]
    gone = cli("evaluate", tmp_path / "run")
    assert gone.code == 2 and gone.stdout == "" and "Traceback" not in gone.stderr
    assert f"{train_file.name}: file not found" in gone.stderr and "pass --data FILE" in gone.stderr
    assert "config.yaml" in gone.stderr and "data.path" in gone.stderr  # where the run names it


def test_evaluate_refuses_a_training_file_that_changed(tmp_path, cli):
    """The test split is split again from the training file: another file would be another
    split, so the run's own test metrics cannot be reproduced from it."""
    train_file, _ = _table_run_data(tmp_path)
    assert cli("train", tmp_path / "c.yaml", "-d", tmp_path / "run", "--progress", "none").code == 0
    header, rows = classification_table(seed=5)
    write_table(train_file, header, rows)
    r = cli("evaluate", tmp_path / "run")
    assert r.code == 2 and "the training data changed since the run was trained" in r.stderr
    assert "pass --data FILE" in r.stderr


# ------------------------------------------------------------------ damaged checkpoints


def _rewrite_checkpoint(path, arrays=None, meta=None, drop=(), raw=None):
    with np.load(path, allow_pickle=False) as f:
        held = {k: f[k] for k in f.keys()}
    old = json.loads(str(held["meta"]))
    held.update(arrays or {})
    held["meta"] = np.array(raw if raw is not None else json.dumps({**old, **(meta or {})}))
    for k in drop:
        held.pop(k)
    np.savez(path, **held)


STATE = {
    "task": "multiclass",
    "classes": CLASSES,
    "feature_names": ["signal", "noise", "other"],
    "scale": "standardize",
}
DAMAGE = {
    "missing param": dict(drop=["param/weight"]),
    "wrong shape": dict(arrays={"param/bias": np.zeros(7)}),
    "meta not JSON": dict(raw="{not json"),
    "meta a list": dict(raw="[1, 2]"),
    "no data state": dict(meta={"data": None}),
    "data state of another kind": dict(meta={"data": {"task": "multiclass", "colours": 3}}),
    "model sizes not numbers": dict(meta={"model": {"out_features": "three"}}),
    "scaling not numbers": dict(meta={"data": {**STATE, "offset": ["a", "b", "c"], "factor": [1, 1, 1]}}),
    "scaling not a list": dict(meta={"data": {**STATE, "offset": [[0.0]], "factor": [1, 1, 1]}}),
    "no meta": dict(drop=["meta"]),
}


@pytest.mark.parametrize("command", ["evaluate", "predict"])
@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_checkpoint_is_exit_2_naming_it(table_run, cli, command, damage):
    tmp_path, _, _ = table_run
    ckpt = tmp_path / "run" / "checkpoint.npz"
    kw = dict(DAMAGE[damage])
    if kw.get("drop") == ["meta"]:
        with np.load(ckpt, allow_pickle=False) as f:
            np.savez(ckpt, **{k: f[k] for k in f.keys() if k != "meta"})
    else:
        _rewrite_checkpoint(ckpt, **kw)
    r = cli(command, tmp_path / "run", "--data", tmp_path / "train.csv")
    assert r.code == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert f"{ckpt}:" in r.stderr


def test_a_checkpoint_that_is_not_npz_says_so_without_numpys_advice_to_unpickle(table_run, cli):
    tmp_path, _, _ = table_run
    (tmp_path / "run" / "checkpoint.npz").write_text("junk\n")
    r = cli("evaluate", tmp_path / "run", "--data", tmp_path / "train.csv")
    assert r.code == 2 and "not an .npz file" in r.stderr
    assert "allow_pickle" not in r.stderr and "pickle" not in r.stderr


def test_a_damaged_checkpoint_says_what_does_not_fit(table_run, cli):
    tmp_path, _, _ = table_run
    _rewrite_checkpoint(tmp_path / "run" / "checkpoint.npz", arrays={"param/bias": np.zeros(7)})
    r = cli("predict", tmp_path / "run", "--data", tmp_path / "train.csv")
    assert "checkpoint does not match the model (bias: shape (7,), the model's is (3,))" in r.stderr


# ------------------------------------------------------------------ files by their extension


def test_a_csv_run_reads_npz_files_and_an_npz_run_csv_files(table_run, tmp_path, cli):
    tmp_path, header, rows = table_run
    X = np.array([[float(v) for v in r[:3]] for r in rows])
    np.savez(tmp_path / "same.npz", X=X, y=np.array([r[3] for r in rows]))
    for command in ("predict", "evaluate"):
        via_csv = cli(command, tmp_path / "run", "--data", tmp_path / "train.csv").stdout
        via_npz = cli(command, tmp_path / "run", "--data", tmp_path / "same.npz")
        assert via_npz.code == 0, via_npz.stderr
        assert via_npz.stdout.replace("same.npz", "train.csv") == via_csv
    np.savez(tmp_path / "two.npz", X=X[:, :2])
    r = cli("predict", tmp_path / "run", "--data", tmp_path / "two.npz")
    assert r.code == 2 and "two.npz: has 2 feature columns, the run was trained on 3" in r.stderr

    np.savez(tmp_path / "train.npz", X=X, y=np.array([r[3] for r in rows]))
    (tmp_path / "n.yaml").write_text(
        CONFIG.format(extra="").replace("name: csv, path: train.csv, target: label", "name: npz, path: train.npz")
    )
    assert cli("train", tmp_path / "n.yaml", "-d", tmp_path / "nrun", "--progress", "none").code == 0
    write_table(tmp_path / "plain.csv", ["a", "b", "c", "y"], [r[:3] + [r[3]] for r in rows])
    via_npz = cli("predict", tmp_path / "nrun", "--data", tmp_path / "train.npz").stdout
    via_csv = cli("predict", tmp_path / "nrun", "--data", tmp_path / "plain.csv")
    assert via_csv.code == 0 and via_csv.stdout == via_npz


def test_an_npz_file_for_a_run_with_one_hot_columns_is_exit_2(tmp_path, cli):
    header, rows = classification_table()
    header = header[:2] + ["color"] + header[3:]
    rows = [r[:2] + [["red", "green", "blue"][i % 3]] + r[3:] for i, r in enumerate(rows)]
    write_table(tmp_path / "train.csv", header, rows)
    (tmp_path / "c.yaml").write_text(CONFIG.format(extra=", one_hot: [color]"))
    assert cli("train", tmp_path / "c.yaml", "-d", tmp_path / "run", "--progress", "none").code == 0
    np.savez(tmp_path / "x.npz", X=np.zeros((4, 2)))
    r = cli("predict", tmp_path / "run", "--data", tmp_path / "x.npz")
    assert r.code == 2 and "x.npz: an .npz file has no column names, and the run one-hot encodes color" in r.stderr


def test_progress_shows_train_and_val_loss_of_scaled_targets_in_the_same_units(tmp_path, cli):
    """The plain progress line put train_loss on standardized prices (~1e-4) beside val_loss in
    dollars² (~1e5). Without learning (lr 0) and validated on the training file itself, the two
    columns must read the same."""
    rng = np.random.default_rng(0)
    size = rng.uniform(50, 250, 40)
    price = np.round(1000 * size + 50_000 + rng.normal(0, 500, 40), 2)
    write_table(tmp_path / "house.csv", ["size", "price"], [[f"{s:.3f}", f"{p:.2f}"] for s, p in zip(size, price)])
    config = REGRESSION.replace("val_fraction: 0.25", "val_path: house.csv").replace("lr: 0.5", "lr: 0.0")
    (tmp_path / "c.yaml").write_text(config + "loss: {name: huber, delta: 1000.0}\n")
    r = cli("train", tmp_path / "c.yaml", "--set", "train.epochs=2", "--progress", "plain")
    assert r.code == 0, r.stderr
    line = next(line for line in r.stdout.splitlines() if line.startswith("epoch 1/2"))
    train, val = (line.split(f"{k}=")[1].split()[0] for k in ("train_loss", "val_loss"))
    assert train == val and float(train) > 1e5, line  # huber with δ = $1000: dollars, linear part


def test_train_mae_and_mse_are_converted_per_output(tmp_path):
    """Training batches are summed on scaled targets; with two outputs of different scales,
    train_mae/train_mse must equal the errors of the unscaled outputs against the raw targets."""
    from trainkit import api
    from trainkit.config import load_config

    _two_output_run(tmp_path)
    overrides = ["train.epochs=1", "train.batch_size=full", "data.test_fraction=0"]
    exp = api.build(load_config(tmp_path / "c.yaml", overrides))
    pred = exp.state.unscaled_targets(exp.net.predict(exp.arrays["X_train"]))  # the initial parameters
    d = pred - exp.data["train"].y
    row = api.train(load_config(tmp_path / "c.yaml", overrides)).history[0]  # metrics of the first step's forward
    assert row["train_mae"] == pytest.approx(np.abs(d).mean(), rel=1e-12)
    assert row["train_mse"] == pytest.approx((d**2).mean(), rel=1e-12)
    assert row["train_loss"] == pytest.approx((d**2).mean(), rel=1e-12)  # the mse loss, in the targets' units too
