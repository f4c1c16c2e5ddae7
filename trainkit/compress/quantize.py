"""Post-training int8 weight quantization: symmetric, per output channel (axis 0) or per tensor,
the same integers and scales as torch.ao.quantization's PerChannelMinMaxObserver /
MinMaxObserver (qscheme per_channel_symmetric / per_tensor_symmetric, dtype qint8) followed by
torch.quantize_per_channel / quantize_per_tensor.

    scale = max(max|w| / 127.5, eps)      eps = float32 machine epsilon; all in float32
    q     = clamp(rint(w · (1/scale)), −128, 127)          rint: round half to even
    ŵ     = q · scale

torch's observer divides by (quant_max − quant_min)/2 = 255/2, not by 127: the largest weight
lands on ±127.5 up to float32 rounding (often ±127.49999, so ±127; −128 is reached only when it
rounds outward). torch's kernel multiplies by the float32 reciprocal of the scale rather than
dividing; the tests check the integers against torch's on the same weights.
"""

from __future__ import annotations

import numpy as np

QMIN, QMAX = -128, 127
EPS = np.finfo(np.float32).eps


def _scale(absmax: np.ndarray) -> np.ndarray:
    scale = np.asarray(absmax, np.float32) / np.float32((QMAX - QMIN) / 2)
    return np.maximum(scale, EPS).astype(np.float32)


def quantize_int8(w: np.ndarray, per_channel: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(q int8 of w's shape, scale float32): one scale per output channel (w.shape[0],), or a
    single scale of shape () per tensor."""
    w = np.asarray(w, np.float32)
    if per_channel and w.ndim >= 1:
        absmax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1, initial=0.0)
        scale = _scale(absmax)
        inv = (np.float32(1.0) / scale).reshape((-1,) + (1,) * (w.ndim - 1))
    else:
        scale = _scale(np.abs(w).max(initial=0.0))
        inv = np.float32(1.0) / scale
    q = np.clip(np.rint(w * inv), QMIN, QMAX).astype(np.int8)
    return q, scale


def dequantize(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """ŵ = q · scale in float32; a scale of shape (C,) applies along axis 0."""
    scale = np.asarray(scale, np.float32)
    if scale.ndim == 1:
        scale = scale.reshape((-1,) + (1,) * (q.ndim - 1))
    return q.astype(np.float32) * scale
