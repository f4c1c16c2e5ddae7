"""Data-parallel training over MPI through mpi4py.

Every rank loads the same data and builds the same model, and draws the same global batches
(the shuffle and augmentation streams are the single process's, and dropout masks are drawn
for the whole global batch on every rank). Of a global batch of m rows, rank r of N takes the
contiguous share of rows (sizes differ by one at most) and computes the gradient of its own loss. For a mean
loss that gradient is weighted by n_r/m, so that one in-place Allreduce(SUM) of the flat
gradient buffer gives every rank
    g = Σ_r (n_r/m) · ∇(1/n_r) Σ_{i∈r} ℓ_i = ∇(1/m) Σ_i ℓ_i,
the single process's gradient; a sum loss needs no weight. Regularization, clipping and the
optimizer step then run on identical buffers, so the parameters stay identical on every rank.
Each step also all-reduces two numbers: the global batch's loss (the divergence check must
agree on every rank) and a stop flag (so that a Ctrl-C stops every rank after the same step).
Metric sums are gathered at the end of each epoch; validation runs in full on every rank.
Batch norm uses per-rank batch statistics (as torch DDP); rank 0's running statistics are
broadcast to the others at the end of each epoch.

Rank 0 alone prints and writes the run directory. A rank that fails prints a line naming
itself and aborts the whole job (MPI_Abort), so no rank waits on a dead peer.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from trainkit.errors import TrainkitError
from trainkit.parallel import LAUNCHER_ENV, launched  # noqa: F401 - launched: part of this module's API
from trainkit.signals import on_stop_signals

INSTALL = "pip install 'trainkit[mpi]'  (mpi4py, and MPICH with its mpiexec)"
AGREED_EXITS = (0, 1, 130, 143)  # outcomes every rank reaches together: finished, diverged, stopped
_STOP_CODES = {"SIGINT": 1.0, "SIGTERM": 1000.0}  # summed over ranks: ≥ 1000 means someone got SIGTERM
_EMPTY_SUMS = {"loss_sum": 0.0, "n": 0, "sums": {}}
_world = None


class MPIUnavailable(TrainkitError):
    kind = "usage"


def world() -> DataParallel | None:
    """This process's data-parallel group; None in a plain run or an MPI job of one rank."""
    global _world
    if _world is None:
        _world = False
        if launched():
            try:
                from mpi4py import MPI
            except ImportError:
                raise MPIUnavailable(f"started by an MPI launcher, but mpi4py is not installed: {INSTALL}") from None
            if MPI.COMM_WORLD.Get_size() > 1:
                _world = DataParallel(MPI.COMM_WORLD)
    return _world or None


