"""`trainkit compress RUN`: one-shot magnitude pruning of a trained run's parameters, optional
fine-tuning with the mask fixed, optional int8 weight quantization, written as a compressed
model file into the run dir (trainkit.compress.storage) beside the untouched checkpoint.

The metrics after are those of the file as written, decoded again: exactly what
`trainkit evaluate RUN --model NAME` reports.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainkit.backend import to_device, to_numpy
from trainkit.compress import storage
from trainkit.compress.masks import magnitude_masks, prunable
from trainkit.compress.quantize import quantize_int8
from trainkit.errors import EXIT_DIVERGED, EXIT_SIGINT, EXIT_SIGTERM, ConfigError, DataError, TrainkitError
from trainkit.runs import inference
from trainkit.runs.rundir import LOCK, RunDirError, atomic_write, write_error

NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]+")


def model_path(run_dir: str | Path, name: str = "compressed") -> Path:
    """Where the compressed model `name` of a run lives: RUN/model.NAME.npz."""
    return Path(run_dir) / f"model.{name}.npz"


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Compressed:
    """What `compress` did: the file, each tensor's storage, the metrics before and after."""

    run: str
    path: str
    settings: dict
    tensors: list[dict]
    total: dict
    before: dict
    after: dict
    timing: dict

    def to_dict(self) -> dict:
        return {
            "status": "ok",
            "run": self.run,
            "file": self.path,
            "settings": self.settings,
            "tensors": self.tensors,
            "total": self.total,
            "metrics": {"before": self.before, "after": self.after},
            "timing": self.timing,
        }


def check_options(sparsity, scope: str, finetune: int, int8: bool, per_tensor: bool, name: str) -> None:
    """Every option checked before any work, each error naming its option."""
    if sparsity is not None and not 0.0 <= sparsity < 1.0:
        raise ConfigError.one(
            "--sparsity", f"must be in [0, 1), got {sparsity:g}", "the fraction of weights to prune, e.g. 0.9"
        )
    if scope not in ("global", "layer"):
        raise ConfigError.one("--scope", f"must be global or layer, got {scope!r}")
    if finetune < 0:
        raise ConfigError.one("--finetune", f"must be 0 or more epochs, got {finetune}")
    if finetune and sparsity is None:
        raise ConfigError.one("--finetune", "fine-tunes a pruned model", "add --sparsity S")
    if per_tensor and not int8:
        raise ConfigError.one("--per-tensor", "chooses int8's scales", "add --int8")
    if sparsity is None and not int8:
        raise ConfigError.one("trainkit compress", "nothing to do", "pass --sparsity S, --int8, or both")
    if not NAME_PATTERN.fullmatch(name) or name == "dense":
        raise ConfigError.one(
            "--name", f"{name!r} is not a model name", "letters, digits, - and _ (not 'dense'), e.g. --name int8"
        )


@contextlib.contextmanager
def _locked(run_dir: Path):
    """The run dir's lock, as training holds it: no compress while a run writes the folder."""
    try:
        f = open(run_dir / LOCK, "a")
    except OSError as e:
        raise write_error(run_dir, e) from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise RunDirError(
            f"{run_dir}: another trainkit process is writing this run directory\n    help: wait for it to finish"
        ) from None
    try:
        yield
    finally:
        f.close()


