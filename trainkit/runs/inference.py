"""Using a trained run: `evaluate` its metrics on a split or a file, `predict` on new data.

A run directory alone is enough, without the training data: its config.yaml (model, loss,
dtype, how files are read) and its checkpoint, which holds the parameters, the model's
sizes and the data state (task, classes, one-hot categories, feature and target scaling, the
training file's columns). Only `evaluate` without --data reads the training data again, for
the test split the run held out. A new file's columns are selected by the training file's
names. Predictions, and metrics (computed as training computes its val and test metrics,
by runs.trainer.evaluate), are in the target's own units when the run scaled its targets.
Both run on the CPU unless given a `device` (cuda, cuda:N), whatever the run trained on.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainkit.api import eval_targets, model_for
from trainkit.backend import dtype_of, to_numpy, using
from trainkit.backend.device import DeviceError, array_module
from trainkit.config import LoadedConfig, load_config
from trainkit.data.pipeline import DataState, fit_scaling_to_model, inputs_for, load_file, prepare
from trainkit.errors import ConfigError, DataError
from trainkit.losses import Head
from trainkit.metrics import MetricAccumulator, default_metrics, target_stats
from trainkit.runs import checkpoint, trainer

_DAMAGED = "it was not written by `trainkit train` (or was changed since); train the run again"


@dataclass
class Run:
    """A trained run opened from its directory: the network holds the run's final parameters."""

    path: Path
    loaded: LoadedConfig
    state: DataState
    net: Any
    head: Head
    loss: Any

    @property
    def dtype(self):
        return dtype_of(self.loaded.config.train.dtype)


def open_run(run_dir: str | Path) -> Run:
    """The run in `run_dir`, built from its config and checkpoint alone (no data is read).
    A missing, damaged or mismatched checkpoint is a DataError naming it."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise DataError(
            "not a run directory (no config.yaml)", str(run_dir), "pass the --output-dir of a `trainkit train` run"
        )
    loaded = load_config(run_dir / "config.yaml")
    path = run_dir / "checkpoint.npz"
    arrays, meta = checkpoint.load(path)
    with checkpoint.damaged(path, _DAMAGED):
        state = DataState.from_dict(meta["data"])
        _check_scaling(state)
        net, head, loss = model_for(loaded, state, _out_features(meta, state))
        checkpoint.restore_model(net, arrays)
    return Run(run_dir, loaded, state, net, head, loss)


def _check_scaling(state: DataState) -> None:
    """The saved scaling parameters are lists of numbers (a ValueError names the bad one)."""
    for name in ("offset", "factor", "target_offset", "target_factor"):
        v = getattr(state, name)
        if v is not None and np.asarray(v, dtype=np.float64).ndim != 1:
            raise ValueError(f"its data state's {name} is not a list of numbers")


def _out_features(meta: dict, state: DataState) -> int:
    if "model" in meta:
        return int(meta["model"]["out_features"])
    # a checkpoint written before it kept the model's sizes: the classes decide, or the targets' scaling
    if state.task in ("binary", "multiclass"):
        return len(state.classes) if state.task == "multiclass" else 1
    return len(state.target_factor or [0])


def open_model(run_dir: str | Path, model: str = "dense") -> Run:
    """The run with its trained parameters (`dense`), or with the compressed model of that
    name decoded into it (`trainkit compress`: RUN/model.NAME.npz)."""
    run = open_run(run_dir)
    if model != "dense":
        from trainkit.compress.command import load_compressed

        load_compressed(run, model)
    return run


def on_device(device: str = "cpu"):
    """A context computing on `device`; ConfigError (exit 2) naming --device if unusable."""
    try:
        return using(array_module(device))
    except DeviceError as e:
        raise ConfigError.one("--device", e.reason, e.hint) from None


def evaluate(
    run_dir: str | Path, data: str | None = None, ignore_extra: bool = False, model: str = "dense", device: str = "cpu"
) -> dict:
    """Metrics of the run's final parameters (or its compressed model `model`) on `data` (a
    file), else its test split (else its validation split). Returns {"split", "metrics", "n"},
    and "data" (the file) with `data`: its split is "data" and its metrics `data_loss`, ...,
    since a file the user names is none of the run's train/val/test splits."""
    with on_device(device):
        return _evaluate(run_dir, data, ignore_extra, model)


def _evaluate(run_dir, data, ignore_extra, model) -> dict:
    run = open_model(run_dir, model)
    if data is not None:
        ds = _read_like_training(run, data, need_target=True, ignore_extra=ignore_extra)
        ds.y = run.state.labels(ds)
        return {"split": "data", "data": str(data), "n": len(ds), "metrics": metrics_of(run, ds, "data")}
    ds, split = _held_out(run)
    return {"split": split, "n": len(ds), "metrics": metrics_of(run, ds, split)}


