"""`make bench`: trainkit side by side with PyTorch CPU and scikit-learn.

Every measurement runs in its own process; libraries alternate round by round after a
warm-up; the table shows medians, min-max and trainkit/peer ratios. Missing peers are
skipped with a note. Results go to benchmarks/results/*.json and BENCHMARKS.md.

    python -m benchmarks.run            # the full suite (~10 minutes on 2 cores)
    python -m benchmarks.run --quick    # fewer rounds and epochs, for a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.compression import bench_compression, compression_markdown, compression_rows
from benchmarks.mpi_scaling import bench_mpi, mpi_markdown
from benchmarks.sweep_jobs import bench_sweep_jobs

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

TARGETS = {
    "mlp128_vs_torch": 0.90,
    "mlp128_vs_torch_fused": 1.00,
    "mlp1024_vs_torch": 1.00,
    "mlp1024_gemm_share": 0.65,
    "mlp128_vs_sklearn": 0.55,
    "tiny_vs_torch": 0.15,
    "tiny_overhead_us": 12.0,
    "help_vs_numpy": 2.0,
    "lenet128_vs_torch": 1.00,
    "lenet512_conv_gemm_share": 0.50,
    "sweep_jobs2_speedup": 1.8,
}


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def worker(*args: str) -> dict:
    p = subprocess.run([sys.executable, "-m", "benchmarks.workers", *args], cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"benchmark worker {' '.join(args)} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)
    return time.perf_counter() - t


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP", "MKL"))},
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    import numpy

    info["numpy"] = numpy.__version__
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for p in threadpool_info()
            if p["user_api"] == "blas"
        ]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    for mod in ("torch", "sklearn"):
        if have(mod):
            info[mod] = __import__(mod).__version__
    return info


def bench_mlp(rounds: int, epochs: int, notes: list[str]) -> dict:
    peers = ["trainkit"]
    if have("torch"):
        peers += ["torch", "torch-fused"]
    else:
        notes.append("torch not installed: PyTorch peers skipped (pip install 'trainkit[bench]')")
    if have("sklearn"):
        peers.append("sklearn")
    else:
        notes.append("scikit-learn not installed: its peer skipped")
    out = {}
    gemm_peaks: list[float] = []
    for batch in (32, 128, 1024):
        runs: dict[str, list[float]] = {p: [] for p in peers}
        extra: dict[str, dict] = {}
        for _ in range(rounds):  # alternate the libraries round by round
            for p in peers:
                if p == "sklearn" and batch != 128:
                    continue
                r = worker("mlp", p, str(batch), str(epochs))
                runs[p] += r.pop("epoch_s")
                extra[p] = r
            if batch == 1024:  # the GEMM peak, measured between the runs it is compared with
                gemm_peaks.append(worker("gemm")["gflops"])
        out[str(batch)] = {p: {**stats(v), **extra.get(p, {})} for p, v in runs.items() if v}
        print(
            f"  mlp batch {batch}: " + ", ".join(f"{p} {s['median']:.3f}s" for p, s in out[str(batch)].items()),
            flush=True,
        )
    out["gemm_peaks"] = gemm_peaks
    return out


def mlp_flops(n: int = 60_000, sizes=(784, 256, 128, 10)) -> float:
    """FLOPs of one epoch: forward 2·n·in·out per layer, backward twice that (no input
    gradient for the first layer)."""
    layers = list(zip(sizes, sizes[1:]))
    fwd = sum(2 * n * i * o for i, o in layers)
    return fwd * 3 - 2 * n * layers[0][0] * layers[0][1]


def bench_tiny(rounds: int, notes: list[str]) -> dict:
    peers = ["trainkit", "trainkit-same-work", "numpy"] + (["torch"] if have("torch") else [])
    runs: dict[str, list[float]] = {p: [] for p in peers}
    for _ in range(rounds):
        for p in peers:
            runs[p].append(worker("tiny", p, "1000")["us_per_step"])
    out = {p: stats(v) for p, v in runs.items()}
    print("  tiny: " + ", ".join(f"{p} {s['median']:.1f}us" for p, s in out.items()), flush=True)
    return out


def bench_threads(rounds: int, epochs: int) -> dict:
    """784 → 128 → 128 → 10 at batch 32: train.threads auto against the BLAS's default threads."""
    runs: dict[str, list[float]] = {"auto": [], "default": []}
    chosen = {}
    for _ in range(rounds):
        for setting in runs:
            r = worker("threads", setting, str(epochs))
            runs[setting] += r["epoch_s"]
            chosen[setting] = r["threads"]
    out = {k: {**stats(v), "threads": chosen[k]} for k, v in runs.items()}
    print("  threads: " + ", ".join(f"{k} ({s['threads']}) {s['median']:.3f}s" for k, s in out.items()), flush=True)
    return out


