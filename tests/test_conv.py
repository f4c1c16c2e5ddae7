"""Convolution, pooling, normalisation and channel-dropout layers: backward against central
finite differences (float64), and forward, backward and training steps against torch.

`LAYERS` is this file's gradient-check table (same form as test_gradients.LAYERS, plus the
per-sample input shape): every registered conv/pool/norm layer appears in it.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require
from test_gradients import TOL, numeric_grad, rel_error

from trainkit import registry
from trainkit.config.base import InitScheme
from trainkit.nn.layers import Dropout
from trainkit.nn.network import Network
from trainkit.nn.spatial import ShapeError

# (name, kwargs, per-sample input shape)
LAYERS = [
    ("conv1d", {"out_channels": 3, "kernel_size": 3}, (2, 9)),
    ("conv1d", {"out_channels": 2, "kernel_size": 2, "stride": 2, "padding": 1}, (3, 8)),
    ("conv1d", {"out_channels": 2, "kernel_size": 3, "dilation": 2, "padding": "same"}, (2, 7)),
    ("conv1d", {"out_channels": 2, "kernel_size": 4, "padding": "same", "bias": False}, (1, 6)),
    ("conv2d", {"out_channels": 3, "kernel_size": 3}, (2, 5, 6)),
    ("conv2d", {"out_channels": 2, "kernel_size": [2, 3], "stride": [2, 1], "padding": [1, 0]}, (3, 5, 5)),
    ("conv2d", {"out_channels": 2, "kernel_size": 3, "dilation": 2, "padding": "same"}, (2, 6, 5)),
    ("conv2d", {"out_channels": 2, "kernel_size": 2, "stride": 3, "bias": False}, (2, 7, 8)),
    ("conv2d", {"out_channels": 4, "kernel_size": 1}, (3, 3, 2)),
    ("max_pool1d", {"kernel_size": 2}, (2, 8)),
    ("max_pool1d", {"kernel_size": 3, "stride": 2, "padding": 1}, (2, 9)),
    ("max_pool1d", {"kernel_size": 2, "dilation": 2}, (1, 7)),
    ("max_pool1d", {"kernel_size": 2, "dilation": 2, "stride": 3}, (1, 9)),  # disjoint windows with gaps
    ("max_pool2d", {"kernel_size": 2}, (2, 4, 6)),
    ("max_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, (2, 7, 5)),
    ("max_pool2d", {"kernel_size": [2, 3], "stride": 1}, (1, 4, 5)),
    ("avg_pool1d", {"kernel_size": 2}, (2, 8)),
    ("avg_pool1d", {"kernel_size": 3, "stride": 2, "padding": 1}, (2, 9)),
    ("avg_pool2d", {"kernel_size": 2}, (2, 4, 6)),
    ("avg_pool2d", {"kernel_size": 3, "stride": [1, 2], "padding": 1}, (2, 5, 6)),
    ("adaptive_avg_pool1d", {}, (3, 7)),
    ("adaptive_avg_pool1d", {"output_size": 3}, (2, 7)),
    ("adaptive_avg_pool2d", {}, (3, 4, 5)),
    ("adaptive_avg_pool2d", {"output_size": [2, 3]}, (2, 5, 7)),
    ("adaptive_avg_pool1d", {"output_size": 5}, (2, 3)),  # more bins than inputs: bins overlap, as in torch
    ("adaptive_avg_pool2d", {"output_size": [7, 4]}, (2, 5, 3)),
    ("flatten", {}, (2, 3, 4)),
    ("batch_norm1d", {}, (4,)),
    ("batch_norm1d", {"momentum": None}, (3, 5)),
    ("batch_norm1d", {"affine": False}, (3, 5)),
    ("batch_norm2d", {}, (3, 4, 5)),
    ("batch_norm2d", {"track_running_stats": False}, (2, 3, 3)),
    ("layer_norm", {}, (6,)),
    ("layer_norm", {}, (3, 4, 5)),
    ("layer_norm", {"normalized_shape": 5}, (3, 5)),
    ("layer_norm", {"normalized_shape": [4, 5], "elementwise_affine": False}, (3, 4, 5)),
    ("layer_norm", {"bias": False}, (2, 6)),
    ("dropout1d", {"p": 0.4}, (4, 6)),
    ("dropout2d", {"p": 0.4}, (4, 3, 3)),
]
CASE_IDS = [f"{n}-{i}" for i, (n, *_) in enumerate(LAYERS)]


def make(name, **kwargs):
    entry = registry.get("layers", name)
    return entry.build(entry.schema(**kwargs))


def one_layer_net(name, kwargs, shape, dtype=np.float64, seed=0):
    layer = make(name, **kwargs)
    net = Network([layer], shape, dtype)
    net.init(InitScheme(name="default"), np.random.default_rng(seed))
    layer.needs_input_grad = True
    return net, layer


def test_every_spatial_layer_has_a_gradient_case():
    from trainkit.nn import channel_dropout, conv, norm, pooling

    modules = {m.__name__ for m in (conv, pooling, norm, channel_dropout)}
    registered = {e.name for e in registry.entries("layers") if e.build.__module__ in modules}
    assert registered == {name for name, *_ in LAYERS}


def _fd_cases():
    """Every case in training mode with batches of 1 and 4; evaluation mode where it differs."""
    for i, (name, kwargs, shape) in enumerate(LAYERS):
        for n in (1, 4):
            modes = (True, False) if name.startswith(("batch_norm", "dropout")) else (True,)
            for training in modes:
                if name.startswith("batch_norm") and training and n == 1 and len(shape) == 1:
                    continue  # one value per channel: no batch statistics (torch refuses it too)
                mode = "train" if training else "eval"
                yield pytest.param(name, kwargs, shape, n, training, id=f"{name}-{i}-n{n}-{mode}")


@pytest.mark.parametrize("name,kwargs,shape,n,training", list(_fd_cases()))
def test_layer_backward_matches_finite_differences(name, kwargs, shape, n, training):
    net, layer = one_layer_net(name, kwargs, shape)
    rng = np.random.default_rng(1)
    net.flat[...] = rng.normal(size=net.flat.shape)
    for buf in net.buffers.values():  # evaluation mode reads running statistics: make them non-trivial
        if buf.ndim:
            buf[...] = rng.uniform(0.5, 2.0, buf.shape)
    x = rng.normal(scale=2.0, size=(n, *shape))
    r = rng.normal(size=(n, *net.out_shape))  # L = Σ r ⊙ y, so dL/dy = r

    def loss():
        if isinstance(layer, Dropout):
            layer.rng = np.random.default_rng(7)  # the same mask every call
        return float((net.forward(x.reshape(n, -1), training=training) * r).sum())

    loss()
    dx = layer.backward(r.copy()).copy()  # backward may reuse dy's memory
    assert dx.shape == x.shape
    assert rel_error(dx, numeric_grad(loss, x)) < TOL
    if net.flat.size:
        loss()
        layer.backward(r.copy())
        analytic = net.grad.copy()
        assert rel_error(analytic, numeric_grad(loss, net.flat)) < TOL


@pytest.mark.parametrize("name,kwargs,shape", LAYERS, ids=CASE_IDS)
def test_float32_matches_float64(name, kwargs, shape):
    """The same layer in float32 agrees with float64 to float32 rounding (buffers in float32 too)."""
    outs = []
    for dtype in (np.float64, np.float32):
        net, layer = one_layer_net(name, kwargs, shape, dtype)
        if isinstance(layer, Dropout):
            layer.rng = np.random.default_rng(7)
        x = np.random.default_rng(2).normal(size=(5, *shape)).astype(dtype)
        y = net.forward(x.reshape(5, -1), training=True)
        assert y.dtype == dtype and all(b.dtype in (dtype, np.int64) for b in net.buffers.values())
        dx = layer.backward(np.ones_like(y))
        outs.append((y.astype(np.float64), np.array(dx, np.float64), net.grad.astype(np.float64)))
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_eval_forward_in_chunks_equals_one_pass(monkeypatch):
    from trainkit.nn import conv

    net, _ = one_layer_net("conv2d", {"out_channels": 3, "kernel_size": 3, "padding": 1}, (2, 6, 6))
    x = np.random.default_rng(3).normal(size=(10, 72))
    whole = net.forward(x, training=False).copy()
    monkeypatch.setattr(conv, "EVAL_COLS", 2 * 36 * 18)  # two samples per chunk
    np.testing.assert_array_equal(net.forward(x, training=False), whole)
    np.testing.assert_array_equal(net.forward(x, training=True), whole)


def test_conv_work_counts_every_output_position_for_blas_threads():
    """A conv's weight is applied at each output position: 3·8·3·3 at 4·5 positions (1-D: at 6)."""
    _, layer = one_layer_net("conv2d", {"out_channels": 8, "kernel_size": 3}, (3, 6, 7))
    assert layer.macs_per_sample() == 3 * 8 * 3 * 3 * 4 * 5
    _, layer = one_layer_net("conv1d", {"out_channels": 8, "kernel_size": 3}, (3, 8))
    assert layer.macs_per_sample() == 3 * 8 * 3 * 6


