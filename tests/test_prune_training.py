"""Pruning during training (compress/prune.py): TF-MOT's PolynomialDecay schedule, masks
that keep pruned weights, their gradients and the optimizer's state exactly zero, masks in
checkpoints with a bit-exact resume, the one-shot path `compress --finetune` uses, and the
sparsity in the history and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_runs import STATEFUL, read, train_into

import trainkit
from trainkit import api
from trainkit.compress.masks import magnitude_masks, prunable
from trainkit.compress.prune import PruneConfig, Pruner, apply_masks, polynomial_sparsity
from trainkit.config import load_config

PRUNE = """
prune: {scope: global, sparsity: 0.8, initial_sparsity: 0.1, start_epoch: 2, end_epoch: 6, power: 3, frequency: 3}
"""
PRUNED = STATEFUL + PRUNE  # shuffling, dropout, mixup, plateau schedule, early stopping, and pruning


def tf_mot_sparsity(step, begin, end, s_i, s_f, power):
    """tfmot.sparsity.keras.PolynomialDecay.__call__, written out as TF-MOT's source does."""
    p = min(1.0, max(0.0, (step - begin) / (end - begin)))
    return (s_i - s_f) * (1 - p) ** power + s_f


@pytest.mark.parametrize("step", [0, 5, 10, 17, 31, 40, 60])
def test_schedule_is_tf_mot_polynomial_decay(step):
    got = polynomial_sparsity(step, 10, 40, 0.1, 0.9, 3)
    assert got == pytest.approx(tf_mot_sparsity(step, 10, 40, 0.1, 0.9, 3), abs=1e-15)
    assert polynomial_sparsity(10, 10, 40, 0.1, 0.9, 3) == pytest.approx(0.1)
    assert polynomial_sparsity(40, 10, 40, 0.1, 0.9, 3) == 0.9


def net_and_opt(write_config, text=STATEFUL):
    exp = api.build(load_config(write_config(text)))
    return exp.net, exp.trainer.opt


def test_masks_are_updated_every_frequency_steps_and_at_the_window_ends(write_config):
    net, opt = net_and_opt(write_config)
    cfg = PruneConfig(start_epoch=2, end_epoch=4, frequency=5)
    p = Pruner(cfg, net, opt, prunable(net), steps_per_epoch=8)
    assert (p.begin, p.end) == (8, 31)  # first step of epoch 2, last step of epoch 4
    updates = [k for k in range(50) if p.updates_at(k)]
    assert updates == [8, 13, 18, 23, 28, 31]
    one_shot = Pruner(PruneConfig(start_epoch=3, end_epoch=3, frequency=2), net, opt, prunable(net), 8)
    assert [k for k in range(50) if one_shot.updates_at(k)] == [16] and one_shot.target(16) == 0.9


def run_with(write_config, text, **kw):
    """(result, experiment, the parameters after each epoch) of a run of `text`."""
    seen, after = {}, []

    def on_start(exp):
        seen["exp"] = exp

    def on_epoch(row):
        after.append({k: np.array(v) for k, v in seen["exp"].net.params.items()})

    result = trainkit.train(load_config(write_config(text)), on_start=on_start, on_epoch=on_epoch, **kw)
    return result, seen["exp"], after


def test_gradual_pruning_reaches_the_target_and_freezes_the_masks(write_config):
    result, exp, after = run_with(write_config, PRUNED)
    names = prunable(exp.net)
    s = [row["sparsity"] for row in result.history]
    assert s[0] == 0.0  # pruning starts in epoch 2
    assert all(a <= b for a, b in zip(s, s[1:])), s
    assert s[5] == pytest.approx(0.8, abs=1e-3)  # reached at the end of end_epoch (6)
    total = sum(exp.net.params[k].size for k in names)
    zeros = sum(int((result.params[k] == 0).sum()) for k in names)
    assert zeros == round(0.8 * total)  # global: exactly round(s·n) weights over all tensors
    for later in after[6:]:  # frozen after epoch 6: the same zeros, still exactly zero
        for k in names:
            np.testing.assert_array_equal(later[k] == 0, after[5][k] == 0)
    for k in exp.net.params:  # biases are never pruned
        if k not in names:
            assert np.count_nonzero(result.params[k]) == result.params[k].size
    assert set(result.info["sparsity"]) == set(names)
    assert result.best_epoch >= 6  # early stopping's best epoch is one with the final masks
    kept = {k: result.params[k] != 0 for k in names}
    assert result.info["sparsity"] == pytest.approx({k: 1 - m.mean() for k, m in kept.items()})


