"""Magnitude pruning masks, the same as torch.nn.utils.prune's l1_unstructured (per tensor)
and global_unstructured with L1Unstructured (over all pruned tensors together).

A mask is a boolean array of the tensor's shape, True where the weight is kept. Pruning
`sparsity` of n weights zeroes the round(sparsity · n) smallest |w| (torch's rounding);
ties at the threshold go to the lower flat index (torch's topk leaves that order unspecified).
"""

from __future__ import annotations

import numpy as np

from trainkit.backend import to_numpy
from trainkit.nn.conv import _Conv
from trainkit.nn.layers import Linear


def prunable(net) -> list[str]:
    """Names of the parameters pruning applies to by default: the weights of linear and conv
    layers, never biases or normalisation parameters."""
    kinds = (Linear, _Conv)
    names = []
    for name in net.params:
        parts = name.split(".")
        layer = net.layers[int(parts[1])] if parts[0] == "layers" else net.layers[0]
        if isinstance(layer, kinds) and parts[-1] == "weight":
            names.append(name)
    return names


def _smallest(magnitudes: np.ndarray, k: int) -> np.ndarray:
    """Flat indices of the k smallest magnitudes (stable: among equals, the lower index first)."""
    return np.argsort(magnitudes, kind="stable")[:k]


def magnitude_masks(tensors: dict[str, np.ndarray], sparsity: float, scope: str = "global") -> dict[str, np.ndarray]:
    """Keep-masks that prune `sparsity` of the weights by magnitude, over all tensors at once
    (`global`) or the same fraction of each tensor (`layer`)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    host = {k: np.abs(to_numpy(v)).ravel() for k, v in tensors.items()}
    masks = {k: np.ones(v.size, dtype=bool) for k, v in host.items()}
    if scope == "layer":
        for k, mag in host.items():
            masks[k][_smallest(mag, round(sparsity * mag.size))] = False
    elif scope == "global":
        if host:
            allmag = np.concatenate(list(host.values()))
            drop = _smallest(allmag, round(sparsity * allmag.size))
            flat = np.ones(allmag.size, dtype=bool)
            flat[drop] = False
            offset = 0
            for k, mag in host.items():
                masks[k] = flat[offset : offset + mag.size].copy()
                offset += mag.size
    else:
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    return {k: masks[k].reshape(np.shape(tensors[k])) for k in tensors}


def sparsity_of(masks: dict[str, np.ndarray]) -> dict[str, float]:
    """The pruned fraction of each masked tensor."""
    return {k: 1.0 - float(m.mean()) if m.size else 0.0 for k, m in masks.items()}