def bench_gelu(rounds: int) -> dict:
    """Forward + backward of the activations on a (256, 512) float32 batch."""
    kinds = ["relu", "gelu-tanh", "gelu", "gelu-vectorize"]
    runs: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for k in kinds:
            runs[k] += worker("gelu", k, "20")["us"]
    out = {k: stats(v) for k, v in runs.items()}
    print("  activations: " + ", ".join(f"{k} {s['median']:.0f}us" for k, s in out.items()), flush=True)
    return out


def bench_startup(rounds: int) -> dict:
    trainkit_bin = [sys.executable, "-m", "trainkit"]
    cmds = {
        "python -c 'import numpy'": [sys.executable, "-c", "import numpy"],
        "trainkit --help": [*trainkit_bin, "--help"],
        "trainkit train configs/linreg.yaml": [*trainkit_bin, "train", "configs/linreg.yaml", "--progress", "none"],
    }
    for c in cmds.values():  # warm the file cache
        wall(c)
    runs: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(rounds):
        for k, c in cmds.items():
            runs[k].append(wall(c))
    out = {k: stats(v) for k, v in runs.items()}
    print("  startup: " + ", ".join(f"{k} {s['median']:.3f}s" for k, s in out.items()), flush=True)
    return out


def bench_memory() -> dict:
    r = worker("memory")
    data_mb = (ROOT / "benchmarks" / "data" / "mlp.npz").stat().st_size / 2**20
    out = {"peak_rss_mb": r["peak_rss_mb"], "data_mb": data_mb, "limit_mb": 1.3 * data_mb + 150}
    print(f"  memory: peak {out['peak_rss_mb']:.0f} MB for {data_mb:.0f} MB of data", flush=True)
    return out


def bench_lenet(rounds: int, epochs: int, notes: list[str]) -> dict:
    """LeNet-style CNN at batch 128, trainkit and torch alternating; the conv GEMMs' rate at
    batch 512 against the GEMM peak measured beside them; peak RSS against data + im2col."""
    worker("lenet-data")
    peers = ["trainkit"] + (["torch"] if have("torch") else [])
    if not have("torch"):
        notes.append("torch not installed: the LeNet peer skipped")
    runs: dict[str, list[float]] = {p: [] for p in peers}
    gemm, layers, torch_layers, peaks = [], [], [], []
    for _ in range(rounds):
        for p in peers:
            runs[p] += worker("lenet", p, "128", str(epochs))["epoch_s"]
        conv = worker("lenet-gemm", "512")
        gemm.append(conv["gflops"])
        layers.append(conv["layers_gflops"])
        if have("torch"):
            torch_layers.append(worker("lenet-conv-torch", "512")["layers_gflops"])
        peaks.append(worker("gemm")["gflops"])
    out = {p: stats(v) for p, v in runs.items()}
    out["conv_gemm_gflops"] = statistics.median(gemm)
    out["conv_layers_gflops"] = {"trainkit": statistics.median(layers)}
    if torch_layers:
        out["conv_layers_gflops"]["torch"] = statistics.median(torch_layers)
    out["gemm_peak_gflops"] = statistics.median(peaks)
    out["memory"] = worker("lenet-memory")
    print(
        "  lenet batch 128: "
        + ", ".join(f"{p} {out[p]['median']:.3f}s" for p in peers)
        + f"; conv GEMMs at batch 512 {out['conv_gemm_gflops']:.0f} GFLOP/s of {out['gemm_peak_gflops']:.0f}"
        + "; whole conv layers "
        + ", ".join(f"{p} {v:.0f}" for p, v in out["conv_layers_gflops"].items()),
        flush=True,
    )
    return out


