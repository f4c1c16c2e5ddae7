"""The Python API: config → components → Trainer.fit → RunResult. The CLI only renders it."""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainkit import registry
from trainkit.backend import dtype_of, to_device, using
from trainkit.backend.device import DeviceError, array_module
from trainkit.backend.threads import blas_threads, resolve_threads
from trainkit.config import LoadedConfig, load_config
from trainkit.data.augment import build_augmentations
from trainkit.data.dataset import Dataset
from trainkit.data.pipeline import DataState, fit_scaling_to_model, inputs_for, prepare, targets_for
from trainkit.errors import ConfigError, DataError, npz_reason
from trainkit.losses import Head, HeadMismatch, head_for
from trainkit.nn.models import declared_out_features
from trainkit.nn.network import PARTS
from trainkit.nn.norm import ONE_VALUE_HINT, one_value_batches
from trainkit.optim.optimizers import BatchSizeError, resolve_batch_size
from trainkit.optim.schedules import build_schedule
from trainkit.optim.tensors import build_optimizer
from trainkit.rng import stream
from trainkit.runs.trainer import RunResult, Trainer
from trainkit.signals import on_stop_signals

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
    head: Head  # what the model outputs, its loss, and how outputs become predictions
    threads: int | None = None  # BLAS threads for training (None: the BLAS's own setting)
    xp: Any = np  # the array module the run computes with (train.device): numpy or cupy

    @property
    def task(self) -> str:
        return self.state.task


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
        raise loaded.error(key, f"cannot read {path_str} as .npz: {npz_reason(e)}") from None
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
        v[...] = to_device(arrays[k])


def device_module(loaded: LoadedConfig):
    """The array module of the config's train.device; ConfigError (exit 2) if unusable."""
    try:
        return array_module(loaded.config.train.device)
    except DeviceError as e:
        raise loaded.error(("train", "device"), e.reason, e.hint) from None


def build(loaded: LoadedConfig) -> Experiment:
    """Resolve the config into data, model, loss, optimizer, schedule and trainer, their
    arrays on the config's device (run the experiment inside `using(experiment.xp)`)."""
    with using(device_module(loaded)) as xp:
        exp = _build(loaded)
        exp.xp = xp
        return exp


def _build(loaded: LoadedConfig) -> Experiment:
    cfg = loaded.config
    seed = cfg.seed
    dtype = dtype_of(cfg.train.dtype)

    data, state = prepare(loaded)
    task = state.task
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
    net, head, loss = model_for(loaded, state, out_features)
    fit_scaling_to_model(state, train_ds, net.in_shape)
    init = cfg.model.init
    if getattr(init, "from_", None) is not None:
        load_init(loaded, net, init.from_)
    else:
        net.init(init, stream(seed, "init"))
    net.set_dropout_rng(stream(seed, "dropout"))

    n_train = len(train_ds)
    try:
        cfg.train.batch_size = resolve_batch_size(cfg.optimizer, cfg.train.batch_size, n_train)
    except BatchSizeError as e:
        raise loaded.error(("train", "batch_size"), e.message, e.hint) from None
    batch = n_train if cfg.train.batch_size == "full" else cfg.train.batch_size
    one_value = one_value_batches(net, n_train, batch)
    if one_value:
        raise loaded.error(("train", "batch_size"), one_value, ONE_VALUE_HINT)
    threads = resolve_threads(cfg.train.threads, net.macs_per_step(batch))

    arrays: dict[str, Any] = {}
    for name, part in data.items():
        if part is not None:
            arrays[f"X_{name}"] = inputs_for(part, state, dtype)
            targets = targets_for if name == "train" else eval_targets  # val, test: in the target's units
            arrays[f"T_{name}"] = targets(part, state, loss, dtype)

    shapes = {k: v.shape for k, v in net.params.items()}
    optimizer = build_optimizer(cfg.optimizer, net.flat, net.grad, shapes)
    schedule = build_schedule(cfg.schedule, cfg.optimizer.lr)
    trainer = Trainer(
        net, loss, optimizer, schedule, cfg.train, cfg.regularization, task, cfg.loss.name,
        stream(seed, "shuffle"), cfg.train.metrics,
        augment=build_augmentations(cfg.data.augment, state.shape, net.in_shape), augment_rng=stream(seed, "augment"),
        n_classes=out_features if task == "multiclass" else None, head=head, target_scaling=state.target_scaling,
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
        "threads": threads,
    }
    exp = Experiment(loaded, trainer, net, data, arrays, state, info, head, threads)
    if cfg.prune is not None or cfg.distill is not None:  # trainer hooks: compress/prune.py, compress/distill.py
        from trainkit.compress import distill, prune

        for block, module in ((cfg.prune, prune), (cfg.distill, distill)):
            if block is not None:
                module.attach(exp)
    return exp


