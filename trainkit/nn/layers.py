"""Layers: each one's forward pass and its backward pass (the chain rule) side by side.

A layer maps a batch `x` of shape (n, in) to `y` of shape (n, out). `backward(dy)` gets
dL/dy, writes dL/dparam into the layer's gradient views and returns dL/dx. Parameters and
gradients are views into one flat buffer owned by the network (see network.py), so
optimizers update every parameter with whole-array passes.

Speed: in training, outputs and input gradients go into buffers the layer keeps per batch
shape (`_buffer`), so a step allocates almost nothing. A training output is therefore
valid until the layer's next training forward; `backward` may overwrite `dy`.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

from pydantic import Field

from trainkit.backend import to_device, xp
from trainkit.config.base import Component
from trainkit.nn.special import erfc
from trainkit.registry import register


class Layer:
    """Base: no parameters; subclasses override forward/backward."""

    activation = False  # usable as an `activation:` in mlp
    # Each sample's output and gradient depend on that sample alone (batch norm's do not; dropout
    # draws the whole batch's masks from one stream): a batch may then run in parts (network.py).
    samples_apart = True
    # What the layer outputs when it ends a model: logits (unbounded), probabilities (each in
    # (0, 1)), distribution (rows sum to 1); None passes on what its input was (dropout).
    outputs: str | None = "logits"

    def __init__(self, cfg=None):
        """Layers without options ignore their (validated) config block."""

    def build(self, in_features: int) -> int:
        """Fix the input size; return the output size."""
        return in_features

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def bind(self, params: dict, grads: dict) -> None:
        """Receive views of this layer's parameters and gradients in the flat buffers."""

    def macs_per_sample(self) -> int:
        """Multiply-adds of one sample's forward pass (BLAS threads are chosen from it):
        the weight's size for a dense layer; layers that reuse a weight across positions
        (convolutions) multiply by those positions."""
        shape = self.param_shapes().get("weight")
        return math.prod(shape) if shape and len(shape) >= 2 else 0

    def forward(self, x, training: bool):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def _buffer(self, name: str, shape: tuple, dtype):
        """A reusable work array of this shape (one per name and shape)."""
        key = (name, shape, dtype)
        try:
            return self._buffers[key]
        except AttributeError:
            self._buffers = {}
        except KeyError:
            pass
        buf = self._buffers[key] = xp.empty(shape, dtype)
        return buf


# --------------------------------------------------------------------------- linear


class LinearConfig(Component):
    """Affine map y = x W^T + b (torch.nn.Linear)."""

    name: Literal["linear"] = "linear"
    out_features: Optional[int] = Field(None, ge=1, description="default (last layer only): from the data")
    bias: bool = True


@register("layers", LinearConfig)
class Linear(Layer):
    """y = x Wᵀ + b.  Backward: dW = dyᵀ x,  db = Σₙ dy,  dx = dy W."""

    def __init__(self, cfg: LinearConfig, out_features: int | None = None):
        self.out_features = out_features or cfg.out_features
        self.use_bias = cfg.bias
        self.needs_input_grad = True  # the network clears it for the first layer

    def build(self, in_features: int) -> int:
        self.in_features = in_features
        return self.out_features

    def param_shapes(self):
        shapes = {"weight": (self.out_features, self.in_features)}
        if self.use_bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def bind(self, params, grads):
        self.W, self.gW = params["weight"], grads["weight"]
        self.b, self.gb = params.get("bias"), grads.get("bias")

    def forward(self, x, training):
        self.x = x
        out = self._buffer("y", (len(x), self.out_features), x.dtype) if training else None
        y = xp.matmul(x, self.W.T, out=out)
        if self.b is not None:
            y += self.b
        return y

    def backward(self, dy):
        xp.matmul(dy.T, self.x, out=self.gW)
        if self.b is not None:
            xp.add.reduce(dy, axis=0, out=self.gb)
        if not self.needs_input_grad:
            return None
        return xp.matmul(dy, self.W, out=self._buffer("dx", (len(dy), self.in_features), dy.dtype))


# --------------------------------------------------------------------------- activations


def _activation(cls):
    cls.activation = True
    return cls


class SigmoidConfig(Component):
    """Logistic sigmoid σ(x) = 1 / (1 + e^-x)."""

    name: Literal["sigmoid"] = "sigmoid"


def sigmoid(x):
    # exp(-|x|) never overflows; both branches are exact in their half-line.
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@register("layers", SigmoidConfig)
@_activation
class Sigmoid(Layer):
    """y = σ(x).  Backward: dx = dy · y (1 − y)."""

    outputs = "probabilities"

    def forward(self, x, training):
        self.y = sigmoid(x)
        return self.y

    def backward(self, dy):
        return dy * self.y * (1.0 - self.y)


class TanhConfig(Component):
    """Hyperbolic tangent."""

    name: Literal["tanh"] = "tanh"


@register("layers", TanhConfig)
@_activation
class Tanh(Layer):
    """y = tanh(x).  Backward: dx = dy · (1 − y²)."""

    def forward(self, x, training):
        self.y = xp.tanh(x)
        return self.y

    def backward(self, dy):
        return dy * (1.0 - self.y * self.y)


class ReLUConfig(Component):
    """Rectified linear unit max(x, 0)."""

    name: Literal["relu"] = "relu"


@register("layers", ReLUConfig)
@_activation
class ReLU(Layer):
    """y = max(x, 0).  Backward: dx = dy · [x > 0] (0 at x = 0, as torch)."""

    def forward(self, x, training):
        out = self._buffer("y", x.shape, x.dtype) if training else None
        self.y = xp.maximum(x, 0, out=out)
        return self.y

    def backward(self, dy):
        mask = xp.greater(self.y, 0, out=self._buffer("mask", dy.shape, bool))
        return xp.multiply(dy, mask, out=dy)


