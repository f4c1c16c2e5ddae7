"""The Python API: config → components → Trainer.fit → RunResult. The CLI only renders it."""

from __future__ import annotations

import contextlib
import signal
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainkit import registry
from trainkit.backend import dtype_of
from trainkit.config import LoadedConfig, load_config
from trainkit.data.augment import build_augmentations
from trainkit.data.dataset import Dataset
from trainkit.data.pipeline import DataState, arrays_for, prepare
from trainkit.errors import ConfigError, DataError
from trainkit.losses import default_loss_name
from trainkit.nn.models import declared_out_features
from trainkit.optim.schedules import build_schedule
from trainkit.rng import stream
from trainkit.runs.trainer import RunResult, Trainer

__all__ = ["load_config", "build", "train", "Experiment"]


@dataclass
class Experiment:
    """Everything a run needs, built and checked, before the first step."""

    loaded: LoadedConfig
    trainer: Trainer
    net: Any
    data: dict[str, Dataset | None]
    arrays: dict[str, Any]  # X_train, T_train, X_val, T_val, X_test, T_test
    state: DataState
    info: dict[str, Any]

    @property
    def task(self) -> str:
        return self.state.task


def _check_task(loaded: LoadedConfig, task: str, loss_entry, n_classes: int) -> None:
    loss_task = loss_entry.build.task
    if task == "regression" and loss_task != "regression":
        raise loaded.error(
            ("loss", "name"),
            f"{loss_entry.name} is a classification loss but the task is regression",
            "use mse, mae or huber, or set data.task: binary / multiclass",
        )
    if task == "multiclass" and loss_task == "binary":
        raise loaded.error(
            ("loss", "name"),
            f"{loss_entry.name} is for two classes but the labels have {n_classes}",
            "use cross_entropy for more than two classes",
        )


def load_init(loaded: LoadedConfig, net, path_str: str) -> None:
    """Copy parameters by name from an .npz file, strictly (every name, every shape)."""
    key = ("model", "init", "from")
    path = loaded.resolve_path(path_str)
    if not path.is_file():
        raise loaded.error(key, f"init file not found: {path}", "paths are relative to the config file")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise loaded.error(key, f"cannot read {path_str} as .npz: {e}") from None
    named = {**net.params, **net.buffers}  # buffers (batch-norm statistics) load too, as in torch
    missing = [k for k in named if k not in arrays]
    extra = [k for k in arrays if k not in named]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected {', '.join(extra)}")
        raise loaded.error(
            key,
            f"{path_str} does not match the model's parameters: {'; '.join(parts)}",
            f"the model's parameters are: {', '.join(f'{k} {tuple(v.shape)}' for k, v in named.items())}",
        )
    for k, v in named.items():
        if arrays[k].shape != v.shape:
            raise loaded.error(
                key,
                f"{path_str}: {k} has shape {arrays[k].shape}, the model needs {tuple(v.shape)}",
            )
        v[...] = arrays[k]


def build(loaded: LoadedConfig) -> Experiment:
    """Resolve the config into data, model, loss, optimizer, schedule and trainer."""
    cfg = loaded.config
    seed = cfg.seed
    dtype = dtype_of(cfg.train.dtype)

    data, state = prepare(loaded)
    task = state.task
    if cfg.loss is None:
        cfg.loss = registry.get("losses", default_loss_name(task, cfg.model.name)).schema()
    loss_entry = registry.get("losses", cfg.loss.name)
    _check_task(loaded, task, loss_entry, len(state.classes or ()))
    loss = loss_entry.build(cfg.loss)
    train_ds, val_ds, test_ds = data["train"], data["val"], data["test"]
    if len(train_ds) < 1:
        raise loaded.error(("data", "val_fraction"), "no samples left for training after the split")

    n_features = len(state.feature_names)
    out_features = state.n_outputs(train_ds.y)
    declared = declared_out_features(cfg.model)
    if declared is not None and declared != out_features:
        what = {"multiclass": f"{out_features} classes", "binary": "binary labels (1 output)"}.get(
            task, f"{out_features} target column(s)"
        )
        raise loaded.error(
            ("model",),
            f"the model has {declared} outputs but the data has {what}",
            "leave the output size out and it is taken from the data",
        )
    net = _build_model(loaded, state, n_features, out_features, dtype)
    init = cfg.model.init
    if getattr(init, "from_", None) is not None:
        load_init(loaded, net, init.from_)
    else:
        net.init(init, stream(seed, "init"))
    net.set_dropout_rng(stream(seed, "dropout"))

    n_train = len(train_ds)
    if cfg.train.batch_size is None:
        cfg.train.batch_size = "full" if cfg.optimizer.name == "gd" else min(32, n_train)
    elif isinstance(cfg.train.batch_size, int) and cfg.train.batch_size > n_train:
        raise loaded.error(
            ("train", "batch_size"),
            f"batch_size {cfg.train.batch_size} is larger than the training set ({n_train} samples)",
            f"use train.batch_size: full, or at most {n_train}",
        )

    arrays: dict[str, Any] = {}
    for name, part in data.items():
        if part is not None:
            arrays[f"X_{name}"], arrays[f"T_{name}"] = arrays_for(part, state, loss, dtype)

    optimizer = registry.get("optimizers", cfg.optimizer.name).build(cfg.optimizer, net.flat, net.grad)
    schedule = build_schedule(cfg.schedule, cfg.optimizer.lr)
    trainer = Trainer(
        net, loss, optimizer, schedule, cfg.train, cfg.regularization, task, cfg.loss.name,
        stream(seed, "shuffle"), cfg.train.metrics,
        augment=build_augmentations(cfg.data.augment, state.shape), augment_rng=stream(seed, "augment"),
        n_classes=out_features if task == "multiclass" else None,
    )  # fmt: skip
    _check_monitors(loaded, trainer, val_ds is not None)
    info = {
        "task": task,
        "n_train": n_train,
        "n_val": len(val_ds) if val_ds is not None else 0,
        "n_test": len(test_ds) if test_ds is not None else 0,
        "n_features": n_features,
        "n_outputs": out_features,
        "n_params": net.n_params,
        "classes": state.classes,
        "data": train_ds.source,
    }
    return Experiment(loaded, trainer, net, data, arrays, state, info)


