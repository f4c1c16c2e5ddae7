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
from pydantic import Field

from trainkit.data.dataset import Dataset, DatasetConfig
from trainkit.errors import DataError
from trainkit.registry import register


def _check_finite(X, y, path):
    bad = np.argwhere(~np.isfinite(X))
    if len(bad):
        r, c = bad[0]
        raise DataError(
            f"X has {len(bad)} non-finite value(s), first at row {r}, column {c}: {X[r, c]}",
            path,
            "remove or impute missing values before training",
        )
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        r = int(np.argwhere(~np.isfinite(y.reshape(len(y), -1)))[0][0])
        raise DataError(f"y has non-finite values, first at row {r}", path)


class NpzConfig(DatasetConfig):
    """Arrays from an .npz file: X (n, features), y (n,) or (n, outputs)."""

    name: Literal["npz"] = "npz"
    path: str = Field(description="relative to the config file")
    x_key: str = "X"
    y_key: str = "y"


@register("datasets", NpzConfig)
def npz(cfg: NpzConfig, rng=None, resolve=Path, **_) -> Dataset:
    path = resolve(cfg.path)
    shown = str(cfg.path)
    if not path.is_file():
        raise DataError(
            "file not found" if not path.exists() else "not a file",
            shown,
            f"paths are relative to the config file's folder ({path.parent})",
        )
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            for k in (cfg.x_key, cfg.y_key):
                if k not in keys:
                    raise DataError(
                        f"no array named {k!r}; it holds {', '.join(keys) or 'nothing'}",
                        shown,
                        "save with np.savez(path, X=features, y=labels)",
                    )
            X, y = f[cfg.x_key], f[cfg.y_key]
    except DataError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"cannot read as .npz: {e}", shown) from None
    if X.dtype.kind not in "biuf":
        raise DataError(f"X must be numeric, got dtype {X.dtype}", shown)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise DataError(f"X must have shape (n, features), got {X.shape}", shown)
    if len(y) != len(X):
        raise DataError(f"X has {len(X)} rows but y has {len(y)}", shown)
    if len(X) < 2:
        raise DataError(f"needs at least 2 samples, got {len(X)}", shown)
    X = X.astype(np.float64)
    _check_finite(X, y, shown)
    return Dataset(X, y, None, [f"x{i}" for i in range(X.shape[1])], source=shown)


class CsvConfig(DatasetConfig):
    """A CSV file with a header row; `target` names the label column."""

    name: Literal["csv"] = "csv"
    path: str = Field(description="relative to the config file")
    target: str = Field(description="the label column")
    features: Optional[list[str]] = Field(
        None, description="feature columns; default: all but target"
    )
    delimiter: str = Field(",", min_length=1, max_length=1)


@register("datasets", CsvConfig)
def csv_file(cfg: CsvConfig, rng=None, resolve=Path, **_) -> Dataset:
    path = resolve(cfg.path)
    shown = str(cfg.path)
    if not path.is_file():
        raise DataError(
            "file not found" if not path.exists() else "not a file",
            shown,
            f"paths are relative to the config file's folder ({path.parent})",
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f, delimiter=cfg.delimiter))
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", shown) from None
    except csv.Error as e:
        raise DataError(f"malformed CSV: {e}", shown) from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise DataError(
            "file is empty", shown, "a CSV needs a header row and at least two data rows"
        )
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    if len(body) < 2:
        raise DataError(f"needs at least 2 data rows, got {len(body)}", shown)
    if cfg.target not in header:
        raise DataError(f"no column named {cfg.target!r}; columns are: {', '.join(header)}", shown)
    features = cfg.features or [h for h in header if h != cfg.target]
    missing = [c for c in features if c not in header]
    if missing:
        raise DataError(f"no column named {missing[0]!r}; columns are: {', '.join(header)}", shown)
    for i, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise DataError(f"row {i} has {len(r)} fields but the header has {len(header)}", shown)
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
                    "feature columns must be numeric",
                ) from None
    raw_y = [r[header.index(cfg.target)].strip() for r in body]
    try:
        y = np.array([float(v) for v in raw_y])
        if np.all(y == np.round(y)) and len(np.unique(y)) <= max(2, len(y) // 5):
            y = y.astype(np.int64)  # small set of integer values: class labels
    except ValueError:
        y = np.array(raw_y)  # string labels: classes, mapped to 0..C-1 later
    _check_finite(X, y, shown)
    return Dataset(X, y, None, features, source=shown)
