"""`trainkit sweep --jobs 2` against `--jobs 1` on an 8-trial grid (target: >= 1.8x faster
on 2 cores, identical results.csv apart from the seconds column).

Each round runs both in fresh processes, alternating which goes first; wall time of the
whole command (process start, spawning workers, writing the sweep dir included).

The trials are sized like a small real sweep, not like a smoke test: 8,000 training samples,
150 epochs (37,500 Adam steps), about 3 s ([32]) and 6 s ([64, 64]) each on one core, so the
fixed costs that do not shrink with --jobs (interpreter start, planning, spawning and
importing in the workers: about 0.5 s) are a few percent of the wall time, as they are for
sweeps of minute-long trials. Sub-second trials would measure those costs instead. The grid
mixes two model sizes on purpose, as sweeps do: started in grid order, one worker ended a
whole [64, 64] trial after the other (the sweep starts the costliest first, sweep/cost.py).

Besides the walls it reports, per mode, the mean seconds of one trial (from results.csv: a
trial slower under --jobs 2 than alone means the workers fight over the cores, e.g. BLAS
threads) and for --jobs 2 the overlap, the trials' summed seconds over the wall (2.0: both
workers busy all the time).

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
data: {name: moons, n_samples: 10000, noise: 0.2, val_fraction: 0.2}
model: {name: mlp, hidden: [64, 64], activation: relu}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 150, batch_size: 32}
sweep:
  method: grid
  metric: {name: val_loss, goal: minimize}
  parameters:
    optimizer.lr: {values: [0.001, 0.003, 0.01, 0.03]}
    model.hidden: {values: [[32], [64, 64]]}
"""


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _results(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def bench_sweep_jobs(rounds: int = 3) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="trainkit-bench-sweep-"))
    try:
        spec = tmp / "grid.yaml"
        spec.write_text(SPEC)
        walls: dict[str, list[float]] = {"1": [], "2": []}
        trial_s: dict[str, list[float]] = {"1": [], "2": []}  # summed seconds of the 8 trials, per round
        same = True
        for r in range(rounds):
            order = ["1", "2"] if r % 2 == 0 else ["2", "1"]
            rows = {}
            for jobs in order:
                out = tmp / f"out-{jobs}"
                shutil.rmtree(out, ignore_errors=True)
                cmd = [sys.executable, "-m", "trainkit", "sweep", str(spec), "--jobs", jobs, "-d", str(out), "--json"]
                t = time.perf_counter()
                subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)
                walls[jobs].append(time.perf_counter() - t)
                rows[jobs] = _rows(out)
                trial_s[jobs].append(sum(float(x["seconds"]) for x in rows[jobs]))
            same = same and _results(rows["1"]) == _results(rows["2"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    trial = {k: statistics.median(v) / 8 for k, v in trial_s.items()}
    overlap = statistics.median(s / w for s, w in zip(trial_s["2"], walls["2"], strict=True))
    out = {
        "jobs1_s": walls["1"],
        "jobs2_s": walls["2"],
        "speedup": med["1"] / med["2"],
        "identical": same,
        "trial_s": trial,
        "overlap": overlap,
    }
    print(
        f"  sweep 8-trial grid: --jobs 1 {med['1']:.2f}s, --jobs 2 {med['2']:.2f}s, "
        f"speedup {out['speedup']:.2f}x, results identical: {same}; mean trial {trial['1']:.2f}s alone, "
        f"{trial['2']:.2f}s with --jobs 2; trials overlap {overlap:.2f} (of 2)",
        flush=True,
    )
    return out


if __name__ == "__main__":
    bench_sweep_jobs(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
