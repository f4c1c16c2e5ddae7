"""int8 quantization against torch's observers, and the compressed file's encodings: decoded
exactly, each the smallest, sizes as the issue asks."""

import io
import json

import numpy as np
import pytest

from tests.conftest import require
from trainkit.compress import storage
from trainkit.compress.quantize import EPS, dequantize, quantize_int8
from trainkit.errors import DataError


def _weights(seed, shape=(17, 9)):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape) * rng.uniform(0.001, 3)
    if seed % 2:  # values on exact multiples of 1/8: halves after scaling happen, ties are rounded
        w = np.round(w * 8) / 8
    w[3] = 0.0  # an all-zero channel: its scale is eps
    return w.astype(np.float32)


def _torch_int8(w, per_channel):
    torch = require("torch")
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    t = torch.tensor(w)
    if per_channel:
        obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
        obs(t)
        scale, zero = obs.calculate_qparams()
        q = torch.quantize_per_channel(t, scale, zero, 0, torch.qint8)
    else:
        obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
        obs(t)
        scale, zero = obs.calculate_qparams()
        q = torch.quantize_per_tensor(t, float(scale), int(zero), torch.qint8)
    return q.int_repr().numpy(), scale.numpy().astype(np.float32), q.dequantize().numpy()


@pytest.mark.filterwarnings("ignore:.*quantized tensor creation.*:UserWarning")
@pytest.mark.parametrize("per_channel", [True, False], ids=["per_channel", "per_tensor"])
@pytest.mark.parametrize("seed", range(8))
def test_int8_equals_torch_symmetric_quantization(seed, per_channel):
    w = _weights(seed, (17, 9) if seed < 4 else (6, 3, 3, 3))  # linear and conv weights
    tq, tscale, tdeq = _torch_int8(w, per_channel)
    q, scale = quantize_int8(w, per_channel)
    np.testing.assert_array_equal(q, tq)
    np.testing.assert_array_equal(scale, tscale.reshape(scale.shape))
    np.testing.assert_array_equal(dequantize(q, scale), tdeq)


def test_int8_scale_is_absmax_over_127_5_and_the_extremes_clamp():
    w = np.array([[1.0, -0.5, 0.25], [-2.0, 0.0, 1.0], [0.0, 0.0, 0.0]], np.float32)
    q, scale = quantize_int8(w)
    np.testing.assert_array_equal(scale, np.float32([1 / 127.5, 2 / 127.5, EPS]))
    # 1/scale in float32 is 127.49999 and 63.749996: the extremes land just inside ±127.5
    np.testing.assert_array_equal(q, [[127, -64, 32], [-127, 0, 64], [0, 0, 0]])


@pytest.mark.parametrize("per_channel", [True, False])
def test_dequantized_within_half_a_step(per_channel):
    w = _weights(0, (32, 20))
    q, scale = quantize_int8(w, per_channel)
    step = scale.reshape(-1, 1) if per_channel else scale
    assert np.all(np.abs(dequantize(q, scale) - w) <= step / 2 + 1e-7 * np.abs(w))


def _sparse(shape, sparsity, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32)
    w.ravel()[rng.permutation(w.size)[: round(sparsity * w.size)]] = 0.0
    return w


@pytest.mark.parametrize("shape", [(64, 40), (8, 4, 3, 3), (50,), ()])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("int8", [False, True])
def test_every_encoding_decodes_exactly(shape, sparsity, int8):
    w = _sparse(shape, sparsity)
    scale = None
    if int8:
        w, scale = quantize_int8(w)
    for encoding, parts in storage.encodings(w).items():
        if scale is not None:
            parts = {**parts, "scale": scale}
        spec = {"shape": list(shape), "encoding": encoding, "quantized": scale is not None}
        want = dequantize(w, scale) if int8 else w
        np.testing.assert_array_equal(storage.decode(parts, spec), want)


def test_the_smallest_encoding_is_chosen():
    sizes = lambda w: {k: sum(a.nbytes for a in p.values()) for k, p in storage.encodings(w).items()}  # noqa: E731
    for sparsity, want in ((0.0, "dense"), (0.5, "bitmask"), (0.9, "bitmask"), (0.99, "csr")):
        w = _sparse((256, 128), sparsity)
        got, _ = storage.encode(w)
        assert got == want and sizes(w)[got] == min(sizes(w).values()), (sparsity, sizes(w))


def test_stored_sizes_against_dense_float32():
    """The issue's targets per weight: 90% sparse ≥ 6× smaller, sparse + int8 ≥ 12×, int8 ≥ 3.7×."""
    w = _sparse((256, 128), 0.9)
    dense = w.size * 4
    _, sparse = storage.encode(w)
    assert dense / sum(a.nbytes for a in sparse.values()) >= 6
    q, scale = quantize_int8(w)
    _, both = storage.encode(q)
    assert dense / (sum(a.nbytes for a in both.values()) + scale.nbytes) >= 12
    q, scale = quantize_int8(_sparse((256, 128), 0.0))
    _, int8 = storage.encode(q)
    assert dense / (sum(a.nbytes for a in int8.values()) + scale.nbytes) >= 3.7