def test_training_buffers_are_reused_across_steps():
    net, layer = one_layer_net("conv2d", {"out_channels": 3, "kernel_size": 3}, (2, 6, 6))
    x = np.random.default_rng(4).normal(size=(8, 72))
    net.forward(x, True)
    layer.backward(np.ones((8, 3, 4, 4)))
    cols = layer.cols
    n_buffers = len(layer._buffers)
    net.forward(x, True)
    layer.backward(np.ones((8, 3, 4, 4)))
    assert layer.cols.base is cols.base and len(layer._buffers) == n_buffers


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "layers,shape,match",
    [
        (
            [("conv2d", {"out_channels": 2, "kernel_size": 5})],
            (1, 4, 4),
            r"layers\[0\] \(conv2d\) kernel of extent \(5, 5\) is larger than its padded input \(4, 4\)",
        ),
        (
            [("conv1d", {"out_channels": 2, "kernel_size": 3})],
            (1, 4, 4),
            r"layers\[0\] \(conv1d\) needs input of shape",
        ),
        (
            [("conv2d", {"out_channels": 2, "kernel_size": 3}), ("flatten", {}), ("linear", {"out_features": 2})],
            (1, 5, 5),
            None,
        ),
        (
            [("conv2d", {"out_channels": 2, "kernel_size": 3}), ("linear", {"out_features": 2})],
            (1, 5, 5),
            r"layers\[1\] \(linear\) needs flat input",
        ),
        (
            [("max_pool2d", {"kernel_size": 3}), ("max_pool2d", {"kernel_size": 3})],
            (1, 5, 5),
            r"layers\[1\] \(max_pool2d\) pooling window",
        ),
        (
            [("batch_norm2d", {})],
            (3, 5),
            r"layers\[0\] \(batch_norm2d\) needs input of shape \(channels, height, width\)",
        ),
        ([("layer_norm", {"normalized_shape": 4})], (3, 5), r"normalized_shape \(4,\)"),
    ],
)
def test_shapes_flow_and_misfits_name_the_layer(layers, shape, match):
    built = [make(n, **k) for n, k in layers]
    if match is None:
        net = Network(built, shape, np.float64)
        assert net.shapes == [(2, 3, 3), (18,), (2,)]
        return
    with pytest.raises(ShapeError, match=match):
        Network(built, shape, np.float64)


