"""Using a trained run: `evaluate` its metrics on a split or a file, `predict` on new data.

A run directory holds everything needed: the config (model and loss), the checkpoint's
parameters and the data state (classes, one-hot categories, feature and target scaling, the
training file's columns). A new file's columns are selected by the training file's names;
scaled regression targets are unscaled, so predictions and metrics are in the target's units.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from trainkit.backend import dtype_of, to_numpy, xp
from trainkit.config import load_config
from trainkit.data.pipeline import DataState, inputs_for, load_file, targets_for
from trainkit.errors import DataError
from trainkit.runs import checkpoint


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


def evaluate(run_dir: str | Path, data: str | None = None, ignore_extra: bool = False) -> dict:
    """Metrics of the run's final parameters on `data` (a file), else its test split
    (else its validation split). Returns {"split", "metrics", "n"}."""
    exp = _open_run(run_dir)
    if data is not None:
        ds = _read_like_training(exp, data, need_target=True, ignore_extra=ignore_extra)
        ds.y = exp.state.labels(ds)
        split = "test"
    elif exp.data["test"] is not None:
        ds, split = exp.data["test"], "test"
    elif exp.data["val"] is not None:
        ds, split = exp.data["val"], "val"
    else:
        raise DataError(
            "the run has no test or validation split",
            str(run_dir),
            "pass --data FILE, or train with data.test_fraction above 0",
        )
    return {"split": split, "n": len(ds), "metrics": _metrics(exp, ds, split)}


def _read_like_training(exp, data: str, need_target: bool, ignore_extra: bool):
    """A new file read as the training file was: its feature columns selected by name (CSV) or
    checked by count (NPZ)."""
    return load_file(exp.loaded.config.data, Path, data, need_target, like=exp.state, ignore_extra=ignore_extra)


def _metrics(exp, ds, split: str) -> dict:
    """Loss and metrics on `ds`; with target scaling, in the target's own units: predictions
    unscaled (out · factor + offset) and compared with the unscaled targets."""
    state, loss, dtype = exp.state, exp.trainer.loss, dtype_of(exp.loaded.config.train.dtype)
    X = inputs_for(ds, state, dtype)
    if state.target_offset is None:
        return exp.trainer.evaluate(X, targets_for(ds, state, loss, dtype), split)
    T = targets_for(ds, state, loss, dtype, scaled=False)
    pred = xp.asarray(state.unscaled_targets(to_numpy(exp.net.predict(X)).astype(np.float64)), dtype=dtype)
    acc = exp.trainer._accumulator(T)
    acc.add(pred, T, loss.forward(pred, T), len(X))
    return acc.result(split)


def check_output(run_dir: str | Path, data: str | Path, output: str | Path, overwrite: bool) -> None:
    """Where `predict --output` may write: a file in an existing folder, outside the run
    directory (its files stay as training wrote them), never the input file, and an existing
    file only with --overwrite."""
    out, run = Path(output).resolve(), Path(run_dir).resolve()
    if out == run or run in out.parents:
        raise DataError(
            f"is inside the run directory {run_dir}; trainkit never writes predictions among a run's files",
            str(output),
            "write them elsewhere, e.g. --output preds.csv",
        )
    if out.exists() and Path(data).exists() and out.samefile(data):
        raise DataError("is the input file (--data); predictions never overwrite their input", str(output))
    if out.is_dir():
        raise DataError("is a folder", str(output), "give a file name, e.g. --output preds.csv")
    if out.exists() and not overwrite:
        raise DataError("already exists", str(output), "pass --overwrite to replace it, or choose another file")
    if not out.parent.is_dir():
        raise DataError(f"the folder {out.parent} does not exist", str(output), "create it first")


def predict(run_dir: str | Path, data: str, ignore_extra: bool = False) -> tuple[list[str], list[list]]:
    """Predictions for every row of `data`: (header, rows). Classifiers give the label (by its
    original name) and one probability column per class; regressors give the values."""
    exp = _open_run(run_dir)
    cfg, state = exp.loaded.config, exp.state
    ds = _read_like_training(exp, data, need_target=False, ignore_extra=ignore_extra)
    X = inputs_for(ds, state, dtype_of(cfg.train.dtype))
    out = to_numpy(exp.net.predict(X)).astype(np.float64)
    if state.task == "regression":
        out = state.unscaled_targets(out)
        header = ["prediction"] if out.shape[1] == 1 else [f"prediction_{i}" for i in range(out.shape[1])]
        return header, out.tolist()
    probs = exp.head.probabilities(out)
    labels = [state.classes[i] for i in probs.argmax(axis=1)]
    header = ["prediction"] + [f"prob_{c}" for c in state.classes]
    return header, [[lab, *p] for lab, p in zip(labels, probs.tolist())]


def to_csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()