class DataParallel:
    """One rank of a data-parallel job: its rows of each global batch, the reductions."""

    def __init__(self, comm):
        from mpi4py import MPI

        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.mean = True  # the loss averages over samples (set from the loss in attach)
        self.local_stop: str | None = None  # a signal this rank received, not yet agreed on
        self.lo = self.hi = self.m = 0  # the rows [lo, hi) computed of the current global batch of m
        self.n = 0  # how many of them are this rank's (0: a stand-in row)
        self._buf = np.zeros(2)

    def attach(self, exp) -> None:
        """Make a built experiment data-parallel: the trainer's hooks, dropout's global draws,
        one BLAS thread share per rank (train.threads: auto)."""
        tr = exp.trainer
        if getattr(tr.opt, "needs_closure", False):
            raise exp.loaded.error(
                ("optimizer", "name"),
                "data-parallel training (mpiexec, --workers) takes optimizers that use one gradient per step: "
                f"{exp.loaded.config.optimizer.name} re-evaluates the loss and gradient inside its step "
                "(its iterations and line search), and those re-evaluations are not all-reduced across ranks",
                "train it in one process (without mpiexec or --workers), or on N ranks with --set optimizer.name=adam",
            )
        if exp.loaded.config.train.device != "cpu":
            raise exp.loaded.error(
                ("train", "device"),
                "data-parallel training all-reduces host buffers: it runs on the CPU only "
                "(GPU ranks would need a CUDA-aware MPI, not supported yet)",
                "set train.device: cpu, or train on one GPU without mpiexec",
            )
        tr.dp, self.mean = self, not tr.loss.sum
        draws: dict[int, GlobalDraws] = {}  # layers sharing one generator share one wrapper
        for layer in exp.net.layers:
            rng = getattr(layer, "rng", None)
            if rng is not None:
                layer.rng = draws.setdefault(id(rng), GlobalDraws(rng, self))
        if exp.loaded.config.train.sync_batch_norm:
            from trainkit.nn.norm import _BatchNorm
            from trainkit.parallel.sync_bn import synchronize

            for layer in exp.net.layers:
                if isinstance(layer, _BatchNorm):
                    synchronize(layer, self)
        if exp.loaded.config.train.threads == "auto":
            share = max(1, (os.cpu_count() or 1) // self.size)
            exp.threads = share if exp.threads is None else min(exp.threads, share)
            exp.info["threads"] = exp.threads
        exp.info["workers"] = self.size

    # ------------------------------------------------------------------ per step

    def local(self, xb, tb):
        """This rank's rows of the global batch (xb, tb)."""
        m = self.m = len(xb)
        lo, hi = rank_rows(self.rank, self.size, m)
        self.n = hi - lo
        if not self.n:  # fewer rows than ranks: compute on a stand-in row (every layer, dropout's
            lo, hi = m - 1, m  # draws included, runs as on the other ranks), its gradient dropped
        self.lo, self.hi = lo, hi
        return xb[lo:hi], tb[lo:hi]

    def batch_loss(self, value: float, n: int, trainer) -> float:
        """The global batch's loss from this rank's `value` over its n rows; agrees on a stop
        request too (one Allreduce of two numbers)."""
        buf = self._buf
        buf[0] = (value * n if self.mean else value) if n else 0.0
        buf[1] = _STOP_CODES.get(self.local_stop, 0.0)
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        if buf[1] and trainer.stop_requested is None:
            trainer.stop_requested = "SIGTERM" if buf[1] >= 1000 else "SIGINT"
        return float(buf[0]) / self.m if self.mean else float(buf[0])

    def allreduce_grad(self, grad, n: int) -> None:
        """grad ← Σ_r w_r·grad_r in place, w_r = n_r/m for a mean loss (1 for a sum; 0 for a stand-in row)."""
        if not n:
            grad.fill(0.0)
        elif self.mean and n != self.m:
            grad *= n / self.m
        self.comm.Allreduce(self.MPI.IN_PLACE, grad, op=self.MPI.SUM)

    def weight(self) -> float:
        """ρ = n_r/m: this rank's share of the global batch's loss (1 for a sum loss, 0 for a stand-in row)."""
        if not self.n:
            return 0.0
        return self.n / self.m if self.mean else 1.0

    def allreduce(self, buf) -> None:
        """buf ← Σ over ranks, in place (float64 buffers: sync batch norm's sums)."""
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)

    # ------------------------------------------------------------------ per epoch

    def end_epoch(self, acc, net) -> None:
        """Every rank's metric sums merged into `acc` (the single process's sums), and rank 0's
        buffers (batch norm's running statistics) on every rank."""
        acc.load_state_dict(merge_sums(self.comm.allgather(acc.state_dict())))
        for arr in net.buffers.values():
            arr[...] = self.comm.bcast(arr if self.rank == 0 else None, root=0)

    def keep_on_root(self, acc) -> None:
        """Restored mid-epoch sums are the whole job's: rank 0 keeps them, the others start at 0."""
        if self.rank:
            acc.load_state_dict(_EMPTY_SUMS)

    def shared_checkpoint(self, run_dir) -> tuple[dict, dict] | None:
        """Rank 0 reads the checkpoint to resume from (if any); every rank gets it."""
        ck = run_dir.load_checkpoint() if run_dir is not None and run_dir.resume else None
        return self.comm.bcast(ck, root=0)

    @contextlib.contextmanager
    def stop_on_signals(self):
        """SIGINT/SIGTERM mark a local stop request; the next step's reduction makes every rank
        stop after the same step."""

        with on_stop_signals(lambda name: setattr(self, "local_stop", name)):
            yield

    # ------------------------------------------------------------------ output and faults

    def quiet(self) -> _Tail:
        """A follower rank prints nothing: stdout to /dev/null, stderr kept (its last lines)
        for the message that names the rank if it fails."""
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
        tail = _Tail()
        sys.stderr = tail
        return tail

    def abort(self, code: int, tail: _Tail | None) -> None:
        """Take the whole job down with `code`, after a line naming this rank."""
        if self.rank:  # a failure every rank shares (a config error) is reported once, by rank 0
            time.sleep(0.5)
        lines = [f"trainkit: rank {self.rank} of {self.size} failed (exit code {code}); stopping every rank"]
        if tail is not None and tail.text().strip():
            lines += [f"  rank {self.rank}: {line}" for line in tail.text().strip().splitlines()[-12:]]
        print("\n".join(lines), file=sys.__stderr__, flush=True)
        time.sleep(0.2)  # mpiexec forwards stderr through a pipe: on a busy machine the abort lost the line
        self.comm.Abort(code or 1)


