"""Loaders, splits, preprocessing and augmentation."""

from __future__ import annotations

import re

import numpy as np
import pytest

from trainkit import api
from trainkit.config import load_config_text
from trainkit.data.augment import FeatureDropout, FeatureDropoutConfig, Mixup, MixupConfig
from trainkit.errors import DataError


def build(text, tmp_path, overrides=()):
    return api.build(load_config_text(text, str(tmp_path / "c.yaml"), overrides, base_dir=tmp_path))


CSV_CFG = """
data: {{name: csv, path: d.csv, target: label, val_fraction: 0, {extra}}}
model: linear
optimizer: sgd
"""


def write_csv(tmp_path, text):
    (tmp_path / "d.csv").write_text(text)


def test_csv_with_string_labels_features_and_one_hot(tmp_path):
    write_csv(tmp_path, "a,b,color,label\n1,2,red,cat\n3,4,blue,dog\n5,6,red,cat\n7,8,green,bird\n")
    exp = build(CSV_CFG.format(extra="one_hot: [color], features: [a, color]"), tmp_path)
    assert exp.state.task == "multiclass" and exp.state.classes == ["bird", "cat", "dog"]
    assert exp.state.feature_names == ["a", "color=blue", "color=green", "color=red"]
    np.testing.assert_array_equal(exp.arrays["X_train"][:, 1:], [[0, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(exp.arrays["T_train"], [1, 2, 1, 0])


def test_npz_regression_with_two_outputs(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(20, 3)), y=rng.normal(size=(20, 2)))
    exp = build("data: {name: npz, path: d.npz}\nmodel: linear\noptimizer: sgd\n", tmp_path)
    assert exp.state.task == "regression" and exp.net.params["weight"].shape == (2, 3)
    assert exp.info["n_train"] == 16 and exp.info["n_val"] == 4


BAD_FILES = [
    ("missing.csv", None, "file not found", "relative to the config"),
    ("d.csv", "", "file is empty", None),
    ("d.csv", "a,label\n1,0\n", "needs at least 2 data rows", None),
    ("d.csv", "a,b\n1,2\n3,4\n", "no column named 'label'", None),
    ("d.csv", "a,label\n1,0\n2\n", "line 3 has 1 fields but the header has 2", "stray or missing delimiters"),
    ("d.csv", "a,label\n1,0\nx,1\n", "line 3, column 'a': 'x' is not a number", "one_hot"),
    ("d.csv", "a,label\n1,0\nnan,1\n", "line 3, column 'a': missing value (nan)", "impute"),
    ("d.csv", "a,a,label\n1,2,0\n3,4,1\n", "appears twice", None),
    ("d.csv", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not UTF-8", None),
    ("d.npz", b"not a zip", "cannot read as .npz", None),
]


@pytest.mark.parametrize("name,content,message,hint", BAD_FILES)
def test_bad_data_files(tmp_path, name, content, message, hint):
    if content is not None:
        p = tmp_path / name
        p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)
    kind = "npz" if name.endswith(".npz") else "csv"
    text = f"data: {{name: {kind}, path: {name}{', target: label' if kind == 'csv' else ''}}}\nmodel: linear\noptimizer: sgd\n"
    with pytest.raises(DataError) as e:
        build(text, tmp_path)
    assert name in str(e.value) and message in str(e.value)
    if hint:
        assert hint in str(e.value)


@pytest.mark.parametrize(
    "arrays,message",
    [
        ({"X": np.ones((5, 2))}, "no array named 'y'"),
        ({"X": np.ones((5, 2)), "y": np.ones(4)}, "X has 5 rows but y has 4"),
        ({"X": np.array([["a", "b"]] * 3), "y": np.ones(3)}, "X must be numeric"),
        ({"X": np.ones((3, 1, 1, 2, 2)), "y": np.ones(3)}, "shape (n, features)"),  # (n, C, L) and up are images
        ({"X": np.array([[1.0], [np.inf], [2.0]]), "y": np.ones(3)}, "X[1, 0]: inf is not a finite number"),
        # images and signals: the sample's own index (c, h, w), not the flat column (it said X[1, 7])
        (
            {"X": np.where(np.arange(24).reshape(2, 2, 3, 2) == 19, np.nan, 1.0), "y": np.ones(2)},
            "X[1, 1, 0, 1]: missing",
        ),
    ],
)
def test_bad_npz_contents(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=re.escape(message)):
        build("data: {name: npz, path: d.npz}\nmodel: linear\noptimizer: sgd\n", tmp_path)


def test_npz_with_object_arrays_is_refused_without_unpickling(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.array([{"a": 1}] * 3, dtype=object), y=np.ones(3))
    with pytest.raises(DataError, match="cannot read as .npz"):
        build("data: {name: npz, path: d.npz}\nmodel: linear\noptimizer: sgd\n", tmp_path)


def test_stratified_split_keeps_class_proportions(tmp_path):
    exp = build(
        "data: {name: blobs, n_samples: 300, n_classes: 3, val_fraction: 0.2, test_fraction: 0.2}\n"
        "model: softmax\noptimizer: sgd\n",
        tmp_path,
    )
    for split, n in (("val", 20), ("test", 20), ("train", 60)):
        counts = np.bincount(exp.arrays[f"T_{split}"], minlength=3)
        assert counts.tolist() == [n, n, n]


def test_split_is_deterministic_and_seeded(tmp_path):
    text = "data: {name: linear, n_samples: 50}\nmodel: linear\noptimizer: sgd\n"
    a, b = build(text, tmp_path), build(text, tmp_path)
    np.testing.assert_array_equal(a.arrays["X_val"], b.arrays["X_val"])
    c = build(text, tmp_path, ["seed=5"])
    assert not np.array_equal(a.arrays["X_val"], c.arrays["X_val"])


@pytest.mark.parametrize("scale", ["standardize", "minmax"])
def test_scaling_is_fitted_on_the_training_split_only(tmp_path, scale):
    exp = build(
        f"data: {{name: blobs, n_samples: 200, val_fraction: 0.3, scale: {scale}}}\nmodel: softmax\noptimizer: sgd\n",
        tmp_path,
    )
    raw = exp.data["train"].X
    Xt, Xv = exp.arrays["X_train"], exp.arrays["X_val"]
    if scale == "standardize":
        np.testing.assert_allclose(Xt.mean(axis=0), 0, atol=1e-6)
        np.testing.assert_allclose(Xt.std(axis=0), 1, atol=1e-5)
        expected_val = (exp.data["val"].X - raw.mean(axis=0)) / raw.std(axis=0)
    else:
        np.testing.assert_allclose(Xt.min(axis=0), 0, atol=1e-6)
        np.testing.assert_allclose(Xt.max(axis=0), 1, atol=1e-6)
        expected_val = (exp.data["val"].X - raw.min(axis=0)) / (raw.max(axis=0) - raw.min(axis=0))
    np.testing.assert_allclose(Xv, expected_val, rtol=1e-5, atol=1e-5)  # val uses train statistics


def test_val_path_and_test_path(tmp_path):
    rng = np.random.default_rng(1)
    for name, n in (("tr", 30), ("va", 10), ("te", 7)):
        np.savez(tmp_path / f"{name}.npz", X=rng.normal(size=(n, 2)), y=rng.normal(size=n))
    exp = build(
        "data: {name: npz, path: tr.npz, val_path: va.npz, test_path: te.npz}\nmodel: linear\noptimizer: sgd\n",
        tmp_path,
    )
    assert (exp.info["n_train"], exp.info["n_val"], exp.info["n_test"]) == (30, 10, 7)


def test_a_run_with_val_path_can_be_evaluated_and_rerun(tmp_path, cli):
    """The run's config.yaml (the resolved config) says val_fraction: 0, the fraction in use: it
    wrote the default 0.2 beside val_path, and loading it again said "give either ..., not both"."""
    rng = np.random.default_rng(1)
    for name, n in (("tr", 30), ("va", 10)):
        np.savez(tmp_path / f"{name}.npz", X=rng.normal(size=(n, 2)), y=rng.normal(size=n))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data: {name: npz, path: tr.npz, val_path: va.npz}\nmodel: linear\noptimizer: sgd\ntrain: {epochs: 2}\n"
    )
    assert cli("train", cfg, "--output-dir", tmp_path / "run", "--json").code == 0
    assert "val_fraction: 0.0" in (tmp_path / "run" / "config.yaml").read_text()
    r = cli("evaluate", tmp_path / "run", "--json")
    assert r.code == 0 and r.json["split"] == "val" and r.json["n"] == 10, r.stdout
    assert cli("train", tmp_path / "run" / "config.yaml", "--output-dir", tmp_path / "again", "--json").code == 0


def test_val_path_and_val_fraction_conflict(tmp_path):
    from trainkit.errors import ConfigError

    with pytest.raises(ConfigError, match="either val_path or val_fraction"):
        load_config_text(
            "data: {name: npz, path: a.npz, val_path: b.npz, val_fraction: 0.3}\nmodel: linear\noptimizer: sgd\n", "c"
        )


def test_augmentation_touches_training_batches_only(tmp_path):
    """Heavy input noise changes training, but validation metrics are computed on clean data."""
    text = (
        "data: {name: moons, n_samples: 200, augment: [{name: gaussian_noise, std: 5.0}]}\n"
        "model: {name: mlp, hidden: [8]}\noptimizer: adam\ntrain: {epochs: 2, dtype: float64}\n"
    )
    exp = build(text, tmp_path)
    X_val = exp.arrays["X_val"].copy()
    X_train = exp.arrays["X_train"].copy()
    a = exp.arrays
    exp.trainer.fit(a["X_train"], a["T_train"], a["X_val"], a["T_val"])
    np.testing.assert_array_equal(a["X_val"], X_val)
    np.testing.assert_array_equal(a["X_train"], X_train)  # the dataset itself is never modified
    clean = exp.trainer.evaluate(a["X_val"], a["T_val"], "val")
    assert exp.trainer.history[-1]["val_loss"] == clean["val_loss"]
    plain = build(text.replace("augment: [{name: gaussian_noise, std: 5.0}]", "augment: []"), tmp_path)
    plain.trainer.fit(plain.arrays["X_train"], plain.arrays["T_train"])
    assert plain.trainer.history[-1]["train_loss"] != exp.trainer.history[-1]["train_loss"]


def test_mixup_mixes_inputs_and_one_hot_targets():
    x = np.arange(8.0).reshape(4, 2)
    t = np.array([0, 1, 2, 0])
    xm, tm = Mixup(MixupConfig(alpha=0.5))(x, t, np.random.default_rng(0), 3)
    rng = np.random.default_rng(0)  # the same draws, by hand: λ ~ Beta(α, α), then a permutation
    lam, perm = rng.beta(0.5, 0.5), rng.permutation(4)
    onehot = np.eye(3)[t]
    np.testing.assert_allclose(xm, lam * x + (1 - lam) * x[perm])
    np.testing.assert_allclose(tm, lam * onehot + (1 - lam) * onehot[perm])
    np.testing.assert_allclose(tm.sum(axis=1), 1.0)


def test_feature_dropout_zeroes_a_share_of_inputs():
    x = np.ones((1000, 10))
    out, _ = FeatureDropout(FeatureDropoutConfig(p=0.3))(x, None, np.random.default_rng(0), None)
    assert set(np.unique(out)) == {0.0, 1.0} and abs((out == 0).mean() - 0.3) < 0.02
    assert (x == 1).all()


def test_list_augmentations(cli):
    r = cli("list", "augmentations")
    assert r.code == 0 and "gaussian_noise" in r.stdout and "mixup" in r.stdout and "feature_dropout" in r.stdout


# ------------------------------------------------------------------ missing values, file lines


@pytest.mark.parametrize("cell", ["", "NA", "nan", "N/A", "  "])
@pytest.mark.parametrize("labels", [["cat", "dog"], ["1.5", "2.5"]], ids=["classes", "regression"])
def test_an_empty_or_na_target_is_an_error_with_its_line(tmp_path, cell, labels):
    rows = [f"{i},{labels[i % 2]}" for i in range(6)]
    rows[3] = f"3,{cell}"  # file line 5
    write_csv(tmp_path, "a,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"d.csv: line 5, column 'label': the target is (empty|missing)") as e:
        build(CSV_CFG.format(extra=""), tmp_path)
    assert "fill it in or remove the row" in str(e.value)


@pytest.mark.parametrize("cell", ["", "NA", "nan", "NaN", "?"])
def test_missing_feature_values_get_the_impute_hint(tmp_path, cell):
    write_csv(tmp_path, f"a,b,label\n1,2,0\n3,{cell},1\n5,6,0\n")
    with pytest.raises(DataError, match=r"d.csv: line 3, column 'b': missing value") as e:
        build(CSV_CFG.format(extra=""), tmp_path)
    assert "remove or impute missing values" in str(e.value) and "one_hot" not in str(e.value)


def test_rows_are_named_by_their_line_in_the_file(tmp_path):
    """Blank lines and a quoted cell over two lines count: the message names the line an
    editor shows."""
    write_csv(tmp_path, 'a,note,label\n1,"two\nlines",0\n\n2,x,1\n3,y,oops\n4,z,\n')
    with pytest.raises(DataError, match="line 7, column 'label': the target is empty"):
        build(CSV_CFG.format(extra="features: [a]"), tmp_path)


# ------------------------------------------------------------------ finite after the cast


FILES = {"path": "tr.csv", "val_path": "va.csv", "test_path": "te.csv"}


@pytest.mark.parametrize("part", list(FILES))
def test_a_cell_beyond_float32_is_an_error_naming_file_line_and_column(tmp_path, part):
    for key, name in FILES.items():
        rows = [["1", "2", "0"], ["3", "4", "1"], ["5", "6", "0"], ["7", "8", "1"]]
        if key == part:
            rows[2][1] = "1e40"  # file line 4, column 'b'
        (tmp_path / name).write_text("a,b,label\n" + "\n".join(",".join(r) for r in rows) + "\n")
    text = "data: {name: csv, path: tr.csv, val_path: va.csv, test_path: te.csv, target: label}\nmodel: linear\noptimizer: sgd\n"
    with pytest.raises(DataError, match=r"line 4, column 'b': 1e\+40 is beyond float32's range") as e:
        build(text, tmp_path)
    assert str(e.value).startswith(FILES[part]) and "train.dtype: float64" in str(e.value)
    build(text, tmp_path, ["train.dtype=float64"])  # fits in float64


def test_a_regression_target_beyond_float32_is_an_error(tmp_path):
    write_csv(tmp_path, "a,label\n1,0.5\n2,1.5\n3,1e40\n4,2.5\n")
    with pytest.raises(DataError, match=r"d.csv: line 4, column 'label': 1e\+40 is beyond float32's range"):
        build(CSV_CFG.format(extra="task: regression"), tmp_path)


def test_npz_values_beyond_float32_are_an_error(tmp_path):
    X = np.ones((6, 3))
    X[4, 2] = -1e39
    np.savez(tmp_path / "d.npz", X=X, y=np.arange(6.0))
    text = "data: {name: npz, path: d.npz}\nmodel: linear\noptimizer: sgd\n"
    with pytest.raises(DataError, match=r"d.npz: X\[4, 2\]: -1e\+39 is beyond float32's range"):
        build(text, tmp_path)


# ------------------------------------------------------------------ val/test files by name


def test_val_and_test_files_are_read_by_the_training_columns_names(tmp_path):
    (tmp_path / "tr.csv").write_text("a,b,label\n1,10,0\n2,20,1\n3,30,0\n4,40,1\n")
    (tmp_path / "va.csv").write_text("label,b,a\n1,50,5\n0,60,6\n")  # same columns, another order
    text = "data: {name: csv, path: tr.csv, val_path: va.csv, target: label}\nmodel: linear\noptimizer: sgd\n"
    exp = build(text, tmp_path)
    np.testing.assert_array_equal(exp.arrays["X_val"], [[5, 50], [6, 60]])
    (tmp_path / "va.csv").write_text("a,b,c,label\n5,50,1,1\n6,60,1,0\n")
    with pytest.raises(DataError, match="va.csv: the columns differ from the training data: unknown 'c'"):
        build(text, tmp_path)
    (tmp_path / "va.csv").write_text("a,label\n5,1\n6,0\n")
    with pytest.raises(DataError, match="va.csv: the columns differ from the training data: missing 'b'") as e:
        build(text, tmp_path)
    assert "data.val_path" in str(e.value)