class LeakyReLUConfig(Component):
    """max(x, 0) + negative_slope · min(x, 0)."""

    name: Literal["leaky_relu"] = "leaky_relu"
    negative_slope: float = Field(0.01, ge=0)


@register("layers", LeakyReLUConfig)
@_activation
class LeakyReLU(Layer):
    """y = x for x > 0, a·x otherwise.  Backward: dx = dy for x > 0, a·dy otherwise."""

    def __init__(self, cfg: LeakyReLUConfig):
        self.a = cfg.negative_slope

    def forward(self, x, training):
        self.pos = x > 0
        return xp.where(self.pos, x, self.a * x)

    def backward(self, dy):
        return xp.where(self.pos, dy, self.a * dy)


class GELUConfig(Component):
    """Gaussian error linear unit x·Φ(x); `approximate: tanh` is the faster tanh form."""

    name: Literal["gelu"] = "gelu"
    approximate: Literal["none", "tanh"] = "none"


_SQRT_2_PI = math.sqrt(2.0 / math.pi)
_SQRT_HALF = math.sqrt(0.5)


@register("layers", GELUConfig)
@_activation
class GELU(Layer):
    """y = x Φ(x), Φ(x) = ½ erfc(−x/√2).  Backward: dx = dy · (Φ(x) + x φ(x)).

    tanh form: y = ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³);
    dy/dx = ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²).
    """

    def __init__(self, cfg: GELUConfig):
        self.approximate = cfg.approximate

    def forward(self, x, training):
        self.x = x
        if self.approximate == "tanh":
            # x*x*x, not x**3: power() is several times slower, most of all in float32.
            self.t = xp.tanh(_SQRT_2_PI * (x + 0.044715 * (x * x * x)))
            return 0.5 * x * (1.0 + self.t)
        # erfc of −x/√2 rather than 1 + erf(x/√2): Φ keeps its relative accuracy for x ≪ 0.
        self.cdf = 0.5 * erfc(x * -_SQRT_HALF)
        return x * self.cdf

    def backward(self, dy):
        x = self.x
        if self.approximate == "tanh":
            t = self.t
            return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_PI * (1 + 3 * 0.044715 * x * x))
        pdf = xp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return dy * (self.cdf + x * pdf)


class SoftplusConfig(Component):
    """Smooth ReLU (1/β) log(1 + e^(βx)), linear above `threshold` (torch.nn.Softplus)."""

    name: Literal["softplus"] = "softplus"
    beta: float = Field(1.0, gt=0)
    threshold: float = Field(20.0, gt=0)


@register("layers", SoftplusConfig)
@_activation
class Softplus(Layer):
    """y = log(1 + e^(βx))/β (y = x where βx > threshold).  Backward: dx = dy · σ(βx)."""

    def __init__(self, cfg: SoftplusConfig):
        self.beta, self.threshold = cfg.beta, cfg.threshold

    def forward(self, x, training):
        self.x = x
        bx = self.beta * x
        self.linear = bx > self.threshold
        return xp.where(self.linear, x, xp.logaddexp(0, bx) / self.beta)

    def backward(self, dy):
        return xp.where(self.linear, dy, dy * sigmoid(self.beta * self.x))


class IdentityConfig(Component):
    """y = x."""

    name: Literal["identity"] = "identity"


@register("layers", IdentityConfig)
@_activation
class Identity(Layer):
    """y = x.  Backward: dx = dy."""

    outputs = None

    def forward(self, x, training):
        return x

    def backward(self, dy):
        return dy


class SoftmaxConfig(Component):
    """Softmax over features: probabilities that sum to 1 (an output activation)."""

    name: Literal["softmax"] = "softmax"


def softmax(z):
    e = xp.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@register("layers", SoftmaxConfig)
@_activation
class Softmax(Layer):
    """yᵢ = e^xᵢ / Σⱼ e^xⱼ.  Backward (Jacobian-vector product): dx = y ⊙ (dy − Σⱼ dyⱼ yⱼ)."""

    outputs = "distribution"

    def forward(self, x, training):
        self.y = softmax(x)
        return self.y

    def backward(self, dy):
        y = self.y
        return y * (dy - (dy * y).sum(axis=1, keepdims=True))


# --------------------------------------------------------------------------- dropout


class DropoutConfig(Component):
    """Inverted dropout: zero each input with probability p while training, scale the rest by 1/(1-p)."""

    name: Literal["dropout"] = "dropout"
    p: float = Field(0.5, ge=0, lt=1, description="probability of zeroing an input")


@register("layers", DropoutConfig)
class Dropout(Layer):
    """Training: y = x ⊙ m / (1 − p), m ~ Bernoulli(1 − p); evaluation: y = x.  dx = dy ⊙ m / (1 − p)."""

    outputs = None
    samples_apart = False

    def __init__(self, cfg: DropoutConfig):
        self.p = cfg.p
        self.rng = None  # set by the network from the run's dropout stream

    def forward(self, x, training):
        if not training or self.p == 0:
            self.mask = None
            return x
        keep = to_device(self.rng.random(x.shape) >= self.p)  # the host stream: the CPU run's masks
        self.mask = keep.astype(x.dtype) / x.dtype.type(1.0 - self.p)
        return x * self.mask

    def backward(self, dy):
        return dy if self.mask is None else dy * self.mask
