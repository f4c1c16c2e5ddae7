"""Optimizers against their published update rules (torch.optim's pseudocode), written out
again here independently; then every optimizer minimises a quadratic bowl and Rosenbrock."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from trainkit import registry

N_STEPS = 6


def grad_fn(p):
    """Gradient of an ill-conditioned quadratic ½pᵀAp − bᵀp."""
    A = np.diag(np.linspace(0.5, 4.0, p.size))
    b = np.linspace(-1.0, 1.0, p.size)
    return A @ p - b


# ------------------------------------------------------------------ reference rules


def ref_sgd(p, steps, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, maximize=False):
    buf = None
    for _ in range(steps):
        g = grad_fn(p)
        g = -g if maximize else g
        if weight_decay:
            g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def ref_adagrad(p, steps, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
    s = np.full_like(p, initial_accumulator_value)
    for t in range(1, steps + 1):
        g = grad_fn(p)
        if weight_decay:
            g = g + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        s = s + g * g
        p = p - clr * g / (np.sqrt(s) + eps)
    return p


def ref_rmsprop(p, steps, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    v, gavg, buf = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for _ in range(steps):
        g = grad_fn(p)
        if weight_decay:
            g = g + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        vt = v
        if centered:
            gavg = alpha * gavg + (1 - alpha) * g
            vt = v - gavg * gavg
        if momentum > 0:
            buf = momentum * buf + g / (np.sqrt(vt) + eps)
            p = p - lr * buf
        else:
            p = p - lr * g / (np.sqrt(vt) + eps)
    return p


def ref_adam(
    p,
    steps,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    amsgrad=False,
    decoupled=False,
    maximize=False,
):
    b1, b2 = betas
    m, v, vmax = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t in range(1, steps + 1):
        g = grad_fn(p)
        g = -g if maximize else g
        if decoupled:
            p = p * (1 - lr * weight_decay)
        elif weight_decay:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        mhat = m / (1 - b1**t)
        if amsgrad:
            vmax = np.maximum(vmax, v)
            vhat = vmax / (1 - b2**t)
        else:
            vhat = v / (1 - b2**t)
        p = p - lr * mhat / (np.sqrt(vhat) + eps)
    return p


def ref_nadam(p, steps, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3):
    b1, b2 = betas
    m, v = np.zeros_like(p), np.zeros_like(p)
    mus = []
    for t in range(1, steps + 1):
        g = grad_fn(p)
        if weight_decay:
            g = g + weight_decay * p
        mu_t = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        mus.append(mu_t)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        mhat = mu_next * m / (1 - math.prod(mus) * mu_next) + (1 - mu_t) * g / (1 - math.prod(mus))
        vhat = v / (1 - b2**t)
        p = p - lr * mhat / (np.sqrt(vhat) + eps)
    return p


def ref_radam(p, steps, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    b1, b2 = betas
    m, v = np.zeros_like(p), np.zeros_like(p)
    rho_inf = 2 / (1 - b2) - 1
    for t in range(1, steps + 1):
        g = grad_fn(p)
        if weight_decay:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        mhat = m / (1 - b1**t)
        rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho_t > 5:
            l_t = math.sqrt(1 - b2**t) / (np.sqrt(v) + eps)
            r_t = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            p = p - lr * mhat * l_t * r_t
        else:
            p = p - lr * mhat
    return p


CASES = [
    ("gd", {"lr": 0.1}, lambda p: ref_sgd(p, N_STEPS, 0.1)),
    ("sgd", {"lr": 0.1}, lambda p: ref_sgd(p, N_STEPS, 0.1)),
    ("sgd", {"lr": 0.1, "momentum": 0.9}, lambda p: ref_sgd(p, N_STEPS, 0.1, momentum=0.9)),
    (
        "sgd",
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.5},
        lambda p: ref_sgd(p, N_STEPS, 0.1, momentum=0.9, dampening=0.5),
    ),
    (
        "sgd",
        {"lr": 0.1, "momentum": 0.9, "nesterov": True},
        lambda p: ref_sgd(p, N_STEPS, 0.1, momentum=0.9, nesterov=True),
    ),
    (
        "sgd",
        {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.1},
        lambda p: ref_sgd(p, N_STEPS, 0.1, momentum=0.5, weight_decay=0.1),
    ),
    ("sgd", {"lr": 0.1, "maximize": True}, lambda p: ref_sgd(p, N_STEPS, 0.1, maximize=True)),
    ("adagrad", {}, lambda p: ref_adagrad(p, N_STEPS)),
    (
        "adagrad",
        {"lr": 0.5, "lr_decay": 0.1, "weight_decay": 0.05, "initial_accumulator_value": 0.3},
        lambda p: ref_adagrad(p, N_STEPS, 0.5, 0.1, 0.05, 0.3),
    ),
    ("rmsprop", {}, lambda p: ref_rmsprop(p, N_STEPS)),
    (
        "rmsprop",
        {"momentum": 0.9, "weight_decay": 0.1},
        lambda p: ref_rmsprop(p, N_STEPS, momentum=0.9, weight_decay=0.1),
    ),
    (
        "rmsprop",
        {"centered": True, "alpha": 0.9},
        lambda p: ref_rmsprop(p, N_STEPS, alpha=0.9, centered=True),
    ),
    (
        "rmsprop",
        {"centered": True, "momentum": 0.5},
        lambda p: ref_rmsprop(p, N_STEPS, centered=True, momentum=0.5),
    ),
    ("adam", {"lr": 0.1}, lambda p: ref_adam(p, N_STEPS, 0.1)),
    (
        "adam",
        {"lr": 0.1, "betas": [0.8, 0.9], "weight_decay": 0.1},
        lambda p: ref_adam(p, N_STEPS, 0.1, (0.8, 0.9), weight_decay=0.1),
    ),
    ("adam", {"lr": 0.1, "amsgrad": True}, lambda p: ref_adam(p, N_STEPS, 0.1, amsgrad=True)),
    ("adam", {"lr": 0.1, "maximize": True}, lambda p: ref_adam(p, N_STEPS, 0.1, maximize=True)),
    ("adamw", {"lr": 0.1}, lambda p: ref_adam(p, N_STEPS, 0.1, weight_decay=1e-2, decoupled=True)),
    (
        "adamw",
        {"lr": 0.1, "weight_decay": 0.5, "amsgrad": True},
        lambda p: ref_adam(p, N_STEPS, 0.1, weight_decay=0.5, amsgrad=True, decoupled=True),
    ),
    ("nadam", {}, lambda p: ref_nadam(p, N_STEPS)),
    (
        "nadam",
        {"lr": 0.05, "weight_decay": 0.1, "momentum_decay": 0.01},
        lambda p: ref_nadam(p, N_STEPS, 0.05, weight_decay=0.1, momentum_decay=0.01),
    ),
    ("radam", {"lr": 0.1}, lambda p: ref_radam(p, N_STEPS, 0.1)),
]


def run_trainkit(name, kwargs, p0, steps, lr=None):
    entry = registry.get("optimizers", name)
    cfg = entry.schema(**kwargs)
    p, g = p0.copy(), np.zeros_like(p0)
    opt = entry.build(cfg, p, g)
    for _ in range(steps):
        g[...] = grad_fn(p)
        opt.step(cfg.lr if lr is None else lr)
    return p, opt


@pytest.mark.parametrize("name,kwargs,reference", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_update_rule_matches_published_pseudocode(name, kwargs, reference):
    p0 = np.random.default_rng(0).normal(size=7)
    got, _ = run_trainkit(name, kwargs, p0, N_STEPS)
    np.testing.assert_allclose(got, reference(p0.copy()), rtol=1e-12, atol=1e-14)


def test_radam_rectified_branch_is_reached():
    """RAdam switches to the rectified update once ρₜ > 5 (t = 6 for β₂ = 0.999)."""
    p0 = np.random.default_rng(0).normal(size=7)
    got, _ = run_trainkit("radam", {"lr": 0.01}, p0, 12)
    np.testing.assert_allclose(got, ref_radam(p0.copy(), 12, 0.01), rtol=1e-12)


def test_state_dict_round_trip_continues_identically():
    p0 = np.random.default_rng(1).normal(size=7)
    for name, kwargs, _ in CASES:
        straight, _ = run_trainkit(name, kwargs, p0, 6)
        half, opt = run_trainkit(name, kwargs, p0, 3)
        entry = registry.get("optimizers", name)
        p, g = half.copy(), np.zeros_like(half)
        fresh = entry.build(entry.schema(**kwargs), p, g)
        fresh.load_state_dict(opt.state_dict())
        for _ in range(3):
            g[...] = grad_fn(p)
            fresh.step(fresh.cfg.lr)
        np.testing.assert_array_equal(p, straight, err_msg=name)


# ------------------------------------------------------------------ convergence


def rosenbrock_grad(p):
    x, y = p
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


def bowl_grad(p):
    return np.array([1.0, 10.0]) * p  # condition number 10


CONVERGENCE = [
    ("gd", {"lr": 0.15}, {"lr": 0.001}),
    ("sgd", {"lr": 0.05, "momentum": 0.9}, {"lr": 0.0005, "momentum": 0.9}),
    (
        "sgd",
        {"lr": 0.05, "momentum": 0.9, "nesterov": True},
        {"lr": 0.0005, "momentum": 0.9, "nesterov": True},
    ),
    ("adagrad", {"lr": 0.5}, {"lr": 0.5}),
    ("rmsprop", {"lr": 0.005}, {"lr": 0.001}),
    ("adam", {"lr": 0.05}, {"lr": 0.02}),
    ("adamw", {"lr": 0.05, "weight_decay": 0.0}, {"lr": 0.02, "weight_decay": 0.0}),
    ("nadam", {"lr": 0.05}, {"lr": 0.02}),
    ("radam", {"lr": 0.05}, {"lr": 0.003}),
]


@pytest.mark.parametrize(
    "name,bowl_kwargs,rosen_kwargs",
    CONVERGENCE,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CONVERGENCE)],
)
def test_minimises_quadratic_bowl_and_rosenbrock(name, bowl_kwargs, rosen_kwargs):
    entry = registry.get("optimizers", name)
    for kwargs, grad, start, minimum, steps, tol in (
        (bowl_kwargs, bowl_grad, [3.0, -2.0], [0.0, 0.0], 2000, 1e-2),
        (rosen_kwargs, rosenbrock_grad, [-1.2, 1.0], [1.0, 1.0], 20000, 5e-2),
    ):
        cfg = entry.schema(**kwargs)
        p, g = np.array(start), np.zeros(2)
        opt = entry.build(cfg, p, g)
        for _ in range(steps):
            g[...] = grad(p)
            opt.step(cfg.lr)
        assert np.linalg.norm(p - minimum) < tol, (name, grad.__name__, p)


# ------------------------------------------------------------------ hyperparameter checks


BAD = [
    ("sgd", {"lr": -1}, "lr", "greater than or equal to 0"),
    ("sgd", {"momentum": -0.1}, "momentum", "greater than or equal to 0"),
    ("sgd", {"nesterov": True}, "nesterov", "Nesterov momentum requires a momentum"),
    ("sgd", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "nesterov", "zero dampening"),
    ("sgd", {"weight_decay": -1e-4}, "weight_decay", "greater than or equal to 0"),
    ("adam", {"betas": [1.0, 0.999]}, "betas", "index 0: 1.0"),
    ("adam", {"betas": [0.9, -0.1]}, "betas", "index 1: -0.1"),
    ("adam", {"eps": -1e-8}, "eps", "greater than or equal to 0"),
    ("adamw", {"weight_decay": -0.01}, "weight_decay", "greater than or equal to 0"),
    ("adagrad", {"lr_decay": -1}, "lr_decay", "greater than or equal to 0"),
    (
        "adagrad",
        {"initial_accumulator_value": -1},
        "initial_accumulator_value",
        "greater than or equal to 0",
    ),
    ("rmsprop", {"alpha": -0.5}, "alpha", "greater than or equal to 0"),
    ("nadam", {"momentum_decay": -1}, "momentum_decay", "greater than or equal to 0"),
    ("adam", {"lr": "fast"}, "lr", "valid number"),
]


@pytest.mark.parametrize("name,kwargs,field,message", BAD)
def test_torch_range_checks(name, kwargs, field, message):
    with pytest.raises(ValidationError) as e:
        registry.get("optimizers", name).schema(**kwargs)
    errs = e.value.errors()
    assert any(err["loc"][0] == field and message in err["msg"] for err in errs), errs