def rank_rows(rank: int, size: int, m: int) -> tuple[int, int]:
    """Rank r's contiguous rows of a batch of m = q·N + e: the first e ranks take q + 1 rows, the
    others q, in rank order (a batch of fewer rows than ranks leaves the last ranks empty)."""
    q, e = divmod(m, size)
    lo = rank * q + min(rank, e)
    return lo, lo + q + (rank < e)


class GlobalDraws:
    """A dropout layer's generator in a data-parallel run: it draws the mask of the whole
    global batch and returns this rank's rows, so masks and the stream after them are the
    single process's. Everything else (bit_generator, for checkpoints) is the generator's."""

    def __init__(self, rng, dp: DataParallel):
        self._rng, self._dp = rng, dp

    def random(self, size):
        dp = self._dp
        return self._rng.random((dp.m, *size[1:]))[dp.lo : dp.hi]

    def __getattr__(self, name):
        return getattr(self._rng, name)


class _Tail(io.TextIOBase):
    """A text stream that keeps only its last ~8000 characters."""

    def __init__(self, limit: int = 8000):
        self._parts: collections.deque[str] = collections.deque()
        self._size, self._limit = 0, limit

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self._parts.append(s)
        self._size += len(s)
        while self._size > self._limit and len(self._parts) > 1:
            self._size -= len(self._parts.popleft())
        return len(s)

    def text(self) -> str:
        return "".join(self._parts)


def merge_sums(states: list[dict]) -> dict:
    """MetricAccumulator states of every rank as one: sums add (per output for lists)."""
    out = {"loss_sum": 0.0, "n": 0, "sums": {}}
    for s in states:
        out["loss_sum"] += s["loss_sum"]
        out["n"] += s["n"]
        for k, v in s["sums"].items():
            have = out["sums"].get(k)
            if k == "outputs" or have is None:  # `outputs` is a count of columns, not a sum
                out["sums"][k] = v
            else:
                out["sums"][k] = np.add(have, v).tolist() if isinstance(v, list) else have + v
    return out


def run_cli(main) -> None:
    """Run the CLI in this process; in a data-parallel job, with the rank-0 output policy and
    a job-wide abort on any failure that not every rank reaches together."""
    if not launched():
        return main()
    try:
        dp = world()
    except MPIUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if dp is None:
        return main()
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if command not in ("train", "resume"):
        if dp.rank == 0:
            print(f"error: only train and resume run data-parallel under MPI, not {command}", file=sys.stderr)
        sys.exit(2)
    tail = dp.quiet() if dp.rank else None
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - a crash on one rank must take every rank down
        import traceback

        traceback.print_exc()
        code = 1
        dp.abort(code, tail)
    if code not in AGREED_EXITS:
        dp.abort(code, tail)
    sys.exit(code)


def mpiexec() -> str | None:
    """$TRAINKIT_MPIEXEC if set (a machine with several MPIs), else the mpiexec next to this
    Python (the mpich wheel puts it there), else the one on PATH."""
    if os.environ.get("TRAINKIT_MPIEXEC"):
        return os.environ["TRAINKIT_MPIEXEC"]
    near = Path(sys.executable).parent / "mpiexec"
    return str(near) if near.is_file() else shutil.which("mpiexec")


def launch(workers: int, args: list[str]) -> int:
    """`mpiexec -n workers python -m trainkit ARGS`; its exit code. Ctrl-C is passed on once:
    mpiexec runs in a session of its own, and this process forwards SIGINT/SIGTERM to it."""
    exe = mpiexec()
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        exe = None
    if exe is None:
        raise MPIUnavailable(f"--workers needs MPI (mpi4py and an mpiexec): {INSTALL}")
    cmd = [exe, "-n", str(workers), sys.executable, "-m", "trainkit", *args]
    proc = subprocess.Popen(cmd, start_new_session=True)

    with on_stop_signals(lambda name: proc.send_signal(signal.Signals[name])):
        rc = proc.wait()
    return 128 - rc if rc < 0 else rc
