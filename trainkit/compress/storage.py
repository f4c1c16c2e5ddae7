"""The compressed model file (`model.compressed.npz`): read and write.

A zip-deflated .npz (np.savez_compressed), readable with numpy alone. Per tensor NAME (the torch
state_dict name: `layers.0.weight`, buffers included) the arrays are, by `encoding`:

    dense    NAME/values   the tensor, its shape
    bitmask  NAME/mask     uint8, np.packbits(tensor.ravel() != 0): bit i (most significant
                           bit first) says whether element i (C order) is stored
             NAME/values   the stored elements, C order, 1-D
    csr      the tensor viewed as a matrix (shape[0], size / shape[0]) (1-D: one row):
             NAME/indptr   int32 (rows + 1,): row r's elements are values[indptr[r]:indptr[r+1]]
             NAME/indices  their column indices, uint8 / uint16 / uint32 (the smallest that fits)
             NAME/values   the stored elements, row by row, 1-D

values are float32, or int8 when the tensor is quantized: then NAME/scale (float32, shape (C,)
per output channel, or () per tensor) gives the weight: value · scale (per channel: row c times
scale[c]). Elements not stored are zero. Integer buffers (num_batches_tracked) keep their dtype.
`meta` is uint8: the UTF-8 bytes of a JSON document {"format": "trainkit-compressed", "version": 1, "tensors": {NAME:
{"shape", "encoding", "dtype", "quantized"}}, ...what made the file}. Each tensor takes the
smallest of the three encodings (dense on a tie).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from trainkit.compress.quantize import dequantize
from trainkit.errors import DataError, npz_reason

FORMAT, VERSION = "trainkit-compressed", 1


def _as_rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0] if a.ndim >= 2 else 1, -1)


def _index_dtype(cols: int):
    return next(t for t in (np.uint8, np.uint16, np.uint32) if cols - 1 <= np.iinfo(t).max)


def encodings(values: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Every encoding of one tensor (values already float32 or int8): {encoding: {part: array}}."""
    keep = values.ravel() != 0
    m = _as_rows(values)
    rows, cols = _as_rows(keep.reshape(values.shape)).nonzero()
    indptr = np.zeros(m.shape[0] + 1, np.int32)
    np.cumsum(np.bincount(rows, minlength=m.shape[0]), out=indptr[1:])
    return {
        "dense": {"values": values},
        "bitmask": {"mask": np.packbits(keep), "values": values.ravel()[keep]},
        "csr": {"indptr": indptr, "indices": cols.astype(_index_dtype(m.shape[1])), "values": m[rows, cols]},
    }


def encode(values: np.ndarray) -> tuple[str, dict[str, np.ndarray]]:
    """The smallest encoding of a tensor (dense on a tie): (encoding, {part: array})."""
    options = encodings(values)
    name = min(options, key=lambda k: (sum(a.nbytes for a in options[k].values()), k != "dense"))
    return name, options[name]


def decode(parts: dict[str, np.ndarray], spec: dict) -> np.ndarray:
    """One tensor from its parts and its meta entry: float32 (int8 values times their scale),
    zeros where nothing is stored; integer buffers as stored."""
    shape, encoding = tuple(spec["shape"]), spec["encoding"]
    values = parts["values"]
    if encoding == "dense":
        out = values.reshape(shape)
    elif encoding == "bitmask":
        n = int(np.prod(shape))
        keep = np.unpackbits(parts["mask"], count=n).astype(bool)
        out = np.zeros(n, values.dtype)
        out[keep] = values
        out = out.reshape(shape)
    elif encoding == "csr":
        out = np.zeros(shape, values.dtype)
        m = _as_rows(out)
        rows = np.repeat(np.arange(m.shape[0]), np.diff(parts["indptr"]))
        m[rows, parts["indices"]] = values
    else:
        raise ValueError(f"unknown encoding {encoding!r} for a tensor")
    if spec.get("quantized"):
        return dequantize(out, parts["scale"])
    return out if np.issubdtype(out.dtype, np.integer) else out.astype(np.float32)


def to_bytes(stored: dict[str, tuple[str, dict[str, np.ndarray]]], shapes: dict, meta: dict) -> bytes:
    """The file's bytes: `stored` is {name: (encoding, parts)}, parts including a `scale` for
    quantized tensors; `meta` is extended with each tensor's entry."""
    arrays, tensors = {}, {}
    for name, (encoding, parts) in stored.items():
        tensors[name] = {
            "shape": list(shapes[name]),
            "encoding": encoding,
            "dtype": str(parts["values"].dtype),
            "quantized": "scale" in parts,
        }
        arrays.update({f"{name}/{k}": v for k, v in parts.items()})
    doc = {"format": FORMAT, "version": VERSION, **meta, "tensors": tensors}
    arrays["meta"] = np.frombuffer(json.dumps(doc).encode(), np.uint8)  # not a numpy str: 4 bytes a character
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """({name: decoded tensor}, meta) of a compressed model file; an unreadable or damaged
    file is a DataError naming it."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.keys()}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError("it is not a trainkit compressed model")
        if meta.get("version") != VERSION:
            raise ValueError(f"format version {meta.get('version')} (this trainkit reads {VERSION})")
        tensors = {}
        for name, spec in meta["tensors"].items():
            parts = {k.rsplit("/", 1)[1]: v for k, v in arrays.items() if k.rsplit("/", 1)[0] == name}
            tensors[name] = decode(parts, spec)
    except FileNotFoundError:
        raise DataError("no compressed model here", str(path), "make one with: trainkit compress RUN") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        what = f"missing {e}" if isinstance(e, KeyError) else npz_reason(e)
        raise DataError(
            f"cannot read the compressed model: {what}", str(path), "write it again: trainkit compress RUN --force"
        ) from None
    return tensors, meta
