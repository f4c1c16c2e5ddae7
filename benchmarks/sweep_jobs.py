"""`trainkit sweep --jobs 2` against `--jobs 1` on an 8-trial grid (target: >= 1.8x faster
on 2 cores, identical results.csv apart from the seconds column).

Each round runs both in fresh processes, alternating which goes first; wall time of the
whole command (process start, spawning workers, writing the sweep dir included).

    python -m benchmarks.sweep_jobs [ROUNDS]
"""

from __future__ import annotations

import csv
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = """
seed: 0
data: {name: moons, n_samples: 2000, noise: 0.2, val_fraction: 0.2}
model: {name: mlp, hidden: [64, 64], activation: relu}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 200, batch_size: 32}
sweep:
  method: grid
  metric: {name: val_loss, goal: minimize}
  parameters:
    optimizer.lr: {values: [0.001, 0.003, 0.01, 0.03]}
    model.hidden: {values: [[32], [64, 64]]}
"""


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def bench_sweep_jobs(rounds: int = 3) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="trainkit-bench-sweep-"))
    try:
        spec = tmp / "grid.yaml"
        spec.write_text(SPEC)
        runs: dict[str, list[float]] = {"1": [], "2": []}
        same = True
        for r in range(rounds):
            order = ["1", "2"] if r % 2 == 0 else ["2", "1"]
            for jobs in order:
                out = tmp / f"out-{jobs}"
                shutil.rmtree(out, ignore_errors=True)
                cmd = [sys.executable, "-m", "trainkit", "sweep", str(spec), "--jobs", jobs, "-d", str(out), "--json"]
                t = time.perf_counter()
                subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)
                runs[jobs].append(time.perf_counter() - t)
            same = same and _rows(tmp / "out-1") == _rows(tmp / "out-2")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    out = {"jobs1_s": runs["1"], "jobs2_s": runs["2"], "speedup": med["1"] / med["2"], "identical": same}
    print(
        f"  sweep 8-trial grid: --jobs 1 {med['1']:.2f}s, --jobs 2 {med['2']:.2f}s, "
        f"speedup {out['speedup']:.2f}x, results identical: {same}",
        flush=True,
    )
    return out


if __name__ == "__main__":
    bench_sweep_jobs(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
