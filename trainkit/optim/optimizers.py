"""Optimizers with torch.optim's names, defaults, checks and update rules.

Sorted by increasing complexity. Each updates the network's flat parameter buffer `p` in
place from the flat gradient `g` with a few whole-array passes. The pieces several rules
share live once: `_prepare_grad` (maximize, coupled weight decay), `_heavy_ball` (SGD's
momentum and Nesterov), `_adam_moments` (the two running moments). State is explicit:
`state_dict()` gives plain arrays and numbers for checkpoints, `load_state_dict` restores them.

Notation: θ parameters, g gradient, η learning rate, λ weight decay, t the step (from 1).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from trainkit.backend import current, xp
from trainkit.backend.cuda_kernels import fused_step
from trainkit.config.base import Component
from trainkit.registry import register

# --------------------------------------------------------------------------- schemas


class OptimizerConfig(Component):
    full_batch: ClassVar[bool] = False  # True: every step sees the whole training set (gd)
    # with full_batch: why trainkit refuses mini-batches, and the optimizer to use for them instead
    full_batch_why: ClassVar[str] = ""
    for_mini_batches: ClassVar[str] = "sgd"
    lr: float = Field(1e-3, ge=0, description="learning rate")


class _WeightDecay(OptimizerConfig):
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradient: g + λθ")
    maximize: bool = Field(False, description="maximize the objective instead of minimizing it")


class _Betas(_WeightDecay):
    betas: tuple[float, float] = Field((0.9, 0.999), description="decay rates of the two moments")
    eps: float = Field(1e-8, ge=0, description="added to the denominator for stability")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v):
        for i, b in enumerate(v):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"invalid beta parameter at index {i}: {b} (each must be in [0, 1))")
        return v


class GDConfig(OptimizerConfig):
    """Plain full-batch gradient descent, θ ← θ − η∇L, as the textbook writes it."""

    full_batch: ClassVar[bool] = True
    full_batch_why: ClassVar[str] = (
        "is full-batch gradient descent and cannot use mini-batches (sgd is its mini-batch form)"
    )
    name: Literal["gd"] = "gd"
    lr: float = Field(0.1, ge=0, description="learning rate")


class SGDConfig(_WeightDecay):
    """Stochastic gradient descent with optional momentum and Nesterov (torch.optim.SGD)."""

    name: Literal["sgd"] = "sgd"
    momentum: float = Field(0.0, ge=0, description="momentum factor μ")
    dampening: float = Field(0.0, ge=0, le=1, description="dampening for momentum")
    nesterov: bool = False

    @field_validator("nesterov")
    @classmethod
    def _nesterov_needs_momentum(cls, v, info):
        if v and (info.data.get("momentum", 0) <= 0 or info.data.get("dampening", 0) != 0):
            raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening")
        return v


class AdagradConfig(_WeightDecay):
    """Adagrad: per-parameter steps shrinking with the sum of squared gradients (torch.optim.Adagrad)."""

    name: Literal["adagrad"] = "adagrad"
    lr: float = Field(1e-2, ge=0, description="learning rate")
    lr_decay: float = Field(0.0, ge=0)
    initial_accumulator_value: float = Field(0.0, ge=0)
    eps: float = Field(1e-10, ge=0)


class RMSpropConfig(_WeightDecay):
    """RMSprop: steps scaled by a running RMS of gradients (torch.optim.RMSprop)."""

    name: Literal["rmsprop"] = "rmsprop"
    lr: float = Field(1e-2, ge=0, description="learning rate")
    alpha: float = Field(0.99, ge=0, description="smoothing constant of the squared-gradient average")
    eps: float = Field(1e-8, ge=0)
    momentum: float = Field(0.0, ge=0)
    centered: bool = Field(False, description="normalise by the variance estimate instead of the raw second moment")


class AdamConfig(_Betas):
    """Adam: bias-corrected first and second moment estimates (torch.optim.Adam)."""

    name: Literal["adam"] = "adam"
    amsgrad: bool = Field(False, description="use the running maximum of the second moment")


class AdamWConfig(AdamConfig):
    """AdamW: Adam with decoupled weight decay θ ← θ(1 − ηλ) (torch.optim.AdamW)."""

    name: Literal["adamw"] = "adamw"
    weight_decay: float = Field(1e-2, ge=0, description="decoupled decay: θ ← θ(1 − ηλ)")


class NAdamConfig(_Betas):
    """NAdam: Adam with Nesterov momentum (torch.optim.NAdam)."""

    name: Literal["nadam"] = "nadam"
    lr: float = Field(2e-3, ge=0, description="learning rate")
    momentum_decay: float = Field(4e-3, ge=0, description="ψ in the momentum schedule")


class RAdamConfig(_Betas):
    """RAdam: Adam with the variance of its adaptive step rectified (torch.optim.RAdam)."""

    name: Literal["radam"] = "radam"


# --------------------------------------------------------------------------- batch size


class BatchSizeError(ValueError):
    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message, self.hint = message, hint


def resolve_batch_size(optimizer: OptimizerConfig, batch_size, n_train: int | None = None):
    """The one rule for `train.batch_size`: `full` for a full-batch optimizer (gd) or when
    asked, else the config's size, else min(32, n_train). An explicit size that a full-batch
    optimizer cannot use, or one beyond the training set (when n_train is known), raises BatchSizeError."""
    if isinstance(batch_size, int) and optimizer.full_batch:
        raise BatchSizeError(
            f"optimizer {optimizer.name} {optimizer.full_batch_why}",
            f"train.batch_size: full, its default (--set train.batch_size=full), or for mini-batches "
            f"optimizer {optimizer.for_mini_batches} (--set optimizer.name={optimizer.for_mini_batches})",
        )
    if batch_size is None:
        return "full" if optimizer.full_batch else (32 if n_train is None else min(32, n_train))
    if isinstance(batch_size, int) and n_train is not None and batch_size > n_train:
        raise BatchSizeError(
            f"batch_size {batch_size} is larger than the training set ({n_train} samples)",
            f"use train.batch_size: full, or at most {n_train}",
        )
    return batch_size


# --------------------------------------------------------------------------- shared pieces


class Optimizer:
    """Owns the update rule's state; `step(lr)` updates `p` in place from `g`."""

    state_names: tuple[str, ...] = ()

    def __init__(self, cfg, params, grads):
        self.cfg = cfg
        self.p, self.g = params, grads
        self.t = 0
        self.state = {k: xp.zeros_like(params) for k in self.state_names}
        self.tmp = xp.empty_like(params)  # scratch, so a step allocates nothing
        self.fused = fused_step(self, current())  # on CuPy: the whole update as one kernel

    def step(self, lr: float) -> None:
        self.t += 1
        if self.fused is None:
            self.update(lr)
        else:
            self.fused(lr)

    def update(self, lr: float) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"t": self.t, **{k: v.copy() for k, v in self.state.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.t = int(state["t"])
        for k in self.state:
            self.state[k][...] = state[k]

    def _prepare_grad(self):
        """g ← −g if maximizing; g ← g + λθ for coupled weight decay (torch's order)."""
        g = self.g
        if getattr(self.cfg, "maximize", False):
            xp.negative(g, out=g)
        wd = getattr(self.cfg, "weight_decay", 0.0)
        if wd and not getattr(self, "decoupled", False):
            xp.multiply(self.p, wd, out=self.tmp)
            g += self.tmp
        return g


def _heavy_ball(buf, g, momentum: float, dampening: float, nesterov: bool, first: bool):
    """torch's momentum: b₁ = g₁ (no dampening on the first step), bₜ = μbₜ₋₁ + (1 − τ)gₜ;
    direction bₜ, or gₜ + μbₜ with Nesterov. (Sutskever et al. scale g by η inside the buffer;
    torch, and so trainkit, applies η outside, which differs when η changes over time.)"""
    if first:
        buf[...] = g
    else:
        buf *= momentum
        buf += (1.0 - dampening) * g if dampening else g
    if nesterov:
        g += momentum * buf
        return g
    return buf


def _adam_moments(m, v, g, b1: float, b2: float, tmp) -> None:
    """m ← β₁m + (1 − β₁)g,  v ← β₂v + (1 − β₂)g²."""
    m *= b1
    xp.multiply(g, 1.0 - b1, out=tmp)
    m += tmp
    v *= b2
    xp.multiply(g, g, out=tmp)
    tmp *= 1.0 - b2
    v += tmp


# --------------------------------------------------------------------------- rules


@register("optimizers", SGDConfig)
class SGD(Optimizer):
    """gₜ ← ∇L (+ λθ);  with momentum μ: bₜ = μbₜ₋₁ + (1 − τ)gₜ (b₁ = g₁), direction bₜ or
    gₜ + μbₜ (Nesterov);  θ ← θ − η·direction."""

    def __init__(self, cfg, params, grads):
        super().__init__(cfg, params, grads)
        if cfg.momentum:
            self.state["momentum_buffer"] = xp.zeros_like(params)

    def update(self, lr):
        c = self.cfg
        d = self._prepare_grad()
        if c.momentum:
            d = _heavy_ball(self.state["momentum_buffer"], d, c.momentum, c.dampening, c.nesterov, self.t == 1)
        xp.multiply(d, lr, out=self.tmp)
        self.p -= self.tmp


@register("optimizers", GDConfig)
class GD(Optimizer):
    """θ ← θ − η∇L(θ), the gradient taken over the whole training set each step
    (the batch size is decided by `resolve_batch_size`)."""

    def update(self, lr):
        xp.multiply(self.g, lr, out=self.tmp)
        self.p -= self.tmp


@register("optimizers", AdagradConfig)
class Adagrad(Optimizer):
    """η̃ = η / (1 + (t − 1)·lr_decay);  s ← s + g²;  θ ← θ − η̃ g / (√s + ε).  s₀ = initial_accumulator_value."""

    state_names = ("sum",)

    def __init__(self, cfg, params, grads):
        super().__init__(cfg, params, grads)
        self.state["sum"][...] = cfg.initial_accumulator_value

    def update(self, lr):
        c, s, tmp = self.cfg, self.state["sum"], self.tmp
        g = self._prepare_grad()
        clr = lr / (1.0 + (self.t - 1) * c.lr_decay)
        xp.multiply(g, g, out=tmp)
        s += tmp
        xp.sqrt(s, out=tmp)
        tmp += c.eps
        xp.divide(g, tmp, out=tmp)
        tmp *= clr
        self.p -= tmp


@register("optimizers", RMSpropConfig)
class RMSprop(Optimizer):
    """v ← αv + (1 − α)g²;  centered: ḡ ← αḡ + (1 − α)g, a = √(v − ḡ²) + ε, else a = √v + ε;
    momentum μ > 0: b ← μb + g/a, θ ← θ − ηb;  otherwise θ ← θ − η g/a."""

    state_names = ("square_avg",)

    def __init__(self, cfg, params, grads):
        super().__init__(cfg, params, grads)
        if cfg.centered:
            self.state["grad_avg"] = xp.zeros_like(params)
        if cfg.momentum:
            self.state["momentum_buffer"] = xp.zeros_like(params)

    def update(self, lr):
        c, v, tmp = self.cfg, self.state["square_avg"], self.tmp
        g = self._prepare_grad()
        v *= c.alpha
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - c.alpha
        v += tmp
        if c.centered:
            ga = self.state["grad_avg"]
            ga *= c.alpha
            ga += (1.0 - c.alpha) * g
            xp.multiply(ga, ga, out=tmp)
            xp.subtract(v, tmp, out=tmp)
            xp.sqrt(tmp, out=tmp)
        else:
            xp.sqrt(v, out=tmp)
        tmp += c.eps
        xp.divide(g, tmp, out=tmp)
        if c.momentum:
            b = self.state["momentum_buffer"]
            b *= c.momentum
            b += tmp
            xp.multiply(b, lr, out=tmp)
        else:
            tmp *= lr
        self.p -= tmp


@register("optimizers", AdamConfig)
class Adam(Optimizer):
    """m, v as `_adam_moments`;  m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ) (amsgrad: v̂ from max over time of v);
    θ ← θ − η m̂ / (√v̂ + ε).  Weight decay is coupled (g + λθ)."""

    state_names = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, cfg, params, grads):
        super().__init__(cfg, params, grads)
        if cfg.amsgrad:
            self.state["max_exp_avg_sq"] = xp.zeros_like(params)

    def update(self, lr):
        c, tmp = self.cfg, self.tmp
        b1, b2 = c.betas
        m, v = self.state["exp_avg"], self.state["exp_avg_sq"]
        if self.decoupled and c.weight_decay:
            self.p *= 1.0 - lr * c.weight_decay
        g = self._prepare_grad()
        _adam_moments(m, v, g, b1, b2, tmp)
        bc1 = 1.0 - b1**self.t
        bc2_sqrt = math.sqrt(1.0 - b2**self.t)
        if c.amsgrad:
            vmax = self.state["max_exp_avg_sq"]
            xp.maximum(vmax, v, out=vmax)
            v = vmax
        # m̂/(√v̂ + ε) = m/(√v + ε·√(1 − β₂ᵗ)) · √(1 − β₂ᵗ)/(1 − β₁ᵗ): one pass fewer than dividing v first.
        xp.sqrt(v, out=tmp)
        tmp += c.eps * bc2_sqrt
        xp.divide(m, tmp, out=tmp)
        tmp *= lr * bc2_sqrt / bc1
        self.p -= tmp


