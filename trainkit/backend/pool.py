"""Independent runs in worker processes (sweep --jobs, compare-optimizers --jobs) or in this
process (--jobs 1): results handed back as each run ends, and a clean stop.

Each worker has one BLAS thread: the workers already use every core between them, and a
BLAS pool per worker would put jobs × cores threads on the cores (on 2 cores, 2 workers with
OpenBLAS's default 2 threads each ran every trial about 2× slower than alone). The worker
sets OPENBLAS/OMP/MKL_NUM_THREADS=1 itself, before it loads numpy: the BLAS reads them once,
at load, and threads.resolve_threads caps `train.threads` by them.

Workers ignore SIGINT while idle; while a run trains, api.train's own handler turns SIGINT or
SIGTERM into "stop after this step, checkpoint, return". A stop (a signal to the parent, or
enough failures) starts nothing new and passes SIGINT on to the workers, so a run in flight
ends with a checkpoint; the pool waits for every worker before it returns, so nothing writes
after the parent exits. On Linux a worker is killed when its parent dies (even by SIGKILL):
an orphan could neither report its result nor read its next task (the task pipe stays open
in its sibling workers), so it would train on unseen and then hang; its run continues from
its last checkpoint on --resume. A worker that dies (killed, out of memory) breaks the whole
pool, and which run's worker it was is not known: the runs in flight then run again, alone,
one at a time, in a fresh pool; a run whose worker dies when it runs alone is a failed run,
and the others go on. Errors raised by a run cross back intact (errors.py pickles).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from trainkit.backend.threads import _ENV as BLAS_VARS
from trainkit.errors import EXIT_SIGINT, EXIT_SIGTERM, TrainkitError
from trainkit.signals import on_stop_signals


class Interrupted(TrainkitError):
    """Stopped by SIGINT or SIGTERM; every worker has stopped before this is raised, so
    nothing writes into the output dir after the parent exits."""

    kind = "interrupted"

    def __init__(self, signal_name: str):
        self.signal_name = signal_name
        self.exit_code = EXIT_SIGTERM if signal_name == "SIGTERM" else EXIT_SIGINT
        super().__init__(f"interrupted by {signal_name}; every run and worker process has stopped")

    def __reduce__(self):
        return (type(self), (self.signal_name,))


def _worker_init() -> None:
    os.environ.update({k: "1" for k in BLAS_VARS})
    if "numpy" in sys.modules:  # loaded before this ran (a __main__ that imports it): too late for the env
        with contextlib.suppress(ImportError):
            from threadpoolctl import threadpool_limits

            threadpool_limits(1, user_api="blas")
    # Ctrl-C reaches the whole process group: the parent alone decides, and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(Exception):  # Linux only: SIGKILL when the parent dies
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took hold
            os._exit(1)


class InProcess:
    """Runs one after another here; a stop takes effect between runs (a run in flight stops on
    the signal itself, through api.train's handler)."""

    workers = 1

    def __init__(self):
        self.stopping = False

    def run(self, fn: Callable, args: list[tuple]) -> Iterator[tuple[int, object]]:
        for i, a in enumerate(args):
            if self.stopping:
                return
            yield i, fn(*a)

    def stop(self) -> None:
        self.stopping = True

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


def _warm() -> None:
    """What every run imports first (numpy, the engine, the config schemas): done while the
    parent still plans, instead of in the first run."""
    import trainkit.api  # noqa: F401


class WorkerPool:
    """`run(fn, args)` yields (index, result) as runs end; `stop()` ends it early. The worker
    processes are started once (`start()`, or the first run) and serve every `run` until
    `close()`: a sweep's rungs and TPE batches do not spawn and import again each time."""

    def __init__(self, workers: int):
        self.workers = workers
        self.stopping = False
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Spawn the workers now and have them import what a run needs, without waiting."""
        if self._pool is None:
            self._pool = self._new_pool()
            for _ in range(self.workers):  # one task each: the executor spawns a worker per task
                self._pool.submit(_warm)

    def close(self) -> None:
        """Wait for the workers to end (after a stop: for their runs to checkpoint)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def run(self, fn: Callable, args: list[tuple]) -> Iterator[tuple[int, object]]:
        # Submitted one per free worker, never queued ahead: a stop then has nothing to cancel.
        todo = list(enumerate(args))
        self.start()
        running: dict[Future, int] = {}
        suspects: list[int] = []  # in flight when a worker died: rerun alone, one at a time
        alone: set[int] = set()
        try:
            while todo or running or suspects:
                if suspects and not running and not self.stopping:
                    i = suspects.pop(0)
                    alone.add(i)
                    running[self._submit(fn, args[i])] = i
                while not suspects and todo and not self.stopping and len(running) < self.workers:
                    i, a = todo.pop(0)
                    running[self._submit(fn, a)] = i
                if not running:
                    break
                done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                broken = False
                for f in sorted(done, key=running.get):
                    i = running.pop(f)
                    try:
                        result = f.result()
                    except BrokenProcessPool:
                        broken = True
                        if i not in alone:
                            suspects.append(i)
                            continue
                        result = {
                            "status": "failed",
                            "error": "its worker process died (killed? out of memory?)",
                            "seconds": 0.0,
                        }
                    yield i, result
                if broken:  # the pool is unusable: what was in flight is suspect too
                    suspects += sorted(running.values())
                    running = {}
                    self._renew()
        except BaseException:  # a run's error, or the caller stopped reading: end the others soon
            self.stop()
            self.close()
            raise

    def _submit(self, fn: Callable, a: tuple) -> Future:
        try:
            return self._pool.submit(fn, *a)
        except BrokenProcessPool:  # a worker died while idle (or warming up): no run was lost
            self._renew()
            return self._pool.submit(fn, *a)

    def _renew(self) -> None:
        """A fresh pool for a broken one. Its workers are killed, not waited for: the executor
        may have spawned one as it broke, which it then neither stops nor sends its end to
        (a shutdown would wait on it for ever)."""
        for p in list((self._pool._processes or {}).values()):
            if p.is_alive():
                p.kill()
        self.close()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the parent may hold threads (BLAS, rich's live display) and locks
        return ProcessPoolExecutor(
            max_workers=max(1, self.workers),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
        )

    def stop(self) -> None:
        """Start nothing new; ask the runs in flight to checkpoint and end (SIGINT)."""
        self.stopping = True
        for p in list((getattr(self._pool, "_processes", None) or {}).values()):
            with contextlib.suppress(OSError):
                os.kill(p.pid, signal.SIGINT)


def executor(jobs: int) -> InProcess | WorkerPool:
    return InProcess() if jobs <= 1 else WorkerPool(jobs)


@contextlib.contextmanager
def stop_on_signals(executor, state: dict):
    """While runs go on, SIGINT/SIGTERM to this process set state["signal"] and stop the
    executor: it starts nothing new, and the runs in flight checkpoint and end."""

    def stop(name: str) -> None:
        state.setdefault("signal", name)
        executor.stop()

    with on_stop_signals(stop):
        yield


def run_all(
    fn: Callable[..., dict], args: list[tuple], n_workers: int, on_result: Callable[[int, dict], None] | None = None
) -> list[dict]:
    """fn(*a) for every a in `args`, results in order; `on_result(i, result)` as each one ends.
    A result with status "interrupted" (the run saw the signal itself) or a signal to this
    process stops the rest; then Interrupted is raised, once no worker is left running."""
    results: list[dict] = [{}] * len(args)
    ex = executor(min(n_workers, len(args)))
    state: dict = {}
    with stop_on_signals(ex, state), contextlib.closing(ex):
        for i, result in ex.run(fn, args):
            if result["status"] == "interrupted":
                state.setdefault("signal", "SIGTERM" if "SIGTERM" in (result.get("stop_reason") or "") else "SIGINT")
                ex.stop()
                continue
            results[i] = result
            if on_result:
                on_result(i, result)
    if "signal" in state:
        raise Interrupted(state["signal"])
    return results
