"""`trainkit compress` on the shipped digits CSV: accuracy and file size of each compression,
gradual pruning during training beside one-shot pruning, and prediction speed of the
compressed model against the dense one.

Two models, each trained dense with three seeds and compressed by the CLI (`trainkit
compress RUN ... --json`): 90% one-shot magnitude pruning without fine-tuning, the same plus
fine-tuning, int8 per channel, int8 per tensor, 90% + int8.
- cnn: configs/digits_pruned.yaml's CNN (13.8k parameters, a validation split only), dense
  with `--set prune=null`; that config as it is gives the gradual-pruning row.
- mlp: 64 → 256 → 128 → 10 (50.8k parameters; validation and test splits of 20%).
Accuracy changes are in points (test accuracy where the run has a test split, else
validation), averaged over the seeds. Sizes are the dense float32 bytes of every parameter and
buffer over the arrays as stored, and over the whole file (the .npz container included).

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
MLP = f"""
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


def trainkit(*args) -> dict:
    """The --json document of a trainkit command."""
    p = subprocess.run([sys.executable, "-m", "trainkit", *map(str, args), "--json"], cwd=ROOT, capture_output=True)
    if p.returncode != 0:
        raise RuntimeError(f"trainkit {' '.join(map(str, args))} failed:\n{p.stderr.decode()[-2000:]}")
    return json.loads(p.stdout)


def _train(config: Path, out: Path, seed: int, *sets: str) -> dict:
    return trainkit("train", config, "--seed", seed, "-d", out, "--progress", "none", *sets)


def _accuracy(metrics: dict) -> float:
    return metrics["test_accuracy"] if "test_accuracy" in metrics else metrics["val_accuracy"]


def _model(config: Path, dense_sets: list[str], tmp: Path, seeds: int) -> dict:
    """Train `config` dense with each seed and compress it every way in VARIANTS."""
    per: dict[str, list[dict]] = {k: [] for k in VARIANTS}
    dense = []
    for seed in range(seeds):
        run = tmp / f"{config.stem}-{seed}"
        dense.append(_accuracy(_train(config, run, seed, *dense_sets)["metrics"]))
        for i, (label, args) in enumerate(VARIANTS.items()):
            doc = trainkit("compress", run, *args, "--name", f"v{i}")
            t, m = doc["total"], doc["metrics"]
            per[label].append(
                {
                    "points": 100 * (_accuracy(m["after"]) - _accuracy(m["before"])),
                    "stored_ratio": t["ratio"],
                    "file_ratio": t["file_ratio"],
                    "file_bytes": t["file_bytes"],
                    "dense_bytes": t["bytes_dense_float32"],
                    "sparsity": t["sparsity"],
                }
            )
    split = "test" if "test_accuracy" in m["before"] else "val"
    mean = lambda rows, k: statistics.mean(r[k] for r in rows)  # noqa: E731
    variants = {label: {k: mean(rows, k) for k in rows[0]} | {"seeds": rows} for label, rows in per.items() if rows}
    return {"split": split, "dense_accuracy": statistics.mean(dense), "dense_seeds": dense, "variants": variants}


def bench_compression(seeds: int = 3, rounds: int = 5) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="trainkit-bench-compress-"))
    notes: list[str] = []
    try:
        spec = tmp / "digits_mlp.yaml"
        spec.write_text(MLP)
        models = {"mlp": _model(spec, [], tmp, seeds)}
        gradual = []
        if GRADUAL.exists():
            models["cnn"] = _model(GRADUAL, ["--set", "prune=null"], tmp, seeds)
            for seed in range(seeds):
                g = _train(GRADUAL, tmp / f"gradual-{seed}", seed)["metrics"]
                gradual.append(100 * (_accuracy(g) - models["cnn"]["dense_seeds"][seed]))
        else:
            notes.append(f"{GRADUAL.relative_to(ROOT)} not found: the CNN and gradual-pruning rows are skipped")
        speed = _speed(tmp / f"{spec.stem}-0", "v2", rounds)  # int8 per channel
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {
        "seeds": seeds,
        "models": models,
        "gradual_points": statistics.mean(gradual) if gradual else None,
        "gradual_seeds": gradual,
        "speed": speed,
        "notes": notes,
    }
    for name, m in models.items():
        for label, v in m["variants"].items():
            print(
                f"  compress {name} {label}: {m['split']} {v['points']:+.2f} points, file {v['file_ratio']:.1f}× smaller",
                flush=True,
            )
    if gradual:
        print(f"  gradual pruning cnn to 90%: val {out['gradual_points']:+.2f} points", flush=True)
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
    rows = []
    for name, m in c["models"].items():
        v, split = m["variants"], m["split"]
        get = lambda label, k, v=v: v[label][k] if label in v else None  # noqa: E731
        lost = get("int8 per channel", "points")
        rows += [
            (f"digits {name} int8 per channel, {split} accuracy lost (points)", None if lost is None else 0.0 - lost,
             TARGETS["int8_points"], "<="),
            (f"digits {name} int8 per channel, dense float32 / file bytes", get("int8 per channel", "file_ratio"),
             TARGETS["int8_ratio"], ">="),
            (f"digits {name} 90% one-shot, dense float32 / file bytes", get("90% one-shot", "file_ratio"),
             TARGETS["sparse90_ratio"], ">="),
            (f"digits {name} 90% + int8, dense float32 / file bytes",
             get("90% one-shot + int8 per channel", "file_ratio"), TARGETS["sparse90_int8_ratio"], ">="),
        ]  # fmt: skip
    g = c.get("gradual_points")
    rows.append(
        ("digits cnn gradual pruning to 90% (configs/digits_pruned.yaml), val accuracy lost (points)",
         None if g is None else 0.0 - g, TARGETS["gradual"], "<=")
    )  # fmt: skip
    return rows


def compression_markdown(res: dict) -> list[str]:
    c = res.get("compression")
    if not c:
        return []
    lines = [
        "## compression: `trainkit compress` on digits",
        "",
        "cnn: configs/digits_pruned.yaml's CNN trained dense (`--set prune=null`), validation accuracy; mlp: "
        f"64 → 256 → 128 → 10, test accuracy. Mean of {c['seeds']} seeds (min–max). Sizes: dense float32 bytes "
        "over the arrays as stored, and over the whole .npz file.",
        "",
        "| model | compression | accuracy change (points) | min–max | sparsity | stored ratio | file ratio | file bytes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in c["models"].items():
        lines.append(f"| {name} | dense ({100 * m['dense_accuracy']:.2f}% {m['split']} accuracy) | | | | | | |")
        for label, v in m["variants"].items():
            pts = [s["points"] for s in v["seeds"]]
            lines.append(
                f"| {name} | {label} | {v['points']:+.2f} | {min(pts):+.2f}–{max(pts):+.2f} | {v['sparsity']:.1%} | "
                f"{v['stored_ratio']:.1f}× | {v['file_ratio']:.1f}× | {v['file_bytes']:,.0f} |"
            )
        if name == "cnn" and c.get("gradual_points") is not None:
            g = c["gradual_seeds"]
            lines.append(
                f"| cnn | gradual pruning to 90% during training | {c['gradual_points']:+.2f} | "
                f"{min(g):+.2f}–{max(g):+.2f} | | | | |"
            )
    s = c["speed"]
    lines += [
        "",
        "Prediction speed of the mlp, all 1,797 digits (median ms, min–max): the compressed file is decoded to "
        "dense float arrays when it is opened, so the forward pass is the same computation; only opening the "
        "file differs.",
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
