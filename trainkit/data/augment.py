"""Augmentations, applied to training batches only, drawn from the run's `augment` stream.

Each returns new arrays (a batch may be a view of the dataset, which must stay untouched).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainkit.backend import xp
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
        return x + rng.normal(0.0, self.std, x.shape).astype(x.dtype), t


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
        return x * (rng.random(x.shape) >= self.p), t


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
        perm = rng.permutation(len(x))
        if t.ndim == 1:  # integer classes -> one-hot
            t = xp.eye(n_classes, dtype=x.dtype)[t]
        return lam * x + (1.0 - lam) * x[perm], lam * t + (1.0 - lam) * t[perm]


def build_augmentations(cfgs) -> list:
    from trainkit import registry

    return [registry.get("augmentations", c.name).build(c) for c in cfgs]
