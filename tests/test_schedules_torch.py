"""The cyclical, restarting, polynomial and sequential schedules against torch.optim.lr_scheduler:
the rate in force at each of 120 steps, from the same base rate."""

from __future__ import annotations

import math

import pytest
from conftest import require
from pydantic import ValidationError

from trainkit import registry
from trainkit.optim.schedules import build_schedule

BASE = 0.1
N = 120


def trainkit_rates(block: dict) -> list[float]:
    cfg = registry.get("schedules", block["name"]).schema(**block)
    sched = build_schedule(cfg, BASE)
    return [sched.lr(i) for i in range(N)]


def torch_rates(make) -> list[float]:
    torch = require("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE)
    sched = make(torch.optim.lr_scheduler, opt)
    out = []
    for _ in range(N):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


CASES = [
    (
        "one_cycle",
        {"total_steps": N},
        lambda L, o: L.OneCycleLR(o, max_lr=BASE, total_steps=N, cycle_momentum=False),
    ),
    (
        "one_cycle",
        {"total_steps": N, "max_lr": 0.5, "pct_start": 0.25, "anneal_strategy": "linear", "div_factor": 10},
        lambda L, o: L.OneCycleLR(
            o, max_lr=0.5, total_steps=N, pct_start=0.25, anneal_strategy="linear", div_factor=10, cycle_momentum=False
        ),
    ),
    (
        "one_cycle",
        {"total_steps": N, "three_phase": True, "final_div_factor": 100},
        lambda L, o: L.OneCycleLR(
            o, max_lr=BASE, total_steps=N, three_phase=True, final_div_factor=100, cycle_momentum=False
        ),
    ),
    (
        "cyclic",
        {"max_lr": 1.0, "step_size_up": 10},
        lambda L, o: L.CyclicLR(o, base_lr=BASE, max_lr=1.0, step_size_up=10, cycle_momentum=False),
    ),
    (
        "cyclic",
        {"max_lr": 1.0, "step_size_up": 7, "step_size_down": 13, "mode": "triangular2"},
        lambda L, o: L.CyclicLR(
            o, base_lr=BASE, max_lr=1.0, step_size_up=7, step_size_down=13, mode="triangular2", cycle_momentum=False
        ),
    ),
    (
        "cyclic",
        {"max_lr": 1.0, "step_size_up": 9, "mode": "exp_range", "gamma": 0.98},
        lambda L, o: L.CyclicLR(
            o, base_lr=BASE, max_lr=1.0, step_size_up=9, mode="exp_range", gamma=0.98, cycle_momentum=False
        ),
    ),
    (
        "cosine_warm_restarts",
        {"T_0": 10},
        lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=10),
    ),
    (
        "cosine_warm_restarts",
        {"T_0": 5, "T_mult": 2, "eta_min": 0.01},
        lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=0.01),
    ),
    ("polynomial", {}, lambda L, o: L.PolynomialLR(o)),
    ("polynomial", {"total_iters": 90, "power": 2.0}, lambda L, o: L.PolynomialLR(o, total_iters=90, power=2.0)),
    (
        "sequential",
        {
            "schedules": [{"name": "linear_warmup", "warmup_epochs": 10}, {"name": "cosine", "T_max": 100}],
            "milestones": [10],
        },
        lambda L, o: L.SequentialLR(
            o, [L.LinearLR(o, start_factor=0.1, total_iters=10), L.CosineAnnealingLR(o, T_max=100)], milestones=[10]
        ),
    ),
    (
        "sequential",
        {
            "schedules": [
                {"name": "linear_warmup", "warmup_epochs": 5, "start_factor": 0.5},
                {"name": "exponential", "gamma": 0.97},
                {"name": "cosine_warm_restarts", "T_0": 20},
            ],
            "milestones": [5, 40],
        },
        lambda L, o: L.SequentialLR(
            o,
            [
                L.LinearLR(o, start_factor=0.5, total_iters=5),
                L.ExponentialLR(o, gamma=0.97),
                L.CosineAnnealingWarmRestarts(o, T_0=20),
            ],
            milestones=[5, 40],
        ),
    ),
]


@pytest.mark.parametrize("name,block,make", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rates_equal_torch(name, block, make):
    ours, theirs = trainkit_rates({"name": name, **block}), torch_rates(make)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15), (i, a, b)


def test_one_cycle_holds_its_floor_after_the_cycle():
    rates = trainkit_rates({"name": "one_cycle", "total_steps": 50})
    assert rates[49] == rates[50] == rates[119] == pytest.approx(BASE / 25 / 1e4, rel=1e-12)


def test_per_step_interval_counts_optimizer_steps(tmp_path):
    """interval: step sets the rate every optimizer step: 5 batches × 4 epochs walk one cycle of 20."""
    import trainkit

    (tmp_path / "c.yaml").write_text("""
data: {name: linear, n_samples: 50, val_fraction: 0}
model: linear
optimizer: {name: sgd, lr: 0.1}
schedule: {name: one_cycle, total_steps: 20, interval: step}
train: {epochs: 4, batch_size: 10}
""")
    history = trainkit.train(tmp_path / "c.yaml").history
    expected = trainkit_rates({"name": "one_cycle", "total_steps": 20})
    assert [row["lr"] for row in history] == pytest.approx([expected[4], expected[9], expected[14], expected[19]])


BAD = [
    ("sequential", {"schedules": ["constant", "constant"], "milestones": []}, "milestones", "2 schedules need 1"),
    ("sequential", {"schedules": ["constant"] * 3, "milestones": [5, 5]}, "milestones", "strictly increasing"),
    (
        "sequential",
        {"schedules": [{"name": "constant", "interval": "step"}], "milestones": []},
        "schedules",
        "set it once",
    ),
    ("one_cycle", {"total_steps": 10, "pct_start": 1.5}, "pct_start", "less than or equal to 1"),
    ("one_cycle", {"total_steps": 10, "anneal_strategy": "exp"}, "anneal_strategy", "'cos' or 'linear'"),
    ("cyclic", {"max_lr": 1.0, "mode": "sine"}, "mode", "'triangular', 'triangular2' or 'exp_range'"),
    ("cosine_warm_restarts", {"T_0": 0}, "T_0", "greater than or equal to 1"),
    ("polynomial", {"total_iters": 0}, "total_iters", "greater than or equal to 1"),
]


@pytest.mark.parametrize("name,block,field,message", BAD, ids=[f"{c[0]}-{c[2]}" for c in BAD])
def test_range_checks(name, block, field, message):
    with pytest.raises(ValidationError) as e:
        registry.get("schedules", name).schema(**block)
    assert any(err["loc"][0] == field and message in err["msg"] for err in e.value.errors()), e.value.errors()