def lenet_rows(res: dict) -> list[tuple]:
    le = res.get("lenet")
    if not le:
        return []
    mem = le["memory"]
    limit = 1.3 * mem["data_mb"] + 150 + mem["im2col_mb"]
    return [
        (
            "lenet batch 128, trainkit / torch",
            ratio(le["trainkit"]["median"], le.get("torch", {}).get("median")),
            TARGETS["lenet128_vs_torch"],
            "<=",
        ),
        (
            "lenet batch 512, conv GEMMs / GEMM peak",
            le["conv_gemm_gflops"] / le["gemm_peak_gflops"],
            TARGETS["lenet512_conv_gemm_share"],
            ">=",
        ),
        ("peak RSS, lenet / (1.3 × data + 150 MB + im2col)", mem["peak_rss_mb"] / limit, 1.0, "<="),
    ]


def lenet_markdown(res: dict) -> list[str]:
    le = res.get("lenet")
    if not le:
        return []
    from benchmarks.lenet import N_IMAGES, lenet_flops

    mem = le["memory"]
    whole = le.get("conv_layers_gflops", {})
    lines = [
        f"## lenet: conv 6@5×5 pad 2, pool, conv 16@5×5, pool, 400 → 120 → 10; 28×28×1, {N_IMAGES:,} images, "
        "Adam 1e-3, float32, batch 128",
        "",
        "| library | s/epoch | min–max | GFLOP/s |",
        "| --- | --- | --- | --- |",
    ]
    for lib in ("trainkit", "torch"):
        if lib in le:
            s = le[lib]
            lines.append(
                f"| {lib} | {s['median']:.3f} | {s['min']:.3f}–{s['max']:.3f} | {lenet_flops() / s['median'] / 1e9:.1f} |"
            )
    lines += [
        "",
        "trainkit trains each batch as two parts on two threads, one BLAS thread each "
        "(`trainkit/nn/network.py`); torch runs its ops on its own 2 threads. "
        "The conv layers' GEMMs (forward, weight and input gradients), timed in place during "
        "training steps at batch 512 (the parts one after the other, the BLAS on its own threads), run at "
        f"{le['conv_gemm_gflops']:.0f} GFLOP/s of useful conv flops against a measured peak of "
        f"{le['gemm_peak_gflops']:.0f}. The whole conv layers (im2col, col2im and copies included) "
        "forward and backward: "
        + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in whole.items())
        + " (same flops, same run). "
        f"One epoch peaks at {mem['peak_rss_mb']:.0f} MB RSS for {mem['data_mb']:.0f} MB of data and "
        f"{mem['im2col_mb']:.1f} MB of im2col buffers for one batch (reused across steps).",
        "",
    ]
    return lines


def ratio(a, b):
    return None if a is None or b is None else a / b


