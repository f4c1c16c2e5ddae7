"""Initialisation, schedules, regularization, clipping, early stopping, models, playground functions."""

from __future__ import annotations

import math

import numpy as np
import pytest

import trainkit
from trainkit import api, registry
from trainkit.compare.playground import PROBLEMS
from trainkit.config import load_config_text
from trainkit.config.base import InitScheme
from trainkit.nn.init import init_linear
from trainkit.optim.schedules import build_schedule

# ------------------------------------------------------------------ initialisation


@pytest.mark.parametrize(
    "scheme,check",
    [
        (
            "default",
            lambda w, b, i, o: (
                abs(w).max() <= 1 / math.sqrt(i)
                and abs(b).max() <= 1 / math.sqrt(i)
                and abs(w).max() > 0.9 / math.sqrt(i)
            ),
        ),
        ("xavier_uniform", lambda w, b, i, o: abs(w).max() <= math.sqrt(6 / (i + o)) and (b == 0).all()),
        ("xavier_normal", lambda w, b, i, o: abs(w.std() - math.sqrt(2 / (i + o))) < 0.05 * math.sqrt(2 / (i + o))),
        (
            "kaiming_uniform",
            lambda w, b, i, o: abs(w).max() <= math.sqrt(6 / i) and abs(w).max() > 0.9 * math.sqrt(6 / i),
        ),
        ("kaiming_normal", lambda w, b, i, o: abs(w.std() - math.sqrt(2 / i)) < 0.05 * math.sqrt(2 / i)),
        ("normal", lambda w, b, i, o: abs(w.std() - 0.01) < 0.001 and (b == 0).all()),
        ("zeros", lambda w, b, i, o: (w == 0).all() and (b == 0).all()),
    ],
)
def test_init_schemes_follow_torch_nn_init(scheme, check):
    i, o = 300, 200
    w, b = init_linear(InitScheme(name=scheme), o, i, np.random.default_rng(0))
    assert w.shape == (o, i) and b.shape == (o,)
    assert check(w, b, i, o)


def test_init_is_seeded_and_identical_across_dtypes(tmp_path):
    text = "data: moons\nmodel: {name: mlp, hidden: [5]}\noptimizer: sgd\n"
    a = api.build(load_config_text(text, "c", ["train.dtype=float64"]))
    b = api.build(load_config_text(text, "c", ["train.dtype=float32"]))
    np.testing.assert_array_equal(a.net.flat.astype(np.float32), b.net.flat)
    c = api.build(load_config_text(text, "c", ["seed=1"]))
    assert not np.array_equal(a.net.flat.astype(np.float32), c.net.flat)


# ------------------------------------------------------------------ schedules (torch.optim.lr_scheduler's rules)


def schedule(spec: dict, base=0.1):
    entry = registry.get("schedules", spec["name"])
    return build_schedule(entry.schema(**spec), base)


