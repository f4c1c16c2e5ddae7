"""Gradual magnitude pruning during training (Zhu & Gupta 2017; TF-MOT's PolynomialDecay).

The `prune:` block of a run prunes the weights of linear and conv layers (or the parameters it
names) to a target sparsity over a window of epochs. Optimizer steps are counted from the
start of `start_epoch` (begin_step) to the last step of `end_epoch` (end_step); at step k

    s(k) = s_f + (s_i − s_f) · (1 − progress)^power,  progress = (k − begin)/(end − begin) ∈ [0, 1],

and the masks are recomputed by magnitude (compress.masks) every `frequency` steps in the
window, at its first and at its last step, then frozen. With start_epoch == end_epoch the
masks are computed once, at that epoch's first step, with s_f (a one-shot mask for
fine-tuning). Pruned weights stay exactly zero: the masks multiply the gradients before each
optimizer step, the parameters after it, and the optimizer's state at the pruned positions.
With early stopping, the best epoch is chosen among the epochs from end_epoch on: an earlier
epoch's parameters are not yet at the target sparsity.
"""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
from pydantic import Field

from trainkit.backend import to_numpy, xp
from trainkit.compress.masks import magnitude_masks, prunable, sparsity_of
from trainkit.config.base import Strict


class PruneConfig(Strict):
    """Magnitude pruning during training, on TF-MOT's PolynomialDecay schedule."""

    scope: Literal["global", "layer"] = Field(
        "global", description="rank weights over all pruned tensors, or per tensor"
    )
    sparsity: float = Field(0.9, ge=0, lt=1, description="final sparsity s_f: the fraction of weights set to zero")
    initial_sparsity: float = Field(0.0, ge=0, lt=1, description="sparsity s_i at start_epoch")
    start_epoch: int = Field(1, ge=1, description="first epoch pruning acts in (1-based)")
    end_epoch: int = Field(10, ge=1, description="the masks are frozen after this epoch ends")
    power: float = Field(3.0, gt=0, description="exponent of the polynomial decay")
    frequency: int = Field(10, ge=1, description="optimizer steps between mask updates")
    params: Optional[list[str]] = Field(
        None, description="parameter names to prune; default: the weights of linear and conv layers"
    )


def config_issues(loaded) -> list:
    """Rules of the `prune:` block that involve other values (its own schema checks the rest)."""
    cfg = loaded.config
    p = getattr(cfg, "prune", None)
    if p is None:
        return []
    issues = []
    if p.end_epoch < p.start_epoch:
        issues.append(
            loaded.issue(
                ("prune", "end_epoch"),
                f"end_epoch {p.end_epoch} is before start_epoch {p.start_epoch}: the schedule would end before it starts",
                f"set end_epoch to {p.start_epoch} or later",
            )
        )
    if p.end_epoch > cfg.train.epochs:
        issues.append(
            loaded.issue(
                ("prune", "end_epoch"),
                f"end_epoch {p.end_epoch} is beyond train.epochs ({cfg.train.epochs}): the target sparsity would never be reached",
                f"set end_epoch to at most {cfg.train.epochs}, or train longer",
            )
        )
    return issues


def pruned_names(loaded, net) -> list[str]:
    """The parameters the config prunes; an unknown name is a ConfigError naming it."""
    from trainkit.config.errors import did_you_mean

    names = loaded.config.prune.params
    if names is None:
        return prunable(net)
    for i, name in enumerate(names):
        if name not in net.params:
            known = list(net.params)
            raise loaded.error(
                ("prune", "params", i),
                f"the model has no parameter {name!r}",
                did_you_mean(name, known, "the model's parameters are"),
            )
        if name not in prunable(net):  # biases and normalisation parameters are never pruned
            raise loaded.error(
                ("prune", "params", i),
                f"{name!r} is not a weight of a linear or conv layer: only those are pruned",
                f"the prunable weights are: {', '.join(prunable(net))}",
            )
    return list(dict.fromkeys(names))


def polynomial_sparsity(step: int, begin: int, end: int, s_i: float, s_f: float, power: float) -> float:
    """TF-MOT PolynomialDecay: s_f + (s_i − s_f)(1 − progress)^power, progress clipped to [0, 1]."""
    progress = 1.0 if end <= begin else min(max((step - begin) / (end - begin), 0.0), 1.0)
    return s_f + (s_i - s_f) * (1.0 - progress) ** power


def apply_masks(net, opt, masks: dict[str, np.ndarray]) -> None:
    """Zero the pruned weights of `net` (masks: name → keep-mask, True where kept), their
    gradients, and the optimizer's state there (its flat buffers, and per-tensor buffers named
    `…/<name>` of that tensor's shape). Used by training and by `trainkit compress --finetune`."""
    keep = flat_keep(net, masks)
    _apply(net, opt, keep, masks)


