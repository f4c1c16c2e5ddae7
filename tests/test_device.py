"""train.device and the CI stand-in for the GPU.

Every run here with `device: cuda` computes on trainkit.backend.strict: numpy's arithmetic
behind arrays that refuse every implicit trip to the host (np.asarray, float, bool, iteration,
mixing with host arrays), as CuPy refuses them or would wait for the GPU. A run on it must
give the CPU run's numbers bit for bit (the same numpy underneath), so a numpy call left on
the hot path, a host array fed to a layer, or a per-step read of a device number fails here,
on a machine without a GPU. The checks that need CuPy and a GPU are in test_gpu.py.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from conftest import CONFIGS

import trainkit.api as api
import trainkit.runs.inference as inference
from trainkit import backend, registry
from trainkit.backend import strict as strict_mod
from trainkit.backend.strict import strict

MOONS = ["data.n_samples=240", "train.epochs=2", "train.batch_size=64"]
CNN = """
seed: 0
data: {name: csv, path: DIGITS, target: label, shape: [1, 8, 8], scale: standardize, val_fraction: 0.2, test_fraction: 0.1}
model:
  name: sequential
  layers:
    - {name: conv2d, out_channels: 4, kernel_size: 3, padding: 1}
    - {name: batch_norm2d}
    - relu
    - {name: max_pool2d, kernel_size: 2}
    - {name: conv2d, out_channels: 2, kernel_size: 1}
    - {name: avg_pool2d, kernel_size: 2}
    - flatten
    - {name: layer_norm}
    - {name: dropout, p: 0.2}
    - linear
