"""Convolutional models end to end: image and signal data in, shapes through the model,
misfits refused before training, batch-norm buffers through checkpoints, evaluate and predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import CONFIGS
from test_runs import train_into

from trainkit import api
from trainkit.config import load_config_text
from trainkit.errors import DataError
from trainkit.runs import checkpoint

CONV_NET = """
seed: 0
data: {{name: npz, path: img.npz, scale: standardize{data_extra}}}
model:
  name: sequential
  layers:
    - {{name: conv2d, out_channels: 4, kernel_size: 3, padding: 1}}
    - {{name: batch_norm2d}}
    - relu
    - {{name: max_pool2d, kernel_size: 2}}
    - flatten
    - linear
optimizer: {{name: adam, lr: 0.01}}
train: {{epochs: {epochs}, batch_size: 16, dtype: float64, checkpoint_every: 1}}
"""


def write_images(path, shape=(1, 6, 6), n=60, seed=0):
    """Images whose class is which half holds a bright blob."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 0.3, (n, *shape))
    y = rng.integers(0, 2, n)
    X[y == 1, ..., : shape[-1] // 2] += 1.0
    np.savez(path, X=X, y=y)
    return X, y


@pytest.fixture
def image_config(tmp_path, write_config):
    write_images(tmp_path / "img.npz")
    return write_config(CONV_NET.format(data_extra="", epochs=4))


def build(text, tmp_path):
    return api.build(load_config_text(text, str(tmp_path / "c.yaml"), base_dir=tmp_path))


@pytest.mark.parametrize("shape", [(1, 6, 6), (6, 6), (2, 6, 6)])
def test_npz_images_flow_through_the_model(tmp_path, shape):
    write_images(tmp_path / "img.npz", shape)
    exp = build(CONV_NET.format(data_extra="", epochs=1), tmp_path)
    channels = 1 if len(shape) == 2 else shape[0]
    assert exp.net.in_shape == (channels, 6, 6)
    assert exp.net.shapes[3] == (4, 3, 3) and exp.net.out_shape == (1,)  # binary: one logit
    assert exp.arrays["X_train"].ndim == 2  # rows stay flat; the network reshapes each batch
    assert exp.state.shape == list(shape)


def test_scaling_is_per_channel(tmp_path):
    X, _ = write_images(tmp_path / "img.npz", (2, 4, 4))
    X[:, 1] = X[:, 1] * 10 + 5
    np.savez(tmp_path / "img.npz", X=X, y=np.arange(len(X)) % 2)
    exp = build(CONV_NET.format(data_extra=", val_fraction: 0", epochs=1), tmp_path)
    offset = np.array(exp.state.offset).reshape(2, 16)
    assert (offset == offset[:, :1]).all()  # one value per channel
    np.testing.assert_allclose(offset[:, 0], [X[:, 0].mean(), X[:, 1].mean()])
    Xs = exp.arrays["X_train"].reshape(-1, 2, 16)
    np.testing.assert_allclose(Xs.mean(axis=(0, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(Xs.std(axis=(0, 2)), 1)


@pytest.mark.parametrize("shape,first", [((6, 6), "conv2d"), ((36,), "conv1d")])
def test_channel_less_data_is_scaled_as_one_channel(tmp_path, cli, shape, first):
    """(n, H, W) before conv2d is a grey image, (n, L) before conv1d a one-channel signal: one
    offset and factor for every value (they were per row H, per column L), as evaluate refits them."""
    X, _ = write_images(tmp_path / "img.npz", shape)
    text = CONV_NET.format(data_extra="", epochs=1)
    if first == "conv1d":
        text = text.replace("2d", "1d")
    exp = build(text, tmp_path)
    train = X[exp.data["train"].rows]  # the training split (rows: indices into the file)
    assert len(set(exp.state.offset)) == 1 and len(set(exp.state.factor)) == 1
    np.testing.assert_allclose(exp.state.offset[0], train.mean())
    np.testing.assert_allclose(exp.state.factor[0], train.std())
    (tmp_path / "c.yaml").write_text(text)
    assert cli("train", tmp_path / "c.yaml", "--output-dir", tmp_path / "run", "--json").code == 0
    r = cli("evaluate", tmp_path / "run", "--json")  # re-splits the training data: same fitted state
    assert r.code == 0, r.stdout


def test_csv_pixel_columns_take_the_shape_key(tmp_path):
    text = (CONFIGS / "digits_cnn.yaml").read_text().replace("data/digits.csv", str(CONFIGS / "data/digits.csv"))
    exp = build(text, tmp_path)
    assert exp.net.in_shape == (1, 8, 8) and exp.info["n_features"] == 64
    bad = text.replace("shape: [1, 8, 8]", "shape: [1, 8, 9]")
    with pytest.raises(DataError, match=r"shape \[1, 8, 9\] holds 72 values per sample but the data has 64") as e:
        build(bad, tmp_path)
    assert e.value.origin.endswith(": data.shape")  # the key to fix, not data.path


def test_plain_rows_are_one_channel_signals_for_conv1d(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "sig.npz", X=rng.normal(size=(20, 12)), y=np.arange(20) % 2)
    text = """
    data: {name: npz, path: sig.npz}
    model:
      name: sequential
      layers: [{name: conv1d, out_channels: 3, kernel_size: 5}, relu, flatten, linear]
    optimizer: sgd
    """
    exp = build(text.replace("\n    ", "\n"), tmp_path)
    assert exp.net.in_shape == (1, 12) and exp.net.shapes[0] == (3, 8)


@pytest.mark.parametrize(
    "kernel,dilation,padding",
    [
        ("3", "1", "padding: 1 keeps"),
        ("[5, 3]", "1", "padding: [2, 1] keeps"),
        ("[5, 3]", "[1, 2]", "padding: 2 keeps"),
    ],
)
def test_same_padding_with_a_stride_names_the_padding_that_works(cli, image_config, kernel, dilation, padding):
    sets = ["padding=same", "stride=2", f"kernel_size={kernel}", f"dilation={dilation}"]
    r = cli("validate", image_config, *(a for k in sets for a in ("--set", f"model.layers.0.{k}")))
    assert r.code == 2 and "needs stride 1" in r.stderr and padding in r.stderr


@pytest.mark.parametrize(
    "override,key,message",
    [
        (
            "model.layers.0.kernel_size=9",
            "model.layers[0]",
            "model.layers[0]: conv2d kernel of extent (9, 9) is larger",
        ),
        (
            "model.layers.4.name=relu",
            "model.layers[5]",
            "model.layers[5]: linear needs flat input (features,), got (4, 3, 3); put a flatten layer before it",
        ),
        (
            "model.layers=[{name: conv2d, out_channels: 2, kernel_size: 3}]",
            "model.layers[0]",
            "output of shape (2, 4, 4) per sample; end with flatten and a linear layer",
        ),
        (
            "model.layers.3.kernel_size=7",
            "model.layers[3]",
            "model.layers[3]: max_pool2d pooling window (7, 7) is larger",
        ),
        (
            "model.layers=[{name: conv2d, out_channels: 2, kernel_size: 3}, flatten]",
            "model.layers[1]",
            "model.layers[1]: flatten gives 32 outputs per sample but the data needs 1",
        ),
    ],
)
def test_shape_misfits_exit_2_naming_the_layer_before_training(cli, image_config, override, key, message):
    r = cli("train", image_config, "--set", override, "--json", "--output-dir", image_config.parent / "run")
    assert r.code == 2
    doc = json.loads(r.stdout)
    text = json.dumps(doc)
    assert key in text and message in text and "(1, 6, 6)" in text
    assert "] (" not in text and "(input shape (4, 3, 3))" not in text  # the layer and its shape said once
    assert not (image_config.parent / "run" / "checkpoint.npz").exists()


def test_validate_prints_the_shape_table(cli, image_config):
    r = cli("validate", image_config)
    assert r.code == 0
    lines = r.stdout.splitlines()
    assert lines[0].startswith("OK ")
    assert lines[2].split() == ["input", "(1,", "6,", "6)"]
    assert lines[3].split() == ["0", "conv2d", "(4,", "6,", "6)", "40"]
    assert lines[-1].split() == ["5", "linear", "(1,)", "37"]
    doc = json.loads(cli("validate", image_config, "--json").stdout)
    assert doc["layers"][3] == {"index": 3, "layer": "max_pool2d", "output_shape": [4, 3, 3], "params": 0}
    assert doc["input_shape"] == [1, 6, 6]  # the table's input row (the --json document lacked it)


@pytest.mark.parametrize(
    "shape,dims,first",
    [((12,), "auto", "conv1d"), ((1, 6, 6), "auto", "conv2d"), ((6, 6), "auto", "conv2d"), ((3, 12), 1, "conv1d")],
)
def test_cnn_preset_picks_1d_or_2d_from_the_data(tmp_path, shape, dims, first):
    write_images(tmp_path / "img.npz", shape)
    text = f"data: {{name: npz, path: img.npz}}\nmodel: {{name: cnn, channels: [4], dims: {dims}, hidden: [8]}}\noptimizer: sgd\n"
    exp = build(text, tmp_path)
    names = [r["layer"] for r in exp.net.summary()]
    assert names[0] == first and names[-1] == "linear" and "flatten" in names
    assert list(exp.net.params)[0] == "layers.0.weight"


def test_checkpoint_holds_buffers_and_resume_is_bit_exact(tmp_path, image_config):
    straight = train_into(tmp_path / "a", image_config)
    train_into(tmp_path / "b", image_config, stop_after_epoch=2)
    arrays, _ = checkpoint.load(tmp_path / "b" / "checkpoint.npz")
    assert int(arrays["buffer/layers.1.num_batches_tracked"]) == 2 * 3  # 48 training rows, batches of 16
    resumed = train_into(tmp_path / "b", image_config, resume=True)
    for k in straight.params:
        np.testing.assert_array_equal(resumed.params[k], straight.params[k])
    assert resumed.history == straight.history
    with np.load(tmp_path / "b" / "best.npz") as f:
        assert "layers.1.running_var" in f


def test_evaluate_and_predict_use_the_running_statistics(tmp_path, cli, image_config):
    run = tmp_path / "run"
    r = cli("train", image_config, "--output-dir", run, "--json")
    assert r.code == 0
    val_loss = r.json["metrics"]["val_loss"]
    ev = cli("evaluate", run, "--json")
    assert ev.code == 0 and ev.json["metrics"]["val_loss"] == pytest.approx(val_loss, rel=1e-12)
    X, _ = write_images(tmp_path / "new.npz", n=5, seed=9)
    np.savez(tmp_path / "new.npz", X=X)
    pr = cli("predict", run, "--data", tmp_path / "new.npz")
    assert pr.code == 0 and len(pr.stdout.strip().splitlines()) == 6


def test_init_file_with_buffers_round_trips(tmp_path, image_config, write_config):
    train_into(tmp_path / "a", image_config)
    cfg = write_config(
        CONV_NET.format(data_extra="", epochs=1).replace(
            "    - linear\n", "    - linear\n  init: {from: a/best.npz}\n"
        ),
        "init.yaml",
    )
    exp = api.build(api.load_config(cfg))
    with np.load(tmp_path / "a" / "best.npz") as f:
        np.testing.assert_array_equal(exp.net.buffers["layers.1.running_mean"], f["layers.1.running_mean"])


def test_a_1d_cnn_beats_a_same_size_mlp_on_shifted_patterns():
    """The reason convolutions exist: a motif at a random position. Same parameter count,
    same data, same optimizer; the CNN generalises and the MLP memorises."""
    import trainkit

    cnn, mlp = (trainkit.train(CONFIGS / f"signals_{m}.yaml") for m in ("cnn", "mlp"))
    assert abs(cnn.info["n_params"] - mlp.info["n_params"]) <= 0.01 * mlp.info["n_params"]
    assert cnn.metrics["val_accuracy"] - mlp.metrics["val_accuracy"] >= 0.4
    assert mlp.metrics["train_accuracy"] >= 0.99  # not for want of capacity


def test_shifted_patterns_are_deterministic_and_shaped(tmp_path):
    text = "seed: 4\ndata: {name: shifted_patterns, n_samples: 40, length: 20}\nmodel: mlp\noptimizer: sgd\n"
    a, b = build(text, tmp_path), build(text, tmp_path)
    np.testing.assert_array_equal(a.arrays["X_train"], b.arrays["X_train"])
    assert a.state.shape == [1, 20] and a.info["n_features"] == 20


def test_predict_refuses_samples_of_another_shape(tmp_path, cli, image_config):
    run = tmp_path / "run"
    assert cli("train", image_config, "--output-dir", run, "--json").code == 0
    np.savez(tmp_path / "small.npz", X=np.zeros((3, 1, 5, 5)))
    r = cli("predict", run, "--data", tmp_path / "small.npz")
    assert r.code == 2 and "samples have shape [1, 5, 5], the training data [1, 6, 6]" in r.stderr
    assert "Traceback" not in r.stderr


BN_DENSE = """
seed: 0
data: {{name: npz, path: img.npz, val_fraction: 0}}
model:
  name: sequential
  layers:
    - {{name: conv2d, out_channels: 2, kernel_size: 3}}
    - flatten
    - {{name: linear, out_features: 4}}
    - {{name: batch_norm1d}}
    - relu
    - linear
optimizer: {{name: sgd, lr: 0.1}}
train: {{epochs: 1, batch_size: {batch}, dtype: float64}}
"""


@pytest.mark.parametrize(
    "n,batch,why",
    [(33, 16, "33 training samples in batches of 16 leave a last batch of 1"), (8, 1, "every batch holds 1 sample")],
)
def test_a_batch_of_one_into_batch_norm_exits_2_before_training(tmp_path, cli, write_config, n, batch, why):
    """torch refuses batch statistics over one value; predicted from the data and batch sizes,
    `trainkit train` says so (naming the layer and the usual cause) before any training."""
    write_images(tmp_path / "img.npz", n=n)
    config = write_config(BN_DENSE.format(batch=batch))
    r = cli("train", config, "--json", "--output-dir", tmp_path / "run")
    assert r.code == 2
    issue = json.loads(r.stdout)["error"]["issues"][0]
    assert issue["key"] == "train.batch_size" and issue["line"] == 13
    assert why in issue["message"] and "layers[3] (batch_norm1d) would get it" in issue["message"]
    assert "drop_last" in issue["hint"]
    assert not (tmp_path / "run" / "checkpoint.npz").exists()
    plain = cli("train", config, "--output-dir", tmp_path / "run2")
    assert plain.code == 2 and "Traceback" not in plain.stdout + plain.stderr
    write_config(BN_DENSE.format(batch=batch + 1))  # no batch of one left: it trains
    assert cli("train", config, "--json", "--output-dir", tmp_path / "run3").code == 0


def test_channels_last_images_are_refused_unless_the_shape_is_declared(tmp_path):
    """NPZ X of shape (n, H, W, C), as numpy/PIL keep images, trained silently as H channels of
    W-pixel-wide images; now exit 2 with the transpose to save, and data.shape as the way out."""
    X = np.random.default_rng(0).normal(size=(20, 6, 6, 3))
    np.savez(tmp_path / "img.npz", X=X, y=np.arange(20) % 2)
    text = CONV_NET.format(data_extra="", epochs=1)
    with pytest.raises(DataError, match=r"channels last \(H, W, C\)") as e:
        build(text, tmp_path)
    assert e.value.hint.startswith("save X.transpose(0, 3, 1, 2)")
    exp = build(CONV_NET.format(data_extra=", shape: [6, 6, 3]", epochs=1), tmp_path)
    assert exp.net.in_shape == (6, 6, 3)  # declared: read as (C, H, W)