def test_one_channel_input_gets_its_channel_axis():
    """(L,) data before conv1d and (H, W) before conv2d are one-channel inputs."""
    assert Network([make("conv1d", out_channels=2, kernel_size=3)], (9,), np.float64).in_shape == (1, 9)
    assert Network([make("conv2d", out_channels=2, kernel_size=3)], (5, 6), np.float64).in_shape == (1, 5, 6)


def test_buffers_are_named_like_torch_and_outside_the_parameter_buffer():
    net = Network(
        [make("conv2d", out_channels=2, kernel_size=3), make("batch_norm2d"), make("relu")], (1, 5, 5), np.float32
    )
    assert list(net.params) == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert list(net.buffers) == ["layers.1.running_mean", "layers.1.running_var", "layers.1.num_batches_tracked"]
    assert net.n_params == 2 * 9 + 2 + 2 + 2  # running statistics are not trained
    assert net.buffers["layers.1.running_var"].dtype == np.float32
    assert net.buffers["layers.1.num_batches_tracked"].shape == ()


# --------------------------------------------------------------------------- against torch


def torch_layer(torch, name, kwargs, shape):
    nn = torch.nn
    kw = dict(kwargs)
    if name.startswith("conv"):
        cls = nn.Conv1d if name == "conv1d" else nn.Conv2d
        return cls(shape[0], kw.pop("out_channels"), **kw)
    if name.startswith(("max_pool", "avg_pool", "adaptive_avg_pool")):
        cls = {
            "max_pool1d": nn.MaxPool1d,
            "max_pool2d": nn.MaxPool2d,
            "avg_pool1d": nn.AvgPool1d,
            "avg_pool2d": nn.AvgPool2d,
            "adaptive_avg_pool1d": nn.AdaptiveAvgPool1d,
            "adaptive_avg_pool2d": nn.AdaptiveAvgPool2d,
        }[name]
        if name.startswith("adaptive"):
            kw.setdefault("output_size", 1)
        return cls(**kw)
    if name.startswith("batch_norm"):
        return (nn.BatchNorm1d if name == "batch_norm1d" else nn.BatchNorm2d)(shape[0], **kw)
    if name == "layer_norm":
        ns = kw.pop("normalized_shape", list(shape))
        return nn.LayerNorm(ns, **kw)
    if name == "flatten":
        return nn.Flatten()
    if name == "linear":
        return nn.Linear(shape[0], kw["out_features"])
    return {"relu": nn.ReLU, "tanh": nn.Tanh}[name]()


