"""The run directory: config.yaml, metrics.csv, metrics.jsonl, checkpoint.npz, best.npz,
summary.json.

Whole files are written atomically (a temp file in the same folder, then rename), so a
crash never leaves a half-written checkpoint or summary. The metrics files get one row per
epoch, flushed as written. A lock file keeps a second process out of a directory in use.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import tempfile
from pathlib import Path

from trainkit.runs import checkpoint
from trainkit.config import dump_yaml
from trainkit.errors import TrainkitError

FILES = ("config.yaml", "metrics.csv", "metrics.jsonl", "checkpoint.npz", "best.npz", "summary.json")
PATH_KEYS = (("data", "path"), ("data", "val_path"), ("data", "test_path"), ("model", "init", "from"))


class RunDirError(TrainkitError):
    kind = "run_dir"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, fsync it, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a run's files are ordinary files
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


def portable_config(resolved: dict, base_dir: Path, run_dir: Path) -> dict:
    """The resolved config with file paths made relative to the run dir, so that
    `trainkit train RUN/config.yaml` finds the same files."""
    out = json.loads(json.dumps(resolved))
    for keys in PATH_KEYS:
        node = out
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            p = Path(node[keys[-1]])
            target = p if p.is_absolute() else (base_dir / p).resolve()
            node[keys[-1]] = os.path.relpath(target, run_dir.resolve())
    return out


class RunDir:
    def __init__(
        self, path: str | Path, overwrite: bool = False, resume: bool = False, checkpoint_every: int | None = None
    ):
        self.path = Path(path)
        self.resume = resume
        self.checkpoint_every = checkpoint_every
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path}: exists and is not a directory")
        existing = [f for f in FILES if (self.path / f).exists()]
        if resume and not (self.path / "checkpoint.npz").exists():
            raise RunDirError(
                f"{self.path}: no checkpoint.npz to resume from\n    help: start the run without --resume"
            )
        if existing and not (overwrite or resume):
            raise RunDirError(
                f"{self.path}: already holds a run ({', '.join(existing)}); refusing to overwrite it\n"
                f"    help: --resume to continue it, --overwrite to replace it, or another --output-dir"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RunDirError(
                f"{self.path}: another trainkit process is writing this run directory\n"
                "    help: wait for it to finish, or choose another --output-dir"
            ) from None
        if overwrite and not resume:
            for f in existing:
                (self.path / f).unlink()
        for stale in self.path.glob(".*.tmp"):  # left by a process killed mid-write
            stale.unlink()
        self._csv = self._jsonl = self._writer = None
        self._best: float | None = None

    def start(self, resolved: dict, exp) -> None:
        """Write the config (or restore the checkpoint when resuming) and open the metrics files."""
        if self.resume:
            arrays, meta = checkpoint.load(self.path / "checkpoint.npz")
            checkpoint.restore(exp, arrays, meta)
            self._best = meta.get("best_val")
        else:
            cfg = portable_config(resolved, exp.loaded.base_dir, self.path)
            atomic_write(self.path / "config.yaml", dump_yaml(cfg).encode())
        # Rewrite the metrics files from the history (on resume: up to the checkpoint),
        # then append one row per epoch.
        self._csv = open(self.path / "metrics.csv", "w", newline="")
        self._jsonl = open(self.path / "metrics.jsonl", "w")
        for row in exp.trainer.history:
            self._write_row(row)

    def _write_row(self, row: dict) -> None:
        if self._writer is None:
            self._writer = csv.DictWriter(self._csv, fieldnames=list(row))
            self._writer.writeheader()
        self._writer.writerow(row)
        self._csv.flush()
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()

    def on_epoch(self, row: dict, exp) -> None:
        self._write_row(row)
        if "val_loss" in row and (self._best is None or row["val_loss"] < self._best):
            self._best = row["val_loss"]
            atomic_write(self.path / "best.npz", checkpoint.params_bytes(exp))
        if self.checkpoint_every and row["epoch"] % self.checkpoint_every == 0:
            self.save_checkpoint(exp)

    def save_checkpoint(self, exp) -> None:
        atomic_write(self.path / "checkpoint.npz", checkpoint.checkpoint_bytes(exp, {"best_val": self._best}))

    def finish(self, result, exp) -> None:
        if result.status != "diverged":  # keep the last good checkpoint, not the broken parameters
            self.save_checkpoint(exp)
        atomic_write(self.path / "summary.json", json.dumps(result.to_dict(), indent=2).encode())
        self.close()

    def close(self) -> None:
        for f in (self._csv, self._jsonl, self._lock):
            if f and not f.closed:
                f.close()