optimizer: {name: adam, lr: 0.01}
train: {epochs: 2, batch_size: 64}
"""


@pytest.fixture
def configs_dir():
    return CONFIGS


@pytest.fixture
def fake_gpu(monkeypatch):
    """`cuda` (and `cuda:N`) computes on the strict module; `cpu` stays numpy."""

    def module(spec: str):
        return strict if spec.startswith("cuda") else np

    monkeypatch.setattr(api, "array_module", module)
    monkeypatch.setattr(inference, "array_module", module)
    return module


def _pair(config, overrides, **kw):
    """The same run on the CPU and on the (strict) device."""
    cpu = api.train(config, [*overrides, "train.device=cpu"], **kw)
    dev = api.train(config, [*overrides, "train.device=cuda"], **kw)
    return cpu, dev


def _same(cpu, dev):
    assert dev.status == cpu.status
    assert dev.metrics == cpu.metrics
    assert cpu.params.keys() == dev.params.keys()
    for k in cpu.params:
        assert type(dev.params[k]) is np.ndarray  # results come back as host arrays
        np.testing.assert_array_equal(dev.params[k], cpu.params[k], err_msg=k)


# ---------------------------------------------------------------- the strict module itself


def test_strict_refuses_every_implicit_host_conversion():
    a = strict.arange(6.0).reshape(2, 3)
    for convert in (
        np.asarray,
        np.array,
        lambda x: float(x.sum()),
        lambda x: int(x[0, 0]),
        lambda x: bool(x.any()),
        lambda x: x.sum().item(),
        lambda x: x.tolist(),
        list,
        lambda x: [r for r in x],
        lambda x: x + np.ones(3),  # a host array in a device operation
        lambda x: np.ones(3) * x[0],
        lambda x: x.__setitem__(0, np.zeros(3)),
        lambda x: x[np.array([1, 0])],  # a host index array
        lambda x: strict.exp(np.ones(2)),
        lambda x: strict.take(x, strict.asarray([0]), axis=0, mode="clip"),  # CuPy's take has no mode
    ):
        with pytest.raises(TypeError):
            convert(a)


def test_strict_computes_as_numpy_and_comes_back_through_to_numpy():
    host = np.arange(6.0).reshape(2, 3)
    a = strict.asarray(host)
    host[0, 0] = 99.0  # asarray copied it to the "device"
    b = np.exp(a) * 2 + strict.ones(3)
    b += 1
    strict.add.reduce(a, axis=0, out=strict.zeros(3))
    out = backend.to_numpy(b)
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, np.exp(np.arange(6.0).reshape(2, 3)) * 2 + 2)
    assert backend.scalar(a.sum()) == 15.0
    assert isinstance(a.sum(), strict.ndarray)  # reductions stay on the device, as in CuPy


def test_using_sets_the_module_for_the_block_only():
    assert backend.current() is np
    with pytest.raises(RuntimeError), backend.using(strict):
        assert isinstance(backend.xp.zeros(2), strict_mod.StrictArray)
        raise RuntimeError
    assert backend.current() is np
    assert type(backend.xp.zeros(2)) is np.ndarray


# ---------------------------------------------------------------- runs on the device


def test_mlp_run_on_device_equals_cpu_bit_for_bit(fake_gpu, configs_dir):
    cpu, dev = _pair(configs_dir / "mlp_moons.yaml", MOONS)
    _same(cpu, dev)
    assert backend.current() is np  # the run's module does not outlive it


def test_cnn_run_conv_pool_batchnorm_dropout_on_device(fake_gpu, write_config, configs_dir):
    cfg = write_config(CNN.replace("DIGITS", str(configs_dir / "data" / "digits.csv")))
    cpu, dev = _pair(cfg, [])
    _same(cpu, dev)
    assert "test_accuracy" in dev.metrics


@pytest.mark.parametrize("name", [e.name for e in registry.entries("optimizers")])
def test_every_optimizer_on_device(fake_gpu, configs_dir, name):
    extra = ["train.batch_size=full"] if name in ("gd", "lbfgs") else []
    over = [*MOONS, f"optimizer={{name: {name}, lr: 0.01}}", "schedule={name: constant}", *extra]
    cpu, dev = _pair(configs_dir / "mlp_moons.yaml", over)
    _same(cpu, dev)


@pytest.mark.parametrize(
    "schedule",
    [
        "{name: step, step_size: 1}",
        "{name: one_cycle, max_lr: 0.05, total_steps: 20, interval: step}",
        "{name: reduce_on_plateau, patience: 1}",
    ],
)
def test_schedules_clipping_regularization_early_stopping_on_device(fake_gpu, configs_dir, schedule):
    over = [
        *MOONS,
        "train.epochs=4",
        f"schedule={schedule}",
        "train.clip_grad_norm=0.5",
        "train.clip_grad_value=0.3",
        "regularization={l1: 0.001, l2: 0.001}",
        "train.early_stopping={patience: 2}",
        "train.metrics=[accuracy, precision, recall, f1]",
    ]
    _same(*_pair(configs_dir / "mlp_moons.yaml", over))


@pytest.mark.parametrize("aug", [e.name for e in registry.entries("augmentations")])
def test_every_augmentation_on_device(fake_gpu, write_config, configs_dir, aug):
    args = {"random_crop": ", padding: 1", "cutout": ", size: 2", "random_shift": ", max_shift: 1"}.get(aug, "")
    text = CNN.replace("DIGITS", str(configs_dir / "data" / "digits.csv"))
    text = text.replace("val_fraction: 0.2,", f"val_fraction: 0.2, augment: [{{name: {aug}{args}}}],")
    _same(*_pair(write_config(text), ["train.epochs=1"]))


def test_regression_scaled_targets_on_device(fake_gpu, write_config):
    cfg = write_config(
        """
        seed: 1
        data: {name: linear, n_samples: 120, n_features: 3, val_fraction: 0.2, test_fraction: 0.1,
               scale_target: standardize}
        model: {name: mlp, hidden: [8], activation: tanh}
        loss: {name: huber}
        optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
        train: {epochs: 3, batch_size: 16, dtype: float64, metrics: [mse, mae, r2]}
        """
    )
    _same(*_pair(cfg, []))


# ---------------------------------------------------------------- checkpoints, evaluate, predict


def test_device_checkpoint_resumes_on_cpu_bit_for_bit(fake_gpu, configs_dir, tmp_path):
    """Checkpoints hold host arrays whatever the device: 2 epochs on the device then 2 on the
    CPU equal 4 on the CPU, and the device run's files equal the CPU run's."""
    cfg = configs_dir / "mlp_moons.yaml"
    base = ["data.n_samples=240", "train.batch_size=64"]
    whole = api.train(cfg, [*base, "train.epochs=4"], output_dir=tmp_path / "cpu")
    api.train(cfg, [*base, "train.epochs=2", "train.device=cuda"], output_dir=tmp_path / "dev")
    api.train(cfg, [*base, "train.epochs=2"], output_dir=tmp_path / "cpu2")
    with np.load(tmp_path / "dev" / "checkpoint.npz") as d, np.load(tmp_path / "cpu2" / "checkpoint.npz") as c:
        assert sorted(d.files) == sorted(c.files)
        for k in c.files:
            if k != "meta":
                np.testing.assert_array_equal(d[k], c[k], err_msg=k)
    resumed = api.train(cfg, [*base, "train.epochs=4", "train.device=cpu"], output_dir=tmp_path / "dev", resume=True)
    _same(whole, resumed)


def test_evaluate_and_predict_on_device(fake_gpu, cli, configs_dir, tmp_path):
    run = tmp_path / "run"
    cfg = configs_dir / "iris.yaml"
    assert cli("train", cfg, "-d", run, "--device", "cuda", "--set", "train.epochs=3").code == 0
    cpu = cli("evaluate", run, "--json")
    dev = cli("evaluate", run, "--json", "--device", "cuda")
    assert dev.code == 0 and dev.json == cpu.json
    data = configs_dir / "data" / "iris.csv"
    pc, pd = cli("predict", run, "--data", data), cli("predict", run, "--data", data, "--device", "cuda")
    assert pd.code == 0 and pd.stdout == pc.stdout


# ---------------------------------------------------------------- without a GPU


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_cuda_without_cupy_is_exit_2_with_the_install_line(cli, configs_dir):
    r = cli("train", configs_dir / "linreg.yaml", "--device", "cuda", "--json")
    assert r.code == 2
    issue = r.json["error"]["issues"][0]
    assert issue["key"] == "train.device" and "CuPy" in issue["message"]
    assert "trainkit[cuda12]" in issue["hint"] and "trainkit[cuda13]" in issue["hint"]
    r = cli("evaluate", configs_dir, "--device", "cuda:1", "--json")
    assert r.code == 2 and "CuPy" in r.json["error"]["message"]


def test_bad_device_names_the_key(cli, configs_dir):
    r = cli("train", configs_dir / "linreg.yaml", "--device", "gpu", "--json")
    assert r.code == 2
    assert "use cpu, cuda or cuda:N" in json.dumps(r.json)


def test_list_devices_shows_cpu_and_why_no_cuda(cli):
    r = cli("list", "devices")
    assert r.code == 0 and "cpu" in r.stdout
    if importlib.util.find_spec("cupy") is None:
        assert "no cuda device" in r.stdout and "trainkit[cuda12]" in r.stdout


def test_lr_find_on_a_device_is_refused_not_a_traceback(fake_gpu, configs_dir):
    from trainkit.config import load_config
    from trainkit.errors import ConfigError
    from trainkit.optim.lr_find import lr_find

    with pytest.raises(ConfigError, match="lr-find runs on the CPU"):
        lr_find(load_config(configs_dir / "mlp_moons.yaml", ["train.device=cuda"]))


# ---------------------------------------------------------------- compression on the device


def test_gradual_pruning_on_device(fake_gpu, configs_dir):
    cpu, dev = _pair(configs_dir / "digits_pruned.yaml", ["train.epochs=2", "prune.end_epoch=1", "prune.frequency=5"])
    _same(cpu, dev)
    assert dev.history[-1]["sparsity"] == cpu.history[-1]["sparsity"] > 0.8


def test_compressed_model_evaluates_on_device(fake_gpu, cli, configs_dir, tmp_path):
    run = tmp_path / "run"
    assert cli("train", configs_dir / "iris.yaml", "-d", run, "--set", "train.epochs=3").code == 0
    assert cli("compress", run, "--sparsity", "0.5", "--int8").code == 0
    cpu = cli("evaluate", run, "--json", "--model", "compressed")
    dev = cli("evaluate", run, "--json", "--model", "compressed", "--device", "cuda")
    assert dev.code == 0, dev.stderr
    assert dev.json == cpu.json