class _Wrapped:
    """torch.nn.Sequential inside a module attribute `layers`: trainkit's state_dict names."""

    def __new__(cls, torch, layers):
        m = torch.nn.Module()
        m.layers = torch.nn.Sequential(*layers)
        return m


def torch_twin(torch, specs, in_shape):
    """Our Network and the torch model for the same layer specs, with the same parameters."""
    net = Network([make(n, **k) for n, k in specs], in_shape, np.float64)
    net.init(InitScheme(name="default"), np.random.default_rng(0))
    shapes = [net.in_shape] + net.shapes
    model = _Wrapped(torch, [torch_layer(torch, n, k, s) for (n, k), s in zip(specs, shapes)]).double()
    sd = model.state_dict()
    assert list(sd) == list(net.state_dict())  # one-to-one names, parameters and buffers
    model.load_state_dict({k: torch.tensor(v) for k, v in net.state_dict().items()})
    return net, model


TORCH_CASES = [
    pytest.param(n, k, s, training, id=f"{n}-{i}-{'train' if training else 'eval'}")
    for i, (n, k, s) in enumerate(LAYERS)
    if not n.startswith("dropout")  # torch draws its masks from its own generator
    for training in ((True, False) if n.startswith("batch_norm") else (True,))
]


@pytest.mark.parametrize("name,kwargs,shape,training", TORCH_CASES)
def test_layer_matches_torch(name, kwargs, shape, training):
    torch = pytest.importorskip("torch")
    net, model = torch_twin(torch, [(name, kwargs)], shape)
    rng = np.random.default_rng(5)
    for v in net.buffers.values():  # start from non-trivial running statistics
        if v.ndim:
            v[...] = rng.uniform(0.5, 2.0, v.shape)
    model.load_state_dict({k: torch.tensor(v) for k, v in net.state_dict().items()})
    model.train(training)
    net.layers[0].needs_input_grad = True
    x = rng.normal(size=(4, *shape))
    xt = torch.tensor(x, requires_grad=True)
    yt = model.layers(xt)
    y = net.forward(x.reshape(4, -1), training)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=1e-10)
    r = rng.normal(size=y.shape)
    (yt * torch.tensor(r)).sum().backward()
    dx = net.layers[0].backward(r.copy())
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=1e-10)
    grads = dict(model.named_parameters())
    for k, g in net.grads.items():
        np.testing.assert_allclose(g, grads[k].grad.numpy(), rtol=0, atol=1e-10, err_msg=k)
    tsd = model.state_dict()
    for k, v in net.buffers.items():
        np.testing.assert_allclose(v, tsd[k].numpy(), rtol=0, atol=1e-12, err_msg=k)


