"""Losses, as torch.nn defines them: forward gives the scalar loss, backward gives dL/dpred.

`reduction: mean` averages over every element for the regression losses (samples × outputs)
and over samples for cross_entropy; `sum` adds them up. Each loss states the task it
implies, what it takes from the model (values, logits or probabilities) and turns raw
labels into the targets it expects. `head_for` pairs a model's outputs with its loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from trainkit.backend import scalar, xp
from trainkit.config.base import Component
from trainkit.nn.layers import sigmoid, softmax
from trainkit.registry import register


class LossConfig(Component):
    reduction: Literal["mean", "sum"] = "mean"


class Loss:
    task = "regression"  # regression | binary | multiclass
    takes = "values"  # what the model must output: values, logits or probabilities

    def __init__(self, cfg: LossConfig):
        self.cfg = cfg
        self.sum = cfg.reduction == "sum"

    def prepare_targets(self, y, dtype):
        """Float targets shaped (n, outputs)."""
        y = xp.asarray(y, dtype=dtype)
        return y.reshape(len(y), -1)

    def _scale(self, n_elements: int) -> float:
        return 1.0 if self.sum else 1.0 / n_elements

    def forward(self, pred, target) -> float:
        raise NotImplementedError

    def backward(self):
        raise NotImplementedError


# --------------------------------------------------------------------------- regression


class MSEConfig(LossConfig):
    """Mean squared error (p - y)^2 (torch.nn.MSELoss)."""

    name: Literal["mse"] = "mse"


@register("losses", MSEConfig)
class MSE(Loss):
    """L = s Σ (p − y)²,  dL/dp = 2 s (p − y);  s = 1/(n·outputs) for mean, 1 for sum."""

    def forward(self, pred, target):
        self.diff = pred - target
        self.s = self._scale(self.diff.size)
        return scalar(xp.vdot(self.diff, self.diff)) * self.s

    def backward(self):
        return self.diff * (2.0 * self.s)


class MAEConfig(LossConfig):
    """Mean absolute error |p - y| (torch.nn.L1Loss)."""

    name: Literal["mae"] = "mae"


@register("losses", MAEConfig)
class MAE(Loss):
    """L = s Σ |p − y|,  dL/dp = s · sign(p − y) (0 where p = y, as torch)."""

    def forward(self, pred, target):
        self.diff = pred - target
        self.s = self._scale(self.diff.size)
        return scalar(xp.abs(self.diff).sum()) * self.s

    def backward(self):
        return xp.sign(self.diff) * self.s


class HuberConfig(LossConfig):
    """Huber loss: quadratic within delta, linear beyond (torch.nn.HuberLoss)."""

    name: Literal["huber"] = "huber"
    delta: float = Field(1.0, gt=0)


@register("losses", HuberConfig)
class Huber(Loss):
    """ℓ = ½d² if |d| < δ else δ(|d| − ½δ), d = p − y.  dℓ/dp = d if |d| < δ else δ·sign(d)."""

    def forward(self, pred, target):
        d = pred - target
        self.d, self.s, delta = d, self._scale(d.size), self.cfg.delta
        self.small = xp.abs(d) < delta
        per = xp.where(self.small, 0.5 * d * d, delta * (xp.abs(d) - 0.5 * delta))
        return scalar(per.sum()) * self.s

    def backward(self):
        return xp.where(self.small, self.d, self.cfg.delta * xp.sign(self.d)) * self.s


# --------------------------------------------------------------------------- classification


class BCEConfig(LossConfig):
    """Binary cross-entropy on probabilities (torch.nn.BCELoss; logs clamped at -100)."""

    name: Literal["bce"] = "bce"


@register("losses", BCEConfig)
class BCE(Loss):
    """ℓ = −[y log p + (1 − y) log(1 − p)], logs clamped ≥ −100.

    dℓ/dp = (p − y) / max(p(1 − p), 1e−12), as torch computes it, so a saturated
    probability gives a zero gradient rather than NaN."""

    task = "binary"
    takes = "probabilities"

    def forward(self, pred, target):
        self.p, self.y = pred, target
        self.s = self._scale(pred.size)
        with xp.errstate(divide="ignore"):
            logp = xp.maximum(xp.log(pred), -100.0)
            log1mp = xp.maximum(xp.log(1.0 - pred), -100.0)
        return scalar(-(target * logp + (1.0 - target) * log1mp).sum()) * self.s

    def backward(self):
        p = self.p
        return (p - self.y) / xp.maximum(p * (1.0 - p), 1e-12) * self.s


class BCEWithLogitsConfig(LossConfig):
    """Binary cross-entropy on logits, numerically stable (torch.nn.BCEWithLogitsLoss)."""

    name: Literal["bce_with_logits"] = "bce_with_logits"
    pos_weight: float = Field(1.0, gt=0, description="weight of positive examples")


@register("losses", BCEWithLogitsConfig)
class BCEWithLogits(Loss):
    """ℓ = −w·y log σ(z) − (1 − y) log(1 − σ(z)), computed as
    (1 − y) z + (1 + (w − 1) y) · softplus(−z) with softplus(−z) = log(1 + e^−|z|) + max(−z, 0).
    dℓ/dz = σ(z)(1 + (w − 1)y) − w·y  (= σ(z) − y for w = 1)."""

    task = "binary"
    takes = "logits"

    def forward(self, pred, target):
        z, y, w = pred, target, self.cfg.pos_weight
        self.z, self.y, self.s = z, y, self._scale(z.size)
        sp = xp.log1p(xp.exp(-xp.abs(z))) + xp.maximum(-z, 0)
        return scalar(((1.0 - y) * z + (1.0 + (w - 1.0) * y) * sp).sum()) * self.s

    def backward(self):
        w, y = self.cfg.pos_weight, self.y
        g = sigmoid(self.z) - y if w == 1.0 else sigmoid(self.z) * (1.0 + (w - 1.0) * y) - w * y
        return g * self.s


class CrossEntropyConfig(LossConfig):
    """Softmax cross-entropy on logits, integer or one-hot labels (torch.nn.CrossEntropyLoss)."""

    name: Literal["cross_entropy"] = "cross_entropy"
    label_smoothing: float = Field(0.0, ge=0, le=1)


@register("losses", CrossEntropyConfig)
class CrossEntropy(Loss):
    """ℓ = −Σ_c q_c log softmax(z)_c, q = (1 − ε) onehot(y) + ε/C; log-softmax via log-sum-exp.
    dℓ/dz = softmax(z) − q  (the softmax and the log cancel: one fused, stable step)."""

    task = "multiclass"
    takes = "logits"

    def prepare_targets(self, y, dtype):
        y = xp.asarray(y)
        if y.ndim == 2 and y.shape[1] > 1:
            return y.astype(dtype)  # one-hot or class probabilities
        return y.reshape(-1).astype(xp.int64)

    def forward(self, pred, target):
        z = pred
        n, c = z.shape
        self.s = self._scale(n)
        shifted = z - z.max(axis=1, keepdims=True)
        lse = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        logp = shifted - lse
        self.probs = xp.exp(logp)
        eps = self.cfg.label_smoothing
        if target.ndim == 1:
            self.idx = target
            picked = logp[xp.arange(n), target]
            loss = -(1.0 - eps) * picked.sum()
            if eps:
                loss -= eps / c * logp.sum()
        else:
            self.idx = None
            q = target if not eps else (1.0 - eps) * target + eps / c
            self.q = q
            loss = -(q * logp).sum()
        return scalar(loss) * self.s

    def backward(self):
        g = self.probs.copy()
        n, c = g.shape
        eps = self.cfg.label_smoothing
        if self.idx is not None:
            g[xp.arange(n), self.idx] -= 1.0 - eps
            if eps:
                g -= eps / c
        else:
            g -= self.q
        g *= self.s
        return g


# --------------------------------------------------------------------------- model outputs -> loss, predictions

# The loss each (task, model output) pair trains with when the config names none.
# Model outputs (Network.outputs): logits (unbounded; also regression values), probabilities
# (each output in (0, 1): ends in sigmoid), distribution (rows sum to 1: ends in softmax).
DEFAULT_LOSS = {
    ("regression", "logits"): "mse",
    ("regression", "probabilities"): "mse",
    ("regression", "distribution"): "mse",
    ("binary", "logits"): "bce_with_logits",
    ("binary", "probabilities"): "bce",
    ("multiclass", "logits"): "cross_entropy",
}


class HeadMismatch(ValueError):
    """The model's outputs, the task and the loss do not fit. `about` says which config
    block to point at ("model" or "loss")."""

    def __init__(self, message: str, hint: str, about: str):
        super().__init__(message)
        self.message, self.hint, self.about = message, hint, about


@dataclass(frozen=True)
class Head:
    """What a model's outputs mean and how they become predictions. Built by `head_for` only."""

    task: str  # regression | binary | multiclass
    outputs: str  # logits | probabilities | distribution
    loss: str  # the loss to train with: the config's, or the default

    @property
    def threshold(self) -> float:
        """Binary: an output above this is class 1 (σ(z) > ½ ⇔ z > 0)."""
        return 0.5 if self.outputs == "probabilities" else 0.0

    def labels(self, out):
        """Class indices (n,) from raw model outputs (n, outputs)."""
        if out.shape[1] == 1:
            return (out[:, 0] > self.threshold).astype(xp.int64)
        return out.argmax(axis=1)

    def probabilities(self, out):
        """Classification: class probabilities (n, classes), two columns for binary.
        Regression: the outputs themselves."""
        if self.task == "regression":
            return out
        if self.task == "binary":
            p1 = out[:, 0] if self.outputs == "probabilities" else sigmoid(out[:, 0])
            return xp.stack([1.0 - p1, p1], axis=1)
        return out if self.outputs == "distribution" else softmax(out)


