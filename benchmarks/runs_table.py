"""How long `trainkit runs` takes on 1,000 run dirs (the target: under a second).

Trains four example configs once (iris: 150 epochs with early stopping; linreg: 1,000
epochs; mlp_moons: 60; softmax_blobs: 30), copies their run dirs round-robin into N
folders (checkpoint.npz and best.npz left out: `runs` never reads them), then times the
whole command, process start included, in fresh processes after one warm-up.

    python -m benchmarks.runs_table            # 1,000 run dirs, 7 rounds
    python -m benchmarks.runs_table --n 200 --rounds 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ("iris", "linreg", "mlp_moons", "softmax_blobs")


def trainkit(*args, out=subprocess.DEVNULL) -> None:
    subprocess.run([sys.executable, "-m", "trainkit", *map(str, args)], cwd=ROOT, check=True, stdout=out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        seeds, runs = Path(tmp) / "seeds", Path(tmp) / "runs"
        for name in CONFIGS:
            trainkit("train", ROOT / "configs" / f"{name}.yaml", "-d", seeds / name, "--progress", "none")
        skip = shutil.ignore_patterns("checkpoint.npz", "best.npz")
        for i in range(a.n):
            name = CONFIGS[i % len(CONFIGS)]
            shutil.copytree(seeds / name, runs / f"{name}-{i:04d}", ignore=skip)
        for label, extra in (("table, piped", ()), ("--json", ("--json",))):
            times = []
            for r in range(a.rounds + 1):
                t0 = time.perf_counter()
                trainkit("runs", runs, *extra)
                if r:  # the first round warms the page cache
                    times.append(time.perf_counter() - t0)
            print(
                f"trainkit runs DIR {' '.join(extra)}: {a.n} run dirs, median {statistics.median(times):.3f} s "
                f"(min {min(times):.3f}, max {max(times):.3f}, {a.rounds} rounds) [{label}]"
            )
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import trainkit.cli"], cwd=ROOT, check=True)
        print(f"of which process start + imports (python -c 'import trainkit.cli'): {time.perf_counter() - t0:.3f} s")


if __name__ == "__main__":
    main()
