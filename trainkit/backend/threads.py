"""BLAS threads, chosen by the size of the problem.

A BLAS thread pool pays off only when each step has enough multiply-adds to split between
cores; below that its threads spin and wait, and on a busy machine they wait for cores that
others hold (a 128×128 MLP on 2 shared cores: 9.9 s with OpenBLAS's default threads, 0.32 s
with one). `train.threads: auto` gives one thread per PER_THREAD multiply-adds of a training
step, at most one per core. Neither auto nor a number goes above OPENBLAS/OMP/MKL_NUM_THREADS,
so compare-optimizers' workers, started with those set to 1, keep one thread each.

threadpoolctl sets the pool at run time; without it the BLAS keeps its own setting.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading

import numpy as np

# Multiply-adds per step worth one more thread: about a millisecond of one core's GEMM, far
# above the tens of microseconds a pool needs to wake and join its threads.
PER_THREAD = 2**23
# Below this a step's products are so small that BLAS libraries run them on one thread by
# themselves (OpenBLAS: m·n·k ≤ 2^18): leave the pool alone, and threadpoolctl unloaded.
TINY = 3 * 2**18
_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def env_cap() -> int | None:
    """The smallest thread count the environment asks the BLAS for, if any."""
    caps = []
    for k in _ENV:
        try:
            caps.append(int(os.environ[k]))
        except (KeyError, ValueError):
            pass
    return max(1, min(caps)) if caps else None


def auto_threads(macs_per_step: int) -> int | None:
    """One thread per PER_THREAD multiply-adds a step, between 1 and the cores (and the env
    cap); None (unchanged) for a tiny step."""
    if macs_per_step < TINY:
        return None
    n = max(1, min(macs_per_step // PER_THREAD, cores()))
    cap = env_cap()
    return n if cap is None else min(n, cap)


def resolve_threads(setting, macs_per_step: int) -> int | None:
    """`train.threads`: `auto` from the step's work (None: unchanged), or a number, which the
    environment's *_NUM_THREADS caps too: it is how a parent (compare's worker pool) that
    already runs one process per core says so."""
    if setting == "auto":
        return auto_threads(macs_per_step)
    cap = env_cap()
    return int(setting) if cap is None else min(int(setting), cap)


@functools.cache
def _controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()  # inspects the loaded libraries once per process


def blas_threads(n: int | None):
    """A context in which the BLAS uses `n` threads (None, or no threadpoolctl: unchanged)."""
    ctl = _controller() if n is not None else None
    if ctl is None:
        return contextlib.nullcontext()
    return ctl.limit(limits=n, user_api="blas")


def current_blas_threads() -> int | None:
    """The BLAS pool's size now (None without threadpoolctl or a BLAS it knows)."""
    ctl = _controller()
    if ctl is None:
        return None
    sizes = [lib.num_threads for lib in ctl.select(user_api="blas").lib_controllers]
    return max(sizes) if sizes else None


class Lanes:
    """n − 1 persistent threads that, with the caller's, run up to n callables at once.

    numpy's array loops and BLAS calls release the GIL, so callables that spend their time
    in them (a layer stack on part of a batch) run on n cores. Waking a thread costs tens of
    microseconds: only work of milliseconds is worth a lane. Each call's results carry a
    token, so a call interrupted while a lane still worked (Ctrl-C) cannot be mistaken for
    the next call's. A lane runs its task under the caller's numpy error state (np.errstate
    is per thread: the trainer's `all="ignore"` would not reach it otherwise)."""

    def __init__(self, n: int):
        self.n, self.pid, self._token = n, os.getpid(), 0
        self._lanes = []
        for _ in range(n - 1):
            jobs, done = queue.SimpleQueue(), queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(jobs, done), daemon=True, name="trainkit-lane").start()
            self._lanes.append((jobs, done))

    @staticmethod
    def _serve(jobs, done):
        while True:
            token, fn, err = jobs.get()
            try:
                with np.errstate(**err):
                    fn()
                done.put((token, None))
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                done.put((token, e))

    def run(self, tasks) -> None:
        """Call every task, n at a time (the caller's thread runs the first of each n). Returns
        when all have ended, raising the first error any of them raised."""
        if self.n == 1 or len(tasks) == 1:
            for fn in tasks:
                fn()
            return
        if len(tasks) > self.n:  # more tasks than lanes: in rounds
            for i in range(0, len(tasks), self.n):
                self.run(tasks[i : i + self.n])
            return
        self._token += 1
        used, err = self._lanes[: len(tasks) - 1], np.geterr()
        for (jobs, _), fn in zip(used, tasks[1:]):
            jobs.put((self._token, fn, err))
        errors = []
        try:
            tasks[0]()
        except BaseException as e:  # noqa: BLE001 - the lanes are still waited for
            errors.append(e)
        for _, done in used:
            while True:
                token, error = done.get()
                if token == self._token:
                    break
            if error is not None:
                errors.append(error)
        if errors:
            raise errors[0]


_lanes: dict[int, Lanes] = {}


def lanes(n: int) -> Lanes:
    """This process's lanes for n callables at once (new ones after a fork: threads do not
    survive it)."""
    have = _lanes.get(n)
    if have is None or have.pid != os.getpid():
        have = _lanes[n] = Lanes(n)
    return have
