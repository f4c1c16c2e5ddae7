"""Synthetic datasets, each deterministic from the run's seed (its `data` stream)."""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
from pydantic import Field, model_validator

from trainkit.config.base import Strict
from trainkit.data.dataset import Dataset, DatasetConfig
from trainkit.registry import register


class NoiseConfig(Strict):
    """Additive label noise: uniform on [low, high), normal(mean, std), or none."""

    kind: Literal["uniform", "normal", "none"] = "uniform"
    low: float = 0.0
    high: float = 1.0
    mean: float = 0.0
    std: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self):
        if self.kind == "uniform" and self.high < self.low:
            raise ValueError(f"noise.high ({self.high}) must not be below noise.low ({self.low})")
        return self

    def sample(self, rng, shape):
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high, shape)
        if self.kind == "normal":
            return rng.normal(self.mean, self.std, shape)
        return np.zeros(shape)


class LinearDataConfig(DatasetConfig):
    """y = x·w + b + noise, with x uniform on [x_low, x_high)."""

    name: Literal["linear"] = "linear"
    n_samples: int = Field(100, ge=2)
    n_features: int = Field(1, ge=1)
    weights: Optional[list[float]] = Field(None, description="one per feature; default 3.0 each")
    bias: float = 2.0
    x_low: float = 0.0
    x_high: float = 1.0
    noise: NoiseConfig = Field(default_factory=NoiseConfig)

    @model_validator(mode="after")
    def _weights_match(self):
        if self.weights is not None and len(self.weights) != self.n_features:
            raise ValueError(f"weights has {len(self.weights)} values but n_features is {self.n_features}")
        return self


@register("datasets", LinearDataConfig)
def linear_data(cfg: LinearDataConfig, rng: np.random.Generator, **_) -> Dataset:
    w = np.asarray(cfg.weights if cfg.weights is not None else [3.0] * cfg.n_features)
    X = rng.uniform(cfg.x_low, cfg.x_high, (cfg.n_samples, cfg.n_features))
    y = X @ w + cfg.bias + cfg.noise.sample(rng, cfg.n_samples)
    return Dataset(X, y, "regression", [f"x{i}" for i in range(cfg.n_features)], source="linear")


class _ClassesConfig(DatasetConfig):
    n_samples: int = Field(200, ge=4)
    noise: float = Field(0.1, ge=0, description="std of Gaussian noise added to the points")


def _two_classes(class0, class1, noise: float, rng: np.random.Generator, source: str) -> Dataset:
    """Points of two classes, Gaussian noise added, in shuffled order (as sklearn's generators)."""
    X = np.vstack([class0, class1])
    y = np.r_[np.zeros(len(class0), np.int64), np.ones(len(class1), np.int64)]
    X += rng.normal(0, noise, X.shape)
    perm = rng.permutation(len(X))
    return Dataset(X[perm], y[perm], "binary", ["x0", "x1"], [0, 1], source)


class MoonsConfig(_ClassesConfig):
    """Two interleaving half circles (binary), as sklearn's make_moons."""

    name: Literal["moons"] = "moons"


@register("datasets", MoonsConfig)
def moons(cfg: MoonsConfig, rng: np.random.Generator, **_) -> Dataset:
    n_out = cfg.n_samples // 2
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, cfg.n_samples - n_out)
    outer, inner = np.c_[np.cos(t_out), np.sin(t_out)], np.c_[1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5]
    return _two_classes(outer, inner, cfg.noise, rng, "moons")


class CirclesConfig(_ClassesConfig):
    """A small circle inside a large one (binary), as sklearn's make_circles."""

    name: Literal["circles"] = "circles"
    factor: float = Field(0.5, gt=0, lt=1, description="inner radius / outer radius")


@register("datasets", CirclesConfig)
def circles(cfg: CirclesConfig, rng: np.random.Generator, **_) -> Dataset:
    n_out = cfg.n_samples // 2
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, cfg.n_samples - n_out, endpoint=False)
    outer, inner = np.c_[np.cos(t_out), np.sin(t_out)], cfg.factor * np.c_[np.cos(t_in), np.sin(t_in)]
    return _two_classes(outer, inner, cfg.noise, rng, "circles")


class SpiralsConfig(_ClassesConfig):
    """Interleaved spiral arms, one class per arm."""

    name: Literal["spirals"] = "spirals"
    n_classes: int = Field(3, ge=2)
    turns: float = Field(1.0, gt=0, description="revolutions of each arm")
    noise: float = Field(0.2, ge=0)


@register("datasets", SpiralsConfig)
def spirals(cfg: SpiralsConfig, rng: np.random.Generator, **_) -> Dataset:
    k = cfg.n_classes
    counts = [cfg.n_samples // k + (i < cfg.n_samples % k) for i in range(k)]
    Xs, ys = [], []
    for c, m in enumerate(counts):
        r = np.linspace(0.05, 1.0, m)
        t = np.linspace(0, 2 * np.pi * cfg.turns, m) + 2 * np.pi * c / k + rng.normal(0, cfg.noise, m)
        Xs.append(np.c_[r * np.sin(t), r * np.cos(t)])
        ys.append(np.full(m, c, np.int64))
    X, y = np.vstack(Xs), np.concatenate(ys)
    perm = rng.permutation(len(y))
    task = "binary" if k == 2 else "multiclass"
    return Dataset(X[perm], y[perm], task, ["x0", "x1"], list(range(k)), "spirals")


class BlobsConfig(_ClassesConfig):
    """Isotropic Gaussian clusters, one class each, centres uniform in center_box."""

    name: Literal["blobs"] = "blobs"
    n_classes: int = Field(3, ge=2)
    n_features: int = Field(2, ge=1)
    cluster_std: float = Field(1.0, gt=0)
    center_box: tuple[float, float] = (-10.0, 10.0)


@register("datasets", BlobsConfig)
def blobs(cfg: BlobsConfig, rng: np.random.Generator, **_) -> Dataset:
    k = cfg.n_classes
    centers = rng.uniform(*cfg.center_box, (k, cfg.n_features))
    y = np.arange(cfg.n_samples, dtype=np.int64) % k
    X = centers[y] + rng.normal(0, cfg.cluster_std, (cfg.n_samples, cfg.n_features))
    perm = rng.permutation(cfg.n_samples)
    task = "binary" if k == 2 else "multiclass"
    return Dataset(X[perm], y[perm], task, [f"x{i}" for i in range(cfg.n_features)], list(range(k)), "blobs")


class XorConfig(_ClassesConfig):
    """Points uniform in [-1, 1]², label 1 where the two coordinates have the same sign."""

    name: Literal["xor"] = "xor"
    noise: float = Field(0.0, ge=0)


@register("datasets", XorConfig)
def xor(cfg: XorConfig, rng: np.random.Generator, **_) -> Dataset:
    X = rng.uniform(-1, 1, (cfg.n_samples, 2))
    y = ((X[:, 0] > 0) == (X[:, 1] > 0)).astype(np.int64)
    X += rng.normal(0, cfg.noise, X.shape)
    return Dataset(X, y, "binary", ["x0", "x1"], [0, 1], "xor")