def summarize(res: dict) -> list[dict]:
    mlp, tiny, st = res["mlp"], res["tiny"], res["startup"]
    med = lambda d, k: d.get(k, {}).get("median")  # noqa: E731
    flops = mlp_flops()
    peak = res["gemm"]["gflops"]
    tk1024 = med(mlp["1024"], "trainkit")
    rows = [
        (
            "mlp batch 128, trainkit / torch default Adam",
            ratio(med(mlp["128"], "trainkit"), med(mlp["128"], "torch")),
            TARGETS["mlp128_vs_torch"],
            "<=",
        ),
        (
            "mlp batch 128, trainkit / torch fused Adam",
            ratio(med(mlp["128"], "trainkit"), med(mlp["128"], "torch-fused")),
            TARGETS["mlp128_vs_torch_fused"],
            "<=",
        ),
        (
            "mlp batch 1024, trainkit / torch default Adam",
            ratio(tk1024, med(mlp["1024"], "torch")),
            TARGETS["mlp1024_vs_torch"],
            "<=",
        ),
        (
            "mlp batch 1024, trainkit share of GEMM peak",
            flops / tk1024 / 1e9 / peak,
            TARGETS["mlp1024_gemm_share"],
            ">=",
        ),
        (
            "mlp batch 128, trainkit / scikit-learn",
            ratio(med(mlp["128"], "trainkit"), med(mlp["128"], "sklearn")),
            TARGETS["mlp128_vs_sklearn"],
            "<=",
        ),
        (
            "tiny, trainkit µs per step / torch autograd (same work)",
            ratio(med(tiny, "trainkit-same-work"), med(tiny, "torch")),
            TARGETS["tiny_vs_torch"],
            "<=",
        ),
        (
            "tiny, trainkit µs per step − hand-written numpy loop (same work)",
            None if med(tiny, "numpy") is None else med(tiny, "trainkit-same-work") - med(tiny, "numpy"),
            TARGETS["tiny_overhead_us"],
            "<=",
        ),
        (
            '`trainkit --help` wall / `python -c "import numpy"` wall',
            ratio(med(st, "trainkit --help"), med(st, "python -c 'import numpy'")),
            TARGETS["help_vs_numpy"],
            "<=",
        ),
        (
            "sweep 8-trial grid, --jobs 1 wall / --jobs 2 wall (identical results)",
            res["sweep_jobs"]["speedup"] if res["sweep_jobs"]["identical"] else None,
            TARGETS["sweep_jobs2_speedup"],
            ">=",
        ),
        (
            "peak RSS, mlp from NPZ / (1.3 × data + 150 MB)",
            res["memory"]["peak_rss_mb"] / res["memory"]["limit_mb"],
            1.0,
            "<=",
        ),
        *lenet_rows(res),
        *compression_rows(res),
    ]
    out = []
    for name, value, target, op in rows:
        met = None if value is None else (value <= target if op == "<=" else value >= target)
        out.append({"benchmark": name, "value": value, "target": f"{op} {target:g}", "met": met})
    return out


