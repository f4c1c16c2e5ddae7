"""The in-memory dataset, its task, label encoding and the train/val/test split."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Optional

import numpy as np
from pydantic import Field, model_validator

from trainkit.schema import Component

TASKS = ("regression", "binary", "multiclass")


class DatasetConfig(Component):
    val_fraction: float = Field(
        0.2, ge=0, lt=1, description="share held out for validation (0: none)"
    )
    test_fraction: float = Field(0.0, ge=0, lt=1, description="share held out for a final test")
    task: Optional[Literal["regression", "binary", "multiclass"]] = Field(
        None, description="default: inferred from the labels, loss or model"
    )

    @model_validator(mode="after")
    def _fractions(self):
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction must be below 1 (got {self.val_fraction} + {self.test_fraction}); "
                "nothing would be left to train on"
            )
        return self


@dataclass
class Dataset:
    """Features X (n, features) and labels y: floats (n,) / (n, outputs) for regression,
    integer class indices (n,) for classification (original names in `classes`)."""

    X: np.ndarray
    y: np.ndarray
    task: str | None = None
    feature_names: list[str] = field(default_factory=list)
    classes: list | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.X)

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def subset(self, idx) -> Dataset:
        return replace(self, X=self.X[idx], y=self.y[idx])

    def n_outputs(self) -> int:
        if self.task == "multiclass":
            return len(self.classes) if self.classes is not None else int(self.y.max()) + 1
        if self.task == "binary":
            return 1
        return 1 if self.y.ndim == 1 else self.y.shape[1]


def guess_task(y: np.ndarray) -> str:
    """Integer, boolean or string labels are classes; floats are a regression target."""
    if y.dtype.kind in "biuUSO" and y.ndim == 1:
        return "binary" if len(np.unique(y)) <= 2 else "multiclass"
    return "regression"


def encode_labels(ds: Dataset) -> Dataset:
    """Map class labels to 0..C-1 (keeping their names) for classification tasks."""
    if ds.task not in ("binary", "multiclass") or ds.classes is not None:
        return ds
    y = ds.y.reshape(-1) if ds.y.ndim == 2 and ds.y.shape[1] == 1 else ds.y
    classes, codes = np.unique(y, return_inverse=True)
    if ds.task == "binary" and len(classes) > 2:
        raise ValueError(f"binary task, but the labels have {len(classes)} distinct values")
    names = [c.item() if hasattr(c, "item") else c for c in classes]
    return replace(ds, y=codes.astype(np.int64), classes=names)


def split(ds: Dataset, val_fraction: float, test_fraction: float, rng: np.random.Generator):
    """Cut into train / val / test at random (from `rng`), stratified by class for classification."""
    n = len(ds)
    if ds.task in ("binary", "multiclass"):
        parts = ([], [], [])
        for c in range(int(ds.y.max()) + 1):
            idx = np.flatnonzero(ds.y == c)
            idx = idx[rng.permutation(len(idx))]
            n_val, n_test = round(len(idx) * val_fraction), round(len(idx) * test_fraction)
            parts[1].append(idx[:n_val])
            parts[2].append(idx[n_val : n_val + n_test])
            parts[0].append(idx[n_val + n_test :])
        train, val, test = (np.concatenate(p) for p in parts)
    else:
        perm = rng.permutation(n)
        n_val, n_test = round(n * val_fraction), round(n * test_fraction)
        val, test, train = perm[:n_val], perm[n_val : n_val + n_test], perm[n_val + n_test :]
    # Each part keeps file order, so `train.shuffle: false` trains in the order of the file.
    train, val, test = np.sort(train), np.sort(val), np.sort(test)
    return (
        ds.subset(train),
        (ds.subset(val) if len(val) else None),
        (ds.subset(test) if len(test) else None),
    )
