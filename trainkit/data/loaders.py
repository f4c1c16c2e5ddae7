"""File loaders: NPZ (`X`, `y`) and CSV (a header row; `target:` names the label column).

Paths resolve relative to the config file. Nothing executes code: NPZ is read with
allow_pickle=False, CSV with the csv module. Every bad file is a DataError naming the file
and, for CSV, the row and column.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import Field, model_validator

from trainkit.data.dataset import Dataset, DatasetConfig
from trainkit.errors import DataError
from trainkit.registry import register


def _check_finite(X, y, path):
    # In row blocks: a whole-array mask would cost a quarter of a float32 dataset's memory.
    step = max(1, (1 << 22) // max(1, X.shape[1]))
    bad = next(
        (
            np.argwhere(~np.isfinite(X[i : i + step])) + [i, 0]
            for i in range(0, len(X), step)
            if not np.isfinite(X[i : i + step]).all()
        ),
        np.empty((0, 2), int),
    )
    if len(bad):
        r, c = bad[0]
        raise DataError(
            f"X has a non-finite value at row {r}, column {c}: {X[r, c]}",
            path,
            "remove or impute missing values before training",
        )
    if y is not None and y.dtype.kind == "f" and not np.isfinite(y).all():
        r = int(np.argwhere(~np.isfinite(y.reshape(len(y), -1)))[0][0])
        raise DataError(f"y has non-finite values, first at row {r}", path)


def _existing(path: Path, shown: str) -> None:
    if not path.is_file():
        raise DataError(
            "file not found" if not path.exists() else "not a file",
            shown,
            f"looked for {path}; paths are relative to the config file's folder",
        )


class FileDatasetConfig(DatasetConfig):
    path: str = Field(description="relative to the config file")
    val_path: Optional[str] = Field(None, description="validation data in its own file (instead of val_fraction)")
    test_path: Optional[str] = Field(None, description="test data in its own file (instead of test_fraction)")

    @model_validator(mode="after")
    def _path_or_fraction(self):
        for part in ("val", "test"):
            explicit = f"{part}_fraction" in self.model_fields_set and getattr(self, f"{part}_fraction") > 0
            if getattr(self, f"{part}_path") and explicit:
                raise ValueError(f"give either {part}_path or {part}_fraction, not both")
        return self


class NpzConfig(FileDatasetConfig):
    """Arrays from an .npz file: X (n, features), y (n,) or (n, outputs)."""

    name: Literal["npz"] = "npz"
    x_key: str = "X"
    y_key: str = "y"


@register("datasets", NpzConfig)
def npz(cfg: NpzConfig, rng=None, resolve=Path, path: str | None = None, need_target: bool = True, **_) -> Dataset:
    shown = str(path or cfg.path)
    file = resolve(shown)
    _existing(file, shown)
    try:
        with np.load(file, allow_pickle=False) as f:
            keys = list(f.keys())
            for k in (cfg.x_key, cfg.y_key) if need_target else (cfg.x_key,):
                if k not in keys:
                    raise DataError(
                        f"no array named {k!r}; it holds {', '.join(keys) or 'nothing'}",
                        shown,
                        "save with np.savez(path, X=features, y=labels)",
                    )
            X = f[cfg.x_key]
            y = f[cfg.y_key] if cfg.y_key in keys else None
    except DataError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"cannot read as .npz: {e}", shown) from None
    if X.dtype.kind not in "biuf":
        raise DataError(f"X must be numeric, got dtype {X.dtype}", shown)
    if X.ndim == 1:
        X = X[:, None]
    shape = X.shape[1:] if X.ndim > 2 else None  # (n, C, L), (n, H, W), (n, C, H, W): kept flat
    if X.ndim > 4 or 0 in X.shape[1:]:
        raise DataError(f"X must have shape (n, features), (n, C, L), (n, H, W) or (n, C, H, W), got {X.shape}", shown)
    X = X.reshape(len(X), int(np.prod(X.shape[1:])))
    if y is not None and len(y) != len(X):
        raise DataError(f"X has {len(X)} rows but y has {len(y)}", shown)
    if y is not None and (y.dtype.kind not in "biufU" or y.ndim > 2):
        raise DataError(f"y must be numbers or strings of shape (n,) or (n, outputs), got {y.dtype} {y.shape}", shown)
    minimum = 2 if need_target else 1
    if len(X) < minimum:
        raise DataError(f"needs at least {minimum} samples, got {len(X)}", shown)
    if X.dtype.kind != "f":
        X = X.astype(np.float64)  # float32 data stays float32: no copy of a large file
    _check_finite(X, y, shown)
    return Dataset(X, y, None, [f"x{i}" for i in range(X.shape[1])], source=shown, shape=shape)


class CsvConfig(FileDatasetConfig):
    """A CSV file with a header row; `target` names the label column."""

    name: Literal["csv"] = "csv"
    target: str = Field(description="the label column")
    features: Optional[list[str]] = Field(None, description="feature columns; default: all but target")
    one_hot: list[str] = Field(default_factory=list, description="categorical feature columns to one-hot encode")
    delimiter: str = Field(",", min_length=1, max_length=1)


def _read_rows(file: Path, shown: str, delimiter: str) -> list[list[str]]:
    try:
        with open(file, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f, delimiter=delimiter, strict=True))
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", shown, "is this a binary file?") from None
    except csv.Error as e:
        raise DataError(f"malformed CSV: {e}", shown) from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror}", shown) from None
    return [r for r in rows if r and any(c.strip() for c in r)]


@register("datasets", CsvConfig)
def csv_file(cfg: CsvConfig, rng=None, resolve=Path, path: str | None = None, need_target: bool = True, **_) -> Dataset:
    shown = str(path or cfg.path)
    file = resolve(shown)
    _existing(file, shown)
    rows = _read_rows(file, shown, cfg.delimiter)
    if not rows:
        raise DataError("file is empty", shown, "a CSV needs a header row and data rows")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    minimum = 2 if need_target else 1
    if len(body) < minimum:
        raise DataError(f"needs at least {minimum} data rows, got {len(body)}", shown)
    dup = next((h for h in header if header.count(h) > 1), None)
    if dup is not None:
        raise DataError(f"column {dup!r} appears twice in the header", shown)
    has_target = cfg.target in header
    if need_target and not has_target:
        raise DataError(f"no column named {cfg.target!r}; columns are: {', '.join(header)}", shown)
    features = cfg.features or [h for h in header if h != cfg.target]
    missing = [c for c in features + cfg.one_hot if c not in header]
    if missing:
        raise DataError(f"no column named {missing[0]!r}; columns are: {', '.join(header)}", shown)
    for i, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise DataError(
                f"row {i} has {len(r)} fields but the header has {len(header)}",
                shown,
                "every row needs one value per column; check for stray or missing delimiters",
            )
    categorical = {c: np.array([r[header.index(c)].strip() for r in body]) for c in cfg.one_hot}
    features = [c for c in features if c not in cfg.one_hot]
    cols = [header.index(c) for c in features]
    X = np.empty((len(body), len(cols)))
    for i, r in enumerate(body):
        for j, c in enumerate(cols):
            try:
                X[i, j] = float(r[c])
            except ValueError:
                raise DataError(
                    f"row {i + 2}, column {header[c]!r}: {r[c]!r} is not a number",
                    shown,
                    f"feature columns must be numeric; list categorical ones under one_hot: [{header[c]}]",
                ) from None
    y = None
    if has_target:
        raw_y = [r[header.index(cfg.target)].strip() for r in body]
        try:
            y = np.array([float(v) for v in raw_y])
            if np.all(np.isfinite(y)) and np.all(y == np.round(y)) and len(np.unique(y)) <= max(2, len(y) // 5):
                y = y.astype(np.int64)  # a small set of integer values: class labels
        except ValueError:
            y = np.array(raw_y)  # string labels: classes, mapped to 0..C-1 later
    _check_finite(X, y, shown)
    return Dataset(X, y, None, features, source=shown, categorical=categorical)