@register("optimizers", AdamWConfig)
class AdamW(Adam):
    """Adam with decoupled weight decay: θ ← θ(1 − ηλ) before the Adam step."""

    decoupled = True


@register("optimizers", NAdamConfig)
class NAdam(Optimizer):
    """μₜ = β₁(1 − ½·0.96^(tψ));  m, v as Adam;  v̂ = v/(1 − β₂ᵗ);
    θ ← θ − η(1 − μₜ)/(1 − Πᵢ≤ₜ μᵢ) · g/(√v̂ + ε) − η μₜ₊₁/(1 − Πᵢ≤ₜ₊₁ μᵢ) · m/(√v̂ + ε)."""

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, cfg, params, grads):
        super().__init__(cfg, params, grads)
        self.mu_product = 1.0

    def update(self, lr):
        c, tmp = self.cfg, self.tmp
        b1, b2 = c.betas
        m, v = self.state["exp_avg"], self.state["exp_avg_sq"]
        g = self._prepare_grad()
        t, psi = self.t, c.momentum_decay
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        self.mu_product *= mu
        _adam_moments(m, v, g, b1, b2, tmp)
        denom = xp.sqrt(v / (1.0 - b2**t))
        denom += c.eps
        xp.divide(g, denom, out=tmp)
        tmp *= lr * (1.0 - mu) / (1.0 - self.mu_product)
        self.p -= tmp
        xp.divide(m, denom, out=tmp)
        tmp *= lr * mu_next / (1.0 - self.mu_product * mu_next)
        self.p -= tmp

    def state_dict(self):
        return {**super().state_dict(), "mu_product": self.mu_product}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.mu_product = float(state["mu_product"])


