"""The one-GEMM conv path with r output rows per column (MEC, trainkit.nn.conv): forward,
backward and parameter gradients against torch (float64, 1e-10) and central finite differences,
for r that divides Ho and r that does not (zero rows padded below), strides, paddings,
dilations, no bias, evaluation in chunks; and the rule that picks r."""

from __future__ import annotations

import numpy as np
import pytest
import test_conv
from test_conv import one_layer_net
from test_gradients import TOL, numeric_grad, rel_error

from trainkit.nn import conv

# (kwargs, per-sample input shape): Ho = 5, 5, 4, 10, 3, 3 (r = 2, 3, 4 divide some, not others)
MEC_CASES = [
    ({"out_channels": 3, "kernel_size": 3}, (2, 7, 6)),
    ({"out_channels": 2, "kernel_size": [3, 2], "stride": 2, "padding": 1}, (3, 9, 7)),
    ({"out_channels": 2, "kernel_size": 3, "dilation": 2, "padding": "same"}, (2, 4, 5)),
    ({"out_channels": 4, "kernel_size": 5}, (3, 14, 9)),
    ({"out_channels": 2, "kernel_size": [2, 3], "stride": [3, 1], "dilation": [2, 1], "bias": False}, (2, 11, 6)),
    ({"out_channels": 3, "kernel_size": 2, "stride": 2, "padding": [1, 0]}, (1, 4, 4)),
]
MEC_IDS = [f"case{i}" for i in range(len(MEC_CASES))]


@pytest.fixture
def rows(monkeypatch, request):
    """Every conv layer runs one GEMM with r = request.param rows per column."""
    monkeypatch.setattr(conv, "PER_SAMPLE_FAN_IN", 0)
    monkeypatch.setattr(conv, "mec_rows", lambda ho, kh: request.param)
    return request.param


@pytest.mark.parametrize("rows", [2, 3, 4], indirect=True)
@pytest.mark.parametrize("kwargs,shape", MEC_CASES, ids=MEC_IDS)
def test_rows_per_gemm_match_torch(rows, kwargs, shape):
    test_conv.test_layer_matches_torch("conv2d", kwargs, shape, True)
    _, layer = one_layer_net("conv2d", kwargs, shape)
    assert layer.r == rows


@pytest.mark.parametrize("rows", [2, 3], indirect=True)
@pytest.mark.parametrize("kwargs,shape", MEC_CASES, ids=MEC_IDS)
def test_rows_per_gemm_match_finite_differences(rows, kwargs, shape):
    net, layer = one_layer_net("conv2d", kwargs, shape)
    rng = np.random.default_rng(1)
    net.flat[...] = rng.normal(size=net.flat.shape)
    x, r = rng.normal(size=(3, *shape)), rng.normal(size=(3, *net.out_shape))

    def loss():
        return float((net.forward(x.reshape(3, -1), training=True) * r).sum())

    loss()
    dx = layer.backward(r.copy()).copy()
    assert rel_error(dx, numeric_grad(loss, x)) < TOL
    loss()
    layer.backward(r.copy())
    assert rel_error(net.grad.copy(), numeric_grad(loss, net.flat)) < TOL


@pytest.mark.parametrize("rows", [3], indirect=True)
@pytest.mark.parametrize("kwargs,shape", MEC_CASES, ids=MEC_IDS)
def test_rows_per_gemm_evaluation_in_chunks_equals_training_forward(monkeypatch, rows, kwargs, shape):
    net, layer = one_layer_net("conv2d", kwargs, shape)
    x = np.random.default_rng(3).normal(size=(5, int(np.prod(shape))))
    whole = net.forward(x, training=True).copy()
    monkeypatch.setattr(conv, "EVAL_COLS", 2 * layer.g_fan_in * layer.g_out[0] * layer.g_out[1])  # 2 per chunk
    np.testing.assert_allclose(net.forward(x, training=False), whole, rtol=0, atol=1e-13)


@pytest.mark.parametrize("rows", [3], indirect=True)
@pytest.mark.parametrize("kwargs,shape", MEC_CASES, ids=MEC_IDS)
def test_rows_per_gemm_ignore_what_reused_buffers_held(rows, kwargs, shape):
    """The banded weight's zeros and dY's padded rows are written every step, not left over."""
    test_conv.test_backward_ignores_what_reused_buffers_held("conv2d", kwargs, shape)


def test_rule_picks_the_largest_r_up_to_mec_rows_that_divides_ho(monkeypatch):
    monkeypatch.setattr(conv, "MEC_ROWS", 4)
    assert [conv.mec_rows(ho, 5) for ho in (10, 12, 9, 7, 1)] == [2, 4, 3, 1, 1]
    assert conv.mec_rows(12, 1) == 1  # a one-row kernel (and every 1-D conv) shares no input rows


def test_lenet_runs_conv2_two_rows_per_gemm_and_conv1_per_sample():
    """The default rule on the benchmark's net (conv 1→6 5×5 pad 2 on 28×28, conv 6→16 5×5 on
    14×14): conv1 multiplies sample by sample, conv2 is one GEMM with r = 2 (Ho = 10)."""
    _, conv1 = one_layer_net("conv2d", {"out_channels": 6, "kernel_size": 5, "padding": 2}, (1, 28, 28))
    _, conv2 = one_layer_net("conv2d", {"out_channels": 16, "kernel_size": 5}, (6, 14, 14))
    assert (conv1.batch_last, conv1.r) == (False, 1)
    assert (conv2.batch_last, conv2.r) == (True, 2) and conv2.g_fan_in == 6 * 6 * 5  # 16·2 rows × C·(kh + 1)·kw


def test_one_d_convs_keep_one_row(monkeypatch):
    """1-D layers are 2-D layers of one row (kernel height 1): r stays 1 on the one-GEMM path."""
    monkeypatch.setattr(conv, "PER_SAMPLE_FAN_IN", 0)
    monkeypatch.setattr(conv, "MEC_ROWS", 4)
    _, layer = one_layer_net("conv1d", {"out_channels": 2, "kernel_size": 3}, (2, 9))
    assert (layer.batch_last, layer.r) == (True, 1)
