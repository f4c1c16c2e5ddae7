"""From the `data` block to ready arrays: load, decide the task, encode labels, split,
one-hot encode categorical columns, scale features.

Everything learned from the data (classes, categories, scaling) is fitted on the training
split only and kept in a DataState, which is saved with the run and applied again by
`evaluate` and `predict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainkit import registry
from trainkit.data.dataset import Dataset, clip, encode_labels, first_nonfinite, guess_task, label_names, split
from trainkit.data.shapes import as_the_network_reads, channel_scaling, check_same_shape, sample_shape
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
    file_columns: list[str] | None = None  # the training file's header (CSV): other files are read by name
    scale_target: str = "none"
    target_offset: list[float] | None = None
    target_factor: list[float] | None = None
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

    @property
    def input_columns(self) -> list[str]:
        """The numeric feature columns, in the model's order (one-hot columns follow them)."""
        return self.feature_names[: len(self.feature_names) - sum(len(c) for c in self.categories.values())]

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
            return encode_labels(ds, self.classes)
        if ds.y.dtype.kind not in "biuf":
            raise DataError(
                f"regression targets must be numbers, got {ds.y.dtype}",
                ds.source,
                "set data.task: binary or multiclass for class labels",
            )
        return ds.y.astype(np.float64)

    def scaled_targets(self, y: np.ndarray) -> np.ndarray:
        """Regression targets as the model learns them: (y − offset) / factor."""
        if self.target_offset is None:
            return y
        return (y - np.asarray(self.target_offset)) / np.asarray(self.target_factor)  # (n,) or (n, outputs)

    @property
    def target_scaling(self) -> tuple[list[float], list[float]] | None:
        """(offset, factor) per output of scaled regression targets, else None."""
        return None if self.target_offset is None else (self.target_offset, self.target_factor)

    def unscaled_targets(self, out: np.ndarray) -> np.ndarray:
        """Model outputs (n, outputs) back in the target's units: out · factor + offset."""
        if self.target_offset is None:
            return out
        return out * np.asarray(self.target_factor) + np.asarray(self.target_offset)


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


def load_file(cfg_data, resolve, path: str, need_target: bool = True, like=None, ignore_extra=False) -> Dataset:
    """Load another file with the same loader settings as the training data. With `like` (the
    run's DataState), its feature columns are the training file's: selected by name from a
    CSV, counted in a file without names (NPZ); an unknown extra column is an error unless
    `ignore_extra`."""
    entry = registry.get("datasets", cfg_data.name)
    kind = {".csv": "csv", ".npz": "npz"}.get(Path(path).suffix.lower())
    if not hasattr(cfg_data, "path") or (kind and kind != cfg_data.name):
        # synthetic training data, or a file of another format (images as arrays too): read by its extension, as
        # .npz (X, y) or .csv with the training target's column (`y` for synthetic data)
        kind = kind or "npz"
        if kind == "npz" and like is not None and like.categories:
            raise DataError(
                f"an .npz file has no column names, and the run one-hot encodes {', '.join(like.categories)}",
                path,
                "give a CSV file with the training data's columns",
            )
        target = getattr(cfg_data, "target", None) or getattr(cfg_data, "y_key", "y")
        entry = registry.get("datasets", kind)
        cfg_data = entry.schema(path=path, **({"target": target} if kind == "csv" else {}))
    by_name = {}
    if like is not None and like.file_columns is not None:
        by_name = {"columns": like.input_columns, "known": like.file_columns, "ignore_extra": ignore_extra}
    ds = entry.build(cfg_data, resolve=resolve, path=path, need_target=need_target, **by_name)
    if like is not None and like.shape:  # images and signals: say the shapes, not a column count
        check_same_shape(ds, tuple(like.shape), getattr(cfg_data, "shape", None), path)
    if like is not None and ds.n_features != len(like.input_columns):
        raise DataError(
            f"has {ds.n_features} feature columns, the run was trained on {len(like.input_columns)}",
            path,
            "a file without column names must hold the training data's feature columns, in the same order",
        )
    return ds


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
        raise _located(loaded, key, e) from None


def _located(loaded, key: tuple, e: DataError) -> DataError:
    """The DataError `e`, saying that config key `key` (file:line: key) led to it."""
    issue = loaded.issue(key, "")
    return e.located(f"{issue.where()}: {issue.key}")


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
                f"a binary task needs 2 classes, the labels have {len(classes)}: {', '.join(map(clip, classes[:10]))}",
                ds.source,
                "set data.task: multiclass, or use cross_entropy",
            )
    state = DataState(task, classes, list(ds.feature_names), file_columns=ds.columns)
    try:
        shape = sample_shape(ds, dcfg.shape)
    except DataError as e:
        if not dcfg.shape:
            raise
        raise _located(loaded, ("data", "shape"), e) from None
    state.shape = list(shape) if shape else None
    ds.y = state.labels(ds)

    extra = {}
    for part in ("val", "test"):
        p = getattr(dcfg, f"{part}_path", None)
        if p:
            other = load_file(dcfg, loaded.resolve_path, p, like=state)
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
    fit_scaling(state, train, shape)
    state.scale_target = dcfg.scale_target
    if dcfg.scale_target != "none":
        if task != "regression":
            raise loaded.error(
                ("data", "scale_target"), f"scales regression targets, but the task is {task}", "remove it"
            )
        state.target_offset, state.target_factor = _fit_scaling(train.y.reshape(len(train), -1), dcfg.scale_target)
    return {"train": train, "val": val, "test": test}, state


