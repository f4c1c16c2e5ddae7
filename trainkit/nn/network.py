"""A network: layers in sequence over one flat parameter buffer and one flat gradient buffer.

Every layer's parameters are views into `flat` (and gradients into `grad`), so optimizers,
clipping and regularization run as a few whole-array passes instead of a Python loop per
tensor. Parameter names follow torch's `state_dict` for the equivalent torch model.

Batch parts: a network of per-sample layers (no batch norm, no dropout) with convolutions
trains a batch of at least SPLIT_MACS multiply-adds as PARTS contiguous parts, each through
its own copy of the layers (the same parameters, its own buffers and gradient), and adds
the parts' gradients in order: the gradient of the batch's loss, summed in another order.
The parts run at once on `lanes` threads (numpy and BLAS release the GIL), or one after the
other on one: how many parts there are depends on the config alone, so a run's results do
not depend on the machine's cores. Elementwise layers and LeNet's thin conv products use one
core each however the BLAS is threaded; the parts use every core for all of them
(LeNet, batch 128, 2 cores: forward + backward 8.0 -> 6.0 ms, median of 55 steps).
"""

from __future__ import annotations

import copy
import functools
import math

import numpy as np

from trainkit.backend import current, to_device, xp
from trainkit.backend.threads import lanes as lane_pool
from trainkit.nn.conv import _Conv
from trainkit.nn.init import init_linear
from trainkit.nn.layers import Dropout, Layer, Linear, ReLU
from trainkit.nn.pooling import _MaxPool
from trainkit.nn.spatial import ShapeError, fmt_shape

# A batch trains as this many parts (see the module's docstring) ...
PARTS = 2
# ... when its forward and backward take at least this many multiply-adds (each part then has
# milliseconds of work, far above the tens of microseconds a lane takes to wake).
SPLIT_MACS = 2**25