def flat_keep(net, masks: dict[str, np.ndarray]):
    """The masks as one 0/1 vector over the network's flat parameter buffer."""
    keep = xp.ones(net.flat.size, dtype=net.flat.dtype)
    offset = 0
    for name, p in net.params.items():
        if name in masks:
            keep[offset : offset + p.size] = xp.asarray(masks[name].ravel(), dtype=net.flat.dtype)
        offset += p.size
    return keep


def _apply(net, opt, keep, masks) -> None:
    net.flat *= keep
    net.grad *= keep
    for key, buf in getattr(opt, "state", {}).items():
        if getattr(buf, "size", None) == keep.size and buf.ndim == 1:
            buf *= keep
        else:
            name = key.rsplit("/", 1)[-1]
            if name in masks and getattr(buf, "shape", None) == masks[name].shape:
                buf *= xp.asarray(masks[name], dtype=buf.dtype)


class Pruner:
    """The trainer's pruning hook: called at the start of each step (`begin_step`), after
    the backward pass (`after_backward`), after the optimizer step (`after_step`) and at
    each epoch's end (`end_epoch`, which adds `sparsity` to the history row)."""

    name = "prune"

    def __init__(
        self, cfg: PruneConfig, net, opt, names: list[str], steps_per_epoch: int, info: dict | None = None, early=None
    ):
        self.cfg, self.net, self.opt, self.names, self.early = cfg, net, opt, names, early
        self.begin = (cfg.start_epoch - 1) * steps_per_epoch
        self.end = cfg.end_epoch * steps_per_epoch - 1
        self.step = 0  # optimizer steps taken in this run
        self.masks: dict[str, np.ndarray] | None = None  # None until the window opens
        self.keep = None
        self.info = info if info is not None else {}
        self._record()

    def target(self, k: int) -> float:
        c = self.cfg
        if c.start_epoch == c.end_epoch:
            return c.sparsity
        return polynomial_sparsity(k, self.begin, self.end, c.initial_sparsity, c.sparsity, c.power)

    def updates_at(self, k: int) -> bool:
        """Whether the masks are recomputed at step k (0-based, counted over the run)."""
        if not self.begin <= k <= self.end:
            return False
        if self.cfg.start_epoch == self.cfg.end_epoch:
            return k == self.begin
        return (k - self.begin) % self.cfg.frequency == 0 or k == self.end

    def begin_step(self, xb=None) -> None:
        if self.updates_at(self.step):
            weights = {k: self.net.params[k] for k in self.names}
            self.masks = magnitude_masks(weights, self.target(self.step), self.cfg.scope)
            self.keep = flat_keep(self.net, self.masks)
            _apply(self.net, self.opt, self.keep, self.masks)

    def after_backward(self) -> None:
        if self.keep is not None:
            self.net.grad *= self.keep

    def after_step(self) -> None:
        self.step += 1
        if self.keep is not None:
            _apply(self.net, self.opt, self.keep, self.masks)

    def end_epoch(self, row: dict) -> None:
        row["sparsity"] = self._record()
        for name, value in self.info["sparsity"].items():  # per tensor, as TF-MOT's pruning summaries
            row[f"sparsity/{name}"] = value
        if self.early is not None and row["epoch"] <= self.cfg.end_epoch:
            # forget the epochs before the masks froze: this one is the first candidate for best
            e = self.early
            e.best, e.best_epoch, e.best_params, e.wait = float("inf"), None, None, 0

    def _record(self) -> float:
        """Total sparsity over the pruned tensors; per-tensor sparsity into the run's info."""
        masks = self.masks or {k: np.ones(self.net.params[k].shape, dtype=bool) for k in self.names}
        per = sparsity_of(masks)
        kept = sum(int(m.sum()) for m in masks.values())
        total = sum(m.size for m in masks.values())
        self.info["sparsity"] = per
        return 1.0 - kept / total if total else 0.0

    def state_dict(self) -> dict:
        state = {"step": self.step}
        if self.masks is not None:
            state.update({f"mask/{k}": to_numpy(m) for k, m in self.masks.items()})
        return state

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        masks = {k[len("mask/") :]: np.asarray(v, dtype=bool) for k, v in state.items() if k.startswith("mask/")}
        if masks:
            for k, m in masks.items():
                if k not in self.net.params or m.shape != self.net.params[k].shape:
                    raise ValueError(f"its pruning mask {k} does not fit the model")
            self.masks = masks
            self.keep = flat_keep(self.net, masks)
        self._record()


def attach(exp) -> None:
    """Give the experiment's trainer a Pruner for its config's `prune:` block."""
    loaded, tr = exp.loaded, exp.trainer
    names = pruned_names(loaded, exp.net)
    n = exp.info["n_train"]
    bs = loaded.config.train.batch_size
    bs = n if bs in (None, "full") else min(int(bs), n)
    steps = -(-n // bs)  # as the trainer's batches: ceil(n / batch size)
    tr.hooks.append(Pruner(loaded.config.prune, exp.net, tr.opt, names, steps, exp.info, tr.early))
