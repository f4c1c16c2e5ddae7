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

from trainkit.data.dataset import Dataset, DatasetConfig, clip, first_nonfinite
from trainkit.errors import DataError, npz_reason
from trainkit.registry import register

MISSING = {"", "na", "n/a", "nan", "null", "#n/a", "<na>", "?"}  # cells that mean "no value" (lowercased)
IMPUTE = "remove or impute missing values before training"


def _check_finite(ds: Dataset) -> None:
    """Every feature and regression target is a finite number; the error names row and column."""
    for A, column in ((ds.X, None), (ds.y if ds.y is not None and ds.y.dtype.kind == "f" else None, ds.target)):
        bad = None if A is None else first_nonfinite(A)
        if bad is not None:
            r, c = bad
            value = float(A.reshape(len(A), -1)[r, c])
            where = ds.where(r, c if column is None else column)
            if np.isnan(value):
                raise DataError(f"{where}: missing value (nan)", ds.source, IMPUTE)
            raise DataError(f"{where}: {value} is not a finite number", ds.source, "remove the row or fix the value")


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
            if getattr(self, f"{part}_path"):
                # the fraction in use is 0: the resolved config (a run's config.yaml) says so, and
                # stays loadable, not "both" by its default (bypassing validate_assignment's re-run)
                self.__dict__[f"{part}_fraction"] = 0.0
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
                    held = ", ".join(clip(h) for h in keys[:10]) + (", …" if len(keys) > 10 else "")
                    raise DataError(
                        f"no array named {clip(k)}; it holds {held or 'nothing'}",
                        shown,
                        "save with np.savez(path, X=features, y=labels)",
                    )
            X = f[cfg.x_key]
            y = f[cfg.y_key] if cfg.y_key in keys else None
    except DataError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"cannot read as .npz: {npz_reason(e)}", shown) from None
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
    ds = Dataset(X, y, None, [f"x{i}" for i in range(X.shape[1])], source=shown, target=cfg.y_key, shape=shape)
    _check_finite(ds)
    return ds


class CsvConfig(FileDatasetConfig):
    """A CSV file with a header row; `target` names the label column."""

    name: Literal["csv"] = "csv"
    target: str = Field(description="the label column")
    features: Optional[list[str]] = Field(None, description="feature columns; default: all but target")
    one_hot: list[str] = Field(default_factory=list, description="categorical feature columns to one-hot encode")
    delimiter: str = Field(",", min_length=1, max_length=1)


def _read_rows(file: Path, shown: str, delimiter: str) -> tuple[list[list[str]], list[int]]:
    """The non-blank records of a CSV and the line each starts on (a quoted cell may span lines)."""
    rows, lines, line = [], [], 1
    try:
        with open(file, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter, strict=True)
            for r in reader:
                if r and any(c.strip() for c in r):
                    rows.append(r)
                    lines.append(line)
                line = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", shown, "is this a binary file?") from None
    except csv.Error as e:
        raise DataError(f"malformed CSV near line {line}: {e}", shown) from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror}", shown) from None
    return rows, lines


def _names(names: list[str], limit: int = 20) -> str:
    return ", ".join(clip(n) for n in names[:limit]) + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _header_text(header: list[str], delimiter: str) -> str:
    """The file's columns for an error message. A one-column header is no CSV table (a system
    file, a wrong delimiter): its first line is not echoed."""
    if len(header) < 2:
        return f"the first line has no {delimiter!r} between names: is this a CSV file?"
    return f"columns are: {_names(header)}"


def _check_columns(header, wanted, known, ignore_extra, shown, delimiter) -> None:
    """`wanted` columns must be in the header; with `known` (the training file's header), a
    column outside it is an error too unless `ignore_extra`."""
    missing = [c for c in wanted if c not in header]
    extra = [] if known is None or ignore_extra else [h for h in header if h not in known]
    if not missing and not extra:
        return
    if known is None:
        word = "column" if len(missing) == 1 else "columns"
        raise DataError(f"no {word} named {_names(missing)}; {_header_text(header, delimiter)}", shown)
    if not set(header) & set(known):  # another kind of file: its first line is not echoed
        raise DataError(
            "none of the training data's columns are in this file",
            shown,
            f"is it a CSV table with {delimiter!r} between values? The run was trained on {_names(list(wanted))}",
        )
    parts = [f"missing {_names(missing)}"] if missing else []
    parts += [f"unknown {_names(extra)}"] if extra else []
    raise DataError(
        f"the columns differ from the training data: {'; '.join(parts)}",
        shown,
        f"the run was trained on the columns {_names(list(wanted))}, selected by name"
        + ("; remove unknown columns from the file (evaluate and predict: --ignore-extra skips them)" if extra else ""),
    )


