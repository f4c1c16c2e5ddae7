"""Channel dropout (torch.nn.Dropout1d / Dropout2d): zero whole feature maps, not single values.

Neighbouring values in a feature map are strongly correlated, so zeroing single values barely
regularises a convolutional layer; zeroing a whole channel does (Tompson et al., 2015).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainkit.backend import to_device
from trainkit.config.base import Component
from trainkit.nn.layers import Dropout
from trainkit.nn.spatial import check_spatial
from trainkit.registry import register


class Dropout1dConfig(Component):
    """Zero each channel of a (channels, length) input with probability p while training."""

    name: Literal["dropout1d"] = "dropout1d"
    p: float = Field(0.5, ge=0, lt=1, description="probability of zeroing a channel")


class Dropout2dConfig(Component):
    """Zero each channel of a (channels, height, width) input with probability p while training."""

    name: Literal["dropout2d"] = "dropout2d"
    p: float = Field(0.5, ge=0, lt=1, description="probability of zeroing a channel")


class _ChannelDropout(Dropout):
    """Training: y = x ⊙ m / (1 − p) with one m ~ Bernoulli(1 − p) per (sample, channel);
    evaluation: y = x.  dx = dy ⊙ m / (1 − p).  Draws from the run's dropout stream."""

    shaped = True
    spatial_dims = 0

    def build(self, shape):
        check_spatial(tuple(shape), self.dims)
        return tuple(shape)

    def forward(self, x, training):
        if not training or self.p == 0:
            self.mask = None
            return x
        keep = to_device(self.rng.random(x.shape[:2]) >= self.p)
        self.mask = (keep.astype(x.dtype) / x.dtype.type(1.0 - self.p)).reshape(x.shape[:2] + (1,) * self.dims)
        return x * self.mask


@register("layers", Dropout1dConfig)
class Dropout1d(_ChannelDropout):
    dims = 1


@register("layers", Dropout2dConfig)
class Dropout2d(_ChannelDropout):
    dims = 2
