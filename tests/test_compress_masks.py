"""Magnitude masks against torch.nn.utils.prune (global and per-layer L1 unstructured)."""

import numpy as np
import pytest

from tests.conftest import require
from trainkit.compress.masks import magnitude_masks, prunable, sparsity_of


def _tensors(seed=0):
    rng = np.random.default_rng(seed)
    # continuous values: no ties, so torch's unspecified tie order does not matter
    return {"a": rng.standard_normal((8, 5)), "b": rng.standard_normal((3, 4, 3)), "c": rng.standard_normal(7)}


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9])
def test_global_masks_equal_torch_global_unstructured(sparsity):
    torch = require("torch")
    import torch.nn.utils.prune as prune

    ts = _tensors()
    mods = {k: torch.nn.Module() for k in ts}
    for k, m in mods.items():
        m.weight = torch.nn.Parameter(torch.tensor(ts[k]))
    prune.global_unstructured(
        [(m, "weight") for m in mods.values()], pruning_method=prune.L1Unstructured, amount=sparsity
    )
    ours = magnitude_masks(ts, sparsity, "global")
    for k, m in mods.items():
        np.testing.assert_array_equal(ours[k], m.weight_mask.numpy().astype(bool))


@pytest.mark.parametrize("sparsity", [0.25, 0.9])
def test_layer_masks_equal_torch_l1_unstructured(sparsity):
    torch = require("torch")
    import torch.nn.utils.prune as prune

    ts = _tensors(1)
    ours = magnitude_masks(ts, sparsity, "layer")
    for k, v in ts.items():
        m = torch.nn.Module()
        m.weight = torch.nn.Parameter(torch.tensor(v))
        prune.l1_unstructured(m, "weight", amount=sparsity)
        np.testing.assert_array_equal(ours[k], m.weight_mask.numpy().astype(bool))


def test_masks_prune_the_smallest_and_count_is_rounded():
    ts = {"w": np.array([[0.5, -0.1, 2.0], [-3.0, 0.05, 1.0]])}
    m = magnitude_masks(ts, 0.5, "global")["w"]
    np.testing.assert_array_equal(m, [[False, False, True], [True, False, True]])
    assert sparsity_of({"w": m})["w"] == 0.5


def test_ties_go_to_the_lower_index():
    m = magnitude_masks({"w": np.ones(4)}, 0.5, "layer")["w"]
    np.testing.assert_array_equal(m, [False, False, True, True])


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_sparsity_outside_unit_interval_is_refused(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        magnitude_masks(_tensors(), bad)


def test_prunable_is_linear_and_conv_weights_only():
    from test_conv import make

    from trainkit.nn.network import Network

    layers = [make("conv2d", out_channels=2, kernel_size=3), make("batch_norm2d"), make("relu"), make("flatten")]
    layers.append(make("linear", out_features=3))
    net = Network(layers, (1, 6, 6), np.float64)
    assert prunable(net) == ["layers.0.weight", "layers.4.weight"]
