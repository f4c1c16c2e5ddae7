"""trainkit's bookkeeping per step on a tiny problem: Trainer.fit against a hand-written
numpy loop doing the same arithmetic.

configs/linreg.yaml, full-batch gd, 1,000 one-step epochs, float64:
- "as configured": 80 training samples, 20 validation; trainkit also sums r2 and mae on both
  splits (the bookkeeping being measured); the numpy loop computes the train and val loss.
- "same work": 100 samples, no validation split, no metrics besides the loss.
CPU time (process_time, steadier than wall time on a shared machine), the fastest of ROUNDS
alternating rounds. Usage, from any folder:

    python benchmarks/tiny_overhead.py [TRAINKIT_ROOT] [ROUNDS]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 15
EPOCHS = 1000
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from trainkit import api  # noqa: E402
from trainkit.config import load_config  # noqa: E402


def trainkit_epoch(validation: bool) -> float:
    extra = [] if validation else ["data.val_fraction=0", "train.metrics=[]"]
    exp = api.build(load_config(ROOT / "configs" / "linreg.yaml", [f"train.epochs={EPOCHS}", *extra]))
    a = exp.arrays
    t = time.process_time()
    exp.trainer.fit(a["X_train"], a["T_train"], a.get("X_val"), a.get("T_val"))
    return (time.process_time() - t) / EPOCHS


def numpy_epoch(validation: bool) -> float:
    rng = np.random.default_rng(0)
    n = 80 if validation else 100
    X = rng.uniform(size=(n, 1))
    y = 3 * X + 2 + rng.uniform(size=(n, 1))
    Xv = rng.uniform(size=(20, 1))
    yv = 3 * Xv + 2.5
    W, b = np.zeros((1, 1)), np.zeros(1)
    t = time.process_time()
    for _ in range(EPOCHS):
        d = X @ W.T + b - y
        float((d * d).mean())  # the train loss
        g = (2.0 / d.size) * d
        W -= 0.5 * (g.T @ X)
        b -= 0.5 * g.sum(axis=0)
        if validation:
            dv = Xv @ W.T + b - yv
            float((dv * dv).mean())  # the val loss
    return (time.process_time() - t) / EPOCHS


def main() -> None:
    cases = {
        ("as configured", "trainkit"): lambda: trainkit_epoch(True),
        ("as configured", "numpy"): lambda: numpy_epoch(True),
        ("same work", "trainkit"): lambda: trainkit_epoch(False),
        ("same work", "numpy"): lambda: numpy_epoch(False),
    }
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(ROUNDS):
        for key, run in cases.items():
            best[key] = min(best[key], run())
    for case in ("as configured", "same work"):
        tk, ref = best[(case, "trainkit")] * 1e6, best[(case, "numpy")] * 1e6
        print(f"{case:14s} trainkit {tk:5.1f} us/step  numpy {ref:5.1f} us/step  overhead {tk - ref:5.1f} us")


if __name__ == "__main__":
    main()
