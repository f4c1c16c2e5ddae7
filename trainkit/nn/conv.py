"""Convolution (torch.nn.Conv1d / Conv2d) as im2col + one matrix product.

Shapes: x (n, C, H, W) -> y (n, O, Ho, Wo); weight (O, C, kh, kw), bias (O,);
Ho = ⌊(H + pad_top + pad_bottom − d(kh − 1) − 1) / s⌋ + 1, and the same for W.
1-D layers are 2-D layers of height 1 (see spatial.py): weight (O, C, k) outside, (O, C·k) inside.

im2col copies every receptive field of the padded input once into a column of
cols (C·kh·kw, n·Ho·Wo) (the layout of Caffe and CS231n), and the convolution is one GEMM:
    Y = W cols + b                         (a row per output channel, a column per position)
Backward, with dY (O, n·Ho·Wo):
    dW = dY colsᵀ (computed as (cols dYᵀ)ᵀ),   db = Σ_columns dY,   dcols = Wᵀ dY,   dx = col2im(dcols)
col2im adds each field's gradient back where it was copied from; fields overlap when the
stride is below the kernel, so the adds accumulate (one strided add per kernel tap).
Layers with a small fan-in C·kh·kw run Y and dW as n per-sample products over the same cols
(Y_s = W cols_s, dW = Σ_s dY_s cols_sᵀ): the same sums, faster for such thin matrices.
The others run one GEMM each and order the columns of cols and dY (Ho, Wo, n), batch last:
the sums are the same, and the copies of im2col and the adds of col2im run over long
contiguous rows instead of rows of Wo values.

One-GEMM layers compute r adjacent output rows per column (MEC, Cho & Brand 2017): a column
holds the H' = (r − 1)·sh + dh·(kh − 1) + 1 input rows that r output rows read, (C·H'·kw,
n·B·Wo) with B = ⌈Ho / r⌉ row blocks, and the weight is banded, Wb (r·O, C·H'·kw): block q
is W placed at input row q·sh (its kernel rows dh apart), zeros elsewhere. Then
    Y_b = Wb cols            (row q·O + o, block b: channel o at output row b·r + q)
    dWb = dY_b colsᵀ,   dW = Σ_q (band q of dWb, read where W was placed),   dcols = Wbᵀ dY_b
and col2im runs over the taller window moved r·sh rows at a time. The GEMMs get r·O rows
instead of O (OpenBLAS runs 16-row products at under half its peak, 32-row ones faster) and
cols shrinks by about r·kh / (kh + r − 1); the zeros of Wb cost kh / (kh + r − 1) of the work.
r is the largest r ≤ MEC_ROWS that divides Ho (LeNet's conv2, 16×150 on 10×10: r = 2, its
three GEMMs 9.9 → 7.3 ms per step at batch 512, measured in place; r = 5 measured about the same,
r = 3 needs padded rows); when a forced r does not divide Ho, zero rows are padded below and
their outputs dropped.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from trainkit.backend import to_device, xp
from trainkit.config.base import Component
from trainkit.nn.init import init_linear
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
# Evaluation batches are convolved in chunks whose im2col matrix holds at most this many values.
EVAL_COLS = 1 << 23
# Up to this fan-in (C·kh·kw, the rows of cols) a layer multiplies sample by sample: OpenBLAS
# runs the thin GEMMs W cols and dY colsᵀ (a reduction over all n·Ho·Wo columns) 2-3× slower
# than n per-sample products, which also write y in (n, O, Ho·Wo) order with no transpose
# (6×25 weights, 28×28 images, batch 128, one thread: forward 1.09 -> 0.60 ms, dW 1.6 -> 0.49 ms);
# above it (16×150 on 10×10) one GEMM is as fast or faster.
PER_SAMPLE_FAN_IN = 64
# One-GEMM layers compute up to this many output rows per column of cols (MEC, see above).
MEC_ROWS = 2


def mec_rows(ho: int, kh: int) -> int:
    """r for a one-GEMM layer with Ho output rows and kernel height kh: the largest r ≤ MEC_ROWS
    that divides Ho (no wasted rows), 1 for a kernel of one row (nothing to share)."""
    if kh == 1:
        return 1
    return max(r for r in range(1, min(MEC_ROWS, ho) + 1) if ho % r == 0)


def gemm(a, b, out):
    """out ← a b (a stack of products when a or b has 3 dimensions). Every product of the conv
    layers goes through this one name, so a benchmark can time exactly the GEMMs the layers run,
    in place, by wrapping it (benchmarks/lenet.py: conv_gemm)."""
    return xp.matmul(a, b, out=out)


def init_conv(scheme, out_c: int, fan_in: int, receptive: int, rng):
    """torch.nn.ConvNd's init: the weight as a linear layer's with fan_in = C·kh·kw
    (`default` is kaiming_uniform(a=√5), i.e. U(±1/√fan_in), bias too); the xavier schemes
    use fan_out = O·kh·kw as torch.nn.init does. Returns (weight (O, fan_in), bias (O,))."""
    if not scheme.name.startswith("xavier"):
        return init_linear(scheme, out_c, fan_in, rng)
    std = scheme.gain * math.sqrt(2.0 / (fan_in + out_c * receptive))
    if scheme.name == "xavier_uniform":
        w = rng.uniform(-math.sqrt(3.0) * std, math.sqrt(3.0) * std, (out_c, fan_in))
    else:
        w = rng.normal(0.0, std, (out_c, fan_in))
    return w, xp.zeros(out_c)


class _ConvConfig(Component):
    out_channels: Positive
    kernel_size: Union[Positive, list[Positive]]
    stride: Union[Positive, list[Positive]] = 1
    padding: Union[NonNegative, list[NonNegative], Literal["same", "valid"]] = Field(
        0, description="zeros added on each side, or 'same' (output size = input size; stride 1) / 'valid' (0)"
    )
    dilation: Union[Positive, list[Positive]] = 1
    bias: bool = True

    _dims = 2

    @model_validator(mode="after")
    def _sizes(self):
        for key in ("kernel_size", "stride", "dilation") + (("padding",) if not isinstance(self.padding, str) else ()):
            as_pair(getattr(self, key), self._dims, key)
        if self.padding == "same" and as_pair(self.stride, self._dims, "stride") != (1, 1):
            k, d = (as_pair(getattr(self, key), self._dims, key)[-self._dims :] for key in ("kernel_size", "dilation"))
            pad = [di * (ki - 1) // 2 for ki, di in zip(k, d)]
            raise ValueError(
                "padding='same' needs stride 1 (as in torch); with a stride, "
                f"padding: {pad[0] if len(set(pad)) == 1 else pad} keeps ⌈size / stride⌉ outputs for odd kernels"
            )
        return self


class Conv1dConfig(_ConvConfig):
    """1-D convolution over (channels, length) (torch.nn.Conv1d); in_channels from the input."""

    name: Literal["conv1d"] = "conv1d"
    _dims = 1


class Conv2dConfig(_ConvConfig):
    """2-D convolution over (channels, height, width) (torch.nn.Conv2d); in_channels from the input."""

    name: Literal["conv2d"] = "conv2d"
    _dims = 2


class _Conv(ShapedLayer):
    """y = W ⋆ x + b by im2col: Y = W cols + b.  Backward: dW = dY colsᵀ, db = Σ dY,
    dx = col2im(Wᵀ dY)."""

    def __init__(self, cfg: _ConvConfig):
        d = self.spatial_dims
        self.name = cfg.name
        self.out_channels = cfg.out_channels
        self.kernel = as_pair(cfg.kernel_size, d, "kernel_size")
        self.stride = as_pair(cfg.stride, d, "stride")
        self.dilation = as_pair(cfg.dilation, d, "dilation")
        self.padding = cfg.padding
        self.use_bias = cfg.bias
        self.needs_input_grad = True  # the network clears it for the first layer

    def _pads(self) -> tuple[int, int, int, int]:
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":  # torch: total d(k − 1), the extra one on the bottom/right
            (th, tw) = (self.dilation[a] * (self.kernel[a] - 1) for a in (0, 1))
            return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        ph, pw = as_pair(self.padding, self.spatial_dims, "padding", 0)
        return (ph, ph, pw, pw)

    def build(self, shape):
        c, h, w = check_spatial(shape, self.spatial_dims)
        self.win = Window(self.kernel, self.stride, self.dilation, self._pads())
        if not self.win.fits(h, w):
            d = self.spatial_dims
            span = tuple(self.win.span(a) for a in (0, 1))[-d:]
            padded = self.win.padded_shape((1, c, h, w))[2:][-d:]
            raise ShapeError(f"kernel of extent {fmt_shape(span)} is larger than its padded input {fmt_shape(padded)}")
        self.in_channels, self.in_hw, self.out_hw = c, (h, w), self.win.out_size(h, w)
        return spatial_out(self.out_channels, self.out_hw, self.spatial_dims)

    def param_shapes(self):
        k = self.kernel[1:] if self.spatial_dims == 1 else self.kernel
        shapes = {"weight": (self.out_channels, self.in_channels, *k)}
        if self.use_bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def macs_per_sample(self) -> int:
        """O·C·kh·kw multiply-adds at each of the Ho·Wo output positions (BLAS threads follow it)."""
        return super().macs_per_sample() * self.out_hw[0] * self.out_hw[1]

    def bind(self, params, grads):
        self.W, self.gW = params["weight"], grads["weight"]
        self.b, self.gb = params.get("bias"), grads.get("bias")
        self.W2, self.gW2 = self.W.reshape(self.out_channels, -1), self.gW.reshape(self.out_channels, -1)
        self.batch_last = self.W2.shape[1] > PER_SAMPLE_FAN_IN  # one GEMM (see _grid)
        # Per-sample products carry the bias as a last row of ones in cols: [W b] [cols; 1]
        # (and db as dW's last column), which saves a pass over y and one over dy.
        self.fold_bias = not self.batch_last and self.b is not None
        self._set_geometry(mec_rows(self.out_hw[0], self.kernel[0]) if self.batch_last else 1)

    def _set_geometry(self, r: int):
        """What im2col and the GEMMs run on. r = 1: the layer's own window, W (O, C·kh·kw) and
        (Ho, Wo) outputs. r > 1 (MEC): a window of H' = (r − 1)·sh + dh·(kh − 1) + 1 input rows
        moved r·sh rows at a time, over B = ⌈Ho / r⌉ row blocks (extra zero rows padded below
        when r does not divide Ho), and the banded weight (r·O, C·H'·kw) of _gemm_weight."""
        self.r = r
        if r == 1:
            self.gwin, self.g_out, self.g_fan_in, self.w_gemm = self.win, self.out_hw, self.W2.shape[1], self.W2
            return
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        (ho, wo), (h, _) = self.out_hw, self.in_hw
        rows, blocks = (r - 1) * sh + dh * (kh - 1) + 1, -(-ho // r)
        t, b, lft, rt = self.win.pad
        extra = max(0, (blocks - 1) * r * sh + rows - (h + t + b))
        self.gwin = Window((rows, kw), (r * sh, sw), (1, dw), (t, b + extra, lft, rt))
        self.g_out, self.g_fan_in = (blocks, wo), self.in_channels * rows * kw

    def _gemm_weight(self, buf, dtype):
        """W as the GEMMs of r > 1 see it, the banded (r·O, C, H', kw): block q
        holds W's kernel row i at input row q·sh + i·dh of the window, zeros elsewhere, so
        row q·O + o of Wb cols is output channel o at output row b·r + q of row block b."""
        o, c, (kh, kw) = self.out_channels, self.in_channels, self.kernel
        wb = buf("w_band", (self.r, o, c, self.gwin.kernel[0], kw), dtype)
        wb.fill(0)
        w4 = self.W2.reshape(o, c, kh, kw)
        for q in range(self.r):
            wb[q, :, :, self._band(q)] = w4
        return wb.reshape(self.r * o, -1)

    def _band(self, q: int) -> slice:
        """The window rows (of H') where block q of the banded weight holds W's kernel rows."""
        sh, dh, kh = self.stride[0], self.dilation[0], self.kernel[0]
        return slice(q * sh, q * sh + dh * (kh - 1) + 1, dh)

    def _row_blocks(self):
        """(q, output rows q, q + r, …, rows of the padded (r·O, B, ...) grid) for each of the r
        rows a column computes: output row b·r + q is grid row q·O + o at block b."""
        o, ho = self.out_channels, self.out_hw[0]
        for q in range(self.r):
            yield slice(q * o, (q + 1) * o), slice(q, ho, self.r), len(range(q, ho, self.r))

    def reset_parameters(self, scheme, rng):
        w, b = init_conv(scheme, self.out_channels, self.W2.shape[1], self.kernel[0] * self.kernel[1], rng)
        self.W2[...] = to_device(w)
        if self.b is not None:
            self.b[...] = to_device(b)

    def forward(self, x, training):
        x4 = to_4d(x, self.spatial_dims)
        n, (ho, wo) = len(x4), self.out_hw
        if training:
            y = self._buffer("y", (n, self.out_channels, ho, wo), x.dtype)
            self.cols = self._conv(x4, y, self._buffer)
            return from_4d(y, self.spatial_dims)
        y = xp.empty((n, self.out_channels, ho, wo), x.dtype)
        chunk = max(1, EVAL_COLS // (self.g_out[0] * wo * self.g_fan_in))
        for i in range(0, n, chunk):
            self._conv(x4[i : i + chunk], y[i : i + chunk], scratch)
        return from_4d(y, self.spatial_dims)

    def _grid(self, buf, name, c, n, hw, dtype):
        """A work array seen as (c, n, H, W) whatever its memory order. Layers that run one GEMM
        keep the batch last in memory, (c, H, W, n): every kernel tap's im2col copy and col2im
        add then moves (Wo, n) rows of contiguous values instead of rows of Wo (Caffe's order
        gives runs of 10 on LeNet's conv2, and col2im took longer than its GEMMs)."""
        if not self.batch_last:  # per-sample products read cols sample by sample
            return buf(name, (c, n, *hw), dtype)
        return buf(name, (c, *hw, n), dtype).transpose(0, 3, 1, 2)

    def _matrix(self, grid):
        """A (c, n, H, W) grid as the (c, n·H·W) matrix of its memory order (no copy)."""
        return (grid.transpose(0, 2, 3, 1) if self.batch_last else grid).reshape(len(grid), -1)

    def _cols(self, buf, name, n, dtype, extra: int = 0):
        """(C·kh·kw + extra, n·Ho·Wo) columns for the GEMMs and the (C, kh, kw, n, Ho, Wo) view
        of their first C·kh·kw rows (for r > 1: (C·H'·kw, n·B·Wo) and (C, H', kw, n, B, Wo))."""
        fan_in = self.g_fan_in
        grid = self._grid(buf, name, fan_in + extra, n, self.g_out, dtype)
        return self._matrix(grid), grid[:fan_in].reshape(self.in_channels, *self.gwin.kernel, n, *self.g_out)

    def _conv(self, x4, y, buf):
        """y (n, O, Ho, Wo) ← conv(x4); returns cols (C·kh·kw, n·Ho·Wo) for the backward pass."""
        n, dtype, (ho, wo), win = len(x4), x4.dtype, self.g_out, self.gwin
        hw = win.padded_shape(x4.shape)[2:]
        if any(win.pad) or self.batch_last:  # batch last: the layout change costs one copy of x
            xpad = self._grid(buf, "xpad", self.in_channels, n, hw, dtype).transpose(1, 0, 2, 3)  # (n, C, H, W)
            if any(win.pad):
                win.pad_into(xpad, x4)
            else:
                xpad[...] = x4
        else:
            xpad = x4
        cols, view = self._cols(buf, "cols", n, dtype, extra=int(self.fold_bias))
        view[...] = win.windows(xpad, ho, wo)  # im2col: one copy of every receptive field
        if not self.batch_last:  # Y_s = W cols_s (+ b as [W b] [cols_s; 1]), written straight into y
            w = self.W2
            if self.fold_bias:
                cols[-1] = 1
                w = buf("w_b", (self.out_channels, len(cols)), dtype)
                w[:, :-1], w[:, -1] = self.W2, self.b
            gemm(w, cols.reshape(-1, n, ho * wo).transpose(1, 0, 2), y.reshape(n, -1, ho * wo))
            return cols
        if self.r > 1:  # W itself otherwise (set in bind)
            self.w_gemm = self._gemm_weight(buf, dtype)
        out = gemm(self.w_gemm, cols, buf("gemm", (len(self.w_gemm), n * ho * wo), dtype))
        if self.b is not None:
            out.reshape(self.r, self.out_channels, -1)[...] += self.b[:, None]
        grid = out.reshape(-1, ho, wo, n).transpose(3, 0, 1, 2)  # (n, r·O, B, Wo)
        for q_rows, rows, count in self._row_blocks():
            y[:, :, rows] = grid[:, q_rows, :count]
        return cols

    def _param_grads_per_sample(self, dy4):
        """[dW db] = Σ_samples dY_s [cols_s; 1]ᵀ, read straight from dy (n, O, Ho·Wo)."""
        n, rows, positions = len(dy4), len(self.cols), self.out_hw[0] * self.out_hw[1]
        dy3 = dy4.reshape(n, self.out_channels, positions)
        cols_s = self.cols.reshape(rows, n, positions).transpose(1, 2, 0)  # (n, Ho·Wo, C·kh·kw [+ 1])
        parts = gemm(dy3, cols_s, self._buffer("dW_s", (n, self.out_channels, rows), dy4.dtype))
        if not self.fold_bias:
            xp.add.reduce(parts, axis=0, out=self.gW2)
            return
        sums = xp.add.reduce(parts, axis=0, out=self._buffer("dWb", (self.out_channels, rows), dy4.dtype))
        self.gW2[...], self.gb[...] = sums[:, :-1], sums[:, -1]

    def _fold_weight_grad(self, dwb):
        """dW from the GEMM's weight gradient: dwb itself, or for r > 1 the sum over the r bands
        of the banded (r·O, C, H', kw) gradient, each read where _gemm_weight placed W."""
        if self.r == 1:
            self.gW2[...] = dwb
            return
        o, c, (kh, kw) = self.out_channels, self.in_channels, self.kernel
        bands, g4 = dwb.reshape(self.r, o, c, self.gwin.kernel[0], kw), self.gW2.reshape(o, c, kh, kw)
        for q in range(self.r):
            band = bands[q, :, :, self._band(q)]
            if q == 0:
                g4[...] = band
            else:
                g4 += band

    def backward(self, dy):
        dy4 = to_4d(dy, self.spatial_dims)
        n, dtype = len(dy4), dy.dtype
        per_sample = not self.batch_last
        if per_sample:
            self._param_grads_per_sample(dy4)
            if not self.needs_input_grad:
                return None
        blocks = self.g_out[0]
        dY = self._grid(self._buffer, "dY", self.out_channels * self.r, n, self.g_out, dtype)  # cols' order
        for q_rows, rows, count in self._row_blocks():
            dY[q_rows, :, :count] = dy4[:, :, rows].transpose(1, 0, 2, 3)
            if count < blocks:  # padded rows below Ho: no output, no gradient
                dY[q_rows, :, count:] = 0
        dY = self._matrix(dY)
        if not per_sample:  # dWᵀ = cols dYᵀ: OpenBLAS runs this orientation of dW = dY colsᵀ 2× faster
            dWt = gemm(self.cols, dY.T, self._buffer("dWt", self.w_gemm.T.shape, dtype))
            self._fold_weight_grad(dWt.T)
            if self.b is not None:
                db = xp.add.reduce(dY, axis=1, out=self._buffer("db", (len(dY),), dtype))
                xp.add.reduce(db.reshape(self.r, -1), axis=0, out=self.gb)
        if not self.needs_input_grad:
            return None
        kw, win = self.gwin.kernel[1], self.gwin
        dcols, dview = self._cols(self._buffer, "dcols", n, dtype)
        gemm(self.w_gemm.T, dY, dcols)
        h, w = self.in_hw
        # col2im: each tap's gradient back where it was read, in a (C, n, H, W) view of dxpad
        dxpad = self._grid(self._buffer, "dxpad", self.in_channels, n, win.padded_shape((1, 1, h, w))[2:], dtype)
        dxpad.fill(0)
        for t, rows, cols in win.taps(*self.g_out):
            dxpad[:, :, rows, cols] += dview[:, t // kw, t % kw]
        dx = self._buffer("dx", (n, self.in_channels, h, w), dtype)
        dx[...] = win.unpad(dxpad, h, w).transpose(1, 0, 2, 3)
        return from_4d(dx, self.spatial_dims)


@register("layers", Conv1dConfig)
class Conv1d(_Conv):
    """1-D convolution: (n, C, L) -> (n, O, Lo); weight (O, C, k)."""

    spatial_dims = 1


@register("layers", Conv2dConfig)
class Conv2d(_Conv):
    """2-D convolution: (n, C, H, W) -> (n, O, Ho, Wo); weight (O, C, kh, kw)."""

    spatial_dims = 2
