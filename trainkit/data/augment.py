"""Augmentations, applied to training batches only, drawn from the run's `augment` stream.

Each returns new arrays (a batch may be a view of the dataset, which must stay untouched).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainkit.backend import to_device, xp
from trainkit.config.base import Component
from trainkit.registry import register


class GaussianNoiseConfig(Component):
    """Add N(0, std²) noise to every feature."""

    name: Literal["gaussian_noise"] = "gaussian_noise"
    std: float = Field(0.1, gt=0)


@register("augmentations", GaussianNoiseConfig)
class GaussianNoise:
    """x̃ = x + ε, ε ~ N(0, std²)."""

    def __init__(self, cfg):
        self.std = cfg.std

    def __call__(self, x, t, rng, n_classes):
        return x + to_device(rng.normal(0.0, self.std, x.shape).astype(x.dtype)), t


class FeatureDropoutConfig(Component):
    """Zero each feature value with probability p (as if it were missing); no rescaling."""

    name: Literal["feature_dropout"] = "feature_dropout"
    p: float = Field(0.1, gt=0, lt=1)


@register("augmentations", FeatureDropoutConfig)
class FeatureDropout:
    """x̃ = x ⊙ m, m ~ Bernoulli(1 − p)."""

    def __init__(self, cfg):
        self.p = cfg.p

    def __call__(self, x, t, rng, n_classes):
        return x * to_device(rng.random(x.shape) >= self.p), t


class MixupConfig(Component):
    """Mixup: train on convex combinations of pairs of examples and of their targets."""

    name: Literal["mixup"] = "mixup"
    alpha: float = Field(0.2, gt=0, description="λ ~ Beta(alpha, alpha)")


@register("augmentations", MixupConfig)
class Mixup:
    """λ ~ Beta(α, α), π a permutation of the batch: x̃ = λx + (1 − λ)x_π, t̃ = λt + (1 − λ)t_π
    (class indices become one-hot first, so cross_entropy sees soft targets)."""

    def __init__(self, cfg):
        self.alpha = cfg.alpha

    def __call__(self, x, t, rng, n_classes):
        lam = float(rng.beta(self.alpha, self.alpha))
        perm = to_device(rng.permutation(len(x)))
        if t.ndim == 1:  # integer classes -> one-hot
            t = xp.eye(n_classes, dtype=x.dtype)[t]
        return lam * x + (1.0 - lam) * x[perm], lam * t + (1.0 - lam) * t[perm]


# --------------------------------------------------------------------------- images and signals
#
# These see each row as one sample of the data's shape: (C, H, W) images, (C, L) signals (a
# height of 1), and plain rows as one-channel signals. They act on the spatial axes only.


def _samples(x, shape):
    """x (n, features) viewed as (n, C, H, W): 1-D samples get H = 1."""
    shape = tuple(shape) if shape else (1, x.shape[1])
    if len(shape) == 1:
        shape = (1, *shape)
    return x.reshape(len(x), shape[0], 1 if len(shape) == 2 else shape[1], shape[-1])


def _shifted(x4, dy, dx, wrap: bool):
    """Each sample i moved by (dy[i], dx[i]) positions, zeros (or the other side, `wrap`) filling in."""
    n, c, h, w = x4.shape
    rows = xp.arange(h)[None, :] - dy[:, None]  # the source row of each target row
    cols = xp.arange(w)[None, :] - dx[:, None]
    if wrap:
        rows, cols = rows % h, cols % w
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    out = x4[
        xp.arange(n)[:, None, None, None],
        xp.arange(c)[None, :, None, None],
        xp.clip(rows, 0, h - 1)[:, None, :, None],
        xp.clip(cols, 0, w - 1)[:, None, None, :],
    ]
    return out * inside[:, None].astype(out.dtype)


class _Spatial:
    shape = None  # one sample's shape, set from the data by build_augmentations

    def __init__(self, cfg):
        self.cfg = cfg

    def _offsets(self, rng, n, x4, limit):
        """Integer offsets in [−limit, limit] along H (2-D data only) and W, per sample."""
        dy = to_device(rng.integers(-limit, limit + 1, n)) if x4.shape[2] > 1 else xp.zeros(n, xp.int64)
        return dy, to_device(rng.integers(-limit, limit + 1, n))


class RandomCropConfig(Component):
    """Pad by `padding` zeros on every side, then crop back to the original size at a random spot."""

    name: Literal["random_crop"] = "random_crop"
    padding: int = Field(2, ge=1, description="zeros added on each side before cropping")


@register("augmentations", RandomCropConfig)
class RandomCrop(_Spatial):
    """x̃ = crop(pad(x, p), offset), offset ~ U{0..2p}² (torchvision's RandomCrop(size, padding)):
    a shift by up to p positions along each spatial axis, zeros filling in."""

    def __call__(self, x, t, rng, n_classes):
        x4 = _samples(x, self.shape)
        dy, dx = self._offsets(rng, len(x), x4, self.cfg.padding)
        return _shifted(x4, dy, dx, wrap=False).reshape(x.shape), t


class RandomShiftConfig(Component):
    """Translate each sample by up to max_shift positions per spatial axis."""

    name: Literal["random_shift"] = "random_shift"
    max_shift: int = Field(2, ge=1)
    fill: Literal["zeros", "wrap"] = Field("zeros", description="what enters at the edge: zeros, or the other side")


@register("augmentations", RandomShiftConfig)
class RandomShift(_Spatial):
    """x̃[i, j] = x[i − dy, j − dx], (dy, dx) ~ U{−s..s}², zeros (or wrap-around) where nothing maps."""

    def __call__(self, x, t, rng, n_classes):
        x4 = _samples(x, self.shape)
        dy, dx = self._offsets(rng, len(x), x4, self.cfg.max_shift)
        return _shifted(x4, dy, dx, wrap=self.cfg.fill == "wrap").reshape(x.shape), t


class RandomFlipConfig(Component):
    """Mirror samples left-right (images) or reverse them in time (signals) with probability p."""

    name: Literal["random_flip"] = "random_flip"
    p: float = Field(0.5, gt=0, le=1)


@register("augmentations", RandomFlipConfig)
class RandomFlip(_Spatial):
    """x̃ = x[..., ::−1] for a Bernoulli(p) choice of samples (the last axis: width, or time)."""

    def __call__(self, x, t, rng, n_classes):
        x4 = _samples(x, self.shape)
        flip = to_device(rng.random(len(x)) < self.cfg.p)
        out = x4.copy()
        out[flip] = x4[flip, :, :, ::-1]
        return out.reshape(x.shape), t


class CutoutConfig(Component):
    """Zero a size × size square (a length-`size` segment for signals) at a random centre (DeVries & Taylor, 2017)."""

    name: Literal["cutout"] = "cutout"
    size: int = Field(4, ge=1, description="side of the square (length of the segment)")


@register("augmentations", CutoutConfig)
class Cutout(_Spatial):
    """x̃ = x ⊙ (1 − box), box of side `size` centred at a uniform position (it may hang over the edge)."""

    def __call__(self, x, t, rng, n_classes):
        x4 = _samples(x, self.shape)
        n, _, h, w = x4.shape
        s = self.cfg.size
        cy = to_device(rng.integers(0, h, n)) if h > 1 else xp.zeros(n, xp.int64)
        cx = to_device(rng.integers(0, w, n))
        r0 = cy - s // 2 if h > 1 else cy
        c0 = cx - s // 2
        rows, cols = xp.arange(h)[None, :], xp.arange(w)[None, :]
        in_rows = (rows >= r0[:, None]) & (rows < (r0 + (s if h > 1 else 1))[:, None])
        in_cols = (cols >= c0[:, None]) & (cols < (c0 + s)[:, None])
        keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
        return (x4 * keep[:, None].astype(x.dtype)).reshape(x.shape), t


def build_augmentations(cfgs, shape=None, model_shape=None) -> list:
    """The augmentations of a data block; `shape` (one sample's) for the spatial ones.
    `model_shape` is the network's input shape: where the network gives channel-less data a
    channel axis ((H, W) before conv2d is a grey image (1, H, W), not a 1-D signal of H
    channels), the spatial augmentations see the samples as the network does."""
    from trainkit import registry
    from trainkit.data.shapes import as_the_network_reads

    if shape and model_shape:
        shape = as_the_network_reads(shape, model_shape)
    augs = [registry.get("augmentations", c.name).build(c) for c in cfgs]
    for a in augs:
        if isinstance(a, _Spatial):
            a.shape = shape
    return augs
