"""Worker processes for independent runs: one BLAS thread each (the workers already use every
core between them), results handed back as each run ends, and a clean stop.

Workers ignore SIGINT while idle; while a run trains, api.train's own handler turns SIGINT or
SIGTERM into "stop after this step, checkpoint, return". A stop (Ctrl-C, or enough failures)
cancels what has not started and passes SIGINT on to the workers, so a run in flight ends
with a checkpoint. On Linux a worker is killed when its parent dies (even by SIGKILL): an
orphan could neither report its result nor read its next task (the task pipe stays open in
its sibling workers), so it would train on unseen and then hang; its run continues from its
last checkpoint on --resume. A worker that dies (killed, out of memory) breaks the whole
pool, and which run's worker it was is not known: the runs in flight then run again, alone,
one at a time, in a fresh pool; a run whose worker dies when it runs alone is a failed run,
and the others go on.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def one_blas_thread():
    """Set *_NUM_THREADS=1 for processes started inside (spawned workers read them at import)."""
    saved = {k: os.environ.get(k) for k in BLAS_VARS}
    os.environ.update({k: "1" for k in saved})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(Exception):  # Linux only: SIGKILL when the parent dies
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took hold
            os._exit(1)


class WorkerPool:
    """`run(fn, args)` yields (index, result) as runs end; `stop()` ends it early."""

    def __init__(self, workers: int):
        self.workers = workers
        self.stopping = False
        self._pool: ProcessPoolExecutor | None = None

    def run(self, fn: Callable, args: list[tuple]) -> Iterator[tuple[int, object]]:
        # Submitted one per free worker, never queued ahead: a stop then has nothing to cancel.
        todo = list(enumerate(args))
        self._pool = self._new_pool(len(args))
        running: dict[Future, int] = {}
        suspects: list[int] = []  # in flight when a worker died: rerun alone, one at a time
        alone: set[int] = set()
        try:
            while todo or running or suspects:
                if suspects and not running and not self.stopping:
                    i = suspects.pop(0)
                    alone.add(i)
                    running[self._pool.submit(fn, *args[i])] = i
                while not suspects and todo and not self.stopping and len(running) < self.workers:
                    i, a = todo.pop(0)
                    running[self._pool.submit(fn, *a)] = i
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
                    self._pool.shutdown(wait=True, cancel_futures=True)
                    self._pool = self._new_pool(len(args))
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _new_pool(self, n: int) -> ProcessPoolExecutor:
        with one_blas_thread():
            return ProcessPoolExecutor(
                max_workers=max(1, min(self.workers, n)),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
            )

    def stop(self) -> None:
        """Start nothing new; ask the runs in flight to checkpoint and end (SIGINT)."""
        self.stopping = True
        for p in list((getattr(self._pool, "_processes", None) or {}).values()):
            with contextlib.suppress(OSError):
                os.kill(p.pid, signal.SIGINT)
