"""Pooling (torch.nn.MaxPool1d/2d, AvgPool1d/2d, AdaptiveAvgPool1d/2d) and flatten.

A pool slides a kernel over (H, W) per channel. Each is written tap by tap: for kernel tap
(i, j), the padded input's strided grid xpad[:, :, i·d::s, j·d::s] is what that tap sees at
every output position, so forward and backward are kh·kw whole-array operations.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator

from trainkit.backend import xp
from trainkit.config.base import Component
from trainkit.nn.spatial import (
    ShapedLayer,
    ShapeError,
    Window,
    as_pair,
    check_spatial,
    fmt_shape,
    from_4d,
    scratch,
    spatial_out,
    to_4d,
)
from trainkit.registry import register

Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]


class _PoolConfig(Component):
    kernel_size: Union[Positive, list[Positive]]
    stride: Optional[Union[Positive, list[Positive]]] = Field(None, description="default: kernel_size")
    padding: Union[NonNegative, list[NonNegative]] = 0

    _dims = 2

    def _extent(self, axis: int) -> float:
        return as_pair(self.kernel_size, self._dims, "kernel_size")[axis]

    @model_validator(mode="after")
    def _sizes(self):
        for key in ("kernel_size", "stride", "padding", "dilation"):
            if getattr(self, key, None) is not None:
                as_pair(getattr(self, key), self._dims, key)
        pads = as_pair(self.padding, self._dims, "padding", 0)
        for a in range(2):
            if pads[a] > self._extent(a) / 2:
                raise ValueError(f"padding {self.padding} must be at most half the kernel size (as in torch)")
        return self


class _MaxPoolConfig(_PoolConfig):
    dilation: Union[Positive, list[Positive]] = 1

    def _extent(self, axis: int) -> float:
        k = as_pair(self.kernel_size, self._dims, "kernel_size")[axis]
        return as_pair(self.dilation, self._dims, "dilation")[axis] * (k - 1) + 1


class MaxPool1dConfig(_MaxPoolConfig):
    """Maximum over windows of the length axis (torch.nn.MaxPool1d)."""

    name: Literal["max_pool1d"] = "max_pool1d"
    _dims = 1


class MaxPool2dConfig(_MaxPoolConfig):
    """Maximum over windows of height × width (torch.nn.MaxPool2d)."""

    name: Literal["max_pool2d"] = "max_pool2d"


class AvgPool1dConfig(_PoolConfig):
    """Mean over windows of the length axis (torch.nn.AvgPool1d; padding counts as zeros)."""

    name: Literal["avg_pool1d"] = "avg_pool1d"
    _dims = 1


class AvgPool2dConfig(_PoolConfig):
    """Mean over windows of height × width (torch.nn.AvgPool2d; padding counts as zeros)."""

    name: Literal["avg_pool2d"] = "avg_pool2d"


class _Pool(ShapedLayer):
    fill = 0.0  # what padding holds

    def __init__(self, cfg):
        d = self.spatial_dims
        self.name = cfg.name
        self.kernel = as_pair(cfg.kernel_size, d, "kernel_size")
        self.stride = as_pair(cfg.stride if cfg.stride is not None else cfg.kernel_size, d, "stride")
        self.dilation = as_pair(getattr(cfg, "dilation", 1), d, "dilation")
        ph, pw = as_pair(cfg.padding, d, "padding", 0)
        self.win = Window(self.kernel, self.stride, self.dilation, (ph, ph, pw, pw))

    def build(self, shape):
        c, h, w = check_spatial(shape, self.spatial_dims)
        if not self.win.fits(h, w):
            d = self.spatial_dims
            span = tuple(self.win.span(a) for a in (0, 1))[-d:]
            padded = self.win.padded_shape((1, c, h, w))[2:][-d:]
            raise ShapeError(f"pooling window {fmt_shape(span)} is larger than its padded input {fmt_shape(padded)}")
        self.in_shape4, self.out_hw = (c, h, w), self.win.out_size(h, w)
        self.disjoint, self.covering = self._tiles()
        return spatial_out(c, self.out_hw, self.spatial_dims)

    def _padded(self, x4, buf):
        win = self.win
        return win.pad_into(buf("xpad", win.padded_shape(x4.shape), x4.dtype), x4, self.fill) if any(win.pad) else x4

    def _dxpad(self, n, dtype, zero: bool = True):
        c, h, w = self.in_shape4
        dxpad = self._buffer("dxpad", self.win.padded_shape((n, c, h, w)), dtype)
        if zero:
            dxpad.fill(0)
        return dxpad

    def _tiles(self) -> tuple[bool, bool]:
        """(disjoint, covering): no two windows share an input (stride ≥ the dilated kernel's
        extent), and the windows also cover every input (kernel = stride, no padding or
        dilation, sizes divisible). Disjoint windows let backward assign instead of add;
        covering ones need no zeroed gradient buffer first."""
        c, h, w = self.in_shape4
        win, (ho, wo) = self.win, self.out_hw
        disjoint = all(win.stride[a] >= win.span(a) for a in (0, 1))
        covering = (
            disjoint and win.dilation == (1, 1) and not any(win.pad) and win.span(0) * ho == h and win.span(1) * wo == w
        )
        return disjoint, covering

    def _dx(self, dxpad):
        _, h, w = self.in_shape4
        return from_4d(self.win.unpad(dxpad, h, w), self.spatial_dims)


class _MaxPool(_Pool):
    """y = max over the window (padding is −∞).  Backward: dy goes to the window's arg max
    (the first one on ties, as torch); overlapping windows add up.

    The arg max is found in the backward pass, tap by tap in window order: the first tap
    whose value equals y takes the gradient (cheaper than tracking it in the forward pass).

    Tiled windows (kernel = stride, no padding or dilation, sizes divisible: LeNet's 2×2 pools)
    over a C-contiguous input run in two stages instead: the maximum of each window row's kw
    taps, hm (n, C, H, Wo), then the maximum of each window's kh rows of hm. Row taps are
    x.flat[j::kw], one long strided run each, where a tap of the 2-D window is Wo values per
    row: numpy's per-row cost made the tap-by-tap form 4× slower than its arithmetic. Taking
    the first maximum of each row, then the first row holding the window's maximum, picks the
    first maximum in row-major window order: torch's tap.
    """

    fill = -math.inf

    def forward(self, x, training):
        x4 = to_4d(x, self.spatial_dims)
        buf = self._buffer if training else scratch
        self.staged = self.covering and x4.flags.c_contiguous
        if self.staged:
            return from_4d(self._forward_staged(x4, buf), self.spatial_dims)
        xpad = self._padded(x4, buf)
        y = buf("y", (len(x4), x4.shape[1], *self.out_hw), x.dtype)
        for t, rows, cols in self.win.taps(*self.out_hw):
            if t == 0:
                y[...] = xpad[:, :, rows, cols]
            else:
                xp.maximum(y, xpad[:, :, rows, cols], out=y)
        self.xpad, self.y = xpad, y
        return from_4d(y, self.spatial_dims)

    def _stages(self, n: int):
        """(row taps of x.flat, hm.flat, window rows of hm (kh views of (n, C, Ho, Wo)))."""
        (kh, kw), (ho, wo), c = self.kernel, self.out_hw, self.in_shape4[0]
        flat = self.x4.reshape(-1)
        rows = self.hm.reshape(n, c, ho, kh, wo)
        return [flat[j::kw] for j in range(kw)], self.hm.reshape(-1), [rows[:, :, :, i] for i in range(kh)]

    def _forward_staged(self, x4, buf):
        n, c, h, _ = x4.shape
        self.x4, self.hm = x4, buf("hm", (n, c, h, self.out_hw[1]), x4.dtype)
        taps, hm, rows = self._stages(n)
        _maximum(taps, hm)
        self.y = buf("y", (n, c, *self.out_hw), x4.dtype)
        _maximum(rows, self.y)
        return self.y

    def backward(self, dy):
        dy4 = to_4d(dy, self.spatial_dims)
        if self.staged:
            return self._backward_staged(dy4)
        disjoint = self.disjoint
        dxpad = self._dxpad(len(dy4), dy.dtype, zero=not self.covering)
        hit, open_ = self._buffer("hit", dy4.shape, bool), self._buffer("open", dy4.shape, bool)
        part = None if disjoint else self._buffer("part", dy4.shape, dy.dtype)
        for t, rows, cols in self.win.taps(*self.out_hw):
            xp.equal(self.xpad[:, :, rows, cols], self.y, out=hit)
            if t == 0:  # open_: windows whose maximum no earlier tap has claimed
                xp.logical_not(hit, out=open_)
            else:
                hit &= open_
                open_ ^= hit
            if disjoint:  # each input is in one window only: its gradient is written once
                xp.multiply(dy4, hit, out=dxpad[:, :, rows, cols])
            else:
                dxpad[:, :, rows, cols] += xp.multiply(dy4, hit, out=part)
        return self._dx(dxpad)

    def _backward_staged(self, dy4):
        """dy to the first row of its window holding the maximum (dhm, laid out as hm), then
        each row's gradient to the first of its taps holding that row's maximum."""
        n, dtype = len(dy4), dy4.dtype
        dhm = self._buffer("dhm", self.hm.shape, dtype)
        dx = self._buffer("dx", self.x4.shape, dtype)
        taps, hm, rows = self._stages(n)
        (kh, kw), (ho, wo), c = self.kernel, self.out_hw, self.in_shape4[0]
        drows = dhm.reshape(n, c, ho, kh, wo)
        _route(rows, self.y, dy4, [drows[:, :, :, i] for i in range(kh)], self._buffer)
        flat = dx.reshape(-1)
        _route(taps, hm, dhm.reshape(-1), [flat[j::kw] for j in range(kw)], self._buffer)
        return from_4d(dx, self.spatial_dims)


def _maximum(taps, out):
    """out ← the elementwise maximum of the taps (NaN wins, as in torch)."""
    if len(taps) == 1:
        out[...] = taps[0]
        return
    xp.maximum(taps[0], taps[1], out=out)
    for t in taps[2:]:
        xp.maximum(out, t, out=out)


def _route(taps, best, grad, outs, buf):
    """outs[t] ← grad where taps[t] is the first tap equal to best (their maximum), else 0.
    Two taps need one comparison: the second is first only where it is strictly larger."""
    shape = best.shape
    if len(taps) == 1:
        outs[0][...] = grad
        return
    hit = buf("hit", shape, bool)
    if len(taps) == 2:  # the first tap's share is grad − grad·hit: exact, and no second mask
        xp.greater(taps[1], taps[0], out=hit)
        xp.multiply(grad, hit, out=outs[1])
        xp.subtract(grad, outs[1], out=outs[0])
        return
    open_ = buf("open", shape, bool)  # no earlier tap has claimed the maximum
    for t, (tap, out) in enumerate(zip(taps, outs)):
        xp.equal(tap, best, out=hit)
        if t == 0:
            xp.logical_not(hit, out=open_)
        else:
            hit &= open_
            open_ ^= hit
        xp.multiply(grad, hit, out=out)


class _AvgPool(_Pool):
    """y = (1 / kh·kw) Σ_window x (padding counts as zeros).  Backward: each input in a window
    gets dy / (kh·kw)."""

    def forward(self, x, training):
        x4 = to_4d(x, self.spatial_dims)
        buf = self._buffer if training else scratch
        xpad = self._padded(x4, buf)
        y = buf("y", (len(x4), x4.shape[1], *self.out_hw), x.dtype)
        for t, rows, cols in self.win.taps(*self.out_hw):
            if t == 0:
                y[...] = xpad[:, :, rows, cols]
            else:
                y += xpad[:, :, rows, cols]
        y *= 1.0 / (self.kernel[0] * self.kernel[1])
        return from_4d(y, self.spatial_dims)

    def backward(self, dy):
        dy4 = to_4d(dy, self.spatial_dims)
        share = dy4 * (1.0 / (self.kernel[0] * self.kernel[1]))
        dxpad = self._dxpad(len(dy4), dy.dtype)
        for _, rows, cols in self.win.taps(*self.out_hw):
            dxpad[:, :, rows, cols] += share
        return self._dx(dxpad)


@register("layers", MaxPool1dConfig)
class MaxPool1d(_MaxPool):
    spatial_dims = 1


@register("layers", MaxPool2dConfig)
class MaxPool2d(_MaxPool):
    spatial_dims = 2


@register("layers", AvgPool1dConfig)
class AvgPool1d(_AvgPool):
    spatial_dims = 1


@register("layers", AvgPool2dConfig)
class AvgPool2d(_AvgPool):
    spatial_dims = 2


# --------------------------------------------------------------------------- adaptive


class AdaptiveAvgPool1dConfig(Component):
    """Mean over `output_size` bins of the length axis (torch.nn.AdaptiveAvgPool1d); 1 = global average."""

    name: Literal["adaptive_avg_pool1d"] = "adaptive_avg_pool1d"
    output_size: Positive = 1


class AdaptiveAvgPool2dConfig(Component):
    """Mean over output_size bins of height × width (torch.nn.AdaptiveAvgPool2d); 1 = global average."""

    name: Literal["adaptive_avg_pool2d"] = "adaptive_avg_pool2d"
    output_size: Union[Positive, list[Positive]] = 1

    @model_validator(mode="after")
    def _pair(self):
        as_pair(self.output_size, 2, "output_size")
        return self


def _bins(size: int, out: int) -> list[tuple[int, int]]:
    """torch's adaptive bins: [⌊i·size/out⌋, ⌈(i + 1)·size/out⌉) (never empty; with out > size
    neighbouring bins share inputs)."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