def test_file_round_trip_and_numpy_alone_reads_it(tmp_path):
    """The README's recipe: np.load, the meta's JSON, per tensor its encoding's arrays."""
    w = _sparse((20, 30), 0.9)
    q, scale = quantize_int8(_sparse((10, 20), 0.5))
    stored = {"a.weight": storage.encode(w), "b.weight": storage.encode(q), "b.bias": storage.encode(np.ones(3, "f4"))}
    stored["b.weight"] = (stored["b.weight"][0], {**stored["b.weight"][1], "scale": scale})
    shapes = {"a.weight": w.shape, "b.weight": q.shape, "b.bias": (3,)}
    data = storage.to_bytes(stored, shapes, {"sparsity": 0.9})
    (tmp_path / "m.npz").write_bytes(data)
    tensors, _ = storage.read(tmp_path / "m.npz")
    np.testing.assert_array_equal(tensors["a.weight"], w)
    np.testing.assert_array_equal(tensors["b.weight"], dequantize(q, scale))
    assert tensors["b.bias"].dtype == np.float32 and tensors["b.bias"].tolist() == [1, 1, 1]
    f = np.load(io.BytesIO(data), allow_pickle=False)
    assert sorted(f.keys()) == ["data", "meta"]
    meta = json.loads(f["meta"].tobytes().decode())
    assert meta["format"] == "trainkit-compressed" and meta["version"] == 2 and meta["sparsity"] == 0.9
    spec = meta["tensors"]["b.weight"]
    assert {k: spec[k] for k in ("shape", "encoding", "dtype", "quantized")} == {
        "shape": [10, 20],
        "encoding": "bitmask",
        "dtype": "int8",
        "quantized": True,
    }

    def part(name, key):  # the README's recipe: np.frombuffer(data, dtype, count, offset)
        dtype, offset, count = meta["tensors"][name]["parts"][key]
        return np.frombuffer(f["data"], dtype, count, offset)

    # decode a.weight (bitmask) by hand
    assert meta["tensors"]["a.weight"]["encoding"] == "bitmask"
    keep = np.unpackbits(part("a.weight", "mask"))[: w.size].astype(bool)
    dec = np.zeros(w.size, np.float32)
    dec[keep] = part("a.weight", "values")
    np.testing.assert_array_equal(dec.reshape(w.shape), w)
    # and b.weight: int8 values times the per-row scale
    keep = np.unpackbits(part("b.weight", "mask"))[: q.size].astype(bool)
    dec = np.zeros(q.size, np.float32)
    dec[keep] = part("b.weight", "values")
    np.testing.assert_array_equal(dec.reshape(q.shape) * part("b.weight", "scale")[:, None], dequantize(q, scale))


def test_version_1_files_each_part_its_own_array_still_read(tmp_path):
    w = _sparse((20, 30), 0.9)
    q, scale = quantize_int8(_sparse((10, 20), 0.5))
    arrays, tensors = {}, {}
    for name, values, extra in (("a.weight", w, {}), ("b.weight", q, {"scale": scale})):
        encoding, parts = storage.encode(values)
        arrays.update({f"{name}/{k}": v for k, v in {**parts, **extra}.items()})
        tensors[name] = {
            "shape": list(values.shape),
            "encoding": encoding,
            "dtype": str(values.dtype),
            "quantized": bool(extra),
        }
    doc = {"format": "trainkit-compressed", "version": 1, "tensors": tensors}
    np.savez_compressed(tmp_path / "v1.npz", meta=np.frombuffer(json.dumps(doc).encode(), np.uint8), **arrays)
    got, meta = storage.read(tmp_path / "v1.npz")
    assert meta["version"] == 1
    np.testing.assert_array_equal(got["a.weight"], w)
    np.testing.assert_array_equal(got["b.weight"], dequantize(q, scale))


def test_one_data_array_keeps_many_small_tensors_cheap(tmp_path):
    """A small CNN has ~20 tensors of a few dozen values (biases, norms, scales): per-array zip
    entries and .npy headers (version 1) cost ~200 bytes each, as much as the values themselves."""
    rng = np.random.default_rng(0)
    stored, shapes = {}, {}
    for i in range(20):
        v = rng.normal(size=16).astype(np.float32)
        stored[f"layers.{i}.bias"], shapes[f"layers.{i}.bias"] = storage.encode(v), v.shape
    data = storage.to_bytes(stored, shapes, {})
    values = 20 * 16 * 4
    assert len(data) < values + 1500, len(data)  # version 1: 6,022 bytes for these 1,280


def test_a_part_outside_the_data_is_a_clear_error(tmp_path):
    w = _sparse((4, 5), 0.5)
    data = storage.to_bytes({"a.weight": storage.encode(w)}, {"a.weight": w.shape}, {})
    f = np.load(io.BytesIO(data))
    meta = json.loads(f["meta"].tobytes())
    meta["tensors"]["a.weight"]["parts"]["values"][1] = 10_000
    np.savez_compressed(tmp_path / "bad.npz", meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), data=f["data"])
    with pytest.raises(DataError, match="a.weight/values lies outside the data"):
        storage.read(tmp_path / "bad.npz")
