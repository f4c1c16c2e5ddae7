"""Synthetic 1-D signals where the class is a pattern, not a position: each sample is noise
with one class motif added at a random shift. A dense layer must learn every motif at every
position; a convolution learns it once and slides it (the translation equivariance that
makes convolutional networks work)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from trainkit.data.dataset import Dataset, DatasetConfig
from trainkit.registry import register


class ShiftedPatternsConfig(DatasetConfig):
    """Noise with one of n_classes motifs at a random position; samples of shape (1, length)."""

    name: Literal["shifted_patterns"] = "shifted_patterns"
    n_samples: int = Field(1000, ge=4)
    n_classes: int = Field(4, ge=2)
    length: int = Field(64, ge=2, description="samples per signal")
    pattern_length: int = Field(8, ge=1, description="samples per motif")
    noise: float = Field(0.5, ge=0, description="std of the Gaussian background noise")

    @model_validator(mode="after")
    def _fits(self):
        if self.pattern_length > self.length:
            raise ValueError(f"pattern_length ({self.pattern_length}) must not exceed length ({self.length})")
        return self


@register("datasets", ShiftedPatternsConfig)
def shifted_patterns(cfg: ShiftedPatternsConfig, rng: np.random.Generator, **_) -> Dataset:
    """Motifs m_k ~ N(0, 1) of pattern_length (unit norm · √pattern_length), one per class;
    x = ε + m_y placed at a shift s ~ U{0, …, length − pattern_length}, ε ~ N(0, noise²)."""
    motifs = rng.normal(size=(cfg.n_classes, cfg.pattern_length))
    motifs *= np.sqrt(cfg.pattern_length) / np.linalg.norm(motifs, axis=1, keepdims=True)
    y = np.arange(cfg.n_samples, dtype=np.int64) % cfg.n_classes
    shifts = rng.integers(0, cfg.length - cfg.pattern_length + 1, cfg.n_samples)
    X = rng.normal(0.0, cfg.noise, (cfg.n_samples, cfg.length))
    cols = shifts[:, None] + np.arange(cfg.pattern_length)
    X[np.arange(cfg.n_samples)[:, None], cols] += motifs[y]
    perm = rng.permutation(cfg.n_samples)
    task = "binary" if cfg.n_classes == 2 else "multiclass"
    names = [f"t{i}" for i in range(cfg.length)]
    return Dataset(X[perm], y[perm], task, names, list(range(cfg.n_classes)), "shifted_patterns", shape=(1, cfg.length))
