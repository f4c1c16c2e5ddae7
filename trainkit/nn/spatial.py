"""What convolution, pooling and normalisation layers share: shapes that flow from the data,
sliding-window geometry, and buffers (state that is saved but never trained).

A shaped layer's `build(shape)` takes the per-sample input shape (no batch dimension) and
returns its output shape; a shape that does not fit raises ShapeError before any training.
Inside, 1-D layers are 2-D layers of height 1: a 1-D kernel k is the 2-D kernel (1, k), so
one code path serves both and torch's 1-D shapes are kept at the layer's boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from trainkit.backend import xp
from trainkit.nn.layers import Layer

IntOrList = Union[int, list[int]]


class ShapeError(ValueError):
    """A layer cannot take the shape it is given. The network adds which layer it is."""

    def __init__(self, message: str, index: int | None = None, layer: str = "", in_shape=None):
        self.message, self.index, self.layer, self.in_shape = message, index, layer, in_shape
        super().__init__(self.describe())

    def describe(self, with_index: bool = True) -> str:
        """'layers[i] (name) message (input shape S)'; without the index where the config key
        already names it (model.layers[i]), and without the shape where the message gives it."""
        where = (
            "" if self.index is None else f"layers[{self.index}] ({self.layer}) " if with_index else f"{self.layer} "
        )
        shape = None if self.in_shape is None else fmt_shape(self.in_shape)
        got = f" (input shape {shape})" if shape is not None and shape not in self.message else ""
        return f"{where}{self.message}{got}"


def fmt_shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


class ShapedLayer(Layer):
    """A layer whose `build` takes and returns a shape tuple, and which may hold buffers."""

    shaped = True
    spatial_dims = 0  # 1 or 2 for layers that need (C, L) / (C, H, W) input; 0: any shape
    dtype = xp.float64  # the network's dtype, set before build (buffers are made in it)

    def buffer_arrays(self) -> dict:
        """Arrays saved with the model but never trained (torch's buffers), by name."""
        return {}


def as_pair(v, dims: int, name: str, fill: int = 1) -> tuple[int, int]:
    """A 1-D or 2-D size option as a 2-D (h, w) pair: 1-D k -> (fill, k) (fill 0 for padding)."""
    vals = [v] * dims if isinstance(v, int) else list(v)
    if len(vals) != dims:
        raise ValueError(f"{name} needs {dims} value{'s' * (dims > 1)}, got {v}")
    return (fill, vals[0]) if dims == 1 else (vals[0], vals[1])


@dataclass(frozen=True)
class Window:
    """A sliding window over (H, W): kernel, stride, dilation and padding (top, bottom, left, right)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pad: tuple[int, int, int, int]

    def span(self, axis: int) -> int:
        """Extent of the dilated kernel along axis 0 (H) or 1 (W): d(k − 1) + 1."""
        return self.dilation[axis] * (self.kernel[axis] - 1) + 1

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        """Ho = ⌊(H + pads − d(k − 1) − 1) / s⌋ + 1, the same for W (torch's formula)."""
        t, b, lft, r = self.pad
        return (
            (h + t + b - self.span(0)) // self.stride[0] + 1,
            (w + lft + r - self.span(1)) // self.stride[1] + 1,
        )

    def fits(self, h: int, w: int) -> bool:
        t, b, lft, r = self.pad
        return h + t + b >= self.span(0) and w + lft + r >= self.span(1)

    def taps(self, ho: int, wo: int):
        """For each kernel tap (i, j): (tap index, row slice, column slice) of the padded input
        whose (ho, wo) grid is what that tap sees at every output position."""
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
                cols = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
                yield i * kw + j, rows, cols

    def pad_into(self, buf, x, fill: float = 0.0):
        """Copy x (n, C, H, W) into the interior of buf (n, C, H + t + b, W + l + r), border = fill."""
        t, b, lft, r = self.pad
        if not any(self.pad):
            return x
        h, w = x.shape[2], x.shape[3]
        buf[:, :, :t] = fill
        buf[:, :, t + h :] = fill
        buf[:, :, :, :lft] = fill
        buf[:, :, :, lft + w :] = fill
        buf[:, :, t : t + h, lft : lft + w] = x
        return buf

    def padded_shape(self, x_shape) -> tuple:
        n, c, h, w = x_shape
        t, b, lft, r = self.pad
        return (n, c, h + t + b, w + lft + r)

    def unpad(self, xpad, h: int, w: int):
        t, _, lft, _ = self.pad
        return xpad[:, :, t : t + h, lft : lft + w]

    def windows(self, xpad, ho: int, wo: int):
        """Read-only view (C, kh, kw, n, Ho, Wo) of every receptive field (no copy)."""
        n, c = xpad.shape[:2]
        s_n, s_c, s_h, s_w = xpad.strides
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        return xp.lib.stride_tricks.as_strided(
            xpad, (c, kh, kw, n, ho, wo), (s_c, s_h * dh, s_w * dw, s_n, s_h * sh, s_w * sw), writeable=False
        )


def to_4d(x, dims: int):
    """(n, C, L) -> (n, C, 1, L) view for 1-D layers; 2-D input as is."""
    return x[:, :, None, :] if dims == 1 else x


def from_4d(y, dims: int):
    """(n, C, 1, L) -> (n, C, L) for 1-D layers."""
    return y[:, :, 0, :] if dims == 1 else y


def check_spatial(shape: tuple, dims: int) -> tuple[int, int, int]:
    """(C, H, W) of a (C, L) or (C, H, W) input shape; ShapeError for any other rank."""
    want = "(channels, length)" if dims == 1 else "(channels, height, width)"
    if len(shape) != dims + 1:
        raise ShapeError(f"needs input of shape {want}, got {fmt_shape(shape)}")
    return (shape[0], 1, shape[1]) if dims == 1 else tuple(shape)


def spatial_out(c: int, hw: tuple[int, int], dims: int) -> tuple:
    return (c, hw[1]) if dims == 1 else (c, *hw)


def scratch(name, shape, dtype):
    """A buffer getter that allocates afresh (evaluation keeps no work arrays)."""
    return xp.empty(shape, dtype)
