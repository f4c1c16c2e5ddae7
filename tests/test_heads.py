"""What a model outputs (logits or probabilities) decides its loss, its predictions and its
threshold, in one place (losses.head_for); a loss that does not fit is exit 2."""

from __future__ import annotations

import numpy as np
import pytest

import trainkit
from trainkit import api
from trainkit.config import load_config_text
from trainkit.errors import ConfigError
from trainkit.losses import DEFAULT_LOSS, HeadMismatch, head_for
from trainkit.metrics import MetricAccumulator
from trainkit.nn.layers import sigmoid, softmax

MOONS = "seed: 0\ndata: {name: moons, n_samples: 400, noise: 0.1, val_fraction: 0.25}\n"
SIGMOID_MLP = "model: {name: mlp, hidden: [16], activation: tanh, output_activation: sigmoid}\n"
ADAM = "optimizer: {name: adam, lr: 0.01}\ntrain: {epochs: 60, batch_size: 32}\n"


def build(text: str):
    return api.build(load_config_text(text, "c.yaml"))


def test_sigmoid_output_trains_with_bce_by_default():
    """Before: bce_with_logits on probabilities (a double sigmoid), val accuracy 0.50, exit 0."""
    r = trainkit.train(load_config_text(MOONS + SIGMOID_MLP + ADAM, "c.yaml"))
    assert r.config["loss"]["name"] == "bce"
    assert r.metrics["val_accuracy"] > 0.95, r.metrics


@pytest.mark.parametrize(
    "model,loss,key,message",
    [
        (SIGMOID_MLP, "bce_with_logits", "model.output_activation", r"(?s)bce_with_logits takes logits.*use loss: bce"),
        ("model: {name: mlp, hidden: [8]}\n", "bce", "loss.name", r"(?s)bce takes probabilities.*bce_with_logits"),
        ("model: {name: logistic}\n", "bce_with_logits", "model.name", r"must not end in sigmoid"),
        (
            "model: {name: sequential, layers: [{name: linear, out_features: 8}, relu, linear, sigmoid]}\n",
            "bce_with_logits",
            "model.layers[3]",
            "must not end in sigmoid",
        ),
    ],
)
def test_a_loss_that_does_not_fit_the_outputs_is_refused(model, loss, key, message):
    with pytest.raises(ConfigError, match=message) as e:
        build(MOONS + model + f"loss: {loss}\n" + ADAM)
    assert e.value.issues[0].key == key


@pytest.mark.parametrize("loss", [None, "cross_entropy"])
def test_a_multiclass_model_ending_in_softmax_is_refused_with_or_without_a_loss(loss):
    """Before: a sequential model ending in softmax, or an mlp with no loss named, trained
    cross_entropy on probabilities without a word."""
    model = "model: {name: sequential, layers: [{name: linear, out_features: 8}, relu, linear, softmax]}\n"
    text = (
        "data: {name: blobs, n_classes: 3}\n" + model + ("" if loss is None else f"loss: {loss}\n") + "optimizer: sgd\n"
    )
    with pytest.raises(ConfigError, match="must not end in softmax") as e:
        build(text)
    assert e.value.issues[0].key == "model.layers[3]"
    assert "turned into probabilities for you" in e.value.issues[0].hint


def test_cli_names_the_loss_that_fits(cli, write_config):
    """Before: exit 0 with val accuracy 0.5."""
    r = cli("train", write_config(MOONS + SIGMOID_MLP + "loss: bce_with_logits\n" + ADAM))
    assert r.code == 2 and r.stdout == ""
    assert "model.output_activation: bce_with_logits takes logits" in r.stderr and "use loss: bce" in r.stderr
    assert "Traceback" not in r.stderr


def test_print_config_fills_in_the_default_loss(cli, write_config):
    r = cli("train", write_config(MOONS + SIGMOID_MLP + ADAM), "--print-config")
    assert r.code == 0
    assert "loss: {name: bce, reduction: mean}" in r.stdout


@pytest.mark.parametrize(
    "task,outputs,expected",
    [
        ("regression", "logits", "mse"),
        ("regression", "probabilities", "mse"),
        ("binary", "logits", "bce_with_logits"),
        ("binary", "probabilities", "bce"),
        ("multiclass", "logits", "cross_entropy"),
        ("binary", "distribution", None),
        ("multiclass", "probabilities", None),
        ("multiclass", "distribution", None),
    ],
)
def test_head_for_default_loss_table(task, outputs, expected):
    if expected is None:
        with pytest.raises(HeadMismatch):
            head_for(task, outputs)
    else:
        assert head_for(task, outputs).loss == expected == DEFAULT_LOSS[(task, outputs)]


def test_head_threshold_and_probabilities_follow_the_outputs():
    z = np.array([[-2.0], [-0.1], [0.3], [4.0]])
    logits = head_for("binary", "logits")
    np.testing.assert_array_equal(logits.labels(z), [0, 0, 1, 1])
    np.testing.assert_allclose(logits.probabilities(z)[:, 1], sigmoid(z[:, 0]))
    p = sigmoid(z)
    probs = head_for("binary", "probabilities")
    assert probs.threshold == 0.5
    np.testing.assert_array_equal(probs.labels(p), [0, 0, 1, 1])
    np.testing.assert_array_equal(probs.probabilities(p)[:, 1], p[:, 0])  # no second sigmoid
    zz = np.array([[1.0, 3.0, 0.0], [2.0, -1.0, 0.5]])
    np.testing.assert_allclose(head_for("multiclass", "logits").probabilities(zz), softmax(zz))


def test_metrics_threshold_probabilities_at_one_half():
    """Probabilities 0.3 and 0.4 are class 0: thresholding them at 0 (the logits rule) calls them 1."""
    p = np.array([[0.3], [0.4], [0.6], [0.9]])
    t = np.array([[0.0], [0.0], [1.0], [1.0]])
    acc = MetricAccumulator("binary", "bce", head=head_for("binary", "probabilities", "bce"))
    acc.add(p, t, 0.0, 4)
    assert acc.result("val")["val_accuracy"] == 1.0


def test_predict_gives_the_sigmoid_outputs_as_probabilities(tmp_path, write_config):
    """Before: predict applied a second sigmoid to a sigmoid model trained with the default loss."""
    from trainkit.runs.inference import predict
    from trainkit.runs.rundir import RunDir

    rd = RunDir(tmp_path / "run")
    try:
        trainkit.train(load_config_text(MOONS + SIGMOID_MLP + ADAM, str(tmp_path / "c.yaml")), run_dir=rd)
    finally:
        rd.close()
    X = np.random.default_rng(1).normal(size=(20, 2))
    np.savez(tmp_path / "new.npz", X=X, y=np.zeros(20))
    header, rows = predict(tmp_path / "run", str(tmp_path / "new.npz"))
    exp = api.build(load_config_text((tmp_path / "run" / "config.yaml").read_text(), "c"))
    from trainkit.runs import checkpoint

    arrays, _ = checkpoint.load(tmp_path / "run" / "checkpoint.npz")
    for k, v in exp.net.params.items():
        v[...] = arrays[f"param/{k}"]
    p1 = exp.net.predict(X.astype(np.float32))[:, 0].astype(np.float64)
    np.testing.assert_allclose([row[2] for row in rows], p1, rtol=1e-6)
