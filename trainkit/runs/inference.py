"""Using a trained run: `evaluate` its metrics on a split or a file, `predict` on new data.

A run directory holds everything needed: the config (model and loss), the checkpoint's
parameters and the data state (classes, one-hot categories, feature scaling).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from trainkit.runs import checkpoint
from trainkit.backend import dtype_of, to_numpy
from trainkit.config import load_config
from trainkit.data.pipeline import DataState, arrays_for, load_file
from trainkit.data.shapes import check_same_shape
from trainkit.errors import DataError
from trainkit.nn.layers import sigmoid, softmax


def _open_run(run_dir: str | Path):
    from trainkit.api import build

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise DataError(
            "not a run directory (no config.yaml)", str(run_dir), "pass the --output-dir of a `trainkit train` run"
        )
    loaded = load_config(run_dir / "config.yaml")
    arrays, meta = checkpoint.load(run_dir / "checkpoint.npz")
    exp = build(loaded)
    checkpoint.restore_model(exp.net, arrays)
    exp.state = DataState.from_dict(meta["data"])
    return exp


def evaluate(run_dir: str | Path, data: str | None = None) -> dict:
    """Metrics of the run's final parameters on `data` (a file), else its test split
    (else its validation split). Returns {"split", "metrics", "n"}."""
    exp = _open_run(run_dir)
    cfg = exp.loaded.config
    if data is not None:
        ds = load_file(cfg.data, Path, data)
        check_same_shape(ds, exp.state.shape and tuple(exp.state.shape), getattr(cfg.data, "shape", None), data)
        ds.y = exp.state.labels(ds)
        X, T = arrays_for(ds, exp.state, exp.trainer.loss, dtype_of(cfg.train.dtype))
        split = "test"
    elif "X_test" in exp.arrays:
        X, T, split = exp.arrays["X_test"], exp.arrays["T_test"], "test"
    elif "X_val" in exp.arrays:
        X, T, split = exp.arrays["X_val"], exp.arrays["T_val"], "val"
    else:
        raise DataError(
            "the run has no test or validation split",
            str(run_dir),
            "pass --data FILE, or train with data.test_fraction above 0",
        )
    return {"split": split, "n": len(X), "metrics": exp.trainer.evaluate(X, T, split)}


def predict(run_dir: str | Path, data: str) -> tuple[list[str], list[list]]:
    """Predictions for every row of `data`: (header, rows). Classifiers give the label (by its
    original name) and one probability column per class; regressors give the values."""
    exp = _open_run(run_dir)
    cfg, state = exp.loaded.config, exp.state
    ds = load_file(cfg.data, Path, data, need_target=False)
    check_same_shape(ds, state.shape and tuple(state.shape), getattr(cfg.data, "shape", None), data)
    X = np.asarray(state.features(ds), dtype=dtype_of(cfg.train.dtype))
    out = to_numpy(exp.net.predict(X)).astype(np.float64)
    if state.task == "regression":
        header = ["prediction"] if out.shape[1] == 1 else [f"prediction_{i}" for i in range(out.shape[1])]
        return header, out.tolist()
    if state.task == "binary":
        p1 = out[:, 0] if cfg.loss.name == "bce" else sigmoid(out[:, 0])
        probs = np.c_[1.0 - p1, p1]
    else:
        probs = softmax(out)
    labels = [state.classes[i] for i in probs.argmax(axis=1)]
    header = ["prediction"] + [f"prob_{c}" for c in state.classes]
    return header, [[lab, *p] for lab, p in zip(labels, probs.tolist())]


def to_csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()
