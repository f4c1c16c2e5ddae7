"""`trainkit compress` on the shipped digits CSV: accuracy and file size of each compression,
and prediction speed of the compressed model against the dense one.

A dense MLP (64 → 256 → 128 → 10) is trained with three seeds (val and test splits of 20%
each); each run is compressed by the CLI (`trainkit compress RUN ... --json`): 90% one-shot
magnitude pruning without fine-tuning, the same plus fine-tuning (when this trainkit has it),
int8 per channel, int8 per tensor, 90% + int8. Accuracy changes are test accuracy, in points,
averaged over the seeds. Sizes are the dense float32 bytes of every parameter and buffer over
the compressed file's bytes (the .npz container included). When configs/digits_pruned.yaml
exists (gradual pruning during training), its run is compared with the dense run too.

Speed: `trainkit predict`'s work in one process (open the run, read the CSV, forward,
probabilities) and the forward alone over all 1,797 digits, dense and compressed alternating.

    python -m benchmarks.compression            # 3 seeds
    python -m benchmarks.compression --quick    # 1 seed, fewer speed rounds
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "configs" / "data" / "digits.csv"
GRADUAL = ROOT / "configs" / "digits_pruned.yaml"
FINETUNE_EPOCHS = 5
SPEC = f"""
seed: 0
data: {{name: csv, path: {DIGITS}, target: label, scale: standardize, val_fraction: 0.2, test_fraction: 0.2}}
model: {{name: mlp, hidden: [256, 128], activation: relu}}
optimizer: {{name: adam, lr: 0.001}}
train: {{epochs: 30, batch_size: 32}}
"""
VARIANTS = {
    "90% one-shot": ["--sparsity", "0.9"],
    f"90% one-shot + {FINETUNE_EPOCHS} epochs fine-tuning": ["--sparsity", "0.9", "--finetune", str(FINETUNE_EPOCHS)],
    "int8 per channel": ["--int8"],
    "int8 per tensor": ["--int8", "--per-tensor"],
    "90% one-shot + int8 per channel": ["--sparsity", "0.9", "--int8"],
}
TARGETS = {"int8_points": 0.2, "int8_ratio": 3.7, "sparse90_ratio": 6.0, "sparse90_int8_ratio": 12.0, "gradual": 0.5}


def trainkit(*args) -> dict | None:
    """The --json document of a trainkit command; None when it exits 2 (an option this
    trainkit does not have)."""
    p = subprocess.run([sys.executable, "-m", "trainkit", *map(str, args), "--json"], cwd=ROOT, capture_output=True)
    if p.returncode == 2:
        return None
    if p.returncode != 0:
        raise RuntimeError(f"trainkit {' '.join(map(str, args))} failed:\n{p.stderr.decode()[-2000:]}")
    return json.loads(p.stdout)


def _train(config: Path, out: Path, seed: int) -> dict:
    return trainkit("train", config, "--seed", seed, "-d", out, "--progress", "none")


def bench_compression(seeds: int = 3, rounds: int = 5) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="trainkit-bench-compress-"))
    try:
        spec = tmp / "digits_mlp.yaml"
        spec.write_text(SPEC)
        per: dict[str, list[dict]] = {k: [] for k in VARIANTS}
        dense, gradual, notes = [], [], []
        for seed in range(seeds):
            run = tmp / f"dense-{seed}"
            dense.append(_train(spec, run, seed)["metrics"])
            for i, (label, args) in enumerate(VARIANTS.items()):
                doc = trainkit("compress", run, *args, "--name", f"v{i}")
                if doc is None:
                    if seed == 0:
                        notes.append(f"{label}: skipped, this trainkit has no `compress {' '.join(args)}`")
                    continue
                t, m = doc["total"], doc["metrics"]
                per[label].append(
                    {
                        "test_points": 100 * (m["after"]["test_accuracy"] - m["before"]["test_accuracy"]),
                        "val_points": 100 * (m["after"]["val_accuracy"] - m["before"]["val_accuracy"]),
                        "test_accuracy": m["after"]["test_accuracy"],
                        "stored_ratio": t["ratio"],
                        "file_ratio": t["file_ratio"],
                        "file_bytes": t["file_bytes"],
                        "dense_bytes": t["bytes_dense_float32"],
                        "sparsity": t["sparsity"],
                    }
                )
            if GRADUAL.exists():
                g = _train(GRADUAL, tmp / f"gradual-{seed}", seed)["metrics"]
                gradual.append(100 * (g["test_accuracy"] - dense[-1]["test_accuracy"]))
        if not GRADUAL.exists():
            notes.append(f"{GRADUAL.relative_to(ROOT)} not found: the gradual-pruning row is skipped")
        speed = _speed(tmp / "dense-0", "v2", rounds)  # int8 per channel
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mean = lambda rows, k: statistics.mean(r[k] for r in rows)  # noqa: E731
    variants = {label: {k: mean(rows, k) for k in rows[0]} | {"seeds": rows} for label, rows in per.items() if rows}
    out = {
        "seeds": seeds,
        "dense_test_accuracy": statistics.mean(d["test_accuracy"] for d in dense),
        "variants": variants,
        "gradual_points": statistics.mean(gradual) if gradual else None,
        "gradual_seeds": gradual,
        "speed": speed,
        "notes": notes,
    }
    for label, v in variants.items():
        print(
            f"  compress {label}: test {v['test_points']:+.2f} points, file {v['file_ratio']:.1f}× smaller",
            flush=True,
        )
    print(
        f"  predict on digits: dense {speed['dense']['predict_ms']['median']:.1f} ms, "
        f"compressed {speed['compressed']['predict_ms']['median']:.1f} ms",
        flush=True,
    )
    return out


def _stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _speed(run: Path, name: str, rounds: int) -> dict:
    p = subprocess.run(
        [sys.executable, "-m", "benchmarks.compression", "--speed", str(run), name, str(rounds)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(p.stdout.strip().splitlines()[-1])


def speed_worker(run: str, name: str, rounds: int) -> dict:
    """Milliseconds of inference.predict (open, read, forward, probabilities) and of the
    forward alone on every digit, dense and compressed alternating after a warm-up."""
    from trainkit.data.pipeline import inputs_for
    from trainkit.runs import inference

    times = {m: {"predict_ms": [], "forward_ms": []} for m in ("dense", name)}
    for r in range(rounds + 1):
        for model in times:
            t = time.perf_counter()
            inference.predict(run, str(DIGITS), model=model)
            predict_ms = 1e3 * (time.perf_counter() - t)
            opened = inference.open_model(run, model)
            x = inputs_for(inference._read_like_training(opened, str(DIGITS), False, False), opened.state, opened.dtype)
            t = time.perf_counter()
            for _ in range(10):
                opened.net.predict(x)
            forward_ms = 1e3 * (time.perf_counter() - t) / 10
            if r:  # round 0 warms up
                times[model]["predict_ms"].append(predict_ms)
                times[model]["forward_ms"].append(forward_ms)
    return {"dense" if m == "dense" else "compressed": {k: _stats(v) for k, v in d.items()} for m, d in times.items()}


def compression_rows(res: dict) -> list[tuple]:
    """(name, value, target, op) rows for BENCHMARKS.md's targets table."""
    c = res.get("compression")
    if not c:
        return []
    v = c["variants"]
    get = lambda label, k: v[label][k] if label in v else None  # noqa: E731
    lost = get("int8 per channel", "test_points")
    rows = [
        ("digits int8 per channel, test accuracy lost (points)", None if lost is None else 0.0 - lost,
         TARGETS["int8_points"], "<="),
        ("digits int8 per channel, dense float32 / file bytes", get("int8 per channel", "file_ratio"),
         TARGETS["int8_ratio"], ">="),
        ("digits 90% one-shot, dense float32 / file bytes", get("90% one-shot", "file_ratio"),
         TARGETS["sparse90_ratio"], ">="),
        ("digits 90% + int8, dense float32 / file bytes", get("90% one-shot + int8 per channel", "file_ratio"),
         TARGETS["sparse90_int8_ratio"], ">="),
    ]  # fmt: skip
    gradual = c.get("gradual_points")
    rows.append(
        ("digits gradual pruning to 90%, test accuracy lost (points)", None if gradual is None else 0.0 - gradual,
         TARGETS["gradual"], "<=")
    )  # fmt: skip
    return rows


