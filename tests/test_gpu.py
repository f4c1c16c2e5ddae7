"""The engine on a real GPU (CuPy): `pytest -m gpu`, run by scripts/gpu_check.sh.

Skipped, never failed, without CuPy or without a GPU it can see, even under
TRAINKIT_TEST_ALL=1: CI has no GPU. What CI checks instead is test_device.py (the engine on
an array module that refuses host conversion) and test_cuda_kernels.py (the fused kernels'
source through numpy). Targets (issue 17): after 10 steps of every optimizer, GPU parameters
equal the CPU run's to 1e-5 relative in float32 and 1e-10 in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CONFIGS

from trainkit import api, registry
from trainkit.backend import using
from trainkit.backend.device import cuda_count

pytestmark = pytest.mark.gpu

try:
    import cupy
except ImportError:
    cupy = None
if cupy is None or cuda_count()[0] == 0:
    pytest.skip("needs CuPy and a GPU (run on a GPU machine: scripts/gpu_check.sh)", allow_module_level=True)

TOL = {"float32": 1e-5, "float64": 1e-10}
TEN_STEPS = ["data.n_samples=320", "train.batch_size=32", "train.epochs=1", "data.val_fraction=0.0"]
CNN = [
    "model={name: sequential, layers: [{name: conv2d, out_channels: 4, kernel_size: 3, padding: 1}, "
    "{name: batch_norm2d}, relu, {name: max_pool2d, kernel_size: 2}, flatten, linear]}",
    "train.batch_size=32",
    "train.epochs=1",
]


def _close(cpu, gpu, dtype):
    for k in cpu.params:
        a, b = cpu.params[k], gpu.params[k]
        scale = max(float(np.abs(a).max()), 1e-30)
        assert float(np.abs(a - b).max()) / scale <= TOL[dtype], k


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", [e.name for e in registry.entries("optimizers")])
def test_ten_steps_of_every_optimizer_mlp_gpu_equals_cpu(name, dtype):
    extra = ["train.batch_size=full"] if name in ("gd", "lbfgs") else []
    over = [*TEN_STEPS, f"optimizer={{name: {name}, lr: 0.01}}", "schedule={name: constant}", f"train.dtype={dtype}"]
    cfg = CONFIGS / "mlp_moons.yaml"
    cpu = api.train(cfg, [*over, *extra])
    gpu = api.train(cfg, [*over, *extra, "train.device=cuda"])
    _close(cpu, gpu, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "lion", "muon"])
def test_cnn_gpu_equals_cpu(name, dtype):
    over = [*CNN, f"optimizer={{name: {name}, lr: 0.005}}", f"train.dtype={dtype}", "data.val_fraction=0.5"]
    cfg = CONFIGS / "digits_cnn.yaml"
    _close(api.train(cfg, over), api.train(cfg, [*over, "train.device=cuda"]), dtype)


def test_fused_kernels_launch_and_equal_the_numpy_rules():
    from trainkit.backend.cuda_kernels import planner

    for name, kw in [("adam", {}), ("adamw", {"weight_decay": 0.1, "amsgrad": True}), ("sgd", {"momentum": 0.9})]:
        entry = registry.get("optimizers", name)
        cfg = entry.schema(name=name, lr=0.01, **kw)
        p = np.random.default_rng(0).normal(size=1001).astype(np.float32)
        ref = entry.build(cfg, p.copy(), np.empty_like(p))
        with using(cupy):
            dev = entry.build(cfg, cupy.asarray(p), cupy.empty(p.shape, cupy.float32))
        assert dev.fused is not None and planner(dev) is not None
        for step in range(3):
            g = np.random.default_rng(step).normal(size=p.shape).astype(np.float32)
            ref.g[...] = g
            ref.step(0.01)
            dev.g[...] = cupy.asarray(g)
            dev.step(0.01)
        np.testing.assert_allclose(dev.p.get(), ref.p, rtol=1e-6, atol=1e-7, err_msg=name)


def test_gpu_checkpoint_resumes_on_cpu(tmp_path):
    cfg, base = CONFIGS / "mlp_moons.yaml", ["data.n_samples=240", "train.batch_size=64"]
    whole = api.train(cfg, [*base, "train.epochs=4", "train.dtype=float64"])
    api.train(cfg, [*base, "train.epochs=2", "train.dtype=float64", "train.device=cuda"], output_dir=tmp_path / "r")
    resumed = api.train(cfg, [*base, "train.epochs=4", "train.dtype=float64"], output_dir=tmp_path / "r", resume=True)
    _close(whole, resumed, "float64")


def test_list_devices_shows_the_gpu(cli):
    r = cli("list", "devices")
    assert r.code == 0 and "cuda:0" in r.stdout
