"""The Ray executor: the same trials as Ray tasks on an existing cluster (`--address auto`,
HOST:PORT, or RAY_ADDRESS), one CPU and one BLAS thread each; results and run dirs land in
the same layout as the local executor's, so the sweep dir must be on a file system every
node sees (the run dirs are written by the nodes; paths are absolute). The nodes need
trainkit importable: installed there, or (one machine, a checkout) found through the
PYTHONPATH this executor passes on.

A stop (Ctrl-C, max_failures) submits nothing more; trials in flight run to their end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from trainkit.backend.pool import BLAS_VARS
from trainkit.errors import TrainkitError


class RayError(TrainkitError):
    kind = "ray"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayError(
            "the ray executor needs Ray\n    help: pip install 'trainkit[ray]', or use --executor local"
        ) from None
    return ray


class RayExecutor:
    def __init__(self, address: str | None = None):
        self.address = address or os.environ.get("RAY_ADDRESS")
        self.stopping = False
        if not self.address:
            raise RayError(
                "the ray executor runs on an existing cluster: no address given\n"
                "    help: --address auto (a cluster on this machine), --address HOST:PORT, or set RAY_ADDRESS"
            )

    def run(self, fn: Callable, args: list[tuple]) -> Iterator[tuple[int, object]]:
        ray = _import_ray()
        here = str(Path(__file__).resolve().parents[2])
        env = {k: "1" for k in BLAS_VARS}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
        own = not ray.is_initialized()
        if own:
            try:
                ray.init(
                    address=self.address, runtime_env={"env_vars": env}, log_to_driver=False, logging_level="ERROR"
                )
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise RayError(
                    f"cannot reach a Ray cluster at {self.address}: {e}\n"
                    "    help: start one (ray start --head), or pass its address with --address"
                ) from None
        try:
            remote = ray.remote(num_cpus=1, max_retries=0)(fn)
            slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
            todo = list(enumerate(args))
            running: dict = {}
            while todo or running:
                while todo and not self.stopping and len(running) < slots:
                    i, a = todo.pop(0)
                    running[remote.remote(*a)] = i
                if not running:
                    break
                done, _ = ray.wait(list(running), num_returns=1, timeout=0.2)
                for ref in done:
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as e:  # the task's worker or node died
                        result = {"status": "failed", "error": f"Ray task failed: {type(e).__name__}", "seconds": 0.0}
                    yield running.pop(ref), result
        finally:
            if own:
                ray.shutdown()

    def start(self) -> None:
        pass  # ray.init happens in run: the cluster's workers are started already

    def close(self) -> None:
        pass

    def stop(self) -> None:
        self.stopping = True
