"""Checkpoints: everything needed to continue a run bit-exactly, in one .npz file.

Arrays: `param/<name>` and `buffer/<name>` (by torch state_dict name), `optim/<state>`,
`early/best_params`.
`meta` (a JSON string): epoch, optimizer scalars, schedule and early-stopping state, the
RNG states (shuffle, dropout, augmentation), a partial epoch if the run stopped mid-epoch,
the history so far, and the data state (classes, categories, scaling) for evaluate/predict.
Read back with allow_pickle=False: a checkpoint holds data only.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from trainkit.backend import to_numpy
from trainkit.errors import DataError

FORMAT = 1


def _dropout_rngs(net):
    return [layer.rng for layer in net.layers if getattr(layer, "rng", None) is not None]


def checkpoint_bytes(exp, extra_meta: dict | None = None) -> bytes:
    tr = exp.trainer
    arrays = {f"param/{k}": to_numpy(v) for k, v in exp.net.params.items()}
    arrays.update({f"buffer/{k}": to_numpy(v) for k, v in exp.net.buffers.items()})
    meta = {
        "format": FORMAT,
        "epoch": tr.epoch,
        "optimizer": {},
        "schedule": tr.schedule.state_dict(),
        "early_stopping": tr.early.state_dict() if tr.early else None,
        "rng": {"shuffle": tr.rng.bit_generator.state},
        "partial": tr.partial,
        "history": tr.history,
        "data": exp.state.to_dict(),
        **(extra_meta or {}),
    }
    for k, v in tr.opt.state_dict().items():
        if isinstance(v, np.ndarray):
            arrays[f"optim/{k}"] = to_numpy(v)
        else:
            meta["optimizer"][k] = v
    drop = _dropout_rngs(exp.net)
    if drop:  # all dropout layers share the run's dropout stream
        meta["rng"]["dropout"] = drop[0].bit_generator.state
    if tr.augment_rng is not None:
        meta["rng"]["augment"] = tr.augment_rng.bit_generator.state
    if tr.early and tr.early.best_params is not None:
        arrays["early/best_params"] = to_numpy(tr.early.best_params)
    arrays["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def params_bytes(exp) -> bytes:
    """Parameters alone (best.npz): loadable with `model.init: {from: best.npz}`."""
    buf = io.BytesIO()
    np.savez(buf, **{k: to_numpy(v) for k, v in {**exp.net.params, **exp.net.buffers}.items()})
    return buf.getvalue()


def load(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.keys()}
        meta = json.loads(str(arrays.pop("meta")))
    except FileNotFoundError:
        raise DataError("no checkpoint here", str(path), "train with --output-dir first") from None
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is the same user error
        raise DataError(f"cannot read checkpoint: {e}", str(path)) from None
    return arrays, meta


def restore_model(net, arrays: dict) -> None:
    """Parameters (`param/`) and buffers (`buffer/`: batch-norm statistics) by name."""
    for prefix, named in (("param", net.params), ("buffer", net.buffers)):
        for k, v in named.items():
            key = f"{prefix}/{k}"
            if key not in arrays or arrays[key].shape != v.shape:
                raise DataError(
                    f"checkpoint does not match the model ({k})",
                    None,
                    "the config changed since the checkpoint was written",
                )
            v[...] = arrays[key]


def restore(exp, arrays: dict, meta: dict) -> None:
    """Put a run back in the state a checkpoint recorded."""
    tr, net = exp.trainer, exp.net
    restore_model(net, arrays)
    opt_state = dict(meta["optimizer"])
    opt_state.update({k[len("optim/") :]: v for k, v in arrays.items() if k.startswith("optim/")})
    tr.opt.load_state_dict(opt_state)
    tr.schedule.load_state_dict(meta["schedule"])
    if tr.early and meta["early_stopping"]:
        tr.early.load_state_dict(meta["early_stopping"])
        if "early/best_params" in arrays:
            tr.early.best_params = arrays["early/best_params"].astype(net.flat.dtype)
    tr.rng.bit_generator.state = meta["rng"]["shuffle"]
    for r in _dropout_rngs(net):
        r.bit_generator.state = meta["rng"]["dropout"]
    if tr.augment_rng is not None and "augment" in meta["rng"]:
        tr.augment_rng.bit_generator.state = meta["rng"]["augment"]
    tr.epoch = int(meta["epoch"])
    tr.history = list(meta["history"])
    tr.partial = meta["partial"]