def compress(
    run_dir: str | Path,
    sparsity: float | None = None,
    scope: str = "global",
    finetune: int = 0,
    int8: bool = False,
    per_tensor: bool = False,
    name: str = "compressed",
    force: bool = False,
    on_epoch=None,
) -> Compressed:
    """Compress a trained run into RUN/model.NAME.npz (refused if it exists, unless `force`).
    `on_epoch(row, epochs)` after each fine-tuning epoch."""
    t0 = time.perf_counter()
    check_options(sparsity, scope, finetune, int8, per_tensor, name)
    run_dir = Path(run_dir)
    run = inference.open_run(run_dir)
    out = model_path(run_dir, name)
    if out.exists() and not force:
        raise DataError("already exists", str(out), f"pass --force to replace it, or --name another than {name!r}")
    source = checksum(run_dir / "checkpoint.npz")
    splits = inference.held_out_splits(run, "compress reports metrics before and after on the run's held-out splits")
    before = _metrics(run, splits)
    weights = prunable(run.net)
    if sparsity is not None:
        masks = magnitude_masks({k: run.net.params[k] for k in weights}, sparsity, scope)
        for k, m in masks.items():
            run.net.params[k][...] *= m
        if finetune:
            _finetune(run, masks, sparsity, scope, finetune, on_epoch)
    stored, shapes = _stored(run.net, weights if int8 else [], per_tensor)
    settings = {
        "sparsity": sparsity,
        "scope": scope if sparsity is not None else None,
        "finetune_epochs": finetune,
        "int8": "per_tensor" if per_tensor else "per_channel" if int8 else None,
        "name": name,
    }
    data = storage.to_bytes(stored, shapes, {"source": {"checkpoint": "checkpoint.npz", "sha256": source}, **settings})
    with _locked(run_dir):
        for stale in run_dir.glob(f".{out.name}.{'?' * 8}.tmp"):  # left by a compress killed mid-write
            stale.unlink(missing_ok=True)
        try:
            atomic_write(out, data)
        except OSError as e:
            raise write_error(out, e) from None
    load_compressed(run, name)
    after = _metrics(run, splits)
    rows, total = _table(run.net, stored, shapes, out.stat().st_size)
    timing = {"wall_s": time.perf_counter() - t0}
    return Compressed(str(run_dir), str(out), settings, rows, total, before, after, timing)