def markdown(res: dict, summary: list[dict]) -> str:
    m = res["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {res['date']} with `make bench` (`python -m benchmarks.run{' --quick' if res['quick'] else ''}`).",
        f"Machine: {m.get('cpu', m['processor'])}, {m['cpus']} cores; Python {m['python']}, numpy {m['numpy']}"
        + (f", torch {m['torch']}" if "torch" in m else "")
        + (f", scikit-learn {m['sklearn']}" if "sklearn" in m else "")
        + f"; BLAS {m['blas']}. Measured float32 GEMM peak (2048², median of the rounds): {res['gemm']['gflops']:.0f} GFLOP/s.",
        "",
        "## Targets",
        "",
        "| benchmark | measured | target | met |",
        "| --- | --- | --- | --- |",
    ]
    for r in summary:
        v = "skipped" if r["value"] is None else f"{r['value']:.3f}"
        met = "–" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['benchmark']} | {v} | {r['target']} | {met} |")
    lines += [
        "",
        "## mlp: 784 → 256 → 128 → 10, ReLU, softmax cross-entropy, Adam 1e-3, float32, 60,000 samples",
        "",
        "Seconds per epoch (median, min–max over every measured epoch of every round) and achieved GFLOP/s.",
        "",
        "| batch | library | s/epoch | min–max | GFLOP/s | trainkit / this |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    flops = mlp_flops()
    for batch, libs in res["mlp"].items():
        tk = libs["trainkit"]["median"]
        for lib, s in libs.items():
            lines.append(
                f"| {batch} | {lib} | {s['median']:.3f} | {s['min']:.3f}–{s['max']:.3f} | "
                f"{flops / s['median'] / 1e9:.0f} | {tk / s['median']:.2f} |"
            )
    lines += [
        "",
        "scikit-learn keeps its defaults (L2 alpha=1e-4, a partial last batch) and runs "
        f"in {res['mlp']['128'].get('sklearn', {}).get('dtype', 'n/a')}.",
        "",
        "## tiny: configs/linreg.yaml, full-batch GD, 1,000 steps",
        "",
        "| run | µs per step | min–max |",
        "| --- | --- | --- |",
    ]
    labels = {
        "trainkit": "trainkit, as configured (validation split + r2/mae each epoch)",
        "trainkit-same-work": "trainkit, the torch loop's work (100 samples, loss only)",
        "numpy": "hand-written numpy loop (same work as the line above it)",
        "torch": "torch autograd + torch.optim.SGD",
    }
    for k, s in res["tiny"].items():
        lines.append(f"| {labels[k]} | {s['median']:.1f} | {s['min']:.1f}–{s['max']:.1f} |")
    if "threads" in res:
        lines += [
            "",
            "## BLAS threads: mlp 784 → 128 → 128 → 10, batch 32, Adam, float32, 60,000 samples",
            "",
            "`train.threads: auto` (one thread per 2^23 multiply-adds a step) against the BLAS's own default "
            "(every core), which every run used before auto.",
            "",
            "| threads | s/epoch | min–max |",
            "| --- | --- | --- |",
        ]
        for k, s in res["threads"].items():
            lines.append(f"| {k} ({s['threads']}) | {s['median']:.3f} | {s['min']:.3f}–{s['max']:.3f} |")
    if "activations" in res:
        acts = res["activations"]
        relu = acts["relu"]["median"]
        lines += [
            "",
            "## activations: forward + backward on a (256, 512) float32 batch",
            "",
            "`gelu` is exact through trainkit's array-op erf (Cody's approximations); `gelu-vectorize` is the "
            "same math through np.vectorize(math.erf), as before.",
            "",
            "| activation | µs | min–max | / relu |",
            "| --- | --- | --- | --- |",
        ]
        for k, s in acts.items():
            lines.append(f"| {k} | {s['median']:.0f} | {s['min']:.0f}–{s['max']:.0f} | {s['median'] / relu:.1f} |")
    lines += [
        "",
        "## startup (whole process, wall seconds)",
        "",
        "| command | median | min–max |",
        "| --- | --- | --- |",
    ]
    for k, s in res["startup"].items():
        lines.append(f"| `{k}` | {s['median']:.3f} | {s['min']:.3f}–{s['max']:.3f} |")
    mem = res["memory"]
    lines += [
        "",
        "## memory",
        "",
        f"Training the mlp benchmark (batch 128, one epoch) from its {mem['data_mb']:.0f} MB NPZ file peaks at "
        f"{mem['peak_rss_mb']:.0f} MB RSS (limit 1.3 × data + 150 MB = {mem['limit_mb']:.0f} MB).",
        "",
    ]
    lines += lenet_markdown(res)
    lines += compression_markdown(res)
    lines += mpi_markdown(res)
    prof = res.get("profile")
    if prof:
        total = sum(prof["parts_s"].values())
        lines += [
            "## where trainkit's time goes (batch 128, one epoch, in-process timers)",
            "",
            "| part | seconds | share |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {k} | {v:.3f} | {v / total:.0%} |" for k, v in prof["parts_s"].items()]
        sub = ", ".join(f"{k} {v:.2%}" for k, v in prof["subnormal_share"].items())
        lines += [
            "",
            "Forward and backward are the matrix products plus bias, ReLU and their gradients; the "
            "optimizer is Adam's twelve whole-array passes over the 235,146 parameters. "
            f"Subnormal float32 values in Adam's state after two epochs: {sub}; an Adam step takes "
            f"{prof['adam_us']:.0f} µs as is and {prof['adam_us_flushed']:.0f} µs with them flushed to zero, "
            "so they are left alone. The optimizer is memory-bound; fusing its passes would take compiled "
            "code (numexpr or numba), which trainkit does not depend on, and splitting it over a second "
            "thread measured no gain inside the training loop (OpenBLAS's threads keep the other core busy).",
            "",
        ]
    history = []
    for f in sorted(RESULTS.glob("20*.json")):
        try:
            past = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if past.get("summary") and not past.get("quick"):
            history.append((past["date"], {r["benchmark"]: r["value"] for r in past["summary"]}))
    if len(history) > 1:
        names = [r["benchmark"] for r in summary]
        lines += [
            "## every full run kept in benchmarks/results/",
            "",
            "The machine is a shared VM: the same run varies by 10-20% from one hour to the next, "
            "so the ratios close to their targets can land on either side.",
            "",
            "| run | " + " | ".join(names) + " |",
            "| --- |" + " --- |" * len(names),
        ]
        for date, vals in history:
            lines.append(
                f"| {date} | " + " | ".join("–" if vals.get(n) is None else f"{vals[n]:.3f}" for n in names) + " |"
            )
        lines.append("")
    if res["notes"]:
        lines += ["## notes", ""] + [f"- {n}" for n in res["notes"]] + [""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds and epochs")
    args = ap.parse_args()
    rounds, epochs = (1, 1) if args.quick else (3, 2)
    notes: list[str] = []
    print("preparing data…", flush=True)
    worker("make-data")
    res: dict = {"date": dt.datetime.now().isoformat(timespec="seconds"), "quick": args.quick, "machine": machine()}
    res["mlp"] = bench_mlp(rounds, epochs, notes)
    peaks = res["mlp"].pop("gemm_peaks")
    res["gemm"] = {"gflops": statistics.median(peaks), "all": peaks}
    res["tiny"] = bench_tiny(3 if args.quick else 7, notes)
    res["threads"] = bench_threads(rounds, epochs)
    res["activations"] = bench_gelu(rounds)
    res["startup"] = bench_startup(5 if args.quick else 15)
    res["memory"] = bench_memory()
    res["lenet"] = bench_lenet(1 if args.quick else 3, epochs, notes)
    res["sweep_jobs"] = bench_sweep_jobs(1 if args.quick else 3)
    res["profile"] = worker("profile", "128")
    res["compression"] = bench_compression(1 if args.quick else 3, 3 if args.quick else 7)
    res["mpi"] = bench_mpi(notes)
    res["notes"] = notes
    summary = summarize(res)
    res["summary"] = summary
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = res["date"].replace(":", "-")
    (RESULTS / f"{stamp}.json").write_text(json.dumps(res, indent=2))
    (RESULTS / "latest.json").write_text(json.dumps(res, indent=2))
    (ROOT / "BENCHMARKS.md").write_text(markdown(res, summary))
    print()
    width = max(len(r["benchmark"]) for r in summary)
    for r in summary:
        v = "skipped" if r["value"] is None else f"{r['value']:.3f}"
        met = "" if r["met"] is None else ("ok" if r["met"] else "MISSED")
        print(f"{r['benchmark']:<{width}}  {v:>8}  target {r['target']:<7} {met}")
    print(f"\nwrote BENCHMARKS.md and {RESULTS.relative_to(ROOT)}/{stamp}.json")


if __name__ == "__main__":
    main()
