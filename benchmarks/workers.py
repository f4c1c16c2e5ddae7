"""One measurement per process: `python -m benchmarks.workers KIND ARGS...` prints one JSON line.

Each library runs in its own process (numpy's and torch's thread pools disturb each other
in one process). Every worker does a warm-up first and reports only measured repetitions.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"
MLP_NPZ = DATA / "mlp.npz"
HIDDEN = (256, 128)


def mlp_config(batch: int, epochs: int, hidden=HIDDEN, threads="auto", path=MLP_NPZ, **train) -> str:
    """The mlp benchmark's config (784 → hidden → 10, Adam 1e-3, float32): the one every
    benchmark of it trains (here, benchmarks.gpu, benchmarks.mpi_scaling); `train` adds keys
    to its train block (device, metrics)."""
    opts = {"epochs": epochs, "batch_size": batch, "dtype": "float32", "threads": threads, **train}
    return f"""
seed: 0
data: {{name: npz, path: {path}, val_fraction: 0}}
model: {{name: mlp, hidden: {list(hidden)}, activation: relu}}
loss: cross_entropy
optimizer: {{name: adam, lr: 0.001}}
train: {{{", ".join(f"{k}: {v}" for k, v in opts.items())}}}
"""


def make_data() -> None:
    """60,000 x 784 float32 features, 10 classes from a fixed random linear teacher."""
    import numpy as np

    if MLP_NPZ.exists():
        return
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60_000, 784)).astype(np.float32)
    W = rng.normal(size=(784, 10)).astype(np.float32)
    y = (X @ W + rng.normal(size=(60_000, 10)).astype(np.float32)).argmax(axis=1)
    np.savez(MLP_NPZ, X=X, y=y)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB. Linux keeps ru_maxrss across fork + exec, so
    a worker would report its parent's peak (the driver imports torch: ~290 MB) whenever its own
    is lower; VmHWM in /proc/self/status counts only this process image."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def blas_threads() -> int:
    import numpy  # noqa: F401 - threadpoolctl sees only the BLAS libraries already loaded

    try:
        from threadpoolctl import threadpool_info

        return max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=1)
    except ImportError:
        import os

        return os.cpu_count() or 1


def mlp_trainkit(batch: int, epochs: int) -> dict:
    import trainkit
    from trainkit.config import load_config_text

    loaded = load_config_text(mlp_config(batch, epochs + 1), "bench.yaml")
    r = trainkit.train(loaded)
    return {"epoch_s": r.timing["epoch_s"][1:], "final_loss": r.metrics["train_loss"]}


def mlp_torch(batch: int, epochs: int, fused: bool) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(blas_threads())
    torch.manual_seed(0)
    with np.load(MLP_NPZ) as f:
        X, y = torch.from_numpy(f["X"]), torch.from_numpy(f["y"])
    model = torch.nn.Sequential(
        torch.nn.Linear(784, HIDDEN[0]),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN[0], HIDDEN[1]),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN[1], 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True if fused else None)
    loss_fn = torch.nn.CrossEntropyLoss()
    times, n = [], len(X)
    for _ in range(epochs + 1):
        t = time.perf_counter()
        perm = torch.randperm(n)
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    return {
        "epoch_s": times[1:],
        "final_loss": float(loss),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def mlp_sklearn(batch: int, epochs: int) -> dict:
    import warnings

    import numpy as np
    import sklearn
    from sklearn.neural_network import MLPClassifier

    with np.load(MLP_NPZ) as f:
        X, y = f["X"], f["y"]
    # sklearn's defaults kept on purpose: alpha=1e-4 L2, a partial last batch, its own shuffling.
    clf = MLPClassifier(
        hidden_layer_sizes=HIDDEN,
        solver="adam",
        learning_rate_init=1e-3,
        batch_size=batch,
        random_state=0,
        shuffle=True,
    )
    classes = np.unique(y)
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(epochs + 1):
            t = time.perf_counter()
            clf.partial_fit(X, y, classes=classes)  # one pass over the data
            times.append(time.perf_counter() - t)
    return {
        "epoch_s": times[1:],
        "final_loss": float(clf.loss_),
        "sklearn": sklearn.__version__,
        "dtype": str(clf.coefs_[0].dtype),
    }


def threads_trainkit(setting: str, epochs: int) -> dict:
    """The 784 → 128 → 128 → 10 MLP at batch 32 with `train.threads: auto` ("auto") or with
    as many threads as the BLAS starts with ("default": what every run got before auto)."""
    import trainkit
    from trainkit.config import load_config_text

    threads = blas_threads() if setting == "default" else "auto"
    loaded = load_config_text(mlp_config(32, epochs + 1, hidden=(128, 128), threads=threads), "bench.yaml")
    r = trainkit.train(loaded)
    return {"epoch_s": r.timing["epoch_s"][1:], "threads": r.info["threads"]}


def gelu_layer(kind: str, reps: int) -> dict:
    """Forward + backward of one activation on a (256, 512) float32 batch, µs per call.
    kind: gelu (exact, trainkit's erf), gelu-vectorize (exact through np.vectorize(math.erf),
    as before), gelu-tanh, relu."""
    import math

    import numpy as np

    from trainkit.nn import layers

    x = np.random.default_rng(0).normal(size=(256, 512)).astype(np.float32)
    dy = np.ones_like(x)
    if kind == "relu":
        layer = layers.ReLU()
    else:
        layer = layers.GELU(layers.GELUConfig(approximate="tanh" if kind == "gelu-tanh" else "none"))
    if kind == "gelu-vectorize":
        erf = np.vectorize(math.erf, otypes=[float])

        class Before(layers.GELU):
            def forward(self, x, training):
                self.x, self.approximate = x, "none"
                self.cdf = (0.5 * (1.0 + erf(x / math.sqrt(2.0)))).astype(x.dtype)
                return x * self.cdf

        layer = Before(layers.GELUConfig())
    times = []
    for _ in range(reps + 1):  # the first call warms up
        t = time.perf_counter()
        layer.forward(x, True)
        layer.backward(dy.copy())
        times.append(time.perf_counter() - t)
    return {"us": [v * 1e6 for v in times[1:]]}


def tiny_trainkit(steps: int, same_work: bool) -> dict:
    import trainkit

    overrides = [f"train.epochs={steps}"]
    if same_work:  # what the torch loop does: full-batch steps on all 100 samples, loss only
        overrides += ["data.val_fraction=0", "train.metrics=[]"]
    trainkit.train(ROOT / "configs" / "linreg.yaml", overrides=overrides)  # warm-up
    r = trainkit.train(ROOT / "configs" / "linreg.yaml", overrides=overrides)
    return {"us_per_step": r.timing["train_s"] / steps * 1e6, "weight": r.params["weight"].tolist()}


def tiny_numpy(steps: int) -> dict:
    """The bare numpy loop for trainkit-same-work: forward, mse, gradient, update. Their
    difference is trainkit's bookkeeping per step (history, metric sums, checks)."""
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (100, 1))
    y = 3 * X + 2 + rng.uniform(0, 1, (100, 1))
    for _warmup_then_measure in range(2):
        W, b = np.zeros((1, 1)), np.zeros(1)
        t = time.perf_counter()
        for _ in range(steps):
            d = X @ W.T + b - y
            loss = float(np.vdot(d, d)) / d.size
            g = (2.0 / d.size) * d
            W -= 0.5 * (g.T @ X)
            b -= 0.5 * g.sum(axis=0)
        elapsed = time.perf_counter() - t
    return {"us_per_step": elapsed / steps * 1e6, "weight": W.tolist(), "loss": loss}


