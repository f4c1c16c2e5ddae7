"""The in-memory dataset, the data block's common keys, label encoding and splitting."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Annotated, Literal, Optional

import numpy as np
from pydantic import Field, model_validator

from trainkit.config.base import Component, named_union
from trainkit.data.augment import (
    CutoutConfig,
    FeatureDropoutConfig,
    GaussianNoiseConfig,
    MixupConfig,
    RandomCropConfig,
    RandomFlipConfig,
    RandomShiftConfig,
)

Augmentation = named_union(
    GaussianNoiseConfig,
    FeatureDropoutConfig,
    MixupConfig,
    RandomCropConfig,
    RandomFlipConfig,
    RandomShiftConfig,
    CutoutConfig,
)


class DatasetConfig(Component):
    val_fraction: float = Field(0.2, ge=0, lt=1, description="share held out for validation (0: none)")
    test_fraction: float = Field(0.0, ge=0, lt=1, description="share held out for a final test")
    task: Optional[Literal["regression", "binary", "multiclass"]] = Field(
        None, description="default: from the data, the loss or the model"
    )
    scale: Literal["none", "standardize", "minmax"] = Field(
        "none", description="feature scaling, fitted on the training split only"
    )
    scale_target: Literal["none", "standardize", "minmax"] = Field(
        "none", description="regression target scaling, fitted on the training split only; undone in predictions"
    )
    augment: list[Augmentation] = Field(default_factory=list, description="applied to training batches only")
    shape: Optional[list[Annotated[int, Field(ge=1)]]] = Field(
        None, description="shape of one sample, channels first ([C, L] or [C, H, W]): feature columns reshaped to it"
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
    y: np.ndarray | None
    task: str | None = None
    feature_names: list[str] = field(default_factory=list)
    classes: list | None = None
    source: str = ""
    categorical: dict[str, np.ndarray] = field(default_factory=dict)  # raw columns to one-hot encode
    columns: list[str] | None = None  # the file's header (CSV); None: a file without column names
    rows: np.ndarray | None = None  # each row's line number in a CSV (else its index in the file)
    target: str = "y"  # the target's column (CSV) or array (NPZ) name, for error messages
    shape: tuple[int, ...] | None = None  # one sample's shape (C, L) / (C, H, W); X holds it flattened
    files: np.ndarray | None = None  # each sample's file (image folders), named beside its prediction

    def __len__(self) -> int:
        return len(self.X)

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def subset(self, idx) -> Dataset:
        return replace(
            self,
            X=self.X[idx],
            y=None if self.y is None else self.y[idx],
            categorical={k: v[idx] for k, v in self.categorical.items()},
            rows=(self.rows if self.rows is not None else np.arange(len(self)))[idx],
            files=None if self.files is None else self.files[idx],
        )

    def where(self, i: int, column: int | str) -> str:
        """Row i and a column as errors name them, one scheme everywhere: a CSV's line number
        and column name (`line 7, column 'age'`); else the array index (`X[5, 2]`, `y[5]`).
        `column` is a feature index or a column name (the target's)."""
        r = int(self.rows[i]) if self.rows is not None else int(i)
        if self.columns is not None:
            name = self.feature_names[column] if isinstance(column, int) else column
            return f"line {r}, column {clip(name)}"
        if not isinstance(column, int):
            return f"{column}[{r}]"
        if self.shape is not None and column < math.prod(self.shape):  # images, signals: X[5, c, h, w]
            return f"X[{r}, {', '.join(str(int(i)) for i in np.unravel_index(column, self.shape))}]"
        return f"X[{r}, {column}]"


def clip(value, limit: int = 40) -> str:
    """repr(value), cut to about `limit` characters: an error message names a value, it never
    echoes a 5 MB cell or header."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "…" + text[-3:]


def first_nonfinite(A) -> tuple[int, int] | None:
    """(row, column) of the first NaN or inf in A (n, ...), else None. In row blocks: a
    whole-array mask would cost a quarter of a float32 dataset's memory."""
    A = A.reshape(len(A), -1)
    step = max(1, (1 << 22) // max(1, A.shape[1]))
    for i in range(0, len(A), step):
        ok = np.isfinite(A[i : i + step])
        if not ok.all():
            r, c = np.argwhere(~ok)[0]
            return i + int(r), int(c)
    return None


def guess_task(y: np.ndarray) -> str:
    """Integer, boolean or string labels are classes; floats are a regression target."""
    if y.dtype.kind in "biuUSO" and y.ndim == 1:
        return "binary" if len(np.unique(y)) <= 2 else "multiclass"
    return "regression"


def label_names(y: np.ndarray) -> list:
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    return [c.item() if hasattr(c, "item") else c for c in np.unique(y)]


def encode_labels(ds: Dataset, classes: list) -> np.ndarray:
    """Class labels -> indices into `classes`; a DataError names the row of an unknown label."""
    from trainkit.errors import DataError

    y = ds.y.reshape(-1) if ds.y.ndim == 2 and ds.y.shape[1] == 1 else ds.y
    if y.ndim != 1:
        raise DataError(f"class labels must be one column, got shape {y.shape}", ds.source)
    index = {c: i for i, c in enumerate(classes)}
    try:
        return np.array([index[v.item() if hasattr(v, "item") else v] for v in y], dtype=np.int64)
    except KeyError as e:
        i = next(i for i, v in enumerate(y) if (v.item() if hasattr(v, "item") else v) not in index)
        known = ", ".join(clip(c) for c in classes[:20]) + (", …" if len(classes) > 20 else "")
        raise DataError(
            f"{ds.where(i, ds.target)}: label {clip(e.args[0])} was not among the training labels: {known}", ds.source
        ) from None


def split(ds: Dataset, val_fraction: float, test_fraction: float, rng: np.random.Generator, stratify: bool):
    """Cut into train / val / test at random (from `rng`), stratified by class when asked."""
    if stratify:
        parts: tuple[list, list, list] = ([], [], [])
        for c in np.unique(ds.y):
            idx = np.flatnonzero(ds.y == c)
            idx = idx[rng.permutation(len(idx))]
            n_val, n_test = round(len(idx) * val_fraction), round(len(idx) * test_fraction)
            parts[1].append(idx[:n_val])
            parts[2].append(idx[n_val : n_val + n_test])
            parts[0].append(idx[n_val + n_test :])
        train, val, test = (np.concatenate(p) for p in parts)
    else:
        perm = rng.permutation(len(ds))
        n_val, n_test = round(len(ds) * val_fraction), round(len(ds) * test_fraction)
        val, test, train = perm[:n_val], perm[n_val : n_val + n_test], perm[n_val + n_test :]
    if not len(val) and not len(test):
        return ds, None, None  # nothing held out: no copy of the data
    # Each part keeps file order, so `train.shuffle: false` trains in the order of the file.
    train, val, test = np.sort(train), np.sort(val), np.sort(test)
    return ds.subset(train), (ds.subset(val) if len(val) else None), (ds.subset(test) if len(test) else None)
