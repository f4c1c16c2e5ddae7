"""Per-sample shapes of image and signal data, kept beside flat feature rows.

Data travel through loading, splitting, scaling and batching as rows (n, features); a
dataset with a shape ((C, L) or (C, H, W)) records it, the run's DataState keeps it, and the
network reshapes each batch to (n, *shape) for free (a view). Scaling of shaped data is per
channel: one offset and factor per channel, over every sample and position.
"""

from __future__ import annotations

import math

import numpy as np

from trainkit.errors import DataError


def sample_shape(ds, declared) -> tuple[int, ...] | None:
    """The shape of one sample: the data block's `shape:` if given, else the file's own
    (NPZ X of shape (n, C, L), (n, H, W), (n, C, H, W)); None for plain feature rows."""
    shape = tuple(declared) if declared else ds.shape
    if shape is None:
        return None
    if not declared and len(shape) == 3 and shape[2] in (1, 3, 4) and shape[0] > 4:
        # (n, H, W, C) as numpy, PIL and TensorFlow keep images: read as (C, H, W) it would train
        # on H channels of W-pixel-wide images without a word
        raise DataError(
            f"X holds samples of shape {shape}: images with the channels last (H, W, C); trainkit reads "
            "(C, H, W), channels first",
            ds.source,
            f"save X.transpose(0, 3, 1, 2); or, if {shape} is (C, H, W), say so with data.shape: {list(shape)}",
        )
    if math.prod(shape) != ds.n_features:
        raise DataError(
            f"shape {list(shape)} holds {math.prod(shape)} values per sample but the data has {ds.n_features} "
            "feature columns",
            ds.source,
            "data.shape lists channels first: [C, L] or [C, H, W], with C·H·W = the number of feature columns",
        )
    return shape


def as_the_network_reads(shape: tuple[int, ...], in_shape: tuple[int, ...]) -> tuple[int, ...]:
    """One sample's shape as the network reads it: its input shape where it gives the data a
    channel axis the data lacks ((H, W) before conv2d is a grey image (1, H, W), not H channels
    of a signal; (L,) before conv1d is one channel (1, L), not L columns), else the data's own."""
    return tuple(in_shape) if len(in_shape) > len(shape) else tuple(shape)


def check_same_shape(other, shape, declared, source: str) -> None:
    """A validation, test or prediction file must hold samples of the training data's shape."""
    if shape is None:
        return
    got = tuple(declared) if declared else (other.shape or (other.n_features,))
    if math.prod(got) != math.prod(shape) or (other.shape is not None and not declared and got != shape):
        hint = None
        if len(shape) >= 2 and got == (*shape[1:], shape[0]):  # (H, W, C) as numpy/PIL images come
            axes = ", ".join(map(str, [0, len(shape), *range(1, len(shape))]))
            hint = f"channels come first: save X.transpose({axes})"
        elif got == shape[1:] and len(other) == shape[0]:  # one (C, H, W) sample read as C samples
            hint = f"a single sample needs the leading axis of samples: save X[None], of shape {(1, *shape)}"
        raise DataError(f"samples have shape {list(got)}, the training data {list(shape)}", source, hint)


def channel_scaling(X: np.ndarray, shape: tuple[int, ...], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(offset, factor) per feature column, computed per channel (the first axis of `shape`)
    over all samples and positions: standardize (mean, std) or minmax (min, max − min)."""
    per_channel = X.reshape(len(X), shape[0], -1)
    if kind == "standardize":
        offset, factor = per_channel.mean(axis=(0, 2)), per_channel.std(axis=(0, 2))
    else:
        low = per_channel.min(axis=(0, 2))
        offset, factor = low, per_channel.max(axis=(0, 2)) - low
    positions = math.prod(shape[1:])
    return np.repeat(offset, positions), np.repeat(factor, positions)
