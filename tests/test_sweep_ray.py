"""The Ray executor against a real local Ray cluster (one per module: `ray start` is slow):
the same trials, the same metrics as the local executor, the same sweep-dir layout."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.test_sweep import GRID, _live_in_group, results, write
from trainkit.sweep import runner


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    require("ray")
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    # --block keeps `ray start` in the foreground, so the cluster is this process group and
    # is stopped by its id, never by `ray stop` (which stops every Ray on the machine).
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={port}", "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:  # ready once the GCS answers
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert head.poll() is None, head.stderr.read().decode()
            assert time.monotonic() - t0 < 120, "ray start did not come up"
            time.sleep(0.2)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        t0 = time.monotonic()
        while _live_in_group(head.pid) and time.monotonic() - t0 < 20:
            time.sleep(0.2)
        if _live_in_group(head.pid):
            os.killpg(head.pid, signal.SIGKILL)


def test_ray_executor_gives_the_local_executors_results(tmp_path, ray_address, cli):
    spec = write(tmp_path, GRID)
    runner.sweep(spec, jobs=2, output_dir=tmp_path / "local")
    r = cli("sweep", spec, "--executor", "ray", "--address", ray_address, "-d", tmp_path / "ray", "--json")
    assert r.code == 0, r.stderr
    assert results(tmp_path / "ray") == results(tmp_path / "local")
    assert sorted(p.name for p in (tmp_path / "ray" / "trials").iterdir()) == [f"{i:03d}" for i in range(8)]
    assert (tmp_path / "ray" / "trials" / "000" / "checkpoint.npz").exists()


def test_ray_without_an_address_or_a_cluster_is_exit_2(tmp_path, cli, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    spec = write(tmp_path, GRID)
    r = cli("sweep", spec, "--executor", "ray", "-d", tmp_path / "a")
    assert r.code == 2 and "--address auto" in r.stderr
