"""erf/erfc in array operations (Cody's approximations) and the exact GELU built on them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import require

from trainkit.nn.layers import GELU, GELUConfig
from trainkit.nn.special import erf, erfc

# A dense grid over both tails, tiny arguments, and the ends of Cody's three ranges.
GRID = np.concatenate(
    [
        np.linspace(-30, 30, 240_001),
        np.geomspace(1e-300, 1e-2, 3000),
        -np.geomspace(1e-300, 1e-2, 3000),
        np.nextafter(0.46875, [-1.0, 2.0]),
        np.nextafter(4.0, [-1.0, 9.0]),
        [0.0, 0.46875, 4.0, -4.0, 26.5, 27.0, 1e10, 1e300],
    ]
)


def test_erf_matches_math_erf_to_a_few_ulp():
    ref = np.array([math.erf(v) for v in GRID])
    rel = np.abs(erf(GRID) - ref) / np.maximum(np.abs(ref), np.finfo(float).tiny)
    assert rel.max() < 1e-15, GRID[rel.argmax()]


def test_erfc_keeps_its_relative_accuracy_in_both_tails():
    ref = np.array([math.erfc(v) for v in GRID])
    got = erfc(GRID)
    normal = ref > np.finfo(float).tiny
    rel = np.abs(got - ref)[normal] / ref[normal]
    assert rel.max() < 2e-15, GRID[normal][rel.argmax()]
    assert (np.abs(got[~normal]) <= np.finfo(float).tiny).all()  # subnormal results flush to 0


def test_erf_special_values_shapes_and_dtypes():
    np.testing.assert_array_equal(erf(np.array([np.inf, -np.inf, 0.0])), [1.0, -1.0, 0.0])
    np.testing.assert_array_equal(erfc(np.array([np.inf, -np.inf])), [0.0, 2.0])
    assert np.isnan(erf(np.array([np.nan]))).all() and np.isnan(erfc(np.array([np.nan]))).all()
    assert erf(np.zeros((3, 4))).shape == (3, 4) and np.ndim(erf(0.5)) == 0
    assert erf(np.float32([0.5])).dtype == np.float32
    x32 = np.linspace(-12, 12, 10001, dtype=np.float32)
    ref = np.array([math.erfc(float(v)) for v in x32])
    normal = ref > np.finfo(np.float32).tiny
    rel = np.abs(erfc(x32).astype(float) - ref)[normal] / ref[normal]
    assert rel.max() < 5e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_matches_x_phi_x(dtype):
    x = np.linspace(-40, 40, 8001).astype(dtype)
    y = GELU(GELUConfig()).forward(x.reshape(-1, 1), training=False)[:, 0]
    assert y.dtype == dtype
    ref = np.array([v * 0.5 * math.erfc(-v / math.sqrt(2)) for v in x.astype(float)])
    tol = 1e-14 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol * 1e-3)


def test_gelu_equals_torch_in_float64():
    torch = require("torch")
    x = np.concatenate([np.linspace(-40, 40, 100_000), np.random.default_rng(0).normal(size=10_000)])
    for approximate in ("none", "tanh"):
        layer = GELU(GELUConfig(approximate=approximate))
        y = layer.forward(x.reshape(100, -1), training=True).ravel()
        dy = layer.backward(np.ones((100, x.size // 100))).ravel()
        t = torch.tensor(x, requires_grad=True)
        yt = torch.nn.functional.gelu(t, approximate=approximate)
        yt.sum().backward()
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(dy, t.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_gelu_tanh_in_float32_matches_torch():
    torch = require("torch")
    x = np.random.default_rng(0).normal(scale=4, size=(64, 64)).astype(np.float32)
    y = GELU(GELUConfig(approximate="tanh")).forward(x, training=False)
    assert y.dtype == np.float32
    yt = torch.nn.functional.gelu(torch.tensor(x), approximate="tanh").numpy()
    np.testing.assert_allclose(y, yt, rtol=1e-6, atol=1e-6)
