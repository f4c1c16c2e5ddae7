"""Why LeNet's conv GEMMs cannot reach half the GEMM peak on OpenBLAS: conv1's products alone.

    python -m benchmarks.conv_ceiling        (idle machine; a few seconds)

At batch 512 the five conv products of a training step (conv1: forward and weight gradient;
conv2: forward, weight and input gradients) hold 978 MFLOP of useful work, so half the
measured GEMM peak allows them peak / 2 of time in all. conv1 (6 filters of 1×5×5) has 6 rows
and a 25-long reduction: this times its forward and weight-gradient products alone, the
operands already in cache, in each formulation trainkit could run them (per sample as it does,
one GEMM over the batch, and MEC row blocks of r rows), on the BLAS's own threads, and prints
the rate conv2's 737 MFLOP would need in what the fastest leaves of the budget, beside the rate
conv2's three products reach alone, in cache, as trainkit runs them (MEC rows r = 2).
The peak is this script's own (best of 5), so the numbers vary a few percent from run to run.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.lenet import CONV1_FLOPS, CONV2_FLOPS

N = 512


def best_ms(fn, rounds: int = 15) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


def conv1_products() -> dict[str, tuple[float, float]]:
    """{formulation: (forward ms, weight-gradient ms)} for conv1 at batch N (28×28 outputs)."""
    rng = np.random.default_rng(0)
    out = {}
    w, cols = rng.random((6, 26), dtype=np.float32), rng.random((26, N, 784), dtype=np.float32)
    y, dy = np.empty((N, 6, 784), np.float32), rng.random((N, 6, 784), dtype=np.float32)
    parts = np.empty((N, 6, 26), np.float32)
    out["per sample (trainkit)"] = (
        best_ms(lambda: np.matmul(w, cols.transpose(1, 0, 2), y)),
        best_ms(lambda: np.matmul(dy, cols.transpose(1, 2, 0), parts)),
    )
    flat, dflat = cols.reshape(26, -1), rng.random((6, N * 784), dtype=np.float32)
    yf, dw = np.empty((6, N * 784), np.float32), np.empty((26, 6), np.float32)
    out["one GEMM"] = (best_ms(lambda: np.matmul(w, flat, yf)), best_ms(lambda: np.matmul(flat, dflat.T, dw)))
    for r in (2, 4, 7):  # r output rows per column: a banded (6r × 5(r + 4)) weight
        m, k, n = 6 * r, 5 * (r + 4), N * (28 // r) * 28
        a, b, d = (rng.random(s, dtype=np.float32) for s in ((m, k), (k, n), (m, n)))
        o, g = np.empty((m, n), np.float32), np.empty((k, m), np.float32)
        out[f"MEC r={r}"] = (
            best_ms(lambda a=a, b=b, o=o: np.matmul(a, b, o)),
            best_ms(lambda b=b, d=d, g=g: np.matmul(b, d.T, g)),
        )
    return out


def conv2_products_ms() -> float:
    """conv2's forward, weight- and input-gradient products at batch N as trainkit runs them:
    r = 2 output rows per column, a banded (32 × 180) weight over 5 row blocks of 10 columns."""
    rng = np.random.default_rng(1)
    n = 5 * 10 * N
    w, cols, dy = (rng.random(s, dtype=np.float32) for s in ((32, 180), (180, n), (32, n)))
    y, dwt, dcols = np.empty((32, n), np.float32), np.empty((180, 32), np.float32), np.empty((180, n), np.float32)
    return (
        best_ms(lambda: np.matmul(w, cols, y))
        + best_ms(lambda: np.matmul(cols, dy.T, dwt))
        + best_ms(lambda: np.matmul(w.T, dy, dcols))
    )


def main() -> None:
    side = 2048
    a, b = np.ones((side, side), np.float32), np.ones((side, side), np.float32)
    peak = 2 * side**3 / best_ms(lambda: a @ b, 5) / 1e6
    budget = N * (2 * CONV1_FLOPS + 3 * CONV2_FLOPS) / (peak / 2) / 1e6
    print(f"GEMM peak {peak:.0f} GFLOP/s: half of it allows {budget:.2f} ms for the five conv products")
    rows = conv1_products()
    for name, (fwd, dw) in rows.items():
        print(f"  conv1 {name:22s} forward {fwd:5.2f} ms  weight gradient {dw:5.2f} ms")
    fastest = min(f for f, _ in rows.values()) + min(g for _, g in rows.values())
    left = budget - fastest
    need = N * 3 * CONV2_FLOPS / left / 1e6 if left > 0 else float("inf")
    print(f"conv1 at its fastest: {fastest:.2f} ms; conv2 would need {need:.0f} GFLOP/s (peak {peak:.0f})")
    alone = N * 3 * CONV2_FLOPS / conv2_products_ms() / 1e6
    print(f"conv2's three products alone, in cache, as trainkit runs them: {alone:.0f} GFLOP/s of useful flops")


if __name__ == "__main__":
    main()