def tiny_torch(steps: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (100, 1))
    X, y = torch.tensor(x), torch.tensor(3 * x + 2 + rng.uniform(0, 1, (100, 1)))
    model = torch.nn.Linear(1, 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_fn = torch.nn.MSELoss()
    for _warmup_then_measure in range(2):
        t = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad()
            loss_fn(model(X), y).backward()
            opt.step()
        elapsed = time.perf_counter() - t
    return {"us_per_step": elapsed / steps * 1e6, "weight": model.weight.tolist()}


def gemm_peak() -> dict:
    import numpy as np

    n = 2048
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b, c = a.copy(), np.empty_like(a)
    np.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(7):
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t)
    return {"gflops": 2 * n**3 / best / 1e9}


def profile_trainkit(batch: int) -> dict:
    """Where one trainkit epoch's time goes, part by part, and whether float32 Adam state
    holds subnormal numbers that slow it down."""
    import numpy as np

    from trainkit import api
    from trainkit.config import load_config_text
    from trainkit.runs.trainer import _Batches

    exp = api.build(load_config_text(mlp_config(batch, 1), "bench.yaml"))
    tr, a, net = exp.trainer, exp.arrays, exp.net
    batches = _Batches(a["X_train"], a["T_train"], batch, True)
    parts = dict.fromkeys(("gather", "forward", "loss", "metrics", "backward", "optimizer"), 0.0)
    for _epoch in range(2):  # the second epoch is measured
        parts = dict.fromkeys(parts, 0.0)
        acc = tr._accumulator(a["T_train"])
        it = batches.epoch(tr.rng)
        while True:
            t0 = time.perf_counter()
            try:
                xb, tb = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            pred = net.forward(xb, training=True)
            t2 = time.perf_counter()
            value = tr.loss.forward(pred, tb)
            t3 = time.perf_counter()
            acc.add(pred, tb, value, len(xb))
            t4 = time.perf_counter()
            net.backward(tr.loss.backward())
            t5 = time.perf_counter()
            tr.opt.step(1e-3)
            t6 = time.perf_counter()
            for k, (s, e) in zip(parts, ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6))):
                parts[k] += e - s
    tiny = np.finfo(np.float32).tiny
    sub = {k: float(np.mean((v != 0) & (np.abs(v) < tiny))) for k, v in tr.opt.state.items()}

    def adam_us():
        t = time.perf_counter()
        for _ in range(100):
            tr.opt.step(1e-3)
        return (time.perf_counter() - t) / 100 * 1e6

    before = adam_us()
    for v in tr.opt.state.values():
        v[np.abs(v) < tiny] = 0
    return {"parts_s": parts, "subnormal_share": sub, "adam_us": before, "adam_us_flushed": adam_us()}


