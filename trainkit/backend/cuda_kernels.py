"""Fused optimizer steps for CuPy: one elementwise kernel over the flat buffers per step.

The numpy rules (trainkit.optim.optimizers) make 6-10 whole-array passes a step, each a
kernel launch on a GPU. Here SGD (momentum, dampening, Nesterov, weight decay, maximize),
Adam, AdamW (and amsgrad) are one `cupy.ElementwiseKernel` each. A rule's step is a `plan`:
the kernel body (C statements, one operation order), the arrays it reads and writes and the
step's scalars, computed on the host exactly as the numpy rule computes them. The body
repeats the numpy rule's operations in its order, and is compiled with --fmad=false (no fused
multiply-add contraction), so each operation rounds as numpy's does.

`run_numpy(plan)` executes the same body with numpy (each statement parsed as Python arithmetic, `T `
declarations dropped, sqrt/max mapped to numpy): tests/test_cuda_kernels.py checks
it against the numpy rules bit for bit on a machine without a GPU. The CUDA compilation and
launch themselves are only exercised on a GPU (tests/test_gpu.py).
"""

from __future__ import annotations

import ast
import functools
import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Plan:
    """One fused step: `body` over `inputs` (read) and `outputs` (read and written) arrays,
    with host `scalars`, all of the parameters' dtype."""

    body: str
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    scalars: dict = field(default_factory=dict)


def _sgd(opt, lr) -> Plan:
    c = opt.cfg
    lines = ["T d = g;"]
    scalars = {"lr": lr}
    if c.maximize:
        lines.append("d = -d;")
    if c.weight_decay:
        lines.append("d = d + p * wd;")
        scalars["wd"] = c.weight_decay
    outputs = {"p": opt.p}
    if c.momentum:
        outputs["buf"] = opt.state["momentum_buffer"]
        scalars["mu"] = c.momentum
        if opt.t == 1:
            lines.append("buf = d;")
        elif c.dampening:
            lines.append("buf = buf * mu + d * damp;")
            scalars["damp"] = 1.0 - c.dampening
        else:
            lines.append("buf = buf * mu + d;")
        lines.append("d = d + buf * mu;" if c.nesterov else "d = buf;")
    lines.append("p = p - d * lr;")
    return Plan(" ".join(lines), {"g": opt.g}, outputs, scalars)


def _adam(opt, lr) -> Plan:
    c = opt.cfg
    b1, b2 = c.betas
    bc1 = 1.0 - b1**opt.t
    bc2_sqrt = math.sqrt(1.0 - b2**opt.t)
    lines, scalars = ["T gg = g;"], {}
    if opt.decoupled and c.weight_decay:
        lines.append("p = p * decay;")
        scalars["decay"] = 1.0 - lr * c.weight_decay
    if c.maximize:
        lines.append("gg = -gg;")
    if c.weight_decay and not opt.decoupled:
        lines.append("gg = gg + p * wd;")
        scalars["wd"] = c.weight_decay
    lines += ["m = m * b1 + gg * omb1;", "v = v * b2 + gg * gg * omb2;"]
    outputs = {"p": opt.p, "m": opt.state["exp_avg"], "v": opt.state["exp_avg_sq"]}
    vhat = "v"
    if c.amsgrad:
        outputs["vmax"] = opt.state["max_exp_avg_sq"]
        lines.append("vmax = max(vmax, v);")
        vhat = "vmax"
    lines.append(f"p = p - m / (sqrt({vhat}) + eps_hat) * step;")
    scalars.update(b1=b1, omb1=1.0 - b1, b2=b2, omb2=1.0 - b2, eps_hat=c.eps * bc2_sqrt, step=lr * bc2_sqrt / bc1)
    return Plan(" ".join(lines), {"g": opt.g}, outputs, scalars)


def planner(opt):
    """The plan function for this optimizer, or None (not fused: the numpy rule runs)."""
    from trainkit.optim.optimizers import SGD, Adam, AdamW

    return {SGD: _sgd, Adam: _adam, AdamW: _adam}.get(type(opt))


# ------------------------------------------------------------------------ running a plan


def run_numpy(plan: Plan) -> None:
    """Execute the kernel body with numpy arrays (the CPU check of the CUDA source): each
    statement `x = expr;` evaluated operation by operation in the body's order."""
    dtype = next(iter(plan.outputs.values())).dtype
    env = dict(plan.inputs)
    env.update({k: v.copy() for k, v in plan.outputs.items()})
    env.update({k: dtype.type(v) for k, v in plan.scalars.items()})
    for stmt in plan.body.split(";"):
        stmt = stmt.strip().removeprefix("T ")
        if stmt:
            (assign,) = ast.parse(stmt).body
            env[assign.targets[0].id] = _evaluate(assign.value, env)
    for k, arr in plan.outputs.items():
        arr[...] = env[k]


_OPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
_CALLS = {"sqrt": np.sqrt, "max": np.maximum}


def _evaluate(node, env):
    """The kernel's arithmetic on numpy values: + − × ÷, unary −, sqrt, max, names."""
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.BinOp):
        return _OPS[type(node.op)](_evaluate(node.left, env), _evaluate(node.right, env))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return np.negative(_evaluate(node.operand, env))
    if isinstance(node, ast.Call):
        return _CALLS[node.func.id](*(_evaluate(a, env) for a in node.args))
    raise ValueError(f"not kernel arithmetic: {ast.dump(node)}")


@functools.cache
def _kernel(body: str, inputs: tuple, outputs: tuple, scalars: tuple):
    import cupy

    params_in = ", ".join([*(f"T {k}" for k in inputs), *(f"T {k}" for k in scalars)])
    params_out = ", ".join(f"T {k}" for k in outputs)
    return cupy.ElementwiseKernel(params_in, params_out, body, "trainkit_fused_step", options=("--fmad=false",))


def run_cupy(plan: Plan) -> None:
    """Launch the plan as one CUDA kernel (compiled once per body, cached)."""
    dtype = next(iter(plan.outputs.values())).dtype
    k = _kernel(plan.body, tuple(plan.inputs), tuple(plan.outputs), tuple(plan.scalars))
    k(*plan.inputs.values(), *(dtype.type(v) for v in plan.scalars.values()), *plan.outputs.values())


def fused_step(opt, module):
    """A `step(lr)` body that runs `opt`'s update as one kernel, or None: only on CuPy, for
    the rules above."""
    plan = planner(opt)
    if plan is None or getattr(module, "__name__", "") != "cupy":
        return None
    return lambda lr: run_cupy(plan(opt, lr))