def _build_model(loaded: LoadedConfig, state, n_features: int, out_features: int, dtype):
    """The model for the data: models that take shapes get each sample's shape ((C, H, W), ...)."""
    from trainkit.nn.network import layer_name
    from trainkit.nn.spatial import ShapeError

    cfg = loaded.config.model
    build = registry.get("models", cfg.name).build
    shape = tuple(state.shape) if getattr(state, "shape", None) else (n_features,)
    try:
        net = build(cfg, shape if getattr(build, "takes_shape", False) else n_features, out_features, dtype)
        if net.out_features != out_features:  # e.g. a layer list that ends without a linear layer
            raise ShapeError(
                f"gives {net.out_features} outputs per sample but the data needs {out_features}; "
                "end with a linear layer (its out_features comes from the data)",
                len(net.layers) - 1,
                layer_name(net.layers[-1]),
            )
        return net
    except ShapeError as e:
        key = ("model", "layers", e.index) if cfg.name == "sequential" and e.index is not None else ("model",)
        hint = f"each sample of the data has shape {shape}"
        if cfg.name == "cnn" and len(shape) == 2:
            hint += "; for (channels, length) signals set model.dims: 1"
        raise loaded.error(key, str(e), hint) from None


def _check_monitors(loaded: LoadedConfig, trainer: Trainer, has_val: bool) -> None:
    acc = trainer._accumulator()
    keys = ["train_loss"] + [f"train_{m}" for m in acc.names]
    if has_val:
        keys += ["val_loss"] + [f"val_{m}" for m in acc.names]
    if trainer._reg_slices is not None:
        keys.append("reg_loss")
    cfg = loaded.config
    checks = []
    if cfg.train.early_stopping:
        checks.append((("train", "early_stopping", "monitor"), cfg.train.early_stopping.monitor))
    if cfg.schedule is not None and cfg.schedule.name == "reduce_on_plateau":
        checks.append((("schedule", "monitor"), cfg.schedule.monitor))
    for path, monitor in checks:
        if monitor not in keys:
            hint = (
                "there is no validation split: set data.val_fraction above 0, or monitor train_loss"
                if monitor.startswith("val_") and not has_val
                else f"this run records: {', '.join(keys)}"
            )
            raise loaded.error(path, f"{monitor!r} is not a metric of this run", hint)


@contextlib.contextmanager
def _stop_on_signals(trainer: Trainer):
    """SIGINT/SIGTERM ask the trainer to stop after the current step (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        trainer.stop_requested = signal.Signals(signum).name

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def train(
    config: LoadedConfig | str | Path,
    overrides=(),
    on_epoch: Callable[[dict], None] | None = None,
    on_start: Callable[[Experiment], None] | None = None,
    run_dir=None,
) -> RunResult:
    """Train from a config (a path or a LoadedConfig) and return the RunResult.

    `on_start(experiment)` runs once everything is built; `on_epoch(row)` after each epoch.
    `run_dir` (a trainkit.runs.rundir.RunDir) receives the files of the run."""
    t0 = time.perf_counter()
    loaded = config if isinstance(config, LoadedConfig) else load_config(config, overrides)
    exp = build(loaded)
    resolved = loaded.resolved()
    if on_start:
        on_start(exp)
    if run_dir is not None:
        run_dir.start(resolved, exp)

    def epoch_hook(row):
        if run_dir is not None:
            run_dir.on_epoch(row, exp)
        if on_epoch:
            on_epoch(row)

    a = exp.arrays
    with _stop_on_signals(exp.trainer):
        out = exp.trainer.fit(a["X_train"], a["T_train"], a.get("X_val"), a.get("T_val"), on_epoch=epoch_hook)
    tr = exp.trainer
    history = tr.history
    metrics = dict(history[-1]) if history else {}
    best_epoch = tr.early.best_epoch if tr.early else None
    if tr.early and tr.early.cfg.restore_best and best_epoch and out["status"] != "diverged":
        metrics = dict(history[best_epoch - 1])
    if "X_test" in a and out["status"] != "diverged":
        metrics.update(tr.evaluate(a["X_test"], a["T_test"], "test"))
    metrics.pop("epoch", None)
    metrics.pop("lr", None)
    times = out["epoch_times"]
    result = RunResult(
        status=out["status"],
        epochs_run=tr.epoch,
        metrics=metrics,
        params=tr.params(),
        history=history,
        timing={
            "wall_s": time.perf_counter() - t0,
            "train_s": out["train_s"],
            "epoch_s_median": statistics.median(times) if times else 0.0,
            "epoch_s": times,
        },
        stop_reason=out["stop_reason"],
        best_epoch=best_epoch,
        message=out["message"],
        info=exp.info,
        config=resolved,
    )
    if run_dir is not None:
        run_dir.finish(result, exp)
    return result


__all__ += ["ConfigError", "DataError"]
