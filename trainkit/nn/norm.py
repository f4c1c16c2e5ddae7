"""Normalisation: batch norm (torch.nn.BatchNorm1d/2d) and layer norm (torch.nn.LayerNorm).

Both standardise x over some axes and then scale and shift per feature:
    x̂ = (x − μ) / √(σ² + ε),   y = γ x̂ + β          (σ²: the biased variance)
With m values per statistic and g = dy·γ, the backward pass through μ and σ² is
    dx = (1 / √(σ² + ε)) · (g − mean(g) − x̂ · mean(g x̂)),   dγ = Σ dy x̂,   dβ = Σ dy
(means over the same axes as μ; sums over every axis but the feature's).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from trainkit.backend import xp
from trainkit.config.base import Component
from trainkit.errors import TrainkitError
from trainkit.nn.spatial import ShapedLayer, ShapeError, fmt_shape
from trainkit.registry import register


def _standardize_backward(g, xhat, inv, axes):
    """dx of x̂ = (x − μ)·inv, given g = dL/dx̂, with μ and σ² taken over `axes`."""
    return inv * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))


ONE_VALUE_HINT = (
    "a batch of one sample is usually an epoch's last partial batch (training samples % "
    "train.batch_size == 1): pick another train.batch_size (trainkit has no drop_last option)"
)


class OneValueBatchError(TrainkitError):
    """Batch statistics of a single value per channel (torch: "Expected more than 1 value per
    channel when training"): σ² would be 0 and x̂ = 0, so the layer would train on nothing."""

    kind = "batch"


def one_value_batches(net, n_train: int, batch: int) -> str | None:
    """Why training `net` on n_train samples in batches of `batch` would give a batch norm one
    value per channel (None if it would not): a batch of one sample into a layer that sees one
    value per channel per sample, i.e. (features,) or 1×1 inputs."""
    if batch == 1:
        why = "every batch holds 1 sample"
    elif n_train % batch == 1:
        why = f"{n_train} training samples in batches of {batch} leave a last batch of 1 sample"
    else:
        return None
    for i, layer in enumerate(net.layers):
        if isinstance(layer, _BatchNorm) and layer.per_sample == 1:
            return f"{why}, and layers[{i}] ({layer.name}) would get it: {layer.one_value_message()}"
    return None


class _BatchNormConfig(Component):
    eps: float = Field(1e-5, gt=0)
    momentum: Optional[float] = Field(
        0.1, ge=0, le=1, description="running = (1 − momentum)·running + momentum·batch; null: cumulative average"
    )
    affine: bool = Field(True, description="learn γ (weight) and β (bias)")
    track_running_stats: bool = Field(True, description="keep running mean/var for evaluation")


class BatchNorm1dConfig(_BatchNormConfig):
    """Batch normalisation over (features,) or (channels, length) inputs (torch.nn.BatchNorm1d)."""

    name: Literal["batch_norm1d"] = "batch_norm1d"


class BatchNorm2dConfig(_BatchNormConfig):
    """Batch normalisation over (channels, height, width) inputs (torch.nn.BatchNorm2d)."""

    name: Literal["batch_norm2d"] = "batch_norm2d"


class _BatchNorm(ShapedLayer):
    """Training: μ, σ² per channel over the batch (and positions); running_mean/var move by
    `momentum` toward μ and the unbiased σ²·m/(m − 1); num_batches_tracked += 1.
    Evaluation: x̂ uses running_mean/var, so dx = dy·γ / √(running_var + ε).
    Buffers as torch: running_mean (C,) = 0, running_var (C,) = 1, num_batches_tracked () = 0."""

    samples_apart = False  # its statistics span the batch

    ranks: tuple[int, ...] = ()

    def __init__(self, cfg: _BatchNormConfig):
        self.name, self.eps, self.momentum = cfg.name, cfg.eps, cfg.momentum
        self.affine, self.track = cfg.affine, cfg.track_running_stats

    def build(self, shape):
        if len(shape) not in self.ranks:
            want = " or ".join(
                ("(features,)", "(channels, length)", "(channels, height, width)")[r - 1] for r in self.ranks
            )
            raise ShapeError(f"needs input of shape {want}, got {fmt_shape(shape)}")
        self.channels, self.in_shape = shape[0], tuple(shape)
        self.per_sample = math.prod(shape[1:])  # values per channel in one sample
        self.axes = (0,) + tuple(range(2, len(shape) + 1))
        self.bshape = (1, self.channels) + (1,) * (len(shape) - 1)  # broadcasts a (C,) vector
        if self.track:
            self.running_mean = xp.zeros(self.channels, self.dtype)
            self.running_var = xp.ones(self.channels, self.dtype)
            self.num_batches_tracked = xp.zeros((), xp.int64)
        return tuple(shape)

    def buffer_arrays(self):
        if not self.track:
            return {}
        return {
            "running_mean": self.running_mean,
            "running_var": self.running_var,
            "num_batches_tracked": self.num_batches_tracked,
        }

    def param_shapes(self):
        return {"weight": (self.channels,), "bias": (self.channels,)} if self.affine else {}

    def bind(self, params, grads):
        self.gamma, self.g_gamma = params.get("weight"), grads.get("weight")
        self.beta, self.g_beta = params.get("bias"), grads.get("bias")

    def reset_parameters(self, scheme, rng):
        if self.affine:
            self.gamma[...], self.beta[...] = 1.0, 0.0

    def one_value_message(self) -> str:
        return (
            f"batch statistics need more than 1 value per channel, and input of shape {fmt_shape(self.in_shape)} "
            "gives 1 value per channel per sample (torch refuses this too)"
        )

    def forward(self, x, training):
        self.batch_stats = training or not self.track
        if self.batch_stats and x.size == self.channels:
            raise OneValueBatchError(f"{self.name}: {self.one_value_message()}\n    help: {ONE_VALUE_HINT}")
        if self.batch_stats:
            mean = x.mean(axis=self.axes)
            xc = x - mean.reshape(self.bshape)
            var = (xc * xc).mean(axis=self.axes)
            if training and self.track:
                self._update_running(mean, var, x.size // self.channels)
        else:
            mean, var = self.running_mean, self.running_var
            xc = x - mean.reshape(self.bshape)
        self.inv = (1.0 / xp.sqrt(var + self.eps)).reshape(self.bshape).astype(x.dtype)
        self.xhat = xc * self.inv
        if not self.affine:
            return self.xhat
        return self.xhat * self.gamma.reshape(self.bshape) + self.beta.reshape(self.bshape)

    def _update_running(self, mean, var, m):
        self.num_batches_tracked += 1
        f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (m / (m - 1))  # m > 1: forward refuses a single value
        self.running_mean *= 1.0 - f
        self.running_mean += f * mean
        self.running_var *= 1.0 - f
        self.running_var += f * unbiased

    def backward(self, dy):
        g = self.affine_backward(dy)
        if not self.batch_stats:
            return g * self.inv
        return _standardize_backward(g, self.xhat, self.inv, self.axes)

    def affine_backward(self, dy):
        """dL/dγ, dL/dβ into the gradient buffer; returns dL/dx̂ = dy·γ (dy without affine)."""
        if not self.affine:
            return dy
        xp.add.reduce(dy * self.xhat, axis=self.axes, out=self.g_gamma)
        xp.add.reduce(dy, axis=self.axes, out=self.g_beta)
        return dy * self.gamma.reshape(self.bshape)


@register("layers", BatchNorm1dConfig)
class BatchNorm1d(_BatchNorm):
    ranks = (1, 2)


@register("layers", BatchNorm2dConfig)
class BatchNorm2d(_BatchNorm):
    ranks = (3,)


# --------------------------------------------------------------------------- layer norm


class LayerNormConfig(Component):
    """Normalise each sample over its last dimensions (torch.nn.LayerNorm)."""

    name: Literal["layer_norm"] = "layer_norm"
    normalized_shape: Optional[Union[Annotated[int, Field(ge=1)], list[Annotated[int, Field(ge=1)]]]] = Field(
        None, description="the trailing dimensions to normalise over; default: all of a sample's"
    )
    eps: float = Field(1e-5, gt=0)
    elementwise_affine: bool = True
    bias: bool = True


@register("layers", LayerNormConfig)
class LayerNorm(ShapedLayer):
    """μ, σ² per sample over the last D dims; y = γ x̂ + β with γ, β of normalized_shape."""

    def __init__(self, cfg: LayerNormConfig):
        self.name, self.eps = cfg.name, cfg.eps
        ns = cfg.normalized_shape
        self.normalized = None if ns is None else tuple([ns] if isinstance(ns, int) else ns)
        self.affine, self.use_bias = cfg.elementwise_affine, cfg.bias

    def build(self, shape):
        shape = tuple(shape)
        if self.normalized is None:
            self.normalized = shape
        d = len(self.normalized)
        if shape[len(shape) - d :] != self.normalized or d > len(shape):
            raise ShapeError(f"normalized_shape {fmt_shape(self.normalized)} is not the end of the input shape")
        self.axes = tuple(range(len(shape) + 1 - d, len(shape) + 1))
        self.outer = tuple(range(len(shape) + 1 - d))  # batch and leading dims: γ's gradient sums over them
        return shape

    def param_shapes(self):
        shapes = {}
        if self.affine:
            shapes["weight"] = self.normalized
            if self.use_bias:
                shapes["bias"] = self.normalized
        return shapes

    def bind(self, params, grads):
        self.gamma, self.g_gamma = params.get("weight"), grads.get("weight")
        self.beta, self.g_beta = params.get("bias"), grads.get("bias")

    def reset_parameters(self, scheme, rng):
        if self.gamma is not None:
            self.gamma[...] = 1.0
        if self.beta is not None:
            self.beta[...] = 0.0

    def forward(self, x, training):
        mean = x.mean(axis=self.axes, keepdims=True)
        xc = x - mean
        self.inv = 1.0 / xp.sqrt((xc * xc).mean(axis=self.axes, keepdims=True) + self.eps)
        self.xhat = xc * self.inv
        y = self.xhat if self.gamma is None else self.xhat * self.gamma
        return y if self.beta is None else y + self.beta

    def backward(self, dy):
        g = dy
        if self.gamma is not None:
            xp.add.reduce(dy * self.xhat, axis=self.outer, out=self.g_gamma)
            g = dy * self.gamma
        if self.beta is not None:
            xp.add.reduce(dy, axis=self.outer, out=self.g_beta)
        return _standardize_backward(g, self.xhat, self.inv, self.axes)