@register("optimizers", RAdamConfig)
class RAdam(Optimizer):
    """m, v as Adam; ρ∞ = 2/(1 − β₂) − 1, ρₜ = ρ∞ − 2tβ₂ᵗ/(1 − β₂ᵗ);  m̂ = m/(1 − β₁ᵗ);
    if ρₜ > 5: r = √((ρₜ−4)(ρₜ−2)ρ∞ / ((ρ∞−4)(ρ∞−2)ρₜ)), θ ← θ − η m̂ r √(1 − β₂ᵗ)/(√v + ε);
    else θ ← θ − η m̂ (the variance is not yet trustworthy: plain momentum)."""

    state_names = ("exp_avg", "exp_avg_sq")

    def update(self, lr):
        c, tmp = self.cfg, self.tmp
        b1, b2 = c.betas
        m, v = self.state["exp_avg"], self.state["exp_avg_sq"]
        g = self._prepare_grad()
        _adam_moments(m, v, g, b1, b2, tmp)
        t = self.t
        bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * b2**t / bc2
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            xp.sqrt(v, out=tmp)
            tmp += c.eps
            xp.divide(m, tmp, out=tmp)
            tmp *= lr * rect * math.sqrt(bc2) / bc1
        else:
            xp.multiply(m, lr / bc1, out=tmp)
        self.p -= tmp
