"""Checkpoints: everything needed to continue a run bit-exactly, in one .npz file.

Arrays: `param/<name>` and `buffer/<name>` (by torch state_dict name; buffers are batch-norm
statistics): the parameters the run ended with (the
best epoch's, when early stopping restored them); `resume/flat`: the last epoch's
parameters, which the optimizer state belongs to, when they differ; `optim/<state>`,
`early/best_params`, `prune/mask/<name>` (pruning masks: trainer hooks' arrays).
`meta` (a JSON string): epoch, optimizer scalars, schedule and early-stopping state, the
RNG states (shuffle, dropout, augmentation), a partial epoch if the run stopped mid-epoch,
the history so far, the run's config (checked on resume) and, once the run ended, its
`result`. What evaluate/predict need besides the config and the parameters, so that a run
is usable without its training data: the data state (feature names, classes, categories,
feature and target scaling) and the model's sizes (`model`: in_features, out_features).
Read back with allow_pickle=False: a checkpoint holds data only. Arrays are always host
numpy arrays, whatever train.device the run computed on: a run checkpointed on a GPU resumes
on the CPU (train.device may change on resume) and the other way round.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from trainkit.backend import to_device, to_numpy, xp
from trainkit.errors import DataError, npz_reason

# What a resumed run may change: how long it runs and how it logs. Anything else (model,
# optimizer, schedule, data, seed, dtype, batch size, ...) would continue a different run.
RESUMABLE = (
    "train.epochs",
    "train.log_every",
    "train.checkpoint_every",
    "train.early_stopping.patience",
    "train.device",
    "output.",
)

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
        "model": {"in_features": exp.info["n_features"], "out_features": exp.info["n_outputs"]},
        **(extra_meta or {}),
    }
    for k, v in tr.opt.state_dict().items():
        if isinstance(v, (np.ndarray, xp.ndarray)):
            arrays[f"optim/{k}"] = to_numpy(v)
        else:
            meta["optimizer"][k] = v
    for h in tr.hooks:  # pruning masks and step count: `<hook>/<key>` arrays, other values in meta
        for k, v in h.state_dict().items():
            if isinstance(v, np.ndarray):
                arrays[f"{h.name}/{k}"] = v
            else:
                meta.setdefault(h.name, {})[k] = v
    drop = _dropout_rngs(exp.net)
    if drop:  # all dropout layers share the run's dropout stream
        meta["rng"]["dropout"] = drop[0].bit_generator.state
    if tr.augment_rng is not None:
        meta["rng"]["augment"] = tr.augment_rng.bit_generator.state
    if tr.last_flat is not None:
        arrays["resume/flat"] = to_numpy(tr.last_flat)
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
        if not isinstance(meta, dict):
            raise ValueError("its meta is not a mapping")
    except FileNotFoundError:
        raise DataError("no checkpoint here", str(path), "train with --output-dir first") from None
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is the same user error
        raise DataError(f"cannot read checkpoint: {npz_reason(e)}", str(path)) from None
    return arrays, meta


def _leaves(node, prefix: str = "") -> dict:
    """{dotted key: value} of a config; lists are values."""
    if not isinstance(node, dict):
        return {prefix: node}
    out = {}
    for k, v in node.items():
        out.update(_leaves(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
    return out


def check_matches(stored: dict | None, config: dict, path: Path | None = None) -> None:
    """Refuse to resume a checkpoint under a config that changes more than RESUMABLE
    (both configs portable: paths relative to the run dir)."""
    if stored is None:  # written before checkpoints kept their config: the shapes are checked
        return
    if not isinstance(stored, dict):
        raise DataError("checkpoint is incomplete or damaged (its config)", str(path) if path else None)
    old, new = _leaves(stored), _leaves(config)
    keys = [k for k in dict.fromkeys([*old, *new]) if not k.startswith(RESUMABLE)]
    changed = [k for k in keys if old.get(k) != new.get(k)]
    renamed = {k[: -len(".name")] for k in changed if k.endswith(".name")}
    # another optimizer has other keys: say "optimizer adam vs sgd", not every key
    changed = [k for k in changed if not any(k.startswith(b + ".") and k != b + ".name" for b in renamed)]
    if not changed:
        return
    parts = [f"{k.removesuffix('.name')} {_show(old.get(k))} vs {_show(new.get(k))}" for k in changed[:4]]
    if len(changed) > 4:
        parts.append(f"and {len(changed) - 4} more")
    raise DataError(
        "checkpoint does not match the config: " + "; ".join(parts),
        str(path) if path else None,
        "a resumed run can change train.epochs, train.log_every, train.checkpoint_every, "
        "train.early_stopping.patience and train.device; for anything else start a new run (another --output-dir)",
    )


def _show(v) -> str:
    return "(none)" if v is None else json.dumps(v) if not isinstance(v, str) else v


def restore(exp, arrays: dict, meta: dict, path: Path | None = None) -> None:
    """Put a run back in the state a checkpoint recorded, ready to continue; a checkpoint
    with missing or malformed pieces is a DataError."""
    with damaged(path, "it was not written by this trainkit for this config; start again with --overwrite"):
        _restore(exp, arrays, meta)


@contextlib.contextmanager
def damaged(path: Path | None, hint: str):
    """Reading a checkpoint's pieces: a missing or malformed one is a DataError naming the file."""
    try:
        yield
    except DataError as e:
        raise DataError(e.message, e.path or (str(path) if path else None), e.hint) from None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        what = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise DataError(f"checkpoint is incomplete or damaged ({what})", str(path) if path else None, hint) from None


