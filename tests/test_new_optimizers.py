"""The newer optimizers: torch-exact ones against torch 2.13 (float64, a few hundred steps of a
real run), hand-computed first steps, state round trips and the range checks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require
from pydantic import ValidationError

from trainkit import registry
from trainkit.optim.tensors import build_optimizer

SHAPES = {"layers.0.weight": (4, 3), "layers.0.bias": (4,), "layers.2.weight": (2, 4), "layers.2.bias": (2,)}
N = sum(int(np.prod(s)) for s in SHAPES.values())


def quad_grad(p):
    """Gradient of ½pᵀAp − bᵀp, A diagonal with condition number 8."""
    return np.linspace(0.5, 4.0, p.size) * p - np.linspace(-1.0, 1.0, p.size)


def quad_closure(p, g):
    """What the trainer hands L-BFGS: fill the gradient at the current p, return the loss."""

    def closure():
        g[...] = quad_grad(p)
        return float(0.5 * p @ (np.linspace(0.5, 4.0, p.size) * p) - np.linspace(-1.0, 1.0, p.size) @ p)

    return closure


def run(name, kwargs, p0, steps, shapes=None, lr=None):
    cfg = registry.get("optimizers", name).schema(**kwargs)
    p, g = p0.copy(), np.zeros_like(p0)
    opt = build_optimizer(cfg, p, g, shapes)
    for _ in range(steps):
        if getattr(opt, "needs_closure", False):
            opt.closure = quad_closure(p, g)
        g[...] = quad_grad(p)
        opt.step(cfg.lr if lr is None else lr)
    return p, opt


# ------------------------------------------------------------------ hand-computed first steps


def test_adamax_first_step_is_lr_times_sign():
    """t = 1: m = (1 − β₁)g, u = |g| + ε, so Δθ = −η/(1 − β₁)·(1 − β₁)g/(|g| + ε) ≈ −η·sign(g)."""
    p0 = np.array([1.0, -2.0, 3.0])
    p, _ = run("adamax", {"lr": 0.1, "eps": 0.0}, p0, 1)
    np.testing.assert_allclose(p, p0 - 0.1 * np.sign(quad_grad(p0)), rtol=1e-15)


def test_lion_moves_every_coordinate_by_exactly_lr():
    """m₀ = 0: the first step is −η·sign(g); later ones −η·sign(β₁m + (1 − β₁)g), still ±η each."""
    p0 = np.array([1.0, -2.0, 3.0, 0.5])
    p1, _ = run("lion", {"lr": 0.01}, p0, 1)
    np.testing.assert_allclose(p1, p0 - 0.01 * np.sign(quad_grad(p0)), rtol=1e-15)
    p5, _ = run("lion", {"lr": 0.01}, p0, 5)
    steps = (p5 - p0) / 0.01
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)  # whole multiples of η


def test_adadelta_first_step():
    """t = 1: v = (1 − ρ)g², Δ = √ε/√(v + ε)·g."""
    p0 = np.array([1.0, -2.0])
    g = quad_grad(p0)
    p, _ = run("adadelta", {"rho": 0.9, "eps": 1e-6}, p0, 1)
    np.testing.assert_allclose(p, p0 - np.sqrt(1e-6) / np.sqrt(0.1 * g * g + 1e-6) * g, rtol=1e-14)


def test_rprop_grows_shrinks_and_skips():
    """Same sign: step·1.2; sign flip: step·0.5 and no move that step; zero product: unchanged."""
    cfg = registry.get("optimizers", "rprop").schema(lr=0.1)
    p, g = np.zeros(3), np.zeros(3)
    opt = build_optimizer(cfg, p, g)
    g[...] = [1.0, 1.0, 1.0]
    opt.step(0.1)  # prev = 0: factor 1, step 0.1 each
    np.testing.assert_allclose(p, [-0.1, -0.1, -0.1])
    g[...] = [2.0, -3.0, 0.0]
    opt.step(0.1)
    np.testing.assert_allclose(opt.state["step_size"], [0.12, 0.05, 0.1])
    np.testing.assert_allclose(p, [-0.22, -0.1, -0.1])  # the flipped one does not move
    g[...] = [1.0, 1.0, 1.0]
    opt.step(0.1)  # its previous gradient counts as 0 now: factor 1
    np.testing.assert_allclose(opt.state["step_size"], [0.144, 0.05, 0.1])


def test_asgd_averages_after_t0():
    """μₜ = 1/max(1, t − t0): θ̄ tracks θ until t0, then is the running mean of the iterates."""
    p0 = np.array([1.0, -1.0])
    iterates = []
    cfg = registry.get("optimizers", "asgd").schema(lr=0.1, t0=3, lambd=0.0)
    p, g = p0.copy(), np.zeros(2)
    opt = build_optimizer(cfg, p, g)
    for _ in range(8):
        g[...] = quad_grad(p)
        opt.step(0.1)
        iterates.append(p.copy())
    # μ used at step t is 1/max(1, t − 1 − t0): steps 1..5 copy θ, then the mean of θ₄..θₜ
    np.testing.assert_allclose(opt.state["ax"], np.mean(iterates[4:], axis=0), rtol=1e-14)


def test_adafactor_factors_matrices_and_keeps_vectors():
    p0 = np.random.default_rng(0).normal(size=N)
    _, opt = run("adafactor", {}, p0, 1, SHAPES)
    assert opt.state["row_var/layers.0.weight"].shape == (4, 1)
    assert opt.state["col_var/layers.0.weight"].shape == (1, 3)
    assert opt.state["variance/layers.0.bias"].shape == (4,)


def test_muon_orthogonalises_and_falls_back_to_adamw_for_vectors():
    from trainkit.optim.muon import newton_schulz

    G = np.random.default_rng(0).normal(size=(6, 4))
    ortho = newton_schulz(G, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    s = np.linalg.svd(ortho, compute_uv=False)
    assert 0.5 < s.min() and s.max() < 1.5  # Keller Jordan's quintic: singular values in ~(0.7, 1.2)
    U, _, Vt = np.linalg.svd(G, full_matrices=False)
    assert np.sum(ortho * (U @ Vt)) / (np.linalg.norm(ortho) * 2) > 0.95  # the same direction as UVᵀ
    p0 = np.random.default_rng(1).normal(size=N)
    _, opt = run("muon", {"lr": 0.02}, p0, 3, SHAPES)
    assert sorted(k for k in opt.state if k.startswith("momentum_buffer")) == [
        "momentum_buffer/layers.0.weight",
        "momentum_buffer/layers.2.weight",
    ]
    assert opt.rest.size == 6 and opt.adamw.t == 3


def test_lbfgs_solves_a_quadratic_in_one_step():
    p0 = np.random.default_rng(2).normal(size=5)
    for ls in (None, "strong_wolfe"):
        p, _ = run("lbfgs", {"line_search_fn": ls, "max_iter": 50, "tolerance_change": 1e-14}, p0, 1)
        np.testing.assert_allclose(p, np.linspace(-1.0, 1.0, 5) / np.linspace(0.5, 4.0, 5), atol=1e-6)


def test_lbfgs_without_closure_says_so():
    cfg = registry.get("optimizers", "lbfgs").schema()
    p = np.zeros(2)
    with pytest.raises(RuntimeError, match="closure"):
        build_optimizer(cfg, p, np.ones(2)).step(1.0)


# ------------------------------------------------------------------ state round trip

ROUND_TRIP = [
    ("adamax", {"lr": 0.05}),
    ("adadelta", {"weight_decay": 0.1}),
    ("rprop", {}),
    ("asgd", {"t0": 2}),
    ("adafactor", {"weight_decay": 0.1}),
    ("muon", {"lr": 0.02}),
    ("lbfgs", {"history_size": 3, "max_iter": 2}),
    ("lbfgs", {"history_size": 3, "max_iter": 2, "line_search_fn": "strong_wolfe"}),
    ("lion", {"lr": 0.01, "weight_decay": 0.1}),
    ("lamb", {"lr": 0.01, "weight_decay": 0.1}),
    ("schedule_free_sgd", {"lr": 0.1, "warmup_steps": 4}),
    ("schedule_free_adamw", {"lr": 0.01}),
    ("prodigy", {"weight_decay": 0.01}),
]


@pytest.mark.parametrize("name,kwargs", ROUND_TRIP, ids=[f"{c[0]}-{i}" for i, c in enumerate(ROUND_TRIP)])
def test_state_dict_round_trip_continues_identically(name, kwargs):
    p0 = np.random.default_rng(3).normal(size=N)
    straight, _ = run(name, kwargs, p0, 6, SHAPES)
    half, opt = run(name, kwargs, p0, 3, SHAPES)
    cfg = registry.get("optimizers", name).schema(**kwargs)
    p, g = half.copy(), np.zeros_like(half)
    fresh = build_optimizer(cfg, p, g, SHAPES)
    fresh.load_state_dict({k: v.copy() if isinstance(v, np.ndarray) else v for k, v in opt.state_dict().items()})
    for _ in range(3):
        if getattr(fresh, "needs_closure", False):
            fresh.closure = quad_closure(p, g)
        g[...] = quad_grad(p)
        fresh.step(cfg.lr)
    np.testing.assert_array_equal(p, straight)


# ------------------------------------------------------------------ hyperparameter checks

BAD = [
    ("adamax", {"lr": -1}, "lr", "greater than or equal to 0"),
    ("adamax", {"betas": [1.0, 0.9]}, "betas", "index 0: 1.0"),
    ("adamax", {"eps": -1}, "eps", "greater than or equal to 0"),
    ("adamax", {"weight_decay": -1}, "weight_decay", "greater than or equal to 0"),
    ("adadelta", {"rho": 1.5}, "rho", "less than or equal to 1"),
    ("adadelta", {"rho": -0.1}, "rho", "greater than or equal to 0"),
    ("adadelta", {"eps": -1}, "eps", "greater than or equal to 0"),
    ("rprop", {"etas": [1.5, 1.2]}, "etas", "invalid eta values: 1.5, 1.2"),
    ("rprop", {"etas": [0.5, 0.9]}, "etas", "invalid eta values"),
    ("asgd", {"weight_decay": -1}, "weight_decay", "greater than or equal to 0"),
    ("adafactor", {"beta2_decay": 0.5}, "beta2_decay", "less than or equal to 0"),
    ("adafactor", {"eps": [-1, 1e-3]}, "eps", "epsilon1 should be >= 0"),
    ("adafactor", {"eps": [None, -1]}, "eps", "epsilon2 should be >= 0"),
    ("adafactor", {"d": 0.5}, "d", "greater than or equal to 1"),
    ("muon", {"momentum": -1}, "momentum", "greater than or equal to 0"),
    ("muon", {"weight_decay": -1}, "weight_decay", "greater than or equal to 0"),
    ("muon", {"adjust_lr_fn": "other"}, "adjust_lr_fn", "'original' or 'match_rms_adamw'"),
    ("muon", {"ns_steps": 100}, "ns_steps", "less than 100"),
    ("muon", {"adamw_betas": [0.9, 1.0]}, "adamw_betas", "index 1: 1.0"),
    ("lbfgs", {"lr": -1}, "lr", "greater than or equal to 0"),
    ("lbfgs", {"line_search_fn": "armijo"}, "line_search_fn", "'strong_wolfe'"),
    ("lbfgs", {"history_size": 0}, "history_size", "greater than or equal to 1"),
    ("lion", {"lr": 0}, "lr", "greater than 0"),
    ("lion", {"betas": [0.9, 1.5]}, "betas", "index 1: 1.5"),
    ("lamb", {"clamp_value": -1}, "clamp_value", "greater than or equal to 0"),
    ("lamb", {"betas": [1.0, 0.9]}, "betas", "index 0: 1.0"),
    ("schedule_free_sgd", {"momentum": 1.0}, "momentum", "less than 1"),
    ("schedule_free_sgd", {"momentum": 0.0}, "momentum", "greater than 0"),
    ("schedule_free_adamw", {"weight_decay": -1}, "weight_decay", "greater than or equal to 0"),
    ("schedule_free_adamw", {"warmup_steps": -1}, "warmup_steps", "greater than or equal to 0"),
    ("prodigy", {"d0": 0}, "d0", "greater than 0"),
    ("prodigy", {"lr": 0}, "lr", "greater than 0"),
    ("prodigy", {"eps": 0}, "eps", "greater than 0"),
]


@pytest.mark.parametrize("name,kwargs,field,message", BAD, ids=[f"{c[0]}-{c[2]}" for c in BAD])
def test_torch_range_checks(name, kwargs, field, message):
    with pytest.raises(ValidationError) as e:
        registry.get("optimizers", name).schema(**kwargs)
    errs = e.value.errors()
    assert any(err["loc"][0] == field and message in err["msg"] for err in errs), errs


def test_schedule_free_train_and_eval_points():
    """switch_to_eval() puts x = (y − (1 − β)z)/β in the parameters, switch_to_train() puts y back; steps need train mode."""
    p0 = np.random.default_rng(4).normal(size=5)
    p, opt = run("schedule_free_sgd", {"lr": 0.1, "momentum": 0.8}, p0, 5)
    y, z = p.copy(), opt.state["z"].copy()
    opt.switch_to_eval()
    np.testing.assert_allclose(p, (y - 0.2 * z) / 0.8, rtol=1e-13)
    opt.switch_to_eval()  # idempotent
    np.testing.assert_allclose(p, (y - 0.2 * z) / 0.8, rtol=1e-13)
    with pytest.raises(RuntimeError, match="train mode"):
        opt.step(0.1)
    opt.switch_to_train()
    np.testing.assert_allclose(p, y, rtol=1e-13)


def test_schedule_free_run_reports_and_saves_the_averaged_point(tmp_path):
    """The params a run reports and checkpoints are x (the state says so, for resume's train())."""
    import trainkit
    from trainkit.runs.checkpoint import load

    cfg = tmp_path / "c.yaml"
    cfg.write_text("""
data: {name: linear, n_samples: 40, val_fraction: 0}
model: linear
optimizer: {name: schedule_free_sgd, lr: 0.05}
train: {epochs: 3, batch_size: 10, shuffle: false, dtype: float64}
""")
    from trainkit.runs.rundir import RunDir

    rd = RunDir(tmp_path / "run")
    try:
        result = trainkit.train(cfg, run_dir=rd)
    finally:
        rd.close()
    arrays, meta = load(tmp_path / "run" / "checkpoint.npz")
    assert meta["optimizer"]["train_mode"] is False
    np.testing.assert_array_equal(arrays["param/weight"], result.params["weight"])
    z, x = arrays["optim/z"], np.concatenate([result.params["weight"].ravel(), result.params["bias"]])
    assert np.abs(z - x).max() > 1e-6  # x is an average of the z iterates, not z


def test_lbfgs_max_eval_defaults_to_five_quarters_of_max_iter():
    assert registry.get("optimizers", "lbfgs").schema(max_iter=8).max_eval == 10


# ------------------------------------------------------------------ torch 2.13, float64, a real run

TORCH_EXACT = [
    ("adamax", {"lr": 0.01, "weight_decay": 0.01}),
    ("adamax", {"lr": 0.01, "betas": [0.8, 0.99], "maximize": False}),
    ("adadelta", {"lr": 1.0, "rho": 0.8, "weight_decay": 0.01}),
    ("rprop", {"lr": 0.01, "etas": [0.4, 1.3], "step_sizes": [1e-5, 0.5]}),
    ("asgd", {"lr": 0.05, "lambd": 1e-3, "t0": 50, "weight_decay": 0.01}),
    ("adafactor", {"lr": 0.01}),
    ("adafactor", {"lr": 0.05, "weight_decay": 0.01, "d": 1.5, "eps": [1e-20, 1e-3], "beta2_decay": -0.5}),
    ("muon", {"lr": 0.02, "adamw_lr": 0.003}),
    ("muon", {"lr": 0.02, "nesterov": False, "adjust_lr_fn": "match_rms_adamw", "adamw_weight_decay": 0.0}),
    ("lbfgs", {"lr": 0.5, "max_iter": 5, "history_size": 4}),
    ("lbfgs", {"lr": 1.0, "max_iter": 6, "line_search_fn": "strong_wolfe"}),
]


# From papers, against their reference packages (test-only: the `oracle-optim` extra).
REFERENCE = [
    ("lion", {"lr": 0.001}),
    ("lion", {"lr": 0.001, "betas": [0.95, 0.98], "weight_decay": 0.1}),
    ("lamb", {"lr": 0.01}),
    ("lamb", {"lr": 0.01, "weight_decay": 0.01, "debias": True, "clamp_value": 0.5}),
    ("schedule_free_sgd", {"lr": 0.5}),
    ("schedule_free_sgd", {"lr": 0.5, "momentum": 0.8, "weight_decay": 0.01, "warmup_steps": 30, "r": 1.0}),
    ("schedule_free_adamw", {"lr": 0.01}),
    ("schedule_free_adamw", {"lr": 0.01, "betas": [0.95, 0.99], "weight_decay": 0.01, "warmup_steps": 20}),
    ("prodigy", {}),
    ("prodigy", {"weight_decay": 0.01, "use_bias_correction": True, "growth_rate": 1.02}),
    ("prodigy", {"betas": [0.9, 0.99], "weight_decay": 0.01, "decouple": False, "safeguard_warmup": True}),
]
REFERENCE_CLASSES = {
    "lion": ("lion_pytorch", "Lion"),
    "lamb": ("torch_optimizer", "Lamb"),
    "schedule_free_sgd": ("schedulefree", "SGDScheduleFree"),
    "schedule_free_adamw": ("schedulefree", "AdamWScheduleFree"),
    "prodigy": ("prodigyopt", "Prodigy"),
}


def _torch_optimizers(torch, model, name, kwargs):
    """The torch optimizer(s) the trainkit config means: muon is torch's Muon on the 2-D
    weights plus AdamW on the rest, as torch.optim.Muon's documentation prescribes."""
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    params = list(model.parameters())
    if name == "muon":
        adamw = {k[len("adamw_") :]: kw.pop(k) for k in list(kw) if k.startswith("adamw_")}
        adamw.setdefault("lr", 3e-4)
        adamw.setdefault("weight_decay", 0.01)
        return [
            torch.optim.Muon([p for p in params if p.ndim == 2], **kw),
            torch.optim.AdamW([p for p in params if p.ndim != 2], **adamw),
        ]
    if name in REFERENCE_CLASSES:
        module, cls_name = REFERENCE_CLASSES[name]
        cls = getattr(require(module), cls_name)
        if name.startswith("schedule_free"):
            kw["foreach"] = False  # the per-tensor loop; foreach is the same math batched
        return [cls(params, **kw)]
    cls = {
        "adamax": torch.optim.Adamax,
        "adadelta": torch.optim.Adadelta,
        "rprop": torch.optim.Rprop,
        "asgd": torch.optim.ASGD,
        "adafactor": torch.optim.Adafactor,
        "lbfgs": torch.optim.LBFGS,
    }[name]
    return [cls(params, **kw)]


@pytest.mark.parametrize(
    "name,kwargs",
    TORCH_EXACT + REFERENCE,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(TORCH_EXACT)] + [f"{c[0]}-ref{i}" for i, c in enumerate(REFERENCE)],
)
def test_same_parameters_as_torch_or_reference(tmp_path, monkeypatch, request, name, kwargs):
    torch = require("torch")
    import trainkit

    # optimizer scalars (ASGD's η and μ) live in the default dtype: float64 as everything else
    request.addfinalizer(lambda old=torch.get_default_dtype(): torch.set_default_dtype(old))
    torch.set_default_dtype(torch.float64)
    # torch's Muon runs Newton–Schulz in bfloat16 (a GPU speed choice); trainkit in the
    # parameters' dtype. Compare with torch's own iteration, its cast to bfloat16 left out.
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self: self.clone())
    full_batch = name == "lbfgs"
    # 210 steps; lbfgs: 6 steps of 5-6 iterations each. Past that, L-BFGS on this non-convex
    # problem amplifies rounding chaotically: torch against itself, started 1e-15 apart, is
    # 3e-10 apart after 10 steps and 1e-5 after 20.
    epochs, bs = (6, 60) if full_batch else (70, 20)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    # lbfgs: a regression with a finite minimum (on separable classes its iterates grow without
    # bound, and there rounding alone, ~1e-16 a step, grows past 1e-10)
    y = X @ [1.0, -2.0, 0.5] + np.sin(3 * X[:, 0]) if full_batch else rng.integers(0, 3, 60)
    n_out = 1 if full_batch else 3
    np.savez(tmp_path / "data.npz", X=X, y=y)
    torch.manual_seed(0)
    model = torch.nn.Module()
    model.layers = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, n_out)).double()
    np.savez(tmp_path / "init.npz", **{k: v.detach().numpy() for k, v in model.state_dict().items()})
    opt_block = ", ".join(f"{k}: {v if v is not None else 'null'}" for k, v in kwargs.items())
    (tmp_path / "c.yaml").write_text(f"""
data: {{name: npz, path: data.npz, val_fraction: 0}}
model: {{name: mlp, hidden: [8], activation: tanh, init: {{from: init.npz}}}}
loss: {"mse" if full_batch else "cross_entropy"}
optimizer: {{name: {name}, {opt_block}}}
schedule: {{name: step, step_size: 20, gamma: 0.5}}
train: {{epochs: {epochs}, batch_size: {"full" if full_batch else bs}, shuffle: false, dtype: float64}}
""")
    result = trainkit.train(tmp_path / "c.yaml")
    assert result.status == "completed", result.stop_reason

    opts = _torch_optimizers(torch, model, name, kwargs)
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=20, gamma=0.5) for o in opts]
    loss_fn = torch.nn.MSELoss() if full_batch else torch.nn.CrossEntropyLoss()
    Xt, yt = torch.tensor(X), torch.tensor(y)[:, None] if full_batch else torch.tensor(y)
    averaged = name.startswith("schedule_free")  # the reference's train()/eval() switch, per epoch
    for _ in range(epochs):
        if averaged:
            opts[0].train()
        for i in range(0, 60, bs):
            xb, yb = Xt[i : i + bs], yt[i : i + bs]

            def closure(xb=xb, yb=yb):
                for o in opts:
                    o.zero_grad()
                loss = loss_fn(model.layers(xb), yb)
                loss.backward()
                return loss

            if full_batch:
                opts[0].step(closure)
            else:
                closure()
                for o in opts:
                    o.step()
        if averaged:
            opts[0].eval()
        for s in scheds:
            s.step()
    # Prodigy's step size is a ratio of sums over all parameters, summed per tensor in the
    # reference and in one dot product here: the last bits differ, and its weights grow to ~8.
    rtol = 1e-10 if name == "prodigy" else 0.0
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(result.params[k], v.numpy(), rtol=rtol, atol=1e-10, err_msg=k)


