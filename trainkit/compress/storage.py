"""The compressed model file (`model.compressed.npz`): read and write.

A zip-deflated .npz (np.savez_compressed), readable with numpy alone, holding two arrays:
`meta`, uint8, the UTF-8 bytes of a JSON document, and `data`, uint8, every stored array's
little-endian bytes one after another. Two zip entries instead of one per array: a zip entry
and an .npy header cost about 200 bytes each, which on a 14k-parameter CNN weighed as much as
its compressed weights (version 1 stored each part as its own array; it is still read).
Per tensor NAME (the torch state_dict name: `layers.0.weight`, buffers included) the parts are,
by `encoding`:

    dense    values    the tensor, C order
    bitmask  mask      uint8, np.packbits(tensor.ravel() != 0): bit i (most significant bit
                       first) says whether element i (C order) is stored
             values    the stored elements, C order
    csr      the tensor viewed as a matrix (shape[0], size / shape[0]) (1-D: one row):
             indptr    int32 (rows + 1,): row r's elements are values[indptr[r]:indptr[r+1]]
             indices   their column indices, uint8 / uint16 / uint32 (the smallest that fits)
             values    the stored elements, row by row

values are float32, or int8 when the tensor is quantized: then `scale` (float32, C values per
output channel, or 1 per tensor) gives the weight: value · scale (per channel: row c times
scale[c]). Elements not stored are zero. Integer buffers (num_batches_tracked) keep their dtype.
meta is {"format": "trainkit-compressed", "version": 2, "tensors": {NAME: {"shape", "encoding",
"dtype", "quantized", "parts": {PART: [dtype, offset, count]}}}, ...what made the file}: a part
is np.frombuffer(data, dtype, count, offset). Each tensor takes the smallest of the three
encodings (dense on a tie).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from trainkit.compress.quantize import dequantize
from trainkit.errors import DataError, npz_reason

FORMAT, VERSION = "trainkit-compressed", 2
READS = (1, 2)  # version 1: each part its own array, `NAME/PART`


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
    chunks, tensors, offset = [], {}, 0
    for name, (encoding, parts) in stored.items():
        placed = {}
        for part, a in parts.items():
            raw = np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes()
            placed[part] = [a.dtype.newbyteorder("<").str, offset, int(a.size)]
            chunks.append(raw)
            offset += len(raw)
        tensors[name] = {
            "shape": list(shapes[name]),
            "encoding": encoding,
            "dtype": str(parts["values"].dtype),
            "quantized": "scale" in parts,
            "parts": placed,
        }
    doc = {"format": FORMAT, "version": VERSION, **meta, "tensors": tensors}
    text = json.dumps(doc, separators=(",", ":")).encode()
    buf = io.BytesIO()  # meta as uint8, not a numpy str (4 bytes a character)
    np.savez_compressed(buf, meta=np.frombuffer(text, np.uint8), data=np.frombuffer(b"".join(chunks), np.uint8))
    return buf.getvalue()


def _parts(arrays: dict[str, np.ndarray], meta: dict, name: str, spec: dict) -> dict[str, np.ndarray]:
    """One tensor's parts: slices of `data` (version 2) or arrays `NAME/PART` (version 1)."""
    if meta["version"] == 1:
        return {k.rsplit("/", 1)[1]: v for k, v in arrays.items() if k.rsplit("/", 1)[0] == name}
    data = arrays["data"]
    parts = {}
    for part, (dtype, offset, count) in spec["parts"].items():
        dt = np.dtype(dtype)
        if offset < 0 or count < 0 or offset + count * dt.itemsize > data.size:
            raise ValueError(f"{name}/{part} lies outside the data ({data.size} bytes)")
        parts[part] = np.frombuffer(data, dt, count, offset).astype(dt.newbyteorder("="))
    return parts


def read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """({name: decoded tensor}, meta) of a compressed model file; an unreadable or damaged
    file is a DataError naming it."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.keys()}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError("it is not a trainkit compressed model")
        if meta.get("version") not in READS:
            raise ValueError(f"format version {meta.get('version')} (this trainkit reads {', '.join(map(str, READS))})")
        tensors = {name: decode(_parts(arrays, meta, name, spec), spec) for name, spec in meta["tensors"].items()}
    except FileNotFoundError:
        raise DataError("no compressed model here", str(path), "make one with: trainkit compress RUN") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        what = f"missing {e}" if isinstance(e, KeyError) else npz_reason(e)
        raise DataError(
            f"cannot read the compressed model: {what}", str(path), "write it again: trainkit compress RUN --force"
        ) from None
    return tensors, meta
