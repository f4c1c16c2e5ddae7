"""Running a comparison's jobs: in this process, or in worker processes that stop cleanly.

Workers are spawned (not forked) with one BLAS thread each. SIGINT/SIGTERM to the parent
cancel the jobs not started and SIGTERM the workers (a training run ends after its current
step and leaves a resumable checkpoint); the parent waits for every worker before it raises
Interrupted, so nothing writes after it exits. Errors cross back intact (errors.py pickles).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

from trainkit.errors import EXIT_SIGINT, EXIT_SIGTERM, TrainkitError


class Interrupted(TrainkitError):
    """The comparison was stopped by SIGINT or SIGTERM; every worker has stopped before this
    is raised, so nothing writes into --output-dir after the parent exits."""

    kind = "interrupted"

    def __init__(self, signal_name: str):
        self.signal_name = signal_name
        self.exit_code = EXIT_SIGTERM if signal_name == "SIGTERM" else EXIT_SIGINT
        super().__init__(f"interrupted by {signal_name}; every run and worker process has stopped")

    def __reduce__(self):
        return (type(self), (self.signal_name,))


class _Stop(BaseException):
    """Raised by the signal handler in the parent (a BaseException: no `except Exception` eats it)."""

    def __init__(self, signal_name: str):
        self.signal_name = signal_name


@contextlib.contextmanager
def _signals_stop():
    """While runs are going, SIGINT/SIGTERM raise _Stop in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Stop(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group: the parent alone decides, and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _one_blas_thread():
    """One BLAS thread per worker: the workers already use every core between them."""
    saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: "1" for k in saved})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and stop what has: SIGTERM makes a training worker end
    after its current step (its run dir gets a resumable checkpoint); then wait for them all."""
    procs = list((pool._processes or {}).values())  # the executor's only handle on its workers
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
            p.join()


def run_all(
    fn: Callable[..., dict], args: list[tuple], n_workers: int, on_result: Callable[[int, dict], None] | None = None
) -> list[dict]:
    """fn(*a) for every a in `args`, in order; `on_result(i, result)` as each one finishes.
    Raises Interrupted on SIGINT/SIGTERM, once no worker is left running."""
    results: list[dict] = [{}] * len(args)

    def done(i: int, result: dict) -> None:
        if result["status"] == "interrupted":  # the run itself saw the signal
            raise _Stop("SIGTERM" if "SIGTERM" in result.get("stop_reason", "") else "SIGINT")
        results[i] = result
        if on_result:
            on_result(i, result)

    try:
        with _signals_stop():
            if n_workers <= 1 or len(args) <= 1:
                for i, a in enumerate(args):
                    done(i, fn(*a))
                return results
            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(min(n_workers, len(args)), mp_context=ctx, initializer=_worker_init)
            try:
                with _one_blas_thread():  # workers start at submit and inherit the environment
                    futures = {pool.submit(fn, *a): i for i, a in enumerate(args)}
                for f in as_completed(futures):
                    done(futures[f], f.result())
            except BaseException:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                _stop_workers(pool)
                raise
            pool.shutdown(wait=True)
            return results
    except _Stop as stop:
        raise Interrupted(stop.signal_name) from None