def model_for(loaded: LoadedConfig, state: DataState, out_features: int):
    """(network, head, loss) for data described by `state` (features, task, classes), before
    any parameters are set. Training builds them from its data; evaluate and predict from a
    run's saved state alone, the same way. A default loss is filled into the config."""
    cfg = loaded.config
    n_features, dtype = len(state.feature_names), dtype_of(cfg.train.dtype)
    net = _build_model(loaded, state, n_features, out_features, dtype)
    try:
        head = head_for(state.task, net.outputs, cfg.loss.name if cfg.loss else None, len(state.classes or ()))
    except HeadMismatch as e:
        raise loaded.error(_head_key(loaded, e.about), e.message, e.hint) from None
    if cfg.loss is None:
        cfg.loss = registry.get("losses", head.loss).schema()
    return net, head, registry.build("losses", cfg.loss)


def eval_targets(ds: Dataset, state: DataState, loss, dtype):
    """The targets of a split that is evaluated (val, test, `trainkit evaluate`): as the loss
    expects them; scaled regression targets in their own units, float64 (runs.trainer.unscaler)."""
    if state.target_scaling is None:
        return targets_for(ds, state, loss, dtype)
    return targets_for(ds, state, loss, np.float64, scaled=False)


def _head_key(loaded: LoadedConfig, about: str) -> tuple:
    """Where a model/loss mismatch points: the loss's name, or the layer the model ends in."""
    cfg = loaded.config
    if about == "loss" and cfg.loss is not None:
        return ("loss", "name")
    if getattr(cfg.model, "output_activation", None):
        return ("model", "output_activation")
    if cfg.model.name == "sequential":
        return ("model", "layers", len(cfg.model.layers) - 1)
    return ("model", "name")


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
        in_key = cfg.name == "sequential" and e.index is not None  # the key names the layer's index
        key = ("model", "layers", e.index) if in_key else ("model",)
        hint = f"each sample of the data has shape {shape}"
        if cfg.name == "cnn" and len(shape) == 2:
            hint += "; for (channels, length) signals set model.dims: 1"
        raise loaded.error(key, e.describe(with_index=not in_key), hint) from None


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
    with on_stop_signals(lambda name: setattr(trainer, "stop_requested", name)):
        yield


def train(
    config: LoadedConfig | str | Path,
    overrides=(),
    on_epoch: Callable[[dict], None] | None = None,
    on_start: Callable[[Experiment], None] | None = None,
    run_dir=None,
    *,
    output_dir: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
) -> RunResult:
    """Train from a config (a path or a LoadedConfig) and return the RunResult.

    The run's files go to `output_dir`, else the config's output.dir (none: no files). An
    existing run there is refused unless `overwrite` (it is deleted once the new run has
    built cleanly) or `resume` (continue it from its checkpoint; a finished run is returned
    as it is, with the message "already finished, nothing to do"). `run_dir` (an open
    trainkit.runs.rundir.RunDir) overrides all three.
    `on_start(experiment)` runs once everything is built; `on_epoch(row)` after each epoch."""
    from trainkit.parallel import world
    from trainkit.runs.rundir import RunDir, run_dir_for

    t0 = time.perf_counter()
    loaded = config if isinstance(config, LoadedConfig) else load_config(config, overrides)
    own = run_dir is None
    dp = world()  # data-parallel under mpiexec: rank 0 alone writes the run directory
    if own and (dp is None or dp.rank == 0):
        where = run_dir_for(loaded, output_dir, resume)
        if where is not None:
            run_dir = RunDir(
                where,
                overwrite=overwrite or loaded.config.output.overwrite,
                resume=resume,
                checkpoint_every=loaded.config.train.checkpoint_every,
            )
    try:
        with using(device_module(loaded)):
            return _train(loaded, run_dir, on_epoch, on_start, t0)
    finally:
        if own and run_dir is not None:
            run_dir.close()


