"""From the `data` block to ready arrays: load, decide the task, encode labels, split,
one-hot encode categorical columns, scale features.

Everything learned from the data (classes, categories, scaling) is fitted on the training
split only and kept in a DataState, which is saved with the run and applied again by
`evaluate` and `predict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainkit import registry
from trainkit.data.dataset import Dataset, encode_labels, guess_task, label_names, split
from trainkit.data.shapes import channel_scaling, check_same_shape, sample_shape
from trainkit.errors import DataError
from trainkit.rng import stream

_MODEL_TASK = {"logistic": "binary", "softmax": "multiclass"}


@dataclass
class DataState:
    """What the run learned about its data; JSON-serialisable via to_dict/from_dict."""

    task: str
    classes: list | None
    feature_names: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)
    scale: str = "none"
    offset: list[float] | None = None
    factor: list[float] | None = None
    shape: list[int] | None = None  # one sample's shape for convolutional models (data/shapes.py)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> DataState:
        return cls(**d)

    def n_outputs(self, y: np.ndarray) -> int:
        if self.task == "multiclass":
            return len(self.classes)
        if self.task == "binary":
            return 1
        return 1 if y.ndim == 1 else y.shape[1]

    def features(self, ds: Dataset) -> np.ndarray:
        """The model's input for `ds`: one-hot columns appended, then scaled."""
        X = ds.X
        if self.categories:
            blocks = [X]
            for col, cats in self.categories.items():
                values = ds.categorical[col]
                blocks.append((values[:, None] == np.array(cats)[None, :]).astype(np.float64))
            X = np.hstack(blocks)
        if self.offset is not None:
            X = (X - np.asarray(self.offset)) / np.asarray(self.factor)
        return X

    def labels(self, ds: Dataset) -> np.ndarray:
        if self.task in ("binary", "multiclass"):
            return encode_labels(ds.y, self.classes, ds.source)
        if ds.y.dtype.kind not in "biuf":
            raise DataError(
                f"regression targets must be numbers, got {ds.y.dtype}",
                ds.source,
                "set data.task: binary or multiclass for class labels",
            )
        return ds.y.astype(np.float64)


def resolve_task(cfg, ds: Dataset) -> str:
    """data.task, else the dataset's own (generators know it), else what the loss or model
    implies, else a guess from the labels. Two classes under a multiclass loss or model
    (cross_entropy, softmax) are treated as multiclass."""
    task = cfg.data.task or ds.task
    implied = (
        registry.get("losses", cfg.loss.name).build.task if cfg.loss is not None else _MODEL_TASK.get(cfg.model.name)
    )
    if task is None:
        return implied or guess_task(ds.y)
    if task == "binary" and implied == "multiclass":
        return "multiclass"
    return task


def load_file(cfg_data, resolve, path: str, need_target: bool = True) -> Dataset:
    """Load another file with the same loader settings as the training data."""
    entry = registry.get("datasets", cfg_data.name)
    if not hasattr(cfg_data, "path"):
        # synthetic training data: read .npz (X, y) or .csv with a `y` column
        kind = "csv" if str(path).lower().endswith(".csv") else "npz"
        entry = registry.get("datasets", kind)
        cfg_data = entry.schema(path=path, **({"target": "y"} if kind == "csv" else {}))
    return entry.build(cfg_data, resolve=resolve, path=path, need_target=need_target)


def prepare(loaded) -> tuple[dict[str, Dataset | None], DataState]:
    """Load and split the data of a run; fit classes, categories and scaling on train.
    A DataError says which config key led to the file."""
    try:
        return _prepare(loaded)
    except DataError as e:
        key = ("data", "path") if hasattr(loaded.config.data, "path") else ("data", "name")
        for part in ("val", "test"):
            p = getattr(loaded.config.data, f"{part}_path", None)
            if p and e.path == p:
                key = ("data", f"{part}_path")
        issue = loaded.issue(key, "")
        raise e.located(f"{issue.where()}: {issue.key}") from None


def _prepare(loaded) -> tuple[dict[str, Dataset | None], DataState]:
    cfg = loaded.config
    dcfg = cfg.data
    ds = registry.get("datasets", dcfg.name).build(dcfg, rng=stream(cfg.seed, "data"), resolve=loaded.resolve_path)
    task = resolve_task(cfg, ds)
    classes = None
    if task in ("binary", "multiclass"):
        classes = ds.classes if ds.classes is not None else label_names(ds.y)
        if len(classes) < 2:
            raise DataError(f"classification needs at least 2 classes, the labels have {len(classes)}", ds.source)
        if task == "binary" and len(classes) > 2:
            raise DataError(
                f"a binary task needs 2 classes, the labels have {len(classes)}: {classes[:10]}",
                ds.source,
                "set data.task: multiclass, or use cross_entropy",
            )
    state = DataState(task, classes, list(ds.feature_names))
    shape = sample_shape(ds, dcfg.shape)
    state.shape = list(shape) if shape else None
    ds.y = state.labels(ds)

    extra = {}
    for part in ("val", "test"):
        p = getattr(dcfg, f"{part}_path", None)
        if p:
            other = load_file(dcfg, loaded.resolve_path, p)
            if other.n_features != ds.n_features:
                raise DataError(f"has {other.n_features} feature columns, the training data {ds.n_features}", p)
            check_same_shape(other, shape, dcfg.shape, p)
            other.y = state.labels(other)
            extra[part] = other
    val_fraction = 0.0 if "val" in extra else dcfg.val_fraction
    test_fraction = 0.0 if "test" in extra else dcfg.test_fraction
    train, val, test = split(ds, val_fraction, test_fraction, stream(cfg.seed, "split"), stratify=classes is not None)
    val, test = extra.get("val", val), extra.get("test", test)

    if train.categorical:
        state.categories = {c: sorted(set(v.tolist())) for c, v in train.categorical.items()}
        state.feature_names += [f"{c}={v}" for c, cats in state.categories.items() for v in cats]
    state.scale = dcfg.scale
    if dcfg.scale != "none":
        X = state.features(train)
        if shape is not None and len(shape) >= 2:  # images and signals: per channel
            offset, factor = channel_scaling(X, shape, dcfg.scale)
        elif dcfg.scale == "standardize":
            offset, factor = X.mean(axis=0), X.std(axis=0)
        else:
            offset, factor = X.min(axis=0), X.max(axis=0) - X.min(axis=0)
        factor = np.where(factor > 0, factor, 1.0)  # constant columns stay put rather than become NaN
        state.offset, state.factor = offset.tolist(), factor.tolist()
    return {"train": train, "val": val, "test": test}, state


def arrays_for(ds: Dataset, state: DataState, loss, dtype) -> tuple[Any, Any]:
    """(X, T) in the engine's dtype: features transformed, targets as the loss expects."""
    from trainkit.backend import xp

    X = xp.ascontiguousarray(xp.asarray(state.features(ds), dtype=dtype))
    T = xp.ascontiguousarray(loss.prepare_targets(ds.y, dtype))
    return X, T
