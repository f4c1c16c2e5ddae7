"""`make bench-gpu`: trainkit on a GPU (CuPy) against PyTorch CUDA on the same GPU, in one run.

Cases (issue 17's targets):
- mlp: 784-256-128-10, Adam, 60,000 samples, batch 128 and 1024, seconds per epoch: trainkit
  (device cuda) vs torch eager with fused Adam vs torch with the whole step captured in a CUDA
  graph (Adam capturable). Targets: ≤ 0.30× / ≤ 0.45× torch fused, within 2× of the graph.
- wide: 1024-4096-4096-10, batch 1024: trainkit cuda vs trainkit cpu per step (target ≥ 50×).
- lenet: benchmarks/lenet.py's CNN at batch 128 vs torch CUDA eager (target ≤ 1.5×).
- numerics: 10 steps of every optimizer, GPU vs CPU, max relative difference of the
  parameters (targets 1e-5 float32, 1e-10 float64).
Prints a table and writes benchmarks/results/gpu.json. Needs CuPy, a GPU and torch with CUDA;
about 3-4 minutes. Usage: python -m benchmarks.gpu [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.workers import mlp_config

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "gpu.json"
TMP = Path(tempfile.mkdtemp(prefix="trainkit-gpu-bench-"))


def _npz(name: str, n: int, features: int, classes: int = 10) -> Path:
    path = TMP / f"{name}.npz"
    if not path.exists():
        rng = np.random.default_rng(0)
        X = rng.random((n, features), dtype=np.float32)
        y = (X @ rng.normal(size=(features, classes)).astype(np.float32)).argmax(axis=1)
        np.savez(path, X=X, y=y)
    return path


def trainkit_epoch_s(config_text: str) -> float:
    """Median seconds per epoch after the first (kernel compilation, memory pool warm-up)."""
    from trainkit import api
    from trainkit.config import load_config

    path = TMP / "config.yaml"
    path.write_text(config_text)
    result = api.train(load_config(path))
    times = result.timing["epoch_s"]
    return statistics.median(times[1:] if len(times) > 1 else times)


def _torch_mlp(sizes, dev):
    import torch

    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1]).to(dev)


def torch_epoch_s(make_model, X, y, batch: int, epochs: int, graph: bool) -> float:
    """Seconds per epoch of torch on the GPU: eager with fused Adam, or the whole step (forward,
    backward, Adam) captured once in a CUDA graph and replayed (Adam capturable)."""
    import torch

    dev = "cuda"
    torch.manual_seed(0)
    model = make_model(dev)
    X, y = torch.as_tensor(X, device=dev), torch.as_tensor(y, device=dev)
    n = len(X)
    loss_fn = torch.nn.CrossEntropyLoss()
    if graph:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True)
        sx, sy = X[:batch].clone(), y[:batch].clone()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):  # warm-up before capture, as the CUDA graphs notes require
                opt.zero_grad(set_to_none=True)
                loss_fn(model(sx), sy).backward()
                opt.step()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(g):
            static_loss = loss_fn(model(sx), sy)
            static_loss.backward()
            opt.step()
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    times = []
    for _ in range(epochs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=dev)
        for i in range(0, n - batch + 1 if graph else n, batch):  # the graph has one batch shape
            idx = perm[i : i + batch]
            if graph:
                torch.index_select(X, 0, idx, out=sx)
                torch.index_select(y, 0, idx, out=sy)
                g.replay()
            else:
                opt.zero_grad(set_to_none=True)
                loss_fn(model(X[idx]), y[idx]).backward()
                opt.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def bench_mlp(quick: bool) -> list[dict]:
    n = 60_000
    path = _npz("mnist_like", n, 784)
    with np.load(path) as f:
        X, y = f["X"], f["y"]
    rows = []
    for batch in (128, 1024):
        epochs = 3 if quick else 5
        tk = trainkit_epoch_s(mlp_config(batch, epochs, [256, 128], path=path, metrics="[]", device="cuda"))
        fused = torch_epoch_s(lambda d: _torch_mlp([784, 256, 128, 10], d), X, y, batch, epochs, graph=False)
        graph = torch_epoch_s(lambda d: _torch_mlp([784, 256, 128, 10], d), X, y, batch, epochs, graph=True)
        rows.append(
            {
                "case": f"mlp784 batch {batch}",
                "trainkit_cuda_s": tk,
                "torch_fused_adam_s": fused,
                "torch_cuda_graph_s": graph,
                "vs_torch_fused": tk / fused,
                "vs_torch_graph": tk / graph,
                "target_vs_fused": 0.30 if batch == 128 else 0.45,
                "target_vs_graph": 2.0,
            }
        )
    return rows


def bench_wide(quick: bool) -> dict:
    gpu_path = _npz("wide_gpu", 16_384, 1024)
    cpu_path = _npz("wide_cpu", 2_048, 1024)
    gpu = trainkit_epoch_s(mlp_config(1024, 3, [4096, 4096], path=gpu_path, metrics="[]", device="cuda")) / 16
    cpu = (
        trainkit_epoch_s(mlp_config(1024, 1 if quick else 2, [4096, 4096], path=cpu_path, metrics="[]", device="cpu"))
        / 2
    )
    return {"case": "wide 1024-4096-4096-10 batch 1024", "cuda_step_s": gpu, "cpu_step_s": cpu, "speedup": cpu / gpu}


def bench_lenet(quick: bool) -> dict:
    import torch

    from benchmarks.lenet import LENET_NPZ, lenet_config, make_data

    make_data()
    epochs = 3 if quick else 4
    text = lenet_config(128, epochs).replace("metrics: []}", "metrics: [], device: cuda}")
    tk = trainkit_epoch_s(text)
    with np.load(LENET_NPZ) as f:
        X, y = f["X"], f["y"]

    def lenet(dev):
        nn = torch.nn
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 10),
        ).to(dev)  # fmt: skip

    tt = torch_epoch_s(lenet, X, y, 128, epochs, graph=False)
    return {"case": "lenet batch 128", "trainkit_cuda_s": tk, "torch_cuda_s": tt, "ratio": tk / tt, "target": 1.5}


def bench_numerics() -> list[dict]:
    """10 steps of every optimizer on the MLP, GPU against CPU."""
    from trainkit import api, registry

    cfg = ROOT / "configs" / "mlp_moons.yaml"
    rows = []
    for e in registry.entries("optimizers"):
        for dtype, tol in (("float32", 1e-5), ("float64", 1e-10)):
            over = [
                "data.n_samples=320", "data.val_fraction=0.0", "train.batch_size=32", "train.epochs=1",
                f"optimizer={{name: {e.name}, lr: 0.01}}", "schedule={name: constant}", f"train.dtype={dtype}",
            ]  # fmt: skip
            if e.name in ("gd", "lbfgs"):
                over.append("train.batch_size=full")
            cpu, gpu = api.train(cfg, over), api.train(cfg, [*over, "train.device=cuda"])
            rel = max(
                float(np.abs(cpu.params[k] - gpu.params[k]).max()) / max(float(np.abs(cpu.params[k]).max()), 1e-30)
                for k in cpu.params
            )
            rows.append({"optimizer": e.name, "dtype": dtype, "max_rel": rel, "target": tol, "ok": rel <= tol})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer epochs")
    args = ap.parse_args()
    import cupy
    import torch

    if not torch.cuda.is_available():
        sys.exit("torch has no CUDA here: the comparison needs torch built with CUDA")
    sys.path.insert(0, str(ROOT))
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "gpu": torch.cuda.get_device_name(0),
        "cupy": cupy.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    t0 = time.perf_counter()
    out["mlp"] = bench_mlp(args.quick)
    print(json.dumps(out["mlp"], indent=1), flush=True)
    out["wide"] = bench_wide(args.quick)
    print(json.dumps(out["wide"], indent=1), flush=True)
    out["lenet"] = bench_lenet(args.quick)
    print(json.dumps(out["lenet"], indent=1), flush=True)
    out["numerics"] = bench_numerics()
    bad = [r for r in out["numerics"] if not r["ok"]]
    print(f"numerics: {len(out['numerics']) - len(bad)}/{len(out['numerics'])} within target", flush=True)
    for r in bad:
        print(f"  MISSED {r['optimizer']} {r['dtype']}: {r['max_rel']:.2e} > {r['target']:.0e}")
    out["wall_s"] = time.perf_counter() - t0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    print(f"wrote {RESULTS} ({out['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
