"""Data-parallel scaling: epoch time of the mlp benchmark (60,000 × 784, float32, Adam) on N
MPI ranks against one process, and the share of a step spent in the gradient all-reduce.

    python -m benchmarks.mpi_scaling                                   # this machine: 1×all cores, 1×1, N×(cores/N)
    python -m benchmarks.mpi_scaling --ranks 1,2,4,8,16 --threads 1 --hidden 1024,1024 --batch 4096

Each configuration runs in its own processes (`mpiexec -n N`, the mpich wheel's); rank 0
reports the median epoch time after a warm-up epoch, and, per rank 0's steps, the time spent
waiting for the slowest rank (a barrier before the all-reduce: load imbalance and noise) and
in the Allreduce itself. Speed-up is against 1 rank with the same threads per rank;
efficiency = speed-up / N. Timings on a machine that others share are noise: run it idle.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.workers import make_data, mlp_config

ROOT = Path(__file__).resolve().parent.parent


def one_run(batch: int, epochs: int, hidden: list[int], threads: int) -> None:
    """Inside each rank: train, timing the all-reduce of every step; rank 0 prints one JSON line."""
    import trainkit
    from trainkit.config import load_config_text
    from trainkit.parallel import mpi, world

    wait, reduce, marks = [0.0], [0.0], []
    real = mpi.DataParallel.allreduce_grad

    def timed(self, grad, n):
        t0 = time.perf_counter()
        self.comm.Barrier()  # waiting for the slowest rank, apart from the reduction itself
        t1 = time.perf_counter()
        real(self, grad, n)
        wait[0] += t1 - t0
        reduce[0] += time.perf_counter() - t1

    mpi.DataParallel.allreduce_grad = timed
    loaded = load_config_text(mlp_config(batch, epochs + 1, hidden, threads), "mpi_scaling.yaml")
    r = trainkit.train(loaded, on_epoch=lambda row: marks.append((wait[0], reduce[0])))
    dp = world()
    if dp is None or dp.rank == 0:
        measured = sum(r.timing["epoch_s"][1:])
        (w1, r1), (w2, r2) = marks[0], marks[-1]
        out = {
            "epoch_s": r.timing["epoch_s"][1:],
            "epoch_s_median": statistics.median(r.timing["epoch_s"][1:]),
            "wait_share": (w2 - w1) / measured if dp else 0.0,
            "allreduce_share": (r2 - r1) / measured if dp else 0.0,
            "final_loss": r.metrics["train_loss"],
            "params": r.info["n_params"],
        }
        print(json.dumps(out), flush=True)


def measure(ranks: int, threads: int, args) -> dict:
    from trainkit.parallel.mpi import mpiexec

    inner = [sys.executable, "-m", "benchmarks.mpi_scaling", "--one", str(args.batch), str(args.epochs)]
    inner += [",".join(map(str, args.hidden)), str(threads)]
    env = dict(
        os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads)
    )
    cmd = inner if ranks == 1 else [mpiexec() or "mpiexec", "-n", str(ranks), *args.mpiexec_args, *inner]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return {"ranks": ranks, "threads_per_rank": threads, **json.loads(p.stdout.strip().splitlines()[-1])}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", default=None, help="comma-separated rank counts (default: 1 and the core count)")
    ap.add_argument("--threads", default="fill", help="BLAS threads per rank: a number, or fill (cores / ranks)")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=2, help="measured epochs (one warm-up epoch more)")
    ap.add_argument("--hidden", default="256,128")
    ap.add_argument("--mpiexec-args", default="", help="extra mpiexec options, e.g. '-bind-to core'")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--one", nargs=4, metavar=("BATCH", "EPOCHS", "HIDDEN", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        b, e, h, t = args.one
        one_run(int(b), int(e), [int(x) for x in h.split(",")], int(t))
        return
    args.hidden = [int(x) for x in args.hidden.split(",")]
    args.mpiexec_args = args.mpiexec_args.split()
    cores = os.cpu_count() or 1
    ranks = [int(x) for x in args.ranks.split(",")] if args.ranks else sorted({1, cores})
    make_data()
    plan = [(n, max(1, cores // n) if args.threads == "fill" else int(args.threads)) for n in ranks]
    if args.threads == "fill" and (1, 1) not in plan:
        plan.insert(1, (1, 1))  # the single-thread baseline the speed-ups are taken against
    rows = []
    for n, t in plan:
        row = measure(n, t, args)
        rows.append(row)
        print(
            f"ranks {n:>2} × {t} thread(s): epoch {row['epoch_s_median']:.3f}s, "
            f"all-reduce {row['allreduce_share']:.1%} of the time, waiting {row['wait_share']:.1%}",
            flush=True,
        )
    base = {r["threads_per_rank"]: r["epoch_s_median"] for r in rows if r["ranks"] == 1}
    one = base.get(1)
    for r in rows:
        if one:
            r["speedup_vs_1x1"] = one / r["epoch_s_median"]
            r["efficiency"] = r["speedup_vs_1x1"] / (r["ranks"] * r["threads_per_rank"])
    print("\nranks  threads/rank  epoch s  speed-up vs 1×1  efficiency  all-reduce  waiting")
    for r in rows:
        print(
            f"{r['ranks']:>5}  {r['threads_per_rank']:>12}  {r['epoch_s_median']:>7.3f}  "
            f"{r.get('speedup_vs_1x1', float('nan')):>15.2f}  {r.get('efficiency', float('nan')):>10.0%}  "
            f"{r['allreduce_share']:>10.1%}  {r['wait_share']:>7.1%}"
        )
    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cores": cores,
        "batch": args.batch,
        "hidden": args.hidden,
        "epochs": args.epochs,
        "rows": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"written to {args.out}")


def bench_mpi(notes: list[str]) -> dict | None:
    """`make bench`'s case: this machine's default plan (1 rank × all cores, 1 × 1, N × 1)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        notes.append("mpi4py not installed: the data-parallel case skipped (pip install 'trainkit[mpi]')")
        return None
    out = ROOT / "benchmarks" / "results" / "mpi_scaling.json"
    main(["--out", str(out)])
    return json.loads(out.read_text())


def mpi_markdown(res: dict) -> list[str]:
    doc = res.get("mpi")
    if not doc:
        return []
    lines = [
        "",
        f"## data-parallel over MPI (mlp {doc['hidden']}, batch {doc['batch']}, float32, Adam, {doc['cores']} cores)",
        "",
        "`python -m benchmarks.mpi_scaling`: median epoch seconds after a warm-up epoch; speed-up against "
        "1 rank × 1 thread; all-reduce and waiting (barrier before it) as shares of rank 0's time.",
        "",
        "| ranks | BLAS threads per rank | epoch s | speed-up vs 1×1 | efficiency | all-reduce | waiting |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {r['ranks']} | {r['threads_per_rank']} | {r['epoch_s_median']:.3f} | "
            f"{r.get('speedup_vs_1x1', float('nan')):.2f} | {r.get('efficiency', float('nan')):.0%} | "
            f"{r['allreduce_share']:.1%} | {r['wait_share']:.1%} |"
        )
    return [*lines, ""]


if __name__ == "__main__":
    main()
