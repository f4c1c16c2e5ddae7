"""The local executor: trials in worker processes with one BLAS thread each (--jobs N), or
in this process when N is 1."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from trainkit.sweep.pool import WorkerPool


class InProcess:
    """Trials one after another here; a stop takes effect between trials (a trial in flight
    stops on the signal itself, through api.train's handler)."""

    def __init__(self):
        self.stopping = False

    def run(self, fn: Callable, args: list[tuple]) -> Iterator[tuple[int, object]]:
        for i, a in enumerate(args):
            if self.stopping:
                return
            yield i, fn(*a)

    def stop(self) -> None:
        self.stopping = True


def executor(jobs: int):
    return InProcess() if jobs <= 1 else WorkerPool(jobs)