class FinetuneStopped(TrainkitError):
    """Fine-tuning did not finish (interrupted or diverged): nothing was written."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self):
        return (type(self), (str(self), self.exit_code))


def _finetune(run, masks: dict, sparsity: float, scope: str, epochs: int, on_epoch=None) -> None:
    """Train the one-shot-pruned network `epochs` more epochs with its mask fixed: the run's
    config (data, optimizer, schedule from its start) with a `prune:` block that computes the
    mask once, at the first step, from the pruned weights (the one-shot mask, since the pruned
    weights are the smallest) and freezes it. Nothing is written: the run dir stays as it is."""
    from trainkit import api
    from trainkit.config import load_config

    block = {"scope": scope, "sparsity": sparsity, "start_epoch": 1, "end_epoch": 1}
    label = f"--finetune {epochs}"
    overrides = [
        (f"prune={json.dumps(block)}", label),
        (f"train.epochs={epochs}", label),
        ("output.dir=null", label),  # the run's config points at the run dir: write nothing there
    ]
    loaded = load_config(run.path / "config.yaml", overrides)
    built = {}

    def start(exp) -> None:  # the trained, pruned parameters instead of a fresh init
        for k, v in {**run.net.params, **run.net.buffers}.items():
            {**exp.net.params, **exp.net.buffers}[k][...] = v
        built["exp"] = exp

    result = api.train(loaded, on_start=start, on_epoch=on_epoch and (lambda row: on_epoch(row, epochs)))
    if result.status == "interrupted":
        code = EXIT_SIGTERM if "SIGTERM" in result.stop_reason else EXIT_SIGINT
        raise FinetuneStopped(f"fine-tuning interrupted ({result.stop_reason}); nothing was written", code)
    if result.status == "diverged":
        raise FinetuneStopped(f"fine-tuning diverged ({result.stop_reason}); nothing was written", EXIT_DIVERGED)
    exp = built["exp"]
    for k, v in {**exp.net.params, **exp.net.buffers}.items():
        {**run.net.params, **run.net.buffers}[k][...] = to_numpy(v)
    moved = [k for k, m in masks.items() if np.any(to_numpy(run.net.params[k])[~m])]
    if moved:  # the mask must have stayed the one-shot mask
        raise RuntimeError(f"fine-tuning changed pruned weights of {', '.join(moved)}")


def _metrics(run, splits: dict) -> dict:
    metrics = {}
    for split, ds in splits.items():
        metrics.update(inference.metrics_of(run, ds, split))
    return metrics


def _stored(net, quantized: list[str], per_tensor: bool):
    """{name: (encoding, parts)} and {name: shape} of every parameter and buffer: the weights in
    `quantized` as int8 with their scales, integer buffers as they are, the rest float32."""
    stored, shapes = {}, {}
    for name, v in {**net.params, **net.buffers}.items():
        v = to_numpy(v)
        shapes[name] = v.shape
        scale = None
        if name in quantized:
            v, scale = quantize_int8(v, per_channel=not per_tensor)
        elif not np.issubdtype(v.dtype, np.integer):
            v = v.astype(np.float32)
        encoding, parts = storage.encode(v)
        if scale is not None:
            parts = {**parts, "scale": scale}
        stored[name] = (encoding, parts)
    return stored, shapes


def _table(net, stored: dict, shapes: dict, file_bytes: int) -> tuple[list[dict], dict]:
    """Per tensor and in total: parameters, nonzeros, sparsity, bytes dense float32, bytes as
    stored (the arrays' bytes, scales included) and the ratio of the two; the total also the
    whole file's bytes (the .npz container and meta included) and its ratio."""
    rows = []
    for name, (encoding, parts) in stored.items():
        n = int(np.prod(shapes[name]))
        nnz = int(np.count_nonzero(to_numpy({**net.params, **net.buffers}[name])))
        kept = sum(a.nbytes for a in parts.values())
        rows.append({"name": name, **_sizes(n, nnz, kept), "encoding": encoding, "dtype": str(parts["values"].dtype)})
    n = sum(r["params"] for r in rows)
    nnz = sum(r["nonzeros"] for r in rows)
    total = _sizes(n, nnz, sum(r["bytes_stored"] for r in rows))
    total.update(file_bytes=file_bytes, file_ratio=total["bytes_dense_float32"] / file_bytes)
    return rows, total


def _sizes(n: int, nnz: int, kept: int) -> dict:
    """A tensor's (or the total's) counts and bytes: dense float32 against as stored."""
    dense = 4 * n
    return {
        "params": n,
        "nonzeros": nnz,
        "sparsity": 1.0 - nnz / n if n else 0.0,
        "bytes_dense_float32": dense,
        "bytes_stored": kept,
        "ratio": dense / kept if kept else None,
    }


def load_compressed(run, name: str = "compressed") -> dict:
    """Put the decoded compressed model `name` into the run's network (int8 × scale, zeros
    where pruned); refused when the file was made from another checkpoint or another model.
    Returns the file's meta."""
    if not NAME_PATTERN.fullmatch(name):  # a name, never a path out of the run dir
        raise ConfigError.one(
            "--model", f"{name!r} is not a model name", "dense, compressed, or the --name given to compress"
        )
    path = model_path(run.path, name)
    if not path.exists():
        named = "" if name == "compressed" else f" --name {name}"
        hint = f"make it with: trainkit compress {run.path} --sparsity 0.9 --int8{named} (or either option alone)"
        raise DataError(f"the run has no compressed model {name!r}", str(path), hint)
    try:
        tensors, meta = storage.read(path)
    except DataError as e:  # a damaged file has no settings to repeat: the command with its name
        named = "" if name == "compressed" else f" --name {name}"
        hint = f"write it again: trainkit compress {run.path} --sparsity S and/or --int8{named} --force"
        raise DataError(e.message, e.path, hint) from None
    again = f"compress it again: {_remake(run.path, meta, name)}"
    source = (meta.get("source") or {}).get("sha256")
    if source != checksum(run.path / "checkpoint.npz"):
        raise DataError(
            "was made from another checkpoint than the run's (trained again since, or another run's file)",
            str(path),
            again,
        )
    named = {**run.net.params, **run.net.buffers}
    wrong = [k for k in named if k not in tensors or tensors[k].shape != named[k].shape]
    if wrong or set(tensors) - set(named):
        raise DataError(
            f"does not match the run's model ({', '.join(wrong or sorted(set(tensors) - set(named)))})",
            str(path),
            again,
        )
    for k, v in named.items():
        v[...] = to_device(tensors[k])  # host → the run's device (a no-op copy on the CPU)
    return meta


def _remake(run_dir: Path, meta: dict, name: str) -> str:
    """The `trainkit compress` command that writes model `name` again with the settings its
    file's meta records (a bare `--force` would be refused: nothing to do)."""
    args = ["trainkit", "compress", str(run_dir)]
    if isinstance(meta.get("sparsity"), (int, float)):
        args += ["--sparsity", repr(meta["sparsity"])]  # all its digits: the same mask again
        if meta.get("scope") == "layer":
            args += ["--scope", "layer"]
        if isinstance(meta.get("finetune_epochs"), int) and meta["finetune_epochs"] > 0:
            args += ["--finetune", str(meta["finetune_epochs"])]
    if meta.get("int8") in ("per_channel", "per_tensor"):
        args += ["--int8"] + (["--per-tensor"] if meta["int8"] == "per_tensor" else [])
    if name != "compressed":
        args += ["--name", name]
    return " ".join([*args, "--force"])