def test_masks_zero_the_gradients_and_the_optimizer_state(write_config):
    result, exp, _ = run_with(write_config, PRUNED)
    pruned = {k: result.params[k] == 0 for k in prunable(exp.net)}
    net, opt = exp.net, exp.trainer.opt
    from trainkit.optim.tensors import tensor_views

    shapes = {k: v.shape for k, v in net.params.items()}
    for name in ("exp_avg", "exp_avg_sq"):  # Adam's moments at the pruned positions
        views = tensor_views(opt.state[name], shapes)
        for k, zero in pruned.items():
            assert not views[k][zero].any(), (name, k)
    hook = exp.trainer.hooks[0]
    net.grad[...] = 1.0
    hook.after_backward()
    grads = tensor_views(net.grad, shapes)
    for k, zero in pruned.items():
        assert not grads[k][zero].any() and grads[k][~zero].all()


@pytest.mark.parametrize("optimizer", ["{name: sgd, lr: 0.1, momentum: 0.9}", "{name: muon, lr: 0.02}"])
def test_pruned_weights_stay_zero_with_other_optimizers(write_config, optimizer):
    text = PRUNED.replace("optimizer: {name: adam, lr: 0.01}", f"optimizer: {optimizer}")
    result, exp, after = run_with(write_config, text)
    for k in prunable(exp.net):
        for later in after[6:]:
            np.testing.assert_array_equal(later[k] == 0, result.params[k] == 0)
    assert result.history[-1]["sparsity"] == pytest.approx(0.8, abs=1e-3)


def test_layer_scope_prunes_each_tensor_alike(write_config):
    result, exp, _ = run_with(write_config, PRUNED.replace("scope: global", "scope: layer"))
    for k in prunable(exp.net):
        n = result.params[k].size
        assert int((result.params[k] == 0).sum()) == round(0.8 * n), k


def test_params_choose_what_is_pruned(write_config):
    result, exp, _ = run_with(write_config, PRUNED.replace("frequency: 3}", "frequency: 3, params: [layers.3.weight]}"))
    assert list(result.info["sparsity"]) == ["layers.3.weight"]
    assert int((result.params["layers.3.weight"] == 0).sum()) == round(0.8 * 256)
    assert np.count_nonzero(result.params["layers.0.weight"]) == result.params["layers.0.weight"].size


@pytest.mark.parametrize("name", ["layers.0.bias", "layers.1.weight"])
def test_params_never_name_a_bias_or_a_norm(write_config, cli, name):
    """Biases and normalisation parameters are never pruned, listed or not: exit 2 naming it."""
    text = "seed: 0\ndata: {name: blobs, n_samples: 60, n_features: 4, n_classes: 3}\n"
    text += "model: {name: sequential, layers: [{name: linear, out_features: 8}, {name: layer_norm}, "
    text += "{name: linear, out_features: 3}]}\noptimizer: {name: sgd, lr: 0.1}\ntrain: {epochs: 2}\n"
    text += f"prune: {{sparsity: 0.5, start_epoch: 1, end_epoch: 2, params: [{name}]}}\n"
    r = cli("train", write_config(text, "p.yaml"), "--json")
    assert r.code == 2 and r.json["error"]["type"] == "config", r.stdout
    assert f"{name!r} is not a weight of a linear or conv layer" in r.json["error"]["message"]
    assert "layers.0.weight, layers.2.weight" in r.json["error"]["message"]