def compression_markdown(res: dict) -> list[str]:
    c = res.get("compression")
    if not c:
        return []
    lines = [
        "## compression: `trainkit compress` on digits, MLP 64 → 256 → 128 → 10",
        "",
        f"Dense test accuracy {100 * c['dense_test_accuracy']:.2f}% (mean of {c['seeds']} seeds; 359 test digits). "
        "Points are the change in test accuracy, mean over the seeds (min–max); sizes are the dense float32 "
        "bytes over the arrays as stored and over the whole .npz file.",
        "",
        "| compression | test accuracy change (points) | min–max | sparsity | stored ratio | file ratio | file bytes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, v in c["variants"].items():
        pts = [s["test_points"] for s in v["seeds"]]
        lines.append(
            f"| {label} | {v['test_points']:+.2f} | {min(pts):+.2f}–{max(pts):+.2f} | {v['sparsity']:.1%} | "
            f"{v['stored_ratio']:.1f}× | {v['file_ratio']:.1f}× | {v['file_bytes']:,.0f} |"
        )
    if c.get("gradual_points") is not None:
        g = c["gradual_seeds"]
        lines.append(
            f"| gradual pruning to 90% during training (configs/digits_pruned.yaml) | {c['gradual_points']:+.2f} | "
            f"{min(g):+.2f}–{max(g):+.2f} | | | | |"
        )
    s = c["speed"]
    lines += [
        "",
        "Prediction speed, all 1,797 digits (median ms, min–max): the compressed file is decoded to dense float "
        "arrays when it is opened, so the forward pass is the same computation; only opening the file differs.",
        "",
        "| model | predict (open, read CSV, forward) | forward only |",
        "| --- | --- | --- |",
    ]
    for m in ("dense", "compressed"):
        p, f = s[m]["predict_ms"], s[m]["forward_ms"]
        lines.append(
            f"| {m} | {p['median']:.1f} ({p['min']:.1f}–{p['max']:.1f}) | {f['median']:.2f} ({f['min']:.2f}–{f['max']:.2f}) |"
        )
    lines += [""] + [f"- {n}" for n in c["notes"]] + ([""] if c["notes"] else [])
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--speed":
        print(json.dumps(speed_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one seed, fewer speed rounds")
    a = ap.parse_args()
    res = {"compression": bench_compression(1 if a.quick else 3, 3 if a.quick else 7)}
    print()
    for name, value, target, op in compression_rows(res):
        v = "skipped" if value is None else f"{value:.3f}"
        print(f"{name:<60} {v:>8}  target {op} {target:g}")
    print("\n" + "\n".join(compression_markdown(res)))


if __name__ == "__main__":
    main()
