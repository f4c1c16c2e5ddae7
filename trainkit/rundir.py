"""The run directory: config.yaml, metrics.csv, metrics.jsonl, checkpoint.npz, summary.json.

Whole files are written atomically (a temp file in the same folder, then rename), so a
crash never leaves a half-written checkpoint or summary. The metrics files are appended
one row per epoch and flushed as written.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from trainkit.backend import to_numpy
from trainkit.config import dump_yaml
from trainkit.errors import TrainkitError

FILES = ("config.yaml", "metrics.csv", "metrics.jsonl", "checkpoint.npz", "summary.json")


class RunDirError(TrainkitError):
    kind = "run_dir"


def atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def checkpoint_bytes(exp, epoch: int) -> bytes:
    """Parameters, optimizer/schedule/early-stopping state and RNG states, as .npz bytes."""
    tr = exp.trainer
    arrays = {f"param/{k}": to_numpy(v) for k, v in exp.net.params.items()}
    meta = {
        "epoch": epoch,
        "optimizer": {},
        "schedule": tr.schedule.state_dict(),
        "early_stopping": tr.early.state_dict() if tr.early else None,
        "rng": {"shuffle": tr.rng.bit_generator.state},
    }
    for k, v in tr.opt.state_dict().items():
        if isinstance(v, np.ndarray):
            arrays[f"optim/{k}"] = to_numpy(v)
        else:
            meta["optimizer"][k] = v
    drop = [layer.rng for layer in exp.net.layers if getattr(layer, "rng", None) is not None]
    if drop:
        meta["rng"]["dropout"] = drop[0].bit_generator.state
    arrays["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


class RunDir:
    def __init__(self, path: str | Path, overwrite: bool = False, checkpoint_every: int | None = None):
        self.path = Path(path)
        self.checkpoint_every = checkpoint_every
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path}: exists and is not a directory")
        existing = [f for f in FILES if (self.path / f).exists()]
        if existing and not overwrite:
            raise RunDirError(
                f"{self.path}: already holds a run ({', '.join(existing)}); refusing to overwrite it\n"
                "    help: pass --overwrite to replace it, or choose another --output-dir"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        for f in existing:
            (self.path / f).unlink()
        self._csv = self._jsonl = None
        self._columns: list[str] | None = None

    def start(self, resolved: dict, exp) -> None:
        atomic_write(self.path / "config.yaml", dump_yaml(resolved).encode())
        self._csv = open(self.path / "metrics.csv", "w", newline="")
        self._jsonl = open(self.path / "metrics.jsonl", "w")

    def on_epoch(self, row: dict, exp) -> None:
        if self._columns is None:
            self._columns = list(row)
            self._writer = csv.DictWriter(self._csv, fieldnames=self._columns)
            self._writer.writeheader()
        self._writer.writerow(row)
        self._csv.flush()
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        if self.checkpoint_every and row["epoch"] % self.checkpoint_every == 0:
            atomic_write(self.path / "checkpoint.npz", checkpoint_bytes(exp, row["epoch"]))

    def finish(self, result, exp) -> None:
        if result.status != "diverged":  # keep the last good checkpoint, not the broken parameters
            atomic_write(self.path / "checkpoint.npz", checkpoint_bytes(exp, result.epochs_run))
        atomic_write(self.path / "summary.json", json.dumps(result.to_dict(), indent=2).encode())
        for f in (self._csv, self._jsonl):
            if f:
                f.close()