def fit_scaling(state: DataState, train: Dataset, shape: tuple[int, ...] | None) -> None:
    """Fit the feature scaling `state.scale` on the training split: per channel (the first axis
    of `shape`, one sample's) for images and signals, else per column."""
    state.offset = state.factor = None
    if state.scale == "none":
        return
    X = state.features(train)
    if shape is not None and len(shape) >= 2:
        offset, factor = channel_scaling(X, shape, state.scale)
        state.offset, state.factor = offset.tolist(), np.where(factor > 0, factor, 1.0).tolist()
    else:
        state.offset, state.factor = _fit_scaling(X, state.scale)


def fit_scaling_to_model(state: DataState, train: Dataset, in_shape: tuple[int, ...]) -> None:
    """Scaling per channel as the network reads the samples, where it gives them a channel axis
    the data lacks: (H, W) before conv2d is one grey channel (not H), (L,) before conv1d one
    channel (not L columns). `state.shape` stays the data's own (other files are checked against it)."""
    own = tuple(state.shape or (len(state.feature_names),))
    if as_the_network_reads(own, in_shape) != own:
        fit_scaling(state, train, in_shape)


def _fit_scaling(A: np.ndarray, how: str) -> tuple[list[float], list[float]]:
    """Per column (offset, factor), so that (a − offset) / factor is standardized (mean 0,
    std 1) or min-max scaled ([0, 1]) on the rows of A (the training split)."""
    if how == "standardize":
        offset, factor = A.mean(axis=0), A.std(axis=0)
    else:
        offset, factor = A.min(axis=0), A.max(axis=0) - A.min(axis=0)
    factor = np.where(factor > 0, factor, 1.0)  # constant columns stay put rather than become NaN
    return offset.tolist(), factor.tolist()


def arrays_for(ds: Dataset, state: DataState, loss, dtype) -> tuple[Any, Any]:
    """(X, T) in the engine's dtype: features transformed, targets as the loss expects."""
    return inputs_for(ds, state, dtype), targets_for(ds, state, loss, dtype)


def inputs_for(ds: Dataset, state: DataState, dtype):
    """The model's input for `ds` in the engine's dtype, every value finite after the cast."""
    from trainkit.backend import xp

    with np.errstate(over="ignore"):  # an overflow is found and named just below
        X = np.asarray(state.features(ds), dtype=dtype)
    _check_cast(X, ds.X, ds, dtype, lambda c: c if c < ds.n_features else state.feature_names[c])
    return xp.ascontiguousarray(xp.asarray(X))


def targets_for(ds: Dataset, state: DataState, loss, dtype, scaled: bool = True):
    """Targets as the loss expects them; regression targets scaled as the model learns them
    (unless `scaled` is False), every value finite after the cast."""
    from trainkit.backend import xp

    y = ds.y
    if state.task == "regression":
        with np.errstate(over="ignore"):
            y = np.asarray(state.scaled_targets(y) if scaled else y, dtype=dtype)
        _check_cast(y, ds.y, ds, dtype, lambda c: ds.target)
    return xp.ascontiguousarray(loss.prepare_targets(y, dtype))


def _check_cast(A: np.ndarray, raw: np.ndarray, ds: Dataset, dtype, column) -> None:
    """Finite after the cast: a CSV cell 1e40 is inf in float32. The error names the file, the
    row and the column (`column(j)`: a feature index or a name, for Dataset.where)."""
    bad = first_nonfinite(A)
    if bad is None:
        return
    r, c = bad
    raw = raw.reshape(len(raw), -1)
    value = float(raw[r, c]) if c < raw.shape[1] else float("nan")
    name, limit = np.dtype(dtype).name, float(np.finfo(dtype).max)
    where = ds.where(r, column(c))
    if abs(value) > limit:
        raise DataError(
            f"{where}: {value:g} is beyond {name}'s range (±{limit:.3g})",
            ds.source,
            "rescale the column (e.g. other units), or set train.dtype: float64",
        )
    raise DataError(f"{where}: {value:g} becomes {A.reshape(len(A), -1)[r, c]} in {name} after scaling", ds.source)