class Network:
    def __init__(self, layers: list[Layer], in_features: int | tuple[int, ...], dtype, names: str = "indexed"):
        """`in_features`: the size of a sample, or its shape ((C, L), (C, H, W), ...): each
        layer's input shape is the previous one's output, so a shape that does not fit raises
        ShapeError naming the layer. `names`: "indexed" gives layers.{i}.weight
        (torch.nn.Sequential inside `layers`); "flat" gives weight/bias (a single torch.nn.Linear)."""
        self.layers = layers
        self.dtype = np.dtype(dtype)
        shape = _input_shape(layers, (in_features,) if isinstance(in_features, int) else tuple(in_features))
        self.in_shape, self.in_features = shape, math.prod(shape)
        self.shapes: list[tuple[int, ...]] = []  # each layer's output shape (per sample)
        specs: list[tuple[str, int, str, tuple[int, ...]]] = []
        for i, layer in enumerate(layers):
            try:
                shape = self._build(layer, shape)
            except ShapeError as e:
                raise ShapeError(e.message, i, layer_name(layer), shape) from None
            self.shapes.append(shape)
            for pname, pshape in layer.param_shapes().items():
                full = pname if names == "flat" else f"layers.{i}.{pname}"
                specs.append((full, i, pname, pshape))
        self.out_shape, self.out_features = shape, math.prod(shape)
        total = sum(math.prod(s) for *_, s in specs)
        self.flat = xp.zeros(total, dtype=self.dtype)
        self.grad = xp.zeros(total, dtype=self.dtype)
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.slices: dict[str, slice] = {}
        per_layer: list[tuple[dict, dict]] = [({}, {}) for _ in layers]
        offset = 0
        for full, i, pname, shape in specs:
            n = math.prod(shape)
            sl = slice(offset, offset + n)
            self.slices[full] = sl
            self.params[full] = per_layer[i][0][pname] = self.flat[sl].reshape(shape)
            self.grads[full] = per_layer[i][1][pname] = self.grad[sl].reshape(shape)
            offset += n
        for layer, (p, g) in zip(layers, per_layer):
            layer.bind(p, g)
        # Saved with the model, never trained (torch's buffers: batch norm's running statistics).
        self.buffers: dict[str, np.ndarray] = {}
        for i, layer in enumerate(layers):
            for bname, arr in getattr(layer, "buffer_arrays", dict)().items():
                self.buffers[bname if names == "flat" else f"layers.{i}.{bname}"] = arr
        # dL/dx of the input is never needed: skip that product in the first layer.
        if layers and hasattr(layers[0], "needs_input_grad"):
            layers[0].needs_input_grad = False
        self.order = run_order(layers)
        self.macs_per_sample = sum(layer.macs_per_sample() for layer in layers)  # one sample's forward
        self.lanes = 1  # threads the parts run on (set for training: api.train)
        self._parts: list[tuple[list[Layer], np.ndarray]] = []  # the other parts' layers and gradients
        self._bounds: list[tuple[int, int]] | None = None  # the parts of the last training forward
        if splittable(layers):
            for _ in range(PARTS - 1):
                grad = xp.zeros_like(self.grad)
                copies = []
                for layer, (p, _) in zip(layers, per_layer):
                    twin = copy.copy(layer)  # the same configuration; its own buffers and caches
                    twin.__dict__.pop("_buffers", None)
                    own = {pn: full for full, i, pn, _ in specs if layers[i] is layer}
                    twin.bind(p, {pn: grad[self.slices[full]].reshape(p[pn].shape) for pn, full in own.items()})
                    copies.append(twin)
                self._parts.append((run_order(copies), grad))

    def _build(self, layer, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The layer's output shape for this input shape."""
        if getattr(layer, "shaped", False):
            layer.dtype = self.dtype
            return tuple(layer.build(shape))
        if isinstance(layer, Linear):
            if len(shape) != 1:
                raise ShapeError(f"needs flat input (features,), got {fmt_shape(shape)}; put a flatten layer before it")
            return (layer.build(shape[0]),)
        out = layer.build(shape[0] if len(shape) == 1 else shape)  # elementwise: any shape
        return out if isinstance(out, tuple) else (out,)

    @property
    def outputs(self) -> str:
        """What the model outputs, as its last layer declares: logits, probabilities
        (ends in sigmoid) or distribution (ends in softmax). Decides the loss (losses.head_for)."""
        for layer in reversed(self.layers):
            if layer.outputs is not None:
                return layer.outputs
        return "logits"

    def macs_per_step(self, batch_size: int) -> int:
        """Multiply-adds of a training step: forward, and twice that backward."""
        return 3 * batch_size * self.macs_per_sample

    @property
    def n_params(self) -> int:
        return int(self.flat.size)

    def weight_slices(self) -> list[slice]:
        """Slices of weights (tensors with 2+ dims), the part regularization applies to by default."""
        return [self.slices[k] for k, v in self.params.items() if v.ndim >= 2]

    def init(self, scheme, rng: np.random.Generator) -> None:
        for layer in self.layers:
            if isinstance(layer, Linear):
                w, b = init_linear(scheme, layer.out_features, layer.in_features, rng)
                layer.W[...] = to_device(w)
                if layer.b is not None:
                    layer.b[...] = to_device(b)
            elif hasattr(layer, "reset_parameters"):
                layer.reset_parameters(scheme, rng)

    def set_dropout_rng(self, rng: np.random.Generator) -> None:
        for layer in self.layers:
            if isinstance(layer, Dropout):
                layer.rng = rng

    def forward(self, x, training: bool = False):
        if len(self.in_shape) > 1:  # data arrive as (n, features): a free reshape to (n, C, H, W)
            x = x.reshape((len(x),) + self.in_shape)
        self._bounds = None
        # A batch of fewer samples than parts (an epoch's last batch of one) would leave a part empty.
        if training and self._parts and len(x) >= PARTS and self.macs_per_step(len(x)) >= SPLIT_MACS:
            return self._forward_parts(x)
        for layer in self.order:
            x = layer.forward(x, training)
        return x

    def backward(self, dy) -> None:
        """Backpropagate dL/d(output) through every layer, filling `grad`."""
        if self._bounds is not None:
            self._backward_parts(dy)
            return
        for layer in reversed(self.order):
            dy = layer.backward(dy)

    def stacks(self) -> list[list[Layer]]:
        """The layers in run order: this network's own, then each other part's copies."""
        return [self.order] + [order for order, _ in self._parts]

    def _on_parts(self, work) -> None:
        """work(stack, lo, hi) for every part (its layers, its rows of the batch), at once on the lanes."""
        lane_pool(self.lanes).run(
            [functools.partial(work, s, lo, hi) for s, (lo, hi) in zip(self.stacks(), self._bounds)]
        )

    def _forward_parts(self, x):
        n = len(x)
        cuts = [n * k // PARTS for k in range(PARTS + 1)]
        self._bounds = list(zip(cuts, cuts[1:]))
        out = self._out_buffer(n, x.dtype)

        def forward(stack, lo, hi):
            h = x[lo:hi]
            for layer in stack:
                h = layer.forward(h, True)
            out[lo:hi] = h

        self._on_parts(forward)
        return out

    def _backward_parts(self, dy) -> None:
        def backward(stack, lo, hi):
            g = dy[lo:hi]
            for layer in reversed(stack):
                g = layer.backward(g)

        self._on_parts(backward)
        for _, grad in self._parts:  # in order: the same sum whatever the lanes
            self.grad += grad

    def _out_buffer(self, n: int, dtype):
        """The parts' outputs, together (valid until the next training forward, as a layer's)."""
        have = getattr(self, "_out", None)
        if have is None or have.shape[0] != n or have.dtype != dtype:
            have = self._out = xp.empty((n, *self.out_shape), dtype)
        return have

    @property
    def split(self) -> bool:
        """Whether large training batches run as parts (see the module's docstring)."""
        return bool(self._parts)

    def predict(self, x, batch_size: int = 4096):
        """Forward in evaluation mode, in chunks to bound memory."""
        if len(x) <= batch_size:
            return self.forward(x, training=False)
        return xp.concatenate([self.forward(x[i : i + batch_size], False) for i in range(0, len(x), batch_size)])

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the parameters by name."""
        return {k: v.copy() for k, v in self.params.items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of parameters and buffers by name, in torch's state_dict order (per layer:
        parameters, then buffers)."""
        items = [*self.params.items(), *self.buffers.items()]
        items.sort(key=lambda kv: int(kv[0].split(".")[1]) if kv[0].startswith("layers.") else 0)
        return {k: v.copy() for k, v in items}

    def summary(self) -> list[dict]:
        """One row per layer: index, name, output shape, parameter count."""
        counts = [0] * len(self.layers)
        for k, v in self.params.items():
            counts[int(k.split(".")[1]) if k.startswith("layers.") else 0] += int(v.size)
        return [
            {"index": i, "layer": layer_name(layer), "output_shape": list(shape), "params": counts[i]}
            for i, (layer, shape) in enumerate(zip(self.layers, self.shapes))
        ]


def shape_table(net: Network) -> str:
    """The per-layer table `trainkit validate` prints: index, layer, output shape, parameters."""
    rows = [("#", "layer", "output shape", "params"), ("", "input", fmt_shape(net.in_shape), "")]
    rows += [(str(r["index"]), r["layer"], fmt_shape(r["output_shape"]), str(r["params"])) for r in net.summary()]
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    return "\n".join(
        f"  {a:>{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d:>{widths[3]}}".rstrip() for a, b, c, d in rows
    )


def splittable(layers: list[Layer]) -> bool:
    """Whether batches may train as parts: numpy arrays (a GPU has its own parallelism),
    convolutions (where one core's elementwise work is most of a step), and every layer
    per-sample (batch norm's statistics span the batch; dropout draws the batch's masks in
    one go)."""
    return (
        current() is np
        and any(isinstance(layer, _Conv) for layer in layers)
        and all(layer.samples_apart for layer in layers)
    )


def run_order(layers: list[Layer]) -> list[Layer]:
    """The layers in the order forward runs them (backward: reversed). A ReLU just before a max
    pool runs after it: max(relu(a), relu(b)) = relu(max(a, b)), so the outputs are the same,
    and so is every gradient: where a window's maximum x is positive, its first maximum of
    relu(x) and of x are the same input, and where it is not, the ReLU's mask ([x > 0] at that
    input, [y > 0] after the pool) is 0 either way. The ReLU then touches one value per window
    (LeNet: 4× fewer), and the pool reads its input straight from the layer before."""
    order = list(layers)
    for i in range(len(order) - 1):
        if type(order[i]) is ReLU and isinstance(order[i + 1], _MaxPool):
            order[i], order[i + 1] = order[i + 1], order[i]
    return order


def layer_name(layer) -> str:
    """The registry name of a layer (for messages and tables)."""
    return getattr(layer, "name", None) or type(layer).__name__.lower()


def _input_shape(layers: list[Layer], shape: tuple[int, ...]) -> tuple[int, ...]:
    """A 1-channel input without its channel axis ((L,) before conv1d, (H, W) before conv2d)
    gets one, as torch would need it unsqueezed."""
    for layer in layers:
        dims = getattr(layer, "spatial_dims", 0)
        if dims:
            return (1, *shape) if len(shape) == dims else shape
        if getattr(layer, "shaped", False) or isinstance(layer, Linear):
            return shape
    return shape