@pytest.mark.parametrize(
    "spec,expected",
    [
        ({"name": "constant"}, lambda e: 0.1),
        ({"name": "step", "step_size": 3, "gamma": 0.5}, lambda e: 0.1 * 0.5 ** (e // 3)),
        ({"name": "multistep", "milestones": [2, 5], "gamma": 0.1}, lambda e: 0.1 * 0.1 ** ((e >= 2) + (e >= 5))),
        ({"name": "exponential", "gamma": 0.9}, lambda e: 0.1 * 0.9**e),
        (
            {"name": "cosine", "T_max": 10, "eta_min": 0.01},
            lambda e: 0.01 + 0.5 * (0.1 - 0.01) * (1 + math.cos(math.pi * e / 10)),
        ),
        (
            {"name": "linear_warmup", "warmup_epochs": 4, "start_factor": 0.25},
            lambda e: 0.1 * (0.25 + 0.75 * e / 4) if e < 4 else 0.1,
        ),
        (
            {"name": "linear_warmup", "warmup_epochs": 2, "then": {"name": "step", "step_size": 2, "gamma": 0.5}},
            lambda e: 0.1 * (0.1 + 0.9 * e / 2) if e < 2 else 0.1 * 0.5 ** ((e - 2) // 2),
        ),
    ],
)
def test_schedule_closed_forms(spec, expected):
    s = schedule(spec)
    for e in range(12):
        assert s.lr(e) == pytest.approx(expected(e), rel=1e-12), e


def test_reduce_on_plateau_follows_torch_rules():
    s = schedule(
        {"name": "reduce_on_plateau", "patience": 2, "factor": 0.5, "threshold": 0.1, "cooldown": 1, "min_lr": 0.02}
    )
    losses = [1.0, 0.95, 0.94, 0.93, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    lrs = []
    for e, v in enumerate(losses):
        lrs.append(s.lr(e))
        s.observe(e, {"val_loss": v})
    # 0.95, 0.94, 0.93 are not 10% better than 1.0: after 3 bad epochs (> patience 2) the rate halves.
    # 0.5 improves (during the 1-epoch cooldown); three flat epochs halve it again; after the next
    # cooldown and three more, it would halve to 0.0125 but stops at min_lr.
    assert lrs == [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.025]
    assert s.lr(12) == 0.02
    s2 = schedule({"name": "reduce_on_plateau"})
    s2.load_state_dict(s.state_dict())
    assert s2.lr(12) == s.lr(12)


def test_history_records_the_lr_in_force():
    r = trainkit.train(
        load_config_text(
            "data: linear\nmodel: linear\noptimizer: {name: sgd, lr: 0.2}\n"
            "schedule: {name: step, step_size: 2, gamma: 0.5}\ntrain: {epochs: 5}\n",
            "c",
        )
    )
    assert [row["lr"] for row in r.history] == [0.2, 0.2, 0.1, 0.1, 0.05]


# ------------------------------------------------------------------ regularization, clipping, early stopping


def one_step_grads(overrides):
    text = (
        "data: {name: linear, n_samples: 20, n_features: 3, val_fraction: 0}\nmodel: {name: mlp, hidden: [4]}\n"
        "optimizer: {name: sgd, lr: 0.0}\ntrain: {epochs: 1, batch_size: full, shuffle: false, dtype: float64}\n"
    )
    exp = api.build(load_config_text(text, "c", overrides))
    tr, a = exp.trainer, exp.arrays
    before = exp.net.flat.copy()
    tr.fit(a["X_train"], a["T_train"])
    return exp, before


def test_l1_l2_penalty_and_its_gradient_on_weights_only():
    plain, _ = one_step_grads([])
    reg, w = one_step_grads(["regularization={l1: 0.01, l2: 0.1}"])
    mask = np.zeros_like(w)
    for sl in reg.net.weight_slices():
        mask[sl] = 1.0
    expected = plain.net.grad + mask * (0.01 * np.sign(w) + 2 * 0.1 * w)
    np.testing.assert_allclose(reg.net.grad, expected, rtol=1e-12, atol=1e-15)
    penalty = sum(0.01 * np.abs(w[sl]).sum() + 0.1 * (w[sl] ** 2).sum() for sl in reg.net.weight_slices())
    assert reg.trainer.history[0]["reg_loss"] == pytest.approx(penalty)
    with_bias, _ = one_step_grads(["regularization={l2: 0.1, apply_to_bias: true}"])
    np.testing.assert_allclose(with_bias.net.grad, plain.net.grad + 0.2 * w, rtol=1e-12, atol=1e-15)


def test_gradient_clipping_matches_torch_utils():
    plain, _ = one_step_grads([])
    g = plain.net.grad.copy()
    norm = np.linalg.norm(g)
    clipped, _ = one_step_grads([f"train.clip_grad_norm={norm / 4}"])
    np.testing.assert_allclose(clipped.net.grad, g * (norm / 4) / (norm + 1e-6), rtol=1e-12)
    limit = np.abs(g).max() / 3
    valued, _ = one_step_grads([f"train.clip_grad_value={limit}"])
    np.testing.assert_array_equal(valued.net.grad, np.clip(g, -limit, limit))


def test_early_stopping_reports_and_restores_the_best_epoch():
    text = (
        "data: {name: moons, n_samples: 100, noise: 0.4, val_fraction: 0.5}\n"
        "model: {name: mlp, hidden: [64, 64]}\noptimizer: {name: adam, lr: 0.05}\n"
        "train: {epochs: 200, batch_size: 10, early_stopping: {monitor: val_loss, patience: 5}}\n"
    )
    r = trainkit.train(load_config_text(text, "c"))
    assert r.status == "early_stopped" and r.epochs_run < 200
    losses = [h["val_loss"] for h in r.history]
    assert r.best_epoch == int(np.argmin(losses)) + 1 and r.epochs_run == r.best_epoch + 5
    assert r.metrics["val_loss"] == min(losses)
    assert f"best epoch {r.best_epoch}" in r.stop_reason
    r2 = trainkit.train(
        load_config_text(
            text.replace("monitor: val_loss, patience: 5", "monitor: val_accuracy, mode: max, patience: 5"), "c"
        )
    )
    assert r2.status == "early_stopped"


# ------------------------------------------------------------------ models


def test_sequential_model_names_and_shapes_follow_torch():
    text = (
        "data: {name: blobs, n_features: 3, n_classes: 4}\noptimizer: adam\nmodel:\n  name: sequential\n  layers:\n"
        "    - {name: linear, out_features: 8}\n    - tanh\n    - {name: dropout, p: 0.1}\n    - linear\n"
    )
    exp = api.build(load_config_text(text, "c"))
    assert {k: v.shape for k, v in exp.net.params.items()} == {
        "layers.0.weight": (8, 3),
        "layers.0.bias": (8,),
        "layers.3.weight": (4, 8),
        "layers.3.bias": (4,),
    }
    r = trainkit.train(load_config_text(text + "train: {epochs: 20}\n", "c"))
    assert r.metrics["val_accuracy"] > 0.8


def test_sequential_needs_hidden_sizes():
    from trainkit.errors import ConfigError

    with pytest.raises(ConfigError, match="needs out_features"):
        load_config_text(
            "data: moons\noptimizer: sgd\nmodel: {name: sequential, layers: [linear, relu, linear]}\n", "c"
        )


@pytest.mark.parametrize(
    "name,data,shapes",
    [
        ("linear", "linear", {"weight": (1, 1), "bias": (1,)}),
        ("logistic", "moons", {"weight": (1, 2), "bias": (1,)}),
        ("softmax", "blobs", {"weight": (3, 2), "bias": (3,)}),
        (
            "mlp",
            "moons",
            {"layers.0.weight": (64, 2), "layers.0.bias": (64,), "layers.2.weight": (1, 64), "layers.2.bias": (1,)},
        ),
    ],
)
def test_models_report_their_parameters(name, data, shapes):
    """torch's state_dict names and shapes, and every tensor a view of its own stretch of the flat
    buffers (the optimizers update `flat` in place; a copy would never train)."""
    net = api.build(load_config_text(f"data: {data}\nmodel: {name}\noptimizer: sgd\n", "c")).net
    assert {k: v.shape for k, v in net.params.items()} == shapes
    assert net.n_params == sum(math.prod(s) for s in shapes.values())
    net.flat[...] = np.arange(net.flat.size)
    net.grad[...] = -np.arange(net.grad.size)
    np.testing.assert_array_equal(np.concatenate([v.ravel() for v in net.params.values()]), net.flat)
    np.testing.assert_array_equal(np.concatenate([v.ravel() for v in net.grads.values()]), net.grad)


@pytest.mark.parametrize("task", ["circles", "spirals", "xor", "blobs"])
def test_synthetic_classification_sets_are_learnable(task):
    r = trainkit.train(
        load_config_text(
            f"data: {{name: {task}, n_samples: 400}}\nmodel: {{name: mlp, hidden: [32, 32]}}\n"
            "optimizer: {name: adam, lr: 0.02}\ntrain: {epochs: 60, batch_size: 32}\n",
            "c",
        )
    )
    assert r.metrics["val_accuracy"] > 0.85, r.metrics


# ------------------------------------------------------------------ playground functions


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.model_fields["name"].default)
def test_playground_gradients_and_minima(problem):
    pb = problem()
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(-2, 2, (5, 2)):
        h = 1e-6
        num = [(pb.f(x + h, y) - pb.f(x - h, y)) / (2 * h), (pb.f(x, y + h) - pb.f(x, y - h)) / (2 * h)]
        np.testing.assert_allclose(pb.grad(x, y), num, rtol=1e-5, atol=1e-5)
    for m in pb.minima():
        assert np.linalg.norm(pb.grad(*m)) < 1e-4 and abs(pb.f(*m)) < 1e-9


def test_per_step_schedule_sets_the_rate_before_every_step():
    text = (
        "data: {name: linear, n_samples: 50, val_fraction: 0}\nmodel: linear\noptimizer: {name: sgd, lr: 0.1}\n"
        "schedule: {name: cosine, T_max: 20, interval: step}\ntrain: {epochs: 3, batch_size: 10}\n"
    )
    exp = api.build(load_config_text(text, "c"))
    used = []
    step = exp.trainer.opt.step

    def record(lr):
        used.append(lr)
        step(lr)

    exp.trainer.opt.step = record
    exp.trainer.fit(exp.arrays["X_train"], exp.arrays["T_train"])
    assert used == pytest.approx([0.05 * (1 + math.cos(math.pi * t / 20)) for t in range(15)], rel=1e-12)
    assert [row["lr"] for row in exp.trainer.history] == [used[4], used[9], used[14]]


def test_reduce_on_plateau_cannot_run_per_step():
    from trainkit.errors import ConfigError

    with pytest.raises(ConfigError, match="interval must be epoch"):
        load_config_text(
            "data: linear\nmodel: linear\noptimizer: sgd\nschedule: {name: reduce_on_plateau, interval: step}\n", "c"
        )


# ------------------------------------------------------------------ gd: full batch, decided once


def test_gd_keeps_its_own_config_and_takes_the_full_batch():
    """Before: GD swapped the user's GDConfig for an SGDConfig."""
    from trainkit.optim.optimizers import GDConfig

    loaded = load_config_text("data: linear\nmodel: linear\noptimizer: {name: gd, lr: 0.3}\n", "c")
    exp = api.build(loaded)
    assert exp.trainer.opt.cfg is loaded.config.optimizer and isinstance(exp.trainer.opt.cfg, GDConfig)
    assert loaded.resolved()["optimizer"] == {"name": "gd", "lr": 0.3}
    assert loaded.config.train.batch_size == "full"
    assert GDConfig.full_batch and not registry.get("optimizers", "sgd").schema.full_batch


def test_gd_step_is_the_textbook_rule():
    exp = api.build(load_config_text("data: linear\nmodel: linear\noptimizer: {name: gd, lr: 0.3}\n", "c"))
    opt, p, g = exp.trainer.opt, exp.net.flat, exp.net.grad
    g[...] = np.arange(1, g.size + 1)
    before = p.copy()
    opt.step(0.3)
    np.testing.assert_array_equal(p, before - np.float32(0.3) * g)
    assert opt.state_dict() == {"t": 1}


@pytest.mark.parametrize(
    "optimizer,batch_size,n_train,expected",
    [
        ("gd", None, 80, "full"),
        ("gd", "full", 80, "full"),
        ("gd", 8, 80, "cannot use mini-batches"),
        ("sgd", None, 80, 32),
        ("sgd", None, 10, 10),
        ("sgd", None, None, 32),
        ("sgd", 64, 80, 64),
        ("sgd", 81, 80, "larger than the training set"),
        ("sgd", 81, None, 81),  # before the data is loaded, only gd's rule can be checked
    ],
)
def test_one_resolver_decides_the_batch_size(optimizer, batch_size, n_train, expected):
    from trainkit.optim.optimizers import BatchSizeError, resolve_batch_size

    cfg = registry.get("optimizers", optimizer).schema()
    if isinstance(expected, str) and expected != "full":
        with pytest.raises(BatchSizeError, match=expected):
            resolve_batch_size(cfg, batch_size, n_train)
    else:
        assert resolve_batch_size(cfg, batch_size, n_train) == expected