CONV_CASES = [case for case in TORCH_CASES if case.values[0].startswith("conv")]


@pytest.mark.parametrize("fan_in_limit", [0, 1 << 30], ids=["one-gemm", "per-sample"])
@pytest.mark.parametrize("name,kwargs,shape,training", CONV_CASES)
def test_conv_either_way_matches_torch(monkeypatch, name, kwargs, shape, training, fan_in_limit):
    """Y = W cols and dW are one GEMM above conv.PER_SAMPLE_FAN_IN and per-sample products up
    to it: both ways match torch, whatever fan-in the test shapes have."""
    from trainkit.nn import conv

    monkeypatch.setattr(conv, "PER_SAMPLE_FAN_IN", fan_in_limit)
    test_layer_matches_torch(name, kwargs, shape, training)


CNN_1D = [
    ("conv1d", {"out_channels": 4, "kernel_size": 3, "padding": "same"}),
    ("batch_norm1d", {}),
    ("relu", {}),
    ("max_pool1d", {"kernel_size": 2}),
    ("conv1d", {"out_channels": 3, "kernel_size": 3, "stride": 2, "dilation": 1, "padding": 1}),
    ("avg_pool1d", {"kernel_size": 2}),
    ("layer_norm", {}),
    ("flatten", {}),
    ("linear", {"out_features": 3}),
]
CNN_2D = [
    ("conv2d", {"out_channels": 4, "kernel_size": 3, "padding": 1}),
    ("batch_norm2d", {}),
    ("relu", {}),
    ("max_pool2d", {"kernel_size": 2}),
    ("conv2d", {"out_channels": 5, "kernel_size": [2, 3], "dilation": [1, 2], "padding": "same"}),
    ("tanh", {}),
    ("adaptive_avg_pool2d", {"output_size": 2}),
    ("flatten", {}),
    ("batch_norm1d", {}),
    ("linear", {"out_features": 3}),
]


@pytest.mark.parametrize("specs,shape", [(CNN_1D, (2, 16)), (CNN_2D, (2, 8, 9))], ids=["1d", "2d"])
def test_training_steps_match_torch(specs, shape):
    """Five SGD-with-momentum steps on cross-entropy: same parameters and running statistics
    as torch, then the same evaluation-mode predictions."""
    torch = pytest.importorskip("torch")
    net, model = torch_twin(torch, specs, shape)
    loss = registry.build("losses", registry.get("losses", "cross_entropy").schema())
    opt_entry = registry.get("optimizers", "sgd")
    opt = opt_entry.build(opt_entry.schema(lr=0.1, momentum=0.9), net.flat, net.grad)
    topt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(6)
    for _ in range(5):
        x, y = rng.normal(size=(6, *shape)), rng.integers(0, 3, 6)
        pred = net.forward(x.reshape(6, -1), training=True)
        loss.forward(pred, y)
        net.backward(loss.backward())
        opt.step(0.1)
        model.train()
        topt.zero_grad()
        torch.nn.functional.cross_entropy(model.layers(torch.tensor(x)), torch.tensor(y)).backward()
        topt.step()
    tsd = model.state_dict()
    for k, v in net.state_dict().items():
        np.testing.assert_allclose(v, tsd[k].numpy(), rtol=0, atol=1e-10, err_msg=k)
    x = rng.normal(size=(5, *shape))
    model.eval()
    np.testing.assert_allclose(
        net.forward(x.reshape(5, -1), training=False), model.layers(torch.tensor(x)).detach().numpy(), atol=1e-10
    )


@pytest.mark.parametrize("fan_in_limit", [0, 1 << 30], ids=["one-gemm", "per-sample"])
def test_training_steps_match_torch_either_way(monkeypatch, fan_in_limit):
    """The first conv (no input gradient) and the later ones, one GEMM or per-sample products."""
    from trainkit.nn import conv

    monkeypatch.setattr(conv, "PER_SAMPLE_FAN_IN", fan_in_limit)
    test_training_steps_match_torch(CNN_2D, (2, 8, 9))