def memory_trainkit() -> dict:
    import trainkit
    from trainkit.config import load_config_text

    trainkit.train(load_config_text(mlp_config(128, 1), "bench.yaml"))
    return {"peak_rss_mb": peak_rss_mb()}


def main(argv: list[str]) -> None:
    kind, *args = argv
    if kind == "make-data":
        make_data()
        out = {}
    elif kind == "mlp":
        lib, batch, epochs = args[0], int(args[1]), int(args[2])
        if lib == "trainkit":
            out = mlp_trainkit(batch, epochs)
        elif lib in ("torch", "torch-fused"):
            out = mlp_torch(batch, epochs, lib == "torch-fused")
        else:
            out = mlp_sklearn(batch, epochs)
    elif kind == "tiny":
        lib, steps = args[0], int(args[1])
        if lib == "torch":
            out = tiny_torch(steps)
        elif lib == "numpy":
            out = tiny_numpy(steps)
        else:
            out = tiny_trainkit(steps, lib == "trainkit-same-work")
    elif kind == "threads":
        out = threads_trainkit(args[0], int(args[1]))
    elif kind == "gelu":
        out = gelu_layer(args[0], int(args[1]))
    elif kind == "gemm":
        out = gemm_peak()
    elif kind == "profile":
        out = profile_trainkit(int(args[0]))
    elif kind == "memory":
        out = memory_trainkit()
    elif kind.startswith("lenet"):
        from benchmarks import lenet

        out = lenet.main(kind, args)
    else:
        raise SystemExit(f"unknown benchmark {kind!r}")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