_EVALUATE_HINT = "evaluate without --data reads the run's test split from its training data; pass --data FILE"


def _held_out(run: Run):
    """The run's test split (else its validation split)."""
    dcfg = run.loaded.config.data
    if not _splits_of(dcfg):
        raise DataError(
            "the run has no test or validation split",
            str(run.path),
            "pass --data FILE, or train with data.test_fraction above 0",
        )
    parts = held_out_splits(run)
    return (parts["test"], "test") if "test" in parts else (parts["val"], "val")


def _splits_of(dcfg) -> bool:
    return any(getattr(dcfg, k, None) for k in ("test_path", "test_fraction", "val_path", "val_fraction"))


def held_out_splits(run: Run, hint: str = _EVALUATE_HINT) -> dict:
    """{"val": ..., "test": ...}: the splits the run held out (none: {}), split again from the
    training data as training did; refused when the data no longer gives the run's data state
    (classes, columns, fitted scaling): it would be other splits."""
    dcfg = run.loaded.config.data
    if not _splits_of(dcfg):
        return {}
    try:
        parts, fitted = prepare(run.loaded)
    except DataError as e:
        raise DataError(e.message, e.path, f"{e.hint}; {hint}" if e.hint else hint, e.origin) from None
    fit_scaling_to_model(fitted, parts["train"], run.net.in_shape)  # as training did (api.build)
    if json.loads(json.dumps(fitted.to_dict())) != run.state.to_dict():
        raise DataError(
            "the training data changed since the run was trained: its test split is not the one the run held out",
            getattr(dcfg, "path", None) or str(run.path),
            hint,
        )
    return {k: parts[k] for k in ("val", "test") if parts[k] is not None}


def _read_like_training(run: Run, data: str, need_target: bool, ignore_extra: bool):
    """A new file read as the training file was: its feature columns selected by name (CSV) or
    checked by count (NPZ)."""
    return load_file(run.loaded.config.data, Path, data, need_target, like=run.state, ignore_extra=ignore_extra)


def metrics_of(run: Run, ds, split: str) -> dict:
    """Loss and metrics on `ds`, exactly as training reports them for its val and test splits."""
    state, cfg, scaling = run.state, run.loaded.config, run.state.target_scaling
    X, T = inputs_for(ds, state, run.dtype), eval_targets(ds, state, run.loss, run.dtype)
    names = (
        cfg.train.metrics
        if cfg.train.metrics is not None
        else default_metrics(state.task, cfg.loss.name, scaling is not None)
    )
    sst = target_stats(T) if state.task == "regression" else None
    acc = MetricAccumulator(state.task, cfg.loss.name, names, run.loss.cfg.reduction, sst, run.head)
    return trainer.evaluate(run.net, run.loss, acc, X, T, split, unscale=scaling and trainer.unscaler(*scaling))


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
        file = next((p for p in out.parents if p.exists() and not p.is_dir()), None)  # `x.csv/preds.csv`
        if file is not None:
            raise DataError(f"{file} is a file, not a folder", str(output), "choose another --output")
        raise DataError(f"the folder {out.parent} does not exist", str(output), "create it first")


def predict(
    run_dir: str | Path, data: str, ignore_extra: bool = False, model: str = "dense", device: str = "cpu"
) -> tuple[list[str], list[list]]:
    """Predictions for every row of `data`: (header, rows). Classifiers give the label (by its
    original name) and one probability column per class; regressors give the values.
    `model`: dense, or the name of a compressed model of the run."""
    with on_device(device):  # the forward pass; the rest on the host
        run = open_model(run_dir, model)
        state = run.state
        ds = _read_like_training(run, data, need_target=False, ignore_extra=ignore_extra)
        out = to_numpy(run.net.predict(inputs_for(ds, state, run.dtype))).astype(np.float64)
    if state.task == "regression":
        out = state.unscaled_targets(out)
        header = ["prediction"] if out.shape[1] == 1 else [f"prediction_{i}" for i in range(out.shape[1])]
        rows = out.tolist()
    else:
        probs = run.head.probabilities(out)
        labels = [state.classes[i] for i in probs.argmax(axis=1)]
        header = ["prediction"] + [f"prob_{c}" for c in state.classes]
        rows = [[lab, *p] for lab, p in zip(labels, probs.tolist())]
    if ds.files is not None:  # images: which file each row is (last: column 0 stays the prediction)
        header, rows = header + ["file"], [[*r, f] for r, f in zip(rows, ds.files.tolist())]
    return header, rows


def to_csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()