@pytest.mark.parametrize("name,shape", [("conv1d", (3, 10)), ("conv2d", (3, 6, 7))])
def test_default_init_is_torch_s_distribution(name, shape):
    """U(±1/√fan_in) for weight and bias, fan_in = C·kh·kw (torch's kaiming_uniform(a=√5))."""
    net, layer = one_layer_net(name, {"out_channels": 200, "kernel_size": 3}, shape)
    bound = 1 / np.sqrt(3 * 3 ** (len(shape) - 1))
    w = net.params["layers.0.weight"]
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert np.abs(net.params["layers.0.bias"]).max() <= bound


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 2},  # windows that tile the input
        {"kernel_size": 3},
        {"kernel_size": [2, 3]},
        {"kernel_size": 3, "stride": 1, "padding": 1},  # overlapping windows
    ],
)
def test_max_pool_ties_go_to_the_first_maximum_as_in_torch(kwargs):
    """Integer-valued inputs tie often (as zeros after a ReLU do): the gradient goes to the
    first maximum of each window in row-major order, exactly as torch routes it."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(8).integers(0, 3, (3, 2, 6, 6)).astype(np.float64)
    net, layer = one_layer_net("max_pool2d", kwargs, (2, 6, 6))
    layer.needs_input_grad = True
    y = net.forward(x.reshape(3, -1), training=True)
    r = np.random.default_rng(9).normal(size=y.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.MaxPool2d(**kwargs)(xt)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    (yt * torch.tensor(r)).sum().backward()
    np.testing.assert_allclose(layer.backward(r.copy()), xt.grad.numpy(), rtol=0, atol=1e-12)  # sums in another order


@pytest.mark.parametrize(
    "name,kwargs,shape",
    [
        ("max_pool1d", {"kernel_size": 2}, (2, 8)),
        ("max_pool1d", {"kernel_size": 3}, (2, 9)),
        ("max_pool2d", {"kernel_size": 2}, (2, 6, 6)),
        ("max_pool2d", {"kernel_size": [3, 2]}, (2, 6, 6)),
    ],
)
@pytest.mark.parametrize("contiguous", [True, False])
def test_tiled_max_pools_route_ties_like_the_tap_by_tap_form(name, kwargs, shape, contiguous):
    """Tiled windows over a contiguous input take the two-stage path (row maxima, then the
    window's rows); any other input the tap-by-tap one. Both give torch's outputs and send each
    gradient to the first maximum in row-major window order, ties included."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).integers(-1, 2, (4, *shape)).astype(np.float64)
    x = x if contiguous else np.asfortranarray(x)
    net, layer = one_layer_net(name, kwargs, shape)
    y = layer.forward(x, training=True)
    assert layer.staged == contiguous
    r = np.random.default_rng(4).normal(size=y.shape)
    xt = torch.tensor(x, requires_grad=True)
    pool = torch.nn.MaxPool1d if name == "max_pool1d" else torch.nn.MaxPool2d
    yt = pool(**kwargs)(xt)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    (yt * torch.tensor(r)).sum().backward()
    np.testing.assert_array_equal(layer.backward(r.copy()), xt.grad.numpy())


@pytest.mark.parametrize(
    "pool",
    [
        {"name": "max_pool2d", "kernel_size": 2},
        {"name": "max_pool2d", "kernel_size": 3, "stride": 1, "padding": 1},  # overlapping, padded
    ],
)
def test_a_relu_before_a_max_pool_runs_after_it_with_the_same_outputs_and_gradients(pool):
    """The network runs relu → max_pool as max_pool → relu (4× fewer values through the ReLU):
    outputs and every gradient equal running the layers in their written order, bit for bit,
    including windows with no positive value and ties among zeros."""
    from trainkit.nn.network import run_order

    layers = [
        make("conv2d", out_channels=3, kernel_size=3, padding=1),
        make("relu"),
        make(**pool),
        make("flatten"),
        make("linear", out_features=2),
    ]
    net = Network(layers, (2, 6, 6), np.float64)
    net.init(InitScheme(name="default"), np.random.default_rng(0))
    assert [type(layer).__name__ for layer in net.order[1:3]] == [type(layers[2]).__name__, "ReLU"]
    assert run_order([layers[2], layers[1]]) == [layers[2], layers[1]]  # a pool then a ReLU stays as written
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 3, (5, 72)).astype(np.float64)  # integer inputs: ties, and all-negative windows
    dy = rng.normal(size=(5, 2))
    y = net.forward(x, training=True)
    net.backward(dy.copy())
    grad = net.grad.copy()

    h = x.reshape(5, 2, 6, 6)
    for layer in layers:  # the written order
        h = layer.forward(h, training=True)
    np.testing.assert_array_equal(y, h)
    g = dy.copy()
    for layer in reversed(layers):
        g = layer.backward(g)
    np.testing.assert_array_equal(grad, net.grad)


