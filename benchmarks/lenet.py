"""The LeNet-style benchmark: two conv + pool blocks and two dense layers on 28×28 one-channel
images, batch 128, trainkit against torch CPU (each in its own process, via workers.py).

    conv 1→6 5×5 pad 2, ReLU, max-pool 2 → conv 6→16 5×5, ReLU, max-pool 2 → 400 → 120 → 10
"""

from __future__ import annotations

import time

from benchmarks.workers import DATA, blas_threads, peak_rss_mb

LENET_NPZ = DATA / "lenet.npz"
N_IMAGES = 12_000

LENET_LAYERS = """
    - {name: conv2d, out_channels: 6, kernel_size: 5, padding: 2}
    - relu
    - {name: max_pool2d, kernel_size: 2}
    - {name: conv2d, out_channels: 16, kernel_size: 5}
    - relu
    - {name: max_pool2d, kernel_size: 2}
    - flatten
    - {name: linear, out_features: 120}
    - relu
    - linear
"""


def lenet_config(batch: int, epochs: int) -> str:
    return f"""
seed: 0
data: {{name: npz, path: {LENET_NPZ}, val_fraction: 0}}
model:
  name: sequential
  layers:{LENET_LAYERS}
loss: cross_entropy
optimizer: {{name: adam, lr: 0.001}}
train: {{epochs: {epochs}, batch_size: {batch}, dtype: float32, metrics: []}}
"""


def make_data() -> None:
    """N_IMAGES × (1, 28, 28) float32 images, 10 classes from a fixed random linear teacher."""
    import numpy as np

    if LENET_NPZ.exists():
        return
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    X = rng.random((N_IMAGES, 1, 28, 28), dtype=np.float32)
    W = rng.normal(size=(784, 10)).astype(np.float32)
    y = (X.reshape(N_IMAGES, -1) @ W).argmax(axis=1)
    np.savez(LENET_NPZ, X=X, y=y)


# Multiply-adds ×2 of one product per sample: conv1 (6 × 1·5·5 at 28×28), conv2 (16 × 6·5·5 at 10×10)
CONV1_FLOPS, CONV2_FLOPS = 2 * 28 * 28 * 6 * 25, 2 * 10 * 10 * 16 * 6 * 25


def lenet_flops(n: int = N_IMAGES) -> float:
    """Multiply-adds ×2 of one epoch's convolutions and dense layers: forward once, backward
    twice (weights and inputs), but no input gradient for the first conv."""
    dense = 2 * (400 * 120 + 120 * 10)
    return n * (3 * (CONV1_FLOPS + CONV2_FLOPS + dense) - CONV1_FLOPS)


def lenet_trainkit(batch: int, epochs: int) -> dict:
    import trainkit
    from trainkit.config import load_config_text

    r = trainkit.train(load_config_text(lenet_config(batch, epochs + 1), "bench.yaml"))
    return {"epoch_s": r.timing["epoch_s"][1:], "final_loss": r.metrics["train_loss"]}


