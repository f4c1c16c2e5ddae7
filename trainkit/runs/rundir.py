"""The run directory: config.yaml, metrics.csv, metrics.jsonl, checkpoint.npz, best.npz,
summary.json, and the run policy (where a run goes, when it may replace or continue an
earlier one, how often it checkpoints).

Whole files are written atomically (a temp file in the same folder, then rename), so a
crash never leaves a half-written checkpoint or summary. The metrics files get one row per
epoch, flushed as written. A lock file keeps a second process out of a directory in use.
A write that fails (disk full, read-only, a path through a file) stops the run with the
path and a hint; the last checkpoint written stays intact.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import json
import math
import os
import tempfile
import time
from pathlib import Path

from trainkit.config import dump_yaml
from trainkit.errors import TrainkitError
from trainkit.runs import checkpoint

FILES = ("config.yaml", "metrics.csv", "metrics.jsonl", "checkpoint.npz", "best.npz", "summary.json")
PATH_KEYS = (("data", "path"), ("data", "val_path"), ("data", "test_path"), ("model", "init", "from"))
PATH_KEYS += (("distill", "teacher"),)  # a teacher run dir (compress/distill.py)
LOCK = ".trainkit.lock"
# Without train.checkpoint_every, a checkpoint (with best.npz) is written when an epoch ends
# at least this long after the last one, and always at the end. Each is an fsync'd write:
# checkpoints every 50 epochs plus best.npz at each improvement made a 1,000-epoch linreg run
# do 44 of them (0.52 s against 0.06 s without a run dir here; on slow disks they turned a
# 0.14 s run into 2.2 s); it now does 4. A 2.9 MB checkpoint (a 235k-parameter MLP with Adam)
# takes 5-11 ms here: every 10 s costs a long run well under 1%, and a SIGKILL loses at most
# 10 s of work (SIGINT/SIGTERM always checkpoint).
CHECKPOINT_SECONDS = 10.0


class RunDirError(TrainkitError):
    kind = "run_dir"


_WRITE_HINTS = {
    errno.ENOSPC: "the disk is full: free some space, or choose another --output-dir",
    errno.EDQUOT: "the disk quota is used up: free some space, or choose another --output-dir",
    errno.EROFS: "the file system is read-only: choose another --output-dir",
    errno.EACCES: "the folder is not writable: check its permissions, or choose another --output-dir",
    errno.EPERM: "the folder is not writable: check its permissions, or choose another --output-dir",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another --output-dir",
    errno.EEXIST: "a part of the path is a file, not a folder: choose another --output-dir",
    errno.ENOENT: "a folder on the path does not exist: create it, or choose another --output-dir",
}


def write_error(path: Path, e: OSError, note: str | None = None) -> RunDirError:
    """An OSError from writing `path` as a user error: the path, the reason and a hint."""
    hint = _WRITE_HINTS.get(e.errno, "choose another --output-dir")
    return RunDirError(f"{path}: cannot write: {e.strerror or e}\n    help: {hint}" + (f"\n    {note}" if note else ""))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(name: str) -> str:
    return f".{name}."


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, fsync it, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name), suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a run's files are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def strict_json(obj):
    """`obj` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def json_text(obj, **kw) -> str:
    """Strict JSON text of `obj` (non-finite floats become null)."""
    try:
        return json.dumps(obj, allow_nan=False, **kw)
    except ValueError:  # a non-finite value somewhere: rare, so not searched for every time
        return json.dumps(strict_json(obj), allow_nan=False, **kw)


def portable_config(resolved: dict, base_dir: Path, run_dir: Path) -> dict:
    """The resolved config with file paths made relative to the run dir, so that
    `trainkit train RUN/config.yaml` finds the same files from any working directory, and
    output.dir absolute (it is read relative to the working directory), so a rerun of the
    saved config goes to this run dir (and is refused there, or continues it with --resume)."""
    out = json.loads(json.dumps(resolved))
    for keys in PATH_KEYS:
        node = out
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            p = Path(node[keys[-1]])
            target = p if p.is_absolute() else (base_dir / p).resolve()
            node[keys[-1]] = os.path.relpath(target, run_dir.resolve())
    if isinstance(out.get("output"), dict):
        out["output"]["dir"] = str(run_dir.resolve())
    return out


def run_dir_for(loaded, output_dir=None, resume: bool = False) -> Path | None:
    """Where a run's files go: `output_dir`, else output.dir; for resume also the folder of
    a run's own config.yaml."""
    if output_dir is not None:
        return Path(output_dir)
    if resume and (loaded.base_dir / "checkpoint.npz").exists():
        return loaded.base_dir
    if resume and not loaded.config.output.dir:
        raise RunDirError(
            f"{loaded.source}: resuming needs a run directory\n"
            "    help: pass --output-dir, or resume RUN_DIR/config.yaml"
        )
    return Path(loaded.config.output.dir) if loaded.config.output.dir else None


