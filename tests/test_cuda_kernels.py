"""The fused CUDA optimizer kernels' source, run through numpy: bit for bit the numpy rules.

trainkit.backend.cuda_kernels writes each fused step as C statements that are also Python;
here they execute on numpy arrays (run_numpy) and must give exactly what the numpy rule
gives, step after step (the first SGD momentum step included). This checks the kernels'
math and operation order, and the host scalars they get, without a GPU; compiling and
launching them is test_gpu.py's.
"""

from __future__ import annotations

import numpy as np
import pytest

from trainkit import registry
from trainkit.backend.cuda_kernels import planner, run_numpy

CASES = [
    ("sgd", {}),
    ("sgd", {"weight_decay": 0.01, "maximize": True}),
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "dampening": 0.3, "weight_decay": 0.02}),
    ("sgd", {"momentum": 0.8, "nesterov": True}),
    ("adam", {}),
    ("adam", {"weight_decay": 0.01, "maximize": True}),
    ("adam", {"amsgrad": True, "betas": (0.8, 0.99)}),
    ("adamw", {"weight_decay": 0.05}),
    ("adamw", {"weight_decay": 0.05, "amsgrad": True}),
]


def _optimizer(name, kw, dtype, n=257):
    entry = registry.get("optimizers", name)
    cfg = entry.schema(name=name, lr=0.01, **kw)
    rng = np.random.default_rng(0)
    p = rng.normal(size=n).astype(dtype)
    g = np.empty_like(p)
    return entry.build(cfg, p, g), rng


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "kw"), CASES, ids=[f"{n}-{'-'.join(k) or 'plain'}" for n, k in CASES])
def test_kernel_source_equals_numpy_rule(name, kw, dtype):
    ref, rng = _optimizer(name, kw, dtype)
    fused, _ = _optimizer(name, kw, dtype)
    plan = planner(fused)
    assert plan is not None
    for step in range(1, 6):
        grad = rng.normal(size=ref.p.shape).astype(dtype)
        lr = 0.01 / step  # a schedule: the scalars change every step
        ref.g[...] = grad
        ref.step(lr)
        fused.g[...] = grad
        fused.t += 1
        run_numpy(plan(fused, lr))
        np.testing.assert_array_equal(fused.p, ref.p, err_msg=f"step {step}")
        for k in ref.state:
            np.testing.assert_array_equal(fused.state[k], ref.state[k], err_msg=f"{k}, step {step}")


def test_only_cupy_gets_fused_steps():
    opt, _ = _optimizer("adam", {}, np.float32)
    assert opt.fused is None  # numpy: the numpy rule
    assert planner(_optimizer("rmsprop", {}, np.float32)[0]) is None  # not fused: its numpy rule runs