def lenet_torch(batch: int, epochs: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(blas_threads())
    torch.manual_seed(0)
    with np.load(LENET_NPZ) as f:
        X, y = torch.from_numpy(f["X"]), torch.from_numpy(f["y"])
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120),
        nn.ReLU(),
        nn.Linear(120, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
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
    return {"epoch_s": times[1:], "final_loss": float(loss.detach()), "threads": torch.get_num_threads()}


def conv_flops(convs, batch: int) -> float:
    """Useful flops of one training step's conv products: 2·O·C·kh·kw·Ho·Wo·n for the forward
    product, the weight gradient and (all but the first layer) the input gradient."""
    return sum(2 * c.W2.size * c.out_hw[0] * c.out_hw[1] * batch * (3 if c.needs_input_grad else 2) for c in convs)


def conv_gemm(batch: int, steps: int = 7) -> dict:
    """The conv layers at `batch`, timed in place during real training steps (forward and
    backward of the whole net): their GEMMs alone (every call of trainkit.nn.conv.gemm, so the
    benchmark times exactly the products the layers run) and the whole conv layers (im2col,
    col2im, bias and copies included). GFLOP/s of useful conv flops, best step of `steps`.
    The batch's parts (nn/network.py) run one after the other here, with the BLAS's own
    threads, so every timed call has the machine to itself."""
    import numpy as np

    from trainkit import api
    from trainkit.config import load_config_text
    from trainkit.nn import conv

    exp = api.build(load_config_text(lenet_config(batch, 1), "bench.yaml"))
    net, X = exp.net, exp.arrays["X_train"][:batch]
    convs = [layer for layer in net.layers if isinstance(layer, conv._Conv)]
    # every part's copies of them too (a batch this large trains as parts: nn/network.py)
    timed_convs = [layer for stack in net.stacks() for layer in stack if isinstance(layer, conv._Conv)]
    spent = {"gemm": 0.0, "layers": 0.0}

    def timed(fn, key):
        def call(*args):
            t = time.perf_counter()
            try:
                return fn(*args)
            finally:
                spent[key] += time.perf_counter() - t

        return call

    plain = conv.gemm
    conv.gemm = timed(plain, "gemm")
    for c in timed_convs:  # instance attributes shadow the methods for this benchmark's net only
        c.forward, c.backward = timed(c.forward, "layers"), timed(c.backward, "layers")
    best = {"gemm": float("inf"), "layers": float("inf")}
    try:
        for _ in range(steps + 1):  # the first step allocates the buffers: the min skips it
            spent.update(gemm=0.0, layers=0.0)
            out = net.forward(X, training=True)
            net.backward(np.full_like(out, 1 / out.size))
            best = {k: min(best[k], spent[k]) for k in best}
    finally:
        conv.gemm = plain
    flops = conv_flops(convs, batch)
    return {"gflops": flops / best["gemm"] / 1e9, "layers_gflops": flops / best["layers"] / 1e9}


def conv_torch(batch: int, steps: int = 7) -> dict:
    """torch's two LeNet conv layers, forward and backward at `batch` (no input gradient for
    the first, as in training): GFLOP/s of the same useful flops as conv_gemm's layers."""
    import torch

    torch.set_num_threads(blas_threads())
    torch.manual_seed(0)
    c1, c2 = torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.Conv2d(6, 16, 5)
    x1, x2 = torch.rand(batch, 1, 28, 28), torch.rand(batch, 6, 14, 14, requires_grad=True)
    best = float("inf")
    for _ in range(steps + 1):
        t = time.perf_counter()
        for c, x in ((c1, x1), (c2, x2)):
            y = c(x)
            y.backward(torch.full_like(y, 1 / y.numel()))
        best = min(best, time.perf_counter() - t)
    flops = batch * (2 * CONV1_FLOPS + 3 * CONV2_FLOPS)
    return {"layers_gflops": flops / best / 1e9, "threads": torch.get_num_threads()}


def lenet_memory() -> dict:
    """Peak RSS of one epoch at batch 128, and the im2col buffers' size for one batch."""
    import trainkit
    from trainkit.config import load_config_text
    from trainkit.nn.conv import _Conv

    r = trainkit.train(load_config_text(lenet_config(128, 1), "bench.yaml"))
    del r
    from trainkit import api

    exp = api.build(load_config_text(lenet_config(128, 1), "bench.yaml"))
    exp.net.forward(exp.arrays["X_train"][:128], training=True)
    cols = sum(layer.cols.nbytes for stack in exp.net.stacks() for layer in stack if isinstance(layer, _Conv))
    return {
        "peak_rss_mb": peak_rss_mb(),
        "im2col_mb": cols / 2**20,
        "data_mb": LENET_NPZ.stat().st_size / 2**20,
    }


def main(kind: str, args: list[str]) -> dict:
    if kind == "lenet-data":
        make_data()
        return {}
    if kind == "lenet":
        lib, batch, epochs = args[0], int(args[1]), int(args[2])
        return lenet_trainkit(batch, epochs) if lib == "trainkit" else lenet_torch(batch, epochs)
    if kind == "lenet-gemm":
        return conv_gemm(int(args[0]))
    if kind == "lenet-conv-torch":
        return conv_torch(int(args[0]))
    if kind == "lenet-memory":
        return lenet_memory()
    raise SystemExit(f"unknown benchmark {kind!r}")