def _parse_features(body, lines, header, features, shown) -> np.ndarray:
    cols = [header.index(c) for c in features]
    X = np.empty((len(body), len(cols)))
    for i, r in enumerate(body):
        for j, c in enumerate(cols):
            try:
                X[i, j] = float(r[c])
            except ValueError:
                where = f"line {lines[i]}, column {clip(header[c])}"
                cell = r[c].strip()
                if cell.lower() in MISSING:
                    raise DataError(
                        f"{where}: missing value ({clip(cell) if cell else 'empty'})", shown, IMPUTE
                    ) from None
                raise DataError(
                    f"{where}: {clip(r[c])} is not a number",
                    shown,
                    f"feature columns must be numeric; list categorical ones under one_hot: [{clip(header[c])[1:-1]}]",
                ) from None
    return X


def _parse_target(body, lines, column: int, name: str, shown) -> np.ndarray:
    """Numbers (a small set of integers: class labels) or strings (class names). An empty or
    NA cell is an error, never a class of its own."""
    raw = [r[column].strip() for r in body]
    for i, v in enumerate(raw):
        if v.lower() in MISSING:
            raise DataError(
                f"line {lines[i]}, column {clip(name)}: the target is {'empty' if not v else f'missing ({clip(v)})'}",
                shown,
                "every row needs a target value: fill it in or remove the row",
            )
    try:
        y = np.array([float(v) for v in raw])
    except ValueError:
        return np.array(raw)  # string labels: classes, mapped to 0..C-1 later
    if np.all(np.isfinite(y)) and np.all(y == np.round(y)) and len(np.unique(y)) <= max(2, len(y) // 5):
        y = y.astype(np.int64)  # a small set of integer values: class labels
    return y


@register("datasets", CsvConfig)
def csv_file(
    cfg: CsvConfig,
    rng=None,
    resolve=Path,
    path: str | None = None,
    need_target: bool = True,
    columns: list[str] | None = None,
    known: list[str] | None = None,
    ignore_extra: bool = False,
    **_,
) -> Dataset:
    """`columns` selects the numeric feature columns by name (evaluate, predict, val/test
    files: the training file's), `known` is the training file's header."""
    shown = str(path or cfg.path)
    file = resolve(shown)
    _existing(file, shown)
    rows, lines = _read_rows(file, shown, cfg.delimiter)
    if not rows:
        raise DataError("file is empty", shown, "a CSV needs a header row and data rows")
    header = [h.strip() for h in rows[0]]
    body, lines = rows[1:], lines[1:]
    minimum = 2 if need_target else 1
    if len(body) < minimum:
        raise DataError(f"needs at least {minimum} data rows, got {len(body)}", shown)
    dup = next((h for h in header if header.count(h) > 1), None)
    if dup is not None:
        raise DataError(f"column {clip(dup)} appears twice in the header", shown)
    has_target = cfg.target in header
    if need_target and not has_target:
        raise DataError(f"no column named {clip(cfg.target)}; {_header_text(header, cfg.delimiter)}", shown)
    features = columns or cfg.features or [h for h in header if h != cfg.target and h not in cfg.one_hot]
    features = [c for c in features if c not in cfg.one_hot]
    _check_columns(header, features + cfg.one_hot, known, ignore_extra, shown, cfg.delimiter)
    for line, r in zip(lines, body):
        if len(r) != len(header):
            raise DataError(
                f"line {line} has {len(r)} fields but the header has {len(header)}",
                shown,
                "every row needs one value per column; check for stray or missing delimiters",
            )
    categorical = {c: np.array([r[header.index(c)].strip() for r in body]) for c in cfg.one_hot}
    X = _parse_features(body, lines, header, features, shown)
    y = _parse_target(body, lines, header.index(cfg.target), cfg.target, shown) if need_target else None
    ds = Dataset(X, y, None, features, source=shown, categorical=categorical, columns=header, rows=np.array(lines))
    ds.target = cfg.target
    _check_finite(ds)
    return ds
