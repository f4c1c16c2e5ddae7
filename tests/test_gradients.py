"""Every layer's and every loss's backward pass against central finite differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest

from trainkit import registry
from trainkit.nn.layers import Dropout
from trainkit.nn.network import Network

EPS = 1e-6
TOL = 1e-6


def rel_error(a, b) -> float:
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def numeric_grad(f, x: np.ndarray) -> np.ndarray:
    """Central differences of scalar f() with respect to the array x (perturbed in place)."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + EPS
        up = f()
        flat[i] = old - EPS
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * EPS)
    return g


LAYERS = [
    ("linear", {"out_features": 3}),
    ("linear", {"out_features": 1, "bias": False}),
    ("sigmoid", {}),
    ("tanh", {}),
    ("relu", {}),
    ("leaky_relu", {"negative_slope": 0.1}),
    ("gelu", {}),
    ("gelu", {"approximate": "tanh"}),
    ("softplus", {}),
    ("softplus", {"beta": 2.0, "threshold": 1.0}),
    ("identity", {}),
    ("softmax", {}),
    ("dropout", {"p": 0.3}),
]


@pytest.mark.parametrize("shape", [(1, 1), (5, 4), (16, 7)])
@pytest.mark.parametrize("name,kwargs", LAYERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(LAYERS)])
def test_layer_backward_matches_finite_differences(name, kwargs, shape):
    entry = registry.get("layers", name)
    layer = entry.build(entry.schema(**kwargs))
    rng = np.random.default_rng(0)
    net = Network([layer], shape[1], np.float64)
    layer.needs_input_grad = True
    net.flat[...] = rng.normal(size=net.flat.shape)
    x = rng.normal(scale=2.0, size=shape)
    r = rng.normal(size=(shape[0], net.out_features))  # L = Σ r ⊙ y, so dL/dy = r

    def loss():
        if isinstance(layer, Dropout):
            layer.rng = np.random.default_rng(7)  # the same mask every call
        return float((net.forward(x, training=True) * r).sum())

    loss()
    dx = layer.backward(r.copy()).copy()  # backward may reuse dy's memory
    assert rel_error(dx, numeric_grad(loss, x)) < TOL
    if net.flat.size:
        loss()
        layer.backward(r.copy())
        analytic = net.grad.copy()
        assert rel_error(analytic, numeric_grad(loss, net.flat)) < TOL


def _targets(name, rng, n, k):
    if name == "cross_entropy":
        return rng.integers(0, k, n)
    if name in ("bce", "bce_with_logits"):
        return rng.integers(0, 2, (n, k)).astype(float)
    return rng.normal(size=(n, k))


LOSSES = [
    ("mse", {}),
    ("mse", {"reduction": "sum"}),
    ("mae", {}),
    ("huber", {"delta": 0.5}),
    ("bce", {}),
    ("bce_with_logits", {}),
    ("bce_with_logits", {"pos_weight": 3.0, "reduction": "sum"}),
    ("cross_entropy", {}),
    ("cross_entropy", {"label_smoothing": 0.1}),
    ("cross_entropy", {"reduction": "sum"}),
]


@pytest.mark.parametrize("shape", [(1, 1), (6, 3), (20, 5)])
@pytest.mark.parametrize("name,kwargs", LOSSES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(LOSSES)])
def test_loss_backward_matches_finite_differences(name, kwargs, shape):
    n, k = shape
    if name == "cross_entropy" and k == 1:
        k = 2
    entry = registry.get("losses", name)
    loss = entry.build(entry.schema(**kwargs))
    rng = np.random.default_rng(1)
    pred = rng.uniform(0.05, 0.95, (n, k)) if name == "bce" else rng.normal(scale=2.0, size=(n, k))
    target = loss.prepare_targets(_targets(name, rng, n, k), np.float64)
    loss.forward(pred, target)
    analytic = loss.backward()
    assert analytic.shape == pred.shape
    assert rel_error(analytic, numeric_grad(lambda: loss.forward(pred, target), pred)) < TOL


def test_cross_entropy_one_hot_targets_match_integer_targets():
    entry = registry.get("losses", "cross_entropy")
    loss = entry.build(entry.schema(label_smoothing=0.2))
    rng = np.random.default_rng(2)
    z, y = rng.normal(size=(8, 4)), rng.integers(0, 4, 8)
    a = loss.forward(z, loss.prepare_targets(y, np.float64))
    ga = loss.backward()
    b = loss.forward(z, loss.prepare_targets(np.eye(4)[y], np.float64))
    assert a == pytest.approx(b, rel=1e-12)
    np.testing.assert_allclose(ga, loss.backward(), rtol=1e-12)


@pytest.mark.parametrize("name", ["cross_entropy", "bce_with_logits"])
def test_losses_are_stable_for_extreme_logits(name):
    entry = registry.get("losses", name)
    loss = entry.build(entry.schema())
    z = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
    y = np.array([1, 0]) if name == "cross_entropy" else np.array([[0.0, 1.0], [1.0, 0.0]])
    value = loss.forward(z, loss.prepare_targets(y, np.float64))
    # every prediction is wrong by a logit gap of 2000 (cross-entropy) or a logit of 1000 (bce)
    assert value == pytest.approx(2000.0 if name == "cross_entropy" else 1000.0)
    assert np.isfinite(loss.backward()).all()


def test_bce_clamps_log_like_torch():
    entry = registry.get("losses", "bce")
    loss = entry.build(entry.schema())
    value = loss.forward(np.array([[0.0], [1.0]]), np.array([[1.0], [0.0]]))
    assert value == pytest.approx(100.0)
    assert np.isfinite(loss.backward()).all()


def test_whole_network_gradient():
    """An MLP with every kind of layer, through cross-entropy: backprop equals finite differences."""
    from trainkit.config import load_config_text
    from trainkit.nn.models import mlp_model

    cfg = load_config_text(
        "data: moons\noptimizer: sgd\nmodel: {name: mlp, hidden: [5, 4], activation: tanh}\n", "c"
    ).config.model
    net = mlp_model(cfg, 3, 3, np.float64)
    rng = np.random.default_rng(3)
    net.flat[...] = rng.normal(size=net.flat.shape)
    entry = registry.get("losses", "cross_entropy")
    loss = entry.build(entry.schema())
    x, y = rng.normal(size=(7, 3)), rng.integers(0, 3, 7)

    def f():
        return loss.forward(net.forward(x, training=True), y)

    f()
    net.backward(loss.backward())
    assert rel_error(net.grad, numeric_grad(f, net.flat)) < TOL