def test_muon_newton_schulz_close_to_torch_in_bfloat16():
    """Without the float64 patch: torch's bfloat16 iteration agrees to bfloat16's precision."""
    torch = require("torch")
    from torch.optim._muon import _zeropower_via_newtonschulz

    from trainkit.optim.muon import newton_schulz

    G = np.random.default_rng(0).normal(size=(8, 5))
    ours = newton_schulz(G, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    theirs = _zeropower_via_newtonschulz(torch.tensor(G), (3.4445, -4.7750, 2.0315), 5, 1e-7).double().numpy()
    assert np.abs(ours - theirs).max() < 0.05 * np.abs(ours).max()


# ------------------------------------------------------------------ compare-optimizers


def test_compare_auto_grid_keeps_prodigy_at_its_documented_lr():
    from conftest import CONFIGS

    from trainkit.compare.runner import compare

    comp = compare(CONFIGS / "compare_new_quadratic.yaml", ["adam", "prodigy"], seeds=1, lr_grid="auto", jobs=1)
    search = {s["optimizer"]: s for s in comp.lr_search}
    assert search["prodigy"]["scores"] == [] and search["prodigy"]["chosen_lr"] == 1.0
    assert len(search["adam"]["scores"]) == 5
    assert {r["optimizer"]["name"] for r in comp.runs} == {"adam", "prodigy"}


def test_compare_runs_lbfgs_full_batch():
    from conftest import CONFIGS

    from trainkit.compare import runner
    from trainkit.config import load_config

    loaded = load_config(CONFIGS / "compare_new_mlp.yaml", kind="any")
    (job,) = runner._jobs(loaded, runner.parse_spec("lbfgs", "-o"), 0.5, [0], None, playground=False)
    assert "train.batch_size=full" in job.overrides
    comp = runner.compare(
        CONFIGS / "compare_new_mlp.yaml", ["lbfgs lr=0.5"], seeds=1, jobs=1, overrides=["train.epochs=2"]
    )
    assert comp.runs[0]["status"] == "completed"


def test_compare_says_which_optimizers_ran_full_batch_beside_mini_batch_ones(cli):
    from conftest import CONFIGS

    from trainkit.compare import runner

    cfg, short = CONFIGS / "compare_new_mlp.yaml", ["train.epochs=1", "data.n_samples=80"]
    comp = runner.compare(cfg, ["lbfgs", "adam"], seeds=1, jobs=1, overrides=short)
    assert comp.notes == [
        "lbfgs ran full batch (trainkit runs it on the whole training set only: one step per epoch); "
        "adam ran mini-batches of 32"
    ]
    assert comp.to_dict()["notes"] == comp.notes
    assert runner.compare(cfg, ["adam"], seeds=1, jobs=1, overrides=short).notes == []
    full = runner.compare(cfg, ["lbfgs", "adam"], seeds=1, jobs=1, overrides=[*short, "train.batch_size=full"])
    assert full.notes == []  # every run full batch: nothing differs
    tiny = runner.compare(
        cfg,
        ["lbfgs", "adam"],
        seeds=1,
        jobs=1,
        overrides=["train.epochs=1", "data.n_samples=40", "train.batch_size=null"],
    )
    assert tiny.notes == []  # 30 training samples: adam's batch of min(32, 30) is the full batch too
    r = cli("compare-optimizers", cfg, "-o", "lbfgs", "-o", "sgd", "-j", "1", *(a for o in short for a in ("--set", o)))
    assert r.code == 0 and "note: lbfgs ran full batch" in r.stdout and "sgd ran mini-batches of 32" in r.stdout


def test_playground_gives_lbfgs_its_closure_and_reports_schedule_free_at_x():
    from trainkit import registry
    from trainkit.compare.playground import QuadraticConfig, run_problem

    problem = QuadraticConfig(condition_number=10)
    for kwargs in ({}, {"line_search_fn": "strong_wolfe"}):
        entry = registry.get("optimizers", "lbfgs")
        assert run_problem(problem, entry, entry.schema(**kwargs), 50)["final_value"] < 1e-12
    entry = registry.get("optimizers", "schedule_free_sgd")
    cfg = entry.schema(lr=0.05)
    out = run_problem(problem, entry, cfg, 30)
    p, g = np.array(problem.start), np.zeros(2)
    opt = entry.build(cfg, p, g)
    for _ in range(30):
        g[...] = problem.grad(*p)
        opt.step(0.05)
    y = p.copy()
    opt.switch_to_eval()
    assert out["final_point"] == p.tolist() != y.tolist()


@pytest.mark.parametrize("name", ["schedule_free_adamw", "lbfgs", "muon"])
def test_resume_continues_the_run(tmp_path, name):
    """Stopped after epoch 2 and resumed: the same end as a straight run (schedule-free to
    rounding: its checkpoint holds x, and y is rebuilt from x and z)."""
    from test_runs import train_into

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
data: {{name: moons, n_samples: 80, val_fraction: 0.25}}
model: {{name: mlp, hidden: [6]}}
optimizer: {{name: {name}, lr: 0.01}}
train: {{epochs: 4, batch_size: {"full" if name == "lbfgs" else 20}, dtype: float64}}
""")
    straight = train_into(tmp_path / "a", cfg)
    assert train_into(tmp_path / "b", cfg, stop_after_epoch=2).status == "interrupted"
    resumed = train_into(tmp_path / "b", cfg, resume=True)
    for k in straight.params:
        np.testing.assert_allclose(resumed.params[k], straight.params[k], rtol=0, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("name", ["schedule_free_sgd", "schedule_free_adamw"])
def test_schedule_free_resume_mid_epoch_is_bit_identical(tmp_path, name):
    """Stopped mid-epoch, the checkpoint holds y itself (x → y is not exact in floating point),
    so the resumed run equals the straight run exactly, as every other optimizer's does."""
    from test_runs import train_into

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
data: {{name: moons, n_samples: 80, val_fraction: 0.25}}
model: {{name: mlp, hidden: [16]}}
optimizer: {{name: {name}, lr: 0.05}}
train: {{epochs: 4, batch_size: 20}}
""")
    straight = train_into(tmp_path / "a", cfg)
    assert train_into(tmp_path / "b", cfg, stop_after_step=8).status == "interrupted"  # 3 steps an epoch
    resumed = train_into(tmp_path / "b", cfg, resume=True)
    assert resumed.history == straight.history
    for k in straight.params:
        np.testing.assert_array_equal(resumed.params[k], straight.params[k], err_msg=k)