def restore_model(net, arrays: dict) -> None:
    """Parameters (`param/`) and buffers (`buffer/`: batch-norm statistics) by name."""
    for prefix, named in (("param", net.params), ("buffer", net.buffers)):
        for k, v in named.items():
            key = f"{prefix}/{k}"
            if key not in arrays or arrays[key].shape != v.shape:
                found = "missing" if key not in arrays else f"shape {arrays[key].shape}, the model's is {v.shape}"
                raise DataError(
                    f"checkpoint does not match the model ({k}: {found})",
                    None,
                    "the config changed since the checkpoint was written",
                )
            v[...] = to_device(arrays[key])


def held_params(exp, arrays: dict) -> None:
    """Set the network to the parameters (and buffers) the run ended with."""
    restore_model(exp.net, arrays)


def _restore(exp, arrays: dict, meta: dict) -> None:
    tr, net = exp.trainer, exp.net
    restore_model(net, arrays)
    if "resume/flat" in arrays:  # the run ended on its best epoch: continue from its last
        net.flat[...] = to_device(arrays["resume/flat"])
    opt_state = dict(meta["optimizer"])
    opt_state.update({k[len("optim/") :]: to_device(v) for k, v in arrays.items() if k.startswith("optim/")})
    tr.opt.load_state_dict(opt_state)
    tr.schedule.load_state_dict(meta["schedule"])
    for h in tr.hooks:
        hook_state = dict(meta.get(h.name, {}))
        hook_state.update({k[len(h.name) + 1 :]: v for k, v in arrays.items() if k.startswith(h.name + "/")})
        h.load_state_dict(hook_state)
    if tr.early and meta["early_stopping"]:
        tr.early.load_state_dict(meta["early_stopping"])
        if "early/best_params" in arrays:
            tr.early.best_params = to_device(arrays["early/best_params"], net.flat.dtype)
    tr.rng.bit_generator.state = meta["rng"]["shuffle"]
    for r in _dropout_rngs(net):
        r.bit_generator.state = meta["rng"]["dropout"]
    if tr.augment_rng is not None and "augment" in meta["rng"]:
        tr.augment_rng.bit_generator.state = meta["rng"]["augment"]
    tr.epoch = int(meta["epoch"])
    tr.history = list(meta["history"])
    tr.partial = meta["partial"]
    if not isinstance(tr.history, list) or len(tr.history) != tr.epoch:
        raise ValueError(f"history has {len(tr.history)} rows for {tr.epoch} epochs")