def _train(loaded: LoadedConfig, run_dir, on_epoch, on_start, t0: float) -> RunResult:
    from trainkit.parallel import world
    from trainkit.runs import checkpoint
    from trainkit.runs.rundir import portable_config

    exp = build(loaded)
    if run_dir is not None and loaded.config.distill is not None:  # before run_dir.start empties the folder
        from trainkit.compress.distill import check_not_own_run

        check_not_own_run(loaded, run_dir.path)
    resolved = loaded.resolved()
    tr = exp.trainer
    dp = world()
    if dp is not None:
        dp.attach(exp)
    stored = dp.shared_checkpoint(run_dir) if dp is not None else None
    if stored is not None or (dp is None and run_dir is not None and run_dir.resume):
        arrays, meta = stored or run_dir.load_checkpoint()
        path = run_dir.path / "checkpoint.npz" if run_dir is not None else None
        if run_dir is not None:
            checkpoint.check_matches(meta.get("config"), portable_config(resolved, loaded.base_dir, run_dir.path), path)
        checkpoint.restore(exp, arrays, meta, path)
        if _finished(tr):  # report the run as it ended, and write nothing
            checkpoint.held_params(exp, arrays)
            return _result(exp, _ended(meta, tr.epoch), resolved, t0, run_dir)
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
    # A net whose batches train as parts runs them at once on up to PARTS threads, sharing the
    # BLAS threads out among them (on 2 cores: one each).
    exp.net.lanes = min(PARTS, exp.threads or 1) if exp.net.split else 1
    blas = exp.threads // exp.net.lanes if exp.net.lanes > 1 else exp.threads
    with dp.stop_on_signals() if dp is not None else _stop_on_signals(tr), blas_threads(blas):
        out = tr.fit(a["X_train"], a["T_train"], a.get("X_val"), a.get("T_val"), on_epoch=epoch_hook)
    result = _result(exp, out, resolved, t0, run_dir)
    if run_dir is not None:
        run_dir.finish(result, exp)
    return result


def _finished(tr: Trainer) -> bool:
    """A restored run with nothing left to do: all its epochs run, or early stopping ended it."""
    if tr.partial is not None:
        return False
    return tr.epoch >= tr.cfg.epochs or bool(tr.early and tr.early.wait >= tr.early.cfg.patience)


def _ended(meta: dict, epochs: int) -> dict:
    """What fit returned when a finished run ended, from its checkpoint."""
    ended = meta.get("result")
    if not isinstance(ended, dict):  # a run that ended before checkpoints recorded how
        ended = {"status": "completed", "stop_reason": f"ran all {epochs} epochs"}
    return {
        "status": ended.get("status", "completed"),
        "stop_reason": ended.get("stop_reason", ""),
        "params_epoch": ended.get("params_epoch", epochs),
        "message": "already finished, nothing to do",
        "train_s": 0.0,
        "epoch_times": [],
    }


def _result(exp: Experiment, out: dict, resolved: dict, t0: float, run_dir) -> RunResult:
    """The RunResult of a fit: metrics are those of the epoch whose parameters the network
    holds (out["params_epoch"]), plus the test split evaluated on those parameters."""
    tr, a = exp.trainer, exp.arrays
    history = tr.history
    at = out["params_epoch"]
    metrics = dict(history[at - 1]) if at else dict(history[-1]) if history else {}
    if "X_test" in a and out["status"] != "diverged":
        metrics.update(tr.evaluate(a["X_test"], a["T_test"], "test"))
    metrics.pop("epoch", None)
    metrics.pop("lr", None)
    message = out["message"]
    if run_dir is not None and run_dir.fresh_start:
        message = "there was no checkpoint to resume from: the run started again from the beginning"
    bad = [f"{k}={v}" for k, v in metrics.items() if not math.isfinite(v)]
    if bad and out["status"] != "diverged":  # JSON writes these as null: say why
        note = f"not finite (null in JSON): {', '.join(bad)}; the model overflows on some inputs"
        message = f"{message}; {note}" if message else note
    times = out["epoch_times"]
    return RunResult(
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
        best_epoch=tr.early.best_epoch if tr.early else None,
        message=message,
        info=exp.info,
        config=resolved,
        params_epoch=at,
        run_dir=str(run_dir.path) if run_dir is not None else None,
    )


__all__ += ["ConfigError", "DataError"]