@pytest.mark.parametrize(
    "name,kwargs,shape,training,refused",
    [
        ("batch_norm1d", {}, (4,), True, True),  # (1, 4): one value per channel
        ("batch_norm1d", {}, (4,), False, False),  # evaluation reads the running statistics
        ("batch_norm1d", {}, (3, 5), True, False),  # five positions per channel
        ("batch_norm2d", {}, (3, 1, 1), True, True),
        ("batch_norm2d", {"track_running_stats": False}, (2, 1, 1), False, True),  # batch statistics in eval too
    ],
)
def test_batch_norm_refuses_one_value_per_channel_as_torch_does(name, kwargs, shape, training, refused):
    """torch raises "Expected more than 1 value per channel when training"; trainkit used to
    train on x̂ = 0 silently. The error names the usual cause (a last batch of one sample)."""
    from trainkit.errors import TrainkitError
    from trainkit.nn.norm import OneValueBatchError

    torch = require("torch")
    net, _ = one_layer_net(name, kwargs, shape)
    x = np.random.default_rng(0).normal(size=(1, *shape))
    tlayer = torch_layer(torch, name, kwargs, shape).double()
    tlayer.train(training)
    if not refused:
        net.forward(x.reshape(1, -1), training=training)
        tlayer(torch.tensor(x))
        return
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        tlayer(torch.tensor(x))
    with pytest.raises(OneValueBatchError) as err:
        net.forward(x.reshape(1, -1), training=training)
    assert isinstance(err.value, TrainkitError) and err.value.exit_code == 2
    text = str(err.value)
    assert f"{name}: batch statistics need more than 1 value per channel" in text
    assert "last partial batch" in text and "train.batch_size" in text and "drop_last" in text


@pytest.mark.parametrize(
    "name,kwargs,shape,n", [(n, k, s, b) for n, k, s in LAYERS if n.startswith("conv") for b in (1, 3)]
)
def test_conv_one_gemm_batch_last_matches_finite_differences(monkeypatch, name, kwargs, shape, n):
    """The one-GEMM path keeps its work arrays batch-last (C, H, W, n); the test shapes are
    small enough for per-sample products, so force the other path too."""
    from trainkit.nn import conv

    monkeypatch.setattr(conv, "PER_SAMPLE_FAN_IN", 0)
    test_layer_backward_matches_finite_differences(name, kwargs, shape, n, True)


@pytest.mark.parametrize("name,kwargs,shape", LAYERS, ids=CASE_IDS)
def test_backward_ignores_what_reused_buffers_held(name, kwargs, shape):
    """Work arrays are reused across steps: a step's gradients must not depend on what the
    previous step left in them (a dilated pool with stride = its extent once left gaps unset)."""
    net, layer = one_layer_net(name, kwargs, shape)
    rng = np.random.default_rng(3)
    x, r = rng.normal(size=(3, *shape)), rng.normal(size=(3, *net.out_shape))

    def step():
        if isinstance(layer, Dropout):
            layer.rng = np.random.default_rng(7)
        y = net.forward(x.reshape(3, -1), training=True).copy()
        return y, layer.backward(r.copy()).copy(), net.grad.copy()

    first = step()
    for buf in getattr(layer, "_buffers", {}).values():
        if buf.dtype.kind == "f":
            buf.fill(np.nan)
    for a, b in zip(first, step()):
        np.testing.assert_array_equal(a, b)
