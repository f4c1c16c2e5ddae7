"""A trainkit run and the same training in torch end at the same parameters (float64).

`make test` skips this file when torch is missing; `make test-all` installs the `oracle` extra
(`pip install -e '.[oracle]'`, torch's CPU build) and fails if torch cannot be imported.

Every registered optimizer has a row in OPTIMIZERS, or a test of its own, or an entry in
NOT_IN_TORCH with the reason (tests/test_registry_coverage.py checks it).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require

torch = require("torch")

import trainkit  # noqa: E402

ACTS = {
    "relu": torch.nn.ReLU,
    "tanh": torch.nn.Tanh,
    "sigmoid": torch.nn.Sigmoid,
    "gelu": torch.nn.GELU,
    "softplus": torch.nn.Softplus,
    "leaky_relu": torch.nn.LeakyReLU,
}

# Optimizers torch.optim does not have: name -> why, and which test checks it instead.
NOT_IN_TORCH: dict[str, str] = {}

OPTIMIZERS = [
    ("sgd", {"lr": 0.1}, torch.optim.SGD),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, torch.optim.SGD),
    ("sgd", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3}, torch.optim.SGD),
    (
        "adagrad",
        {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.01, "initial_accumulator_value": 0.1},
        torch.optim.Adagrad,
    ),
    (
        "rmsprop",
        {"lr": 0.01, "momentum": 0.5, "centered": True, "weight_decay": 0.01},
        torch.optim.RMSprop,
    ),
    ("adam", {"lr": 0.01, "weight_decay": 0.01}, torch.optim.Adam),
    ("adam", {"lr": 0.01, "amsgrad": True, "betas": [0.8, 0.99]}, torch.optim.Adam),
    ("adamw", {"lr": 0.01, "weight_decay": 0.1}, torch.optim.AdamW),
    ("nadam", {"lr": 0.01, "weight_decay": 0.01}, torch.optim.NAdam),
    ("radam", {"lr": 0.01}, torch.optim.RAdam),
]


@pytest.fixture(autouse=True)
def float64_default():
    # torch keeps some optimizer scalars (NAdam's μ product) in the default dtype; float32
    # there alone would differ from an all-float64 run by ~1e-9.
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def torch_mlp(sizes, activation):
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTS[activation]())
    model = torch.nn.Module()
    model.layers = torch.nn.Sequential(*layers)
    return model.double()


@pytest.mark.parametrize("name,kwargs,torch_cls", OPTIMIZERS, ids=[f"{o[0]}-{i}" for i, o in enumerate(OPTIMIZERS)])
@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_same_parameters_as_torch(tmp_path, name, kwargs, torch_cls, task):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = rng.integers(0, 3, 60) if task == "multiclass" else X @ np.array([1.0, -2.0, 0.5]) + 0.3
    np.savez(tmp_path / "data.npz", X=X, y=y)
    activation = "tanh" if task == "multiclass" else "gelu"
    tmodel = torch_mlp([3, 8, 5, 3 if task == "multiclass" else 1], activation)
    np.savez(tmp_path / "init.npz", **{k: v.detach().numpy() for k, v in tmodel.state_dict().items()})
    loss_name = "cross_entropy" if task == "multiclass" else "mse"
    (tmp_path / "c.yaml").write_text(f"""
data: {{name: npz, path: data.npz, val_fraction: 0, task: {task}}}
model: {{name: mlp, hidden: [8, 5], activation: {activation}, init: {{from: init.npz}}}}
loss: {loss_name}
optimizer: {{name: {name}, {", ".join(f"{k}: {v}" for k, v in kwargs.items())}}}
schedule: {{name: step, step_size: 3, gamma: 0.5}}
train: {{epochs: 7, batch_size: 20, shuffle: false, dtype: float64}}
""")
    result = trainkit.train(tmp_path / "c.yaml")

    opt = torch_cls(
        tmodel.parameters(),
        **{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()},
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    loss_fn = torch.nn.CrossEntropyLoss() if task == "multiclass" else torch.nn.MSELoss()
    Xt = torch.tensor(X)
    yt = torch.tensor(y) if task == "multiclass" else torch.tensor(y)[:, None]
    for _ in range(7):
        for i in range(0, 60, 20):
            opt.zero_grad()
            loss_fn(tmodel.layers(Xt[i : i + 20]), yt[i : i + 20]).backward()
            opt.step()
        sched.step()
    for k, v in tmodel.state_dict().items():
        np.testing.assert_allclose(result.params[k], v.numpy(), rtol=0, atol=1e-10, err_msg=k)


def test_logistic_bce_matches_torch(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    lin = torch.nn.Linear(2, 1).double()
    np.savez(tmp_path / "i.npz", weight=lin.weight.detach().numpy(), bias=lin.bias.detach().numpy())
    (tmp_path / "c.yaml").write_text("""
data: {name: npz, path: d.npz, val_fraction: 0}
model: {name: logistic, init: {from: i.npz}}
optimizer: {name: gd, lr: 0.5}
train: {epochs: 30, shuffle: false, dtype: float64}
""")
    result = trainkit.train(tmp_path / "c.yaml")
    assert result.config["loss"]["name"] == "bce"
    opt = torch.optim.SGD(lin.parameters(), lr=0.5)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy(
            torch.sigmoid(lin(torch.tensor(X))), torch.tensor(y, dtype=torch.float64)[:, None]
        ).backward()
        opt.step()
    np.testing.assert_allclose(result.params["weight"], lin.weight.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(result.params["bias"], lin.bias.detach().numpy(), atol=1e-10)
