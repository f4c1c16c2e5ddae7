"""backend/pool.py, the worker processes behind sweep --jobs and compare-optimizers --jobs:
one BLAS thread per worker, runs that really overlap, a dead worker failing only its run,
results in order, and a run's own stop becoming Interrupted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from trainkit.backend import pool
from trainkit.backend.pool import BLAS_VARS, Interrupted, WorkerPool


def _meet(folder: str, i: int) -> dict:
    """Say we started, wait (at most 60 s) for the other run to start too, report what we had."""
    from trainkit.backend.threads import current_blas_threads, env_cap

    Path(folder, f"{i}.started").touch()
    deadline = time.monotonic() + 60
    while len(list(Path(folder).glob("*.started"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return {
        "status": "completed",
        "pid": os.getpid(),
        "met": len(list(Path(folder).glob("*.started"))) == 2,
        "env": {k: os.environ.get(k) for k in BLAS_VARS},
        "blas_threads": current_blas_threads(),
        "cap": env_cap(),
    }


def test_two_workers_run_at_once_each_on_one_blas_thread_and_the_parent_env_is_untouched(tmp_path):
    before = dict(os.environ)
    with WorkerPool(2) as workers:
        got = dict(workers.run(_meet, [(str(tmp_path), 0), (str(tmp_path), 1)]))
    assert os.environ == before
    assert got[0]["pid"] != got[1]["pid"] and got[0]["met"] and got[1]["met"]  # both in flight together
    for r in got.values():
        # with the BLAS default a 2-core machine ran 2 workers × 2 threads: every trial ~2× slower
        assert r["env"] == dict.fromkeys(BLAS_VARS, "1") and r["cap"] == 1
        assert r["blas_threads"] in (None, 1)  # None: no threadpoolctl to ask


def test_a_worker_whose_numpy_was_loaded_before_it_started_still_gets_one_blas_thread():
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARS}
    code = (
        "import numpy\n"
        "from trainkit.backend.pool import _worker_init\n"
        "from trainkit.backend.threads import current_blas_threads\n"
        "_worker_init()\n"
        "print(current_blas_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() in ("1", "None")


def _pid(i: int) -> dict:
    return {"status": "completed", "pid": os.getpid()}


def test_the_workers_are_started_once_and_serve_every_run_until_closed():
    # a sweep's ASHA rungs and TPE batches are runs of their own: spawning and importing
    # again for each cost about half a second every time
    with WorkerPool(2) as workers:
        first = {r["pid"] for _, r in workers.run(_pid, [(i,) for i in range(4)])}
        second = {r["pid"] for _, r in workers.run(_pid, [(i,) for i in range(4)])}
        procs = list(workers._pool._processes.values())
    assert second <= first and os.getpid() not in first
    assert not [p for p in procs if p.is_alive()]  # closed: every worker has ended


def _dies_on_2(i: int) -> dict:
    if i == 2:
        os._exit(9)  # as a worker killed by the OOM killer
    return {"status": "completed", "i": i}


def test_a_dead_worker_fails_its_run_and_the_pool_goes_on():
    with WorkerPool(2) as workers:
        got = dict(workers.run(_dies_on_2, [(i,) for i in range(6)]))
    assert sorted(got) == list(range(6))
    assert got[2]["status"] == "failed" and "worker process died" in got[2]["error"]
    assert all(got[i] == {"status": "completed", "i": i} for i in (0, 1, 3, 4, 5))


def _square(i: int) -> dict:
    return {"status": "completed", "i": i * i}


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_all_returns_results_in_order_and_reports_each_as_it_ends(jobs):
    seen = []
    got = pool.run_all(_square, [(i,) for i in range(5)], jobs, lambda i, r: seen.append(i))
    assert got == [{"status": "completed", "i": i * i} for i in range(5)]
    assert sorted(seen) == list(range(5))


def _stops_at_1(i: int) -> dict:
    if i == 1:  # as api.train returns after the signal reached the run itself
        return {"status": "interrupted", "stop_reason": "stopped by SIGTERM"}
    return {"status": "completed", "i": i}


def test_a_run_stopped_by_a_signal_stops_the_rest_and_raises_interrupted_with_its_exit_code():
    seen = []
    with pytest.raises(Interrupted) as e:
        pool.run_all(_stops_at_1, [(i,) for i in range(4)], 1, lambda i, r: seen.append(i))
    assert e.value.signal_name == "SIGTERM" and e.value.exit_code == 143
    assert seen == [0]  # in one process: nothing started after the stop