class RunDir:
    """One run's folder. Opening it checks and locks it; `start` (once the run is built)
    replaces an old run or continues it; `on_epoch` and `finish` write as the run goes.

    resume=True on a folder whose run was killed before its first checkpoint starts that
    run afresh (`fresh_start` is then True): there is nothing to continue, and refusing
    both ways would leave no way forward."""

    def __init__(
        self,
        path: str | Path,
        overwrite: bool = False,
        resume: bool = False,
        checkpoint_every: int | None = None,
        checkpoint_seconds: float | None = CHECKPOINT_SECONDS,
    ):
        self.path = Path(path)
        self.checkpoint_every, self.checkpoint_seconds = checkpoint_every, checkpoint_seconds
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path}: exists and is not a directory\n    help: choose another --output-dir")
        existing = [f for f in FILES if (self.path / f).exists()]
        self.fresh_start = resume and not (self.path / "checkpoint.npz").exists() and bool(existing)
        if self.fresh_start:
            resume, overwrite = False, True
        if resume and not (self.path / "checkpoint.npz").exists():
            raise RunDirError(
                f"{self.path}: no checkpoint.npz to resume from\n    help: start the run without --resume"
            )
        if existing and not (overwrite or resume):
            raise RunDirError(
                f"{self.path}: already holds a run ({', '.join(existing)}); refusing to overwrite it\n"
                f"    help: --resume to continue it, --overwrite to replace it, or another --output-dir"
            )
        self.resume, self.overwrite = resume, overwrite
        self._replace = existing if overwrite and not resume else []
        self._created = not self.path.exists()
        self._started = False
        self._csv = self._jsonl = self._writer = self._lock = None
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.path / LOCK, "a")  # "a": never truncate a file that is there
        except OSError as e:
            raise write_error(self.path, e) from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RunDirError(
                f"{self.path}: another trainkit process is writing this run directory\n"
                "    help: wait for it to finish, or choose another --output-dir"
            ) from None
        for name in FILES:  # temp files of trainkit's own writes, left by a process killed mid-write
            for stale in self.path.glob(f"{_temp_prefix(name)}{'?' * 8}.tmp"):  # mkstemp: 8 random
                with contextlib.suppress(OSError):
                    stale.unlink()
        self.config: dict | None = None
        self._best: float | None = None
        self._best_params: bytes | None = None  # best.npz not yet written
        self._last_checkpoint = time.monotonic()
        self._checkpoint_epoch: int | None = None

    @contextlib.contextmanager
    def _writing(self, name: str):
        """Turn an OSError while writing `name` into a RunDirError that names the file."""
        try:
            yield
        except OSError as e:
            note = None
            if self._checkpoint_epoch is not None:
                note = f"the checkpoint of epoch {self._checkpoint_epoch} is intact: trainkit resume {self.path}"
            raise write_error(self.path / name, e, note) from None

    def _write(self, name: str, data: bytes) -> None:
        with self._writing(name):
            atomic_write(self.path / name, data)

    def load_checkpoint(self) -> tuple[dict, dict]:
        return checkpoint.load(self.path / "checkpoint.npz")

    def start(self, resolved: dict, exp) -> None:
        """Replace the old run (--overwrite, now that the new one has built cleanly), write
        the config (also when resuming: a resume may have changed the epochs) and open the
        metrics files, rewritten from the history (on resume: up to the checkpoint)."""
        self._started = True
        self._last_checkpoint = time.monotonic()  # the interval counts from the first epoch
        if exp.trainer.history and "val_loss" in exp.trainer.history[-1]:
            finite = [r["val_loss"] for r in exp.trainer.history if math.isfinite(r["val_loss"])]
            self._best = min(finite, default=None)
        for f in self._replace:
            with self._writing(f):
                (self.path / f).unlink(missing_ok=True)
        self.config = portable_config(resolved, exp.loaded.base_dir, self.path)
        self._write("config.yaml", dump_yaml(self.config).encode())
        with self._writing("metrics.csv"):
            self._csv = open(self.path / "metrics.csv", "w", newline="")
            self._jsonl = open(self.path / "metrics.jsonl", "w")
            for row in exp.trainer.history:
                self._write_row(row)
        if self.resume:
            self._checkpoint_epoch = exp.trainer.epoch

    def _write_row(self, row: dict) -> None:
        if self._writer is None:
            self._writer = csv.DictWriter(self._csv, fieldnames=list(row))
            self._writer.writeheader()
        self._writer.writerow(row)
        self._csv.flush()
        self._jsonl.write(json_text(row) + "\n")
        self._jsonl.flush()

    def on_epoch(self, row: dict, exp) -> None:
        with self._writing("metrics.csv"):
            self._write_row(row)
        if "val_loss" in row and (self._best is None or row["val_loss"] < self._best):
            # Kept in memory and written with the next checkpoint: one fsync per improving
            # epoch dominated tiny runs.
            self._best = row["val_loss"]
            self._best_params = checkpoint.params_bytes(exp)
        epoch = row["epoch"]
        if self.checkpoint_every:
            due = epoch % self.checkpoint_every == 0
        else:
            due = (
                self.checkpoint_seconds is not None
                and time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds
            )
        if due:
            self.save_checkpoint(exp)

    def save_checkpoint(self, exp, result=None) -> None:
        """The checkpoint (and best.npz if the best epoch changed since the last one)."""
        self._write_best()
        meta = {"best_val": self._best, "config": self.config}
        if result is not None and result.status in ("completed", "early_stopped"):
            meta["result"] = {
                "status": result.status,
                "stop_reason": result.stop_reason,
                "params_epoch": result.params_epoch,
            }
        self._write("checkpoint.npz", checkpoint.checkpoint_bytes(exp, meta))
        self._checkpoint_epoch = exp.trainer.epoch
        self._last_checkpoint = time.monotonic()

    def _write_best(self) -> None:
        if self._best_params is not None:
            self._write("best.npz", self._best_params)
            self._best_params = None

    def finish(self, result, exp) -> None:
        if result.status != "diverged":  # keep the last good checkpoint, not the broken parameters
            self.save_checkpoint(exp, result)
        self._write_best()
        self._write("summary.json", json_text(result.to_dict(), indent=2).encode())
        self.close()

    def close(self) -> None:
        for f in (self._csv, self._jsonl, self._lock):
            if f and not f.closed:
                f.close()
        if self._created and not self._started:  # a run that never began leaves no folder behind
            with contextlib.suppress(OSError):
                (self.path / LOCK).unlink()
                self.path.rmdir()