_ENDS_IN = {"probabilities": "sigmoid", "distribution": "softmax"}


def head_for(task: str, outputs: str, loss=None, n_classes: int | None = None) -> Head:
    """The one rule pairing a model's outputs with a loss: the default loss when `loss`
    (a registered loss name) is None, else a check that it fits. Raises HeadMismatch."""
    from trainkit import registry

    if loss is None:
        name = DEFAULT_LOSS.get((task, outputs))
        if name is None:
            raise _no_loss_fits(task, outputs)
        return Head(task, outputs, name)
    cls = registry.get("losses", loss).build
    if task == "regression" and cls.task != "regression":
        raise HeadMismatch(
            f"{loss} is a classification loss but the task is regression",
            "use mse, mae or huber, or set data.task: binary / multiclass",
            "loss",
        )
    if task == "multiclass" and cls.task == "binary":
        raise HeadMismatch(
            f"{loss} is for two classes but the labels have {n_classes or 'more'}",
            "use cross_entropy for more than two classes",
            "loss",
        )
    if task != "regression" and cls.task == "regression":
        raise HeadMismatch(
            f"{loss} is a regression loss but the task is {task} classification",
            f"leave the loss out (it becomes {DEFAULT_LOSS.get((task, outputs), 'cross_entropy')}), "
            "or set data.task: regression",
            "loss",
        )
    if task == "regression" or cls.takes == outputs:
        return Head(task, outputs, loss)
    if cls.takes == "logits":  # the model ends in sigmoid or softmax
        fits = DEFAULT_LOSS.get((task, outputs))
        raise HeadMismatch(
            f"{loss} takes logits, so the model must not end in {_ENDS_IN[outputs]}",
            (f"use loss: {fits}, or " if fits else "")
            + f"remove the final {_ENDS_IN[outputs]}; predictions are turned into probabilities for you",
            "model",
        )
    raise HeadMismatch(  # bce on logits
        f"{loss} takes probabilities, but the model outputs "
        + ("logits (it does not end in sigmoid)" if outputs == "logits" else "a softmax over one output"),
        "use loss: bce_with_logits (or leave the loss out), or end the model in sigmoid (output_activation: sigmoid)",
        "loss",
    )


def _no_loss_fits(task: str, outputs: str) -> HeadMismatch:
    if task == "binary":  # outputs == distribution
        return HeadMismatch(
            "the model ends in softmax over a single output, which is always 1",
            "for two classes end in sigmoid (output_activation: sigmoid) or in nothing (logits, bce_with_logits)",
            "model",
        )
    return HeadMismatch(  # multiclass ending in sigmoid or softmax
        f"cross_entropy takes logits, so the model must not end in {_ENDS_IN[outputs]}",
        f"remove the final {_ENDS_IN[outputs]}; predictions are turned into probabilities for you",
        "model",
    )