def test_one_shot_mask_from_loaded_weights_is_fixed_while_fine_tuning(tmp_path, write_config):
    """What `trainkit compress RUN --finetune` runs: a trained run's weights loaded, a prune
    block with start_epoch = end_epoch = 1: the mask is the one-shot magnitude mask of the
    loaded weights at s_f, kept through fine-tuning."""
    trainkit.train(write_config(STATEFUL, "dense.yaml"), output_dir=tmp_path / "dense")
    with np.load(tmp_path / "dense" / "best.npz") as f:
        loaded = {k: f[k] for k in f.keys()}
    text = STATEFUL.replace("dropout: 0.2}", "dropout: 0.2, init: {from: dense/best.npz}}").replace(
        "epochs: 10", "epochs: 3"
    )
    text += "prune: {sparsity: 0.9, start_epoch: 1, end_epoch: 1}\n"
    result, exp, after = run_with(write_config, text)
    names = prunable(exp.net)
    expected = magnitude_masks({k: loaded[k] for k in names}, 0.9, "global")
    for epoch in after:
        for k in names:
            np.testing.assert_array_equal(epoch[k] != 0, expected[k])
    assert [row["sparsity"] for row in result.history] == pytest.approx([round(0.9 * 336) / 336] * 3)


def test_apply_masks_zeroes_weights_gradients_and_state(write_config):
    net, opt = net_and_opt(write_config)
    opt.state["exp_avg"][...] = 1.0
    net.grad[...] = 1.0
    masks = magnitude_masks({"layers.0.weight": net.params["layers.0.weight"]}, 0.5, "global")
    before = net.params["layers.3.weight"].copy()
    apply_masks(net, opt, masks)
    dead = ~masks["layers.0.weight"]
    assert not net.params["layers.0.weight"][dead].any()
    np.testing.assert_array_equal(net.params["layers.3.weight"], before)
    from trainkit.optim.tensors import tensor_views

    shapes = {k: v.shape for k, v in net.params.items()}
    assert not tensor_views(opt.state["exp_avg"], shapes)["layers.0.weight"][dead].any()
    assert tensor_views(opt.state["exp_avg"], shapes)["layers.3.weight"].all()
    assert not tensor_views(net.grad, shapes)["layers.0.weight"][dead].any()


@pytest.mark.parametrize("stop", [{"stop_after_epoch": 4}, {"stop_after_step": 43}], ids=["epoch_end", "mid_epoch"])
def test_resume_of_a_pruned_run_is_bit_exact(tmp_path, write_config, stop):
    config = write_config(PRUNED)
    straight = train_into(tmp_path / "a", config)
    first = train_into(tmp_path / "b", config, **stop)
    assert first.status == "interrupted"
    from trainkit.runs import checkpoint

    arrays, meta = checkpoint.load(tmp_path / "b" / "checkpoint.npz")
    assert any(k.startswith("prune/mask/") for k in arrays) and meta["prune"]["step"] > 0
    resumed = train_into(tmp_path / "b", config, resume=True)
    for k in straight.params:
        np.testing.assert_array_equal(resumed.params[k], straight.params[k])
    assert read(tmp_path / "b") == read(tmp_path / "a")


def test_sparsity_is_in_the_history_json_and_the_report(tmp_path, cli, write_config):
    config = write_config(PRUNED)
    r = cli("train", config, "-d", tmp_path / "run", "--json")
    assert r.code == 0, r.stderr
    doc = r.json
    assert all("sparsity" in row for row in doc["history"])
    assert set(doc["info"]["sparsity"]) == {"layers.0.weight", "layers.3.weight", "layers.6.weight"}
    for row in doc["history"]:  # per tensor too, each epoch
        assert {k for k in row if k.startswith("sparsity/")} == {f"sparsity/{k}" for k in doc["info"]["sparsity"]}
    assert {k: doc["history"][-1][f"sparsity/{k}"] for k in doc["info"]["sparsity"]} == doc["info"]["sparsity"]
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "sparsity/layers.3.weight" in header
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["info"]["sparsity"] == doc["info"]["sparsity"]
    text = cli("train", config, "-d", tmp_path / "run2", "--progress", "none")
    assert text.code == 0
    out = text.stdout + text.stderr
    assert "sparsity" in out and "layers.3.weight" in out and "total" in out


def test_unpruned_runs_have_no_hooks_and_no_sparsity(write_config):
    result, exp, _ = run_with(write_config, STATEFUL)
    assert exp.trainer.hooks == [] and "sparsity" not in result.history[0] and "sparsity" not in result.info
