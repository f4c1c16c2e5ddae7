"""A network: layers in sequence over one flat parameter buffer and one flat gradient buffer.

Every layer's parameters are views into `flat` (and gradients into `grad`), so optimizers,
clipping and regularization run as a few whole-array passes instead of a Python loop per
tensor. Parameter names follow torch's `state_dict` for the equivalent torch model.
"""

from __future__ import annotations

import math

import numpy as np

from trainkit.backend import xp
from trainkit.nn.init import init_linear
from trainkit.nn.layers import Dropout, Layer, Linear


class Network:
    def __init__(self, layers: list[Layer], in_features: int, dtype, names: str = "indexed"):
        """`names`: "indexed" gives layers.{i}.weight (torch.nn.Sequential inside `layers`);
        "flat" gives weight/bias (a single torch.nn.Linear)."""
        self.layers = layers
        self.in_features = in_features
        self.dtype = np.dtype(dtype)
        specs: list[tuple[str, int, str, tuple[int, ...]]] = []
        size = in_features
        for i, layer in enumerate(layers):
            size = layer.build(size)
            for pname, shape in layer.param_shapes().items():
                full = pname if names == "flat" else f"layers.{i}.{pname}"
                specs.append((full, i, pname, shape))
        self.out_features = size
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
        # dL/dx of the input is never needed: skip that product in the first linear layer.
        first = next((layer for layer in layers if isinstance(layer, Linear)), None)
        if first is not None and layers.index(first) == 0:
            first.needs_input_grad = False

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
        return 3 * batch_size * sum(layer.macs_per_sample() for layer in self.layers)

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
                layer.W[...] = w
                if layer.b is not None:
                    layer.b[...] = b

    def set_dropout_rng(self, rng: np.random.Generator) -> None:
        for layer in self.layers:
            if isinstance(layer, Dropout):
                layer.rng = rng

    def forward(self, x, training: bool = False):
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, dy) -> None:
        """Backpropagate dL/d(output) through every layer, filling `grad`."""
        for layer in reversed(self.layers):
            dy = layer.backward(dy)

    def predict(self, x, batch_size: int = 4096):
        """Forward in evaluation mode, in chunks to bound memory."""
        if len(x) <= batch_size:
            return self.forward(x, training=False)
        return xp.concatenate([self.forward(x[i : i + batch_size], False) for i in range(0, len(x), batch_size)])

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the parameters by name."""
        return {k: v.copy() for k, v in self.params.items()}
