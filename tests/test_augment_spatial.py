"""Image and signal augmentations: each output is its input moved, mirrored or cut as the
rule says (checked per sample against a brute-force reference), seeded and resumable."""

from __future__ import annotations

import numpy as np
import pytest
from test_conv_runs import CONV_NET, build, write_images
from test_runs import train_into

from trainkit import registry
from trainkit.data.augment import build_augmentations


def aug(name, shape, **kwargs):
    entry = registry.get("augmentations", name)
    return build_augmentations([entry.schema(**kwargs)], shape)[0]


def shifted(img, dy, dx):
    """Reference: img (C, H, W) moved by (dy, dx), zeros filling in."""
    out = np.zeros_like(img)
    h, w = img.shape[1:]
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[:, i, j] = img[:, i - dy, j - dx]
    return out


def batch(shape, n=12, seed=0):
    return np.random.default_rng(seed).normal(size=(n, int(np.prod(shape))))


@pytest.mark.parametrize("name,kwargs", [("random_crop", {"padding": 2}), ("random_shift", {"max_shift": 2})])
@pytest.mark.parametrize("shape", [(2, 5, 6), (3, 7)])
def test_crop_and_shift_move_each_sample_within_the_limit(name, kwargs, shape):
    x = batch(shape)
    before = x.copy()
    out, t = aug(name, shape, **kwargs)(x, np.arange(12), np.random.default_rng(1), None)
    np.testing.assert_array_equal(x, before)  # the batch (maybe a view of the data) is untouched
    imgs = x.reshape(12, shape[0], -1, shape[-1])
    got = out.reshape(imgs.shape)
    vertical = range(-2, 3) if len(shape) == 3 else [0]  # 1-D signals move along time only
    moves = []
    for a, b in zip(imgs, got):
        match = [(dy, dx) for dy in vertical for dx in range(-2, 3) if np.array_equal(shifted(a, dy, dx), b)]
        assert match, "not a shift of its input"
        moves.append(match[0])
    assert len(set(moves)) > 3  # random per sample


def test_shift_with_wrap_is_a_roll():
    x = batch((1, 10))
    out, _ = aug("random_shift", (1, 10), max_shift=3, fill="wrap")(x, None, np.random.default_rng(2), None)
    for a, b in zip(x, out):
        assert any(np.array_equal(np.roll(a, k), b) for k in range(-3, 4))


def test_flip_mirrors_the_last_axis():
    shape = (2, 3, 4)
    x = batch(shape)
    imgs = x.reshape(12, *shape)
    out, _ = aug("random_flip", shape, p=1.0)(x, None, np.random.default_rng(0), None)
    np.testing.assert_array_equal(out.reshape(imgs.shape), imgs[..., ::-1])
    half, _ = aug("random_flip", shape, p=0.5)(x, None, np.random.default_rng(0), None)
    flipped = [np.array_equal(b, a[..., ::-1]) for a, b in zip(imgs, half.reshape(imgs.shape))]
    kept = [np.array_equal(b, a) for a, b in zip(imgs, half.reshape(imgs.shape))]
    assert all(f or k for f, k in zip(flipped, kept)) and 0 < sum(flipped) < 12


@pytest.mark.parametrize("shape,size,area", [((1, 8, 8), 3, 9), ((2, 16), 4, 4)])
def test_cutout_zeros_one_box_of_the_given_size(shape, size, area):
    x = batch(shape, n=50) + 10.0  # no zeros of its own
    out, _ = aug("cutout", shape, size=size)(x, None, np.random.default_rng(3), None)
    per_channel = out.reshape(50, shape[0], -1)
    zeros = per_channel == 0
    assert (zeros == zeros[:, :1]).all()  # the same box in every channel
    counts = zeros[:, 0].sum(axis=1)
    assert counts.max() == area and counts.min() >= 1  # whole boxes, or clipped at the edge
    np.testing.assert_array_equal(out[out != 0], x[out != 0])


def test_plain_rows_are_one_channel_signals():
    x = batch((9,))
    out, _ = aug("random_flip", None, p=1.0)(x, None, np.random.default_rng(0), None)
    np.testing.assert_array_equal(out, x[:, ::-1])


def test_image_augmentations_resume_bit_exactly(tmp_path, write_config):
    write_images(tmp_path / "img.npz")
    extra = ", augment: [{name: random_crop, padding: 1}, random_flip, {name: cutout, size: 2}, gaussian_noise]"
    cfg = write_config(CONV_NET.format(data_extra=extra, epochs=4))
    straight = train_into(tmp_path / "a", cfg)
    train_into(tmp_path / "b", cfg, stop_after_step=5)
    resumed = train_into(tmp_path / "b", cfg, resume=True)
    for k in straight.params:
        np.testing.assert_array_equal(resumed.params[k], straight.params[k])
    plain = train_into(tmp_path / "c", write_config(CONV_NET.format(data_extra="", epochs=4), "plain.yaml"))
    assert plain.history != straight.history  # the augmentations did something


@pytest.mark.parametrize("first,square", [("conv2d", True), ("conv1d", False)])
def test_channel_less_images_are_augmented_as_the_network_reads_them(tmp_path, first, square):
    """NPZ X of shape (n, H, W): before conv2d a grey image (1, H, W), so cutout zeros a size ×
    size square (it zeroed a `size`-wide stripe of every row, reading (H, W) as H channels of
    1-D signals); before conv1d H channels of length W, so a segment in every channel."""
    write_images(tmp_path / "img.npz", (6, 6))
    text = CONV_NET.format(data_extra=", augment: [{name: cutout, size: 2}]", epochs=1)
    if first == "conv1d":
        text = text.replace("2d", "1d")
    exp = build(text, tmp_path)
    cut = exp.trainer.augment[0]
    out, _ = cut(np.ones((200, 36)), np.zeros(200), np.random.default_rng(0), None)
    zeros = (out.reshape(200, 6, 6) == 0).sum(axis=(1, 2))
    if square:
        assert zeros.max() == 4 and zeros.min() >= 1  # a 2 × 2 square, clipped at the edges
    else:
        assert zeros.max() == 12 and zeros.min() == 6  # 2 (or 1 at the edge) positions × 6 channels