class _AdaptiveAvgPool(ShapedLayer):
    """y[i, j] = mean of x over bin (i, j).  Backward: each input of a bin gets dy[i, j] / |bin|."""

    def __init__(self, cfg):
        self.name = cfg.name
        self.out = as_pair(cfg.output_size, self.spatial_dims, "output_size")

    def build(self, shape):
        c, h, w = check_spatial(shape, self.spatial_dims)
        self.in_shape4 = (c, h, w)  # an output larger than the input is allowed: its bins overlap, as in torch
        self.cells = [(r, q) for r in _bins(h, self.out[0]) for q in _bins(w, self.out[1])]
        return spatial_out(c, self.out, self.spatial_dims)

    def forward(self, x, training):
        x4 = to_4d(x, self.spatial_dims)
        y = xp.empty((len(x4), x4.shape[1], self.out[0] * self.out[1]), x.dtype)
        for k, ((r0, r1), (c0, c1)) in enumerate(self.cells):
            y[:, :, k] = x4[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
        return from_4d(y.reshape(len(x4), -1, *self.out), self.spatial_dims)

    def backward(self, dy):
        dy4 = to_4d(dy, self.spatial_dims).reshape(len(dy), -1, self.out[0] * self.out[1])
        dx = xp.zeros((len(dy), *self.in_shape4), dy.dtype)
        for k, ((r0, r1), (c0, c1)) in enumerate(self.cells):
            dx[:, :, r0:r1, c0:c1] += (dy4[:, :, k] / ((r1 - r0) * (c1 - c0)))[:, :, None, None]
        return from_4d(dx, self.spatial_dims)


@register("layers", AdaptiveAvgPool1dConfig)
class AdaptiveAvgPool1d(_AdaptiveAvgPool):
    spatial_dims = 1


@register("layers", AdaptiveAvgPool2dConfig)
class AdaptiveAvgPool2d(_AdaptiveAvgPool):
    spatial_dims = 2


# --------------------------------------------------------------------------- flatten


class FlattenConfig(Component):
    """Flatten every dimension after the batch into one (torch.nn.Flatten)."""

    name: Literal["flatten"] = "flatten"


@register("layers", FlattenConfig)
class Flatten(ShapedLayer):
    """y = x reshaped to (n, C·H·W).  Backward: dx = dy reshaped to x's shape."""

    def __init__(self, cfg=None):
        self.name = "flatten"

    def build(self, shape):
        self.in_shape = tuple(shape)
        return (math.prod(shape),)

    def forward(self, x, training):
        return x.reshape(len(x), -1)

    def backward(self, dy):
        return dy.reshape((len(dy), *self.in_shape))
