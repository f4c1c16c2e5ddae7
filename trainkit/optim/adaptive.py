"""More of torch.optim's per-coordinate adaptive rules: Adamax, Adadelta, Rprop, ASGD, Adafactor.

Same conventions as `optimizers.py` (flat buffers updated in place, torch's names, defaults,
checks and order of operations; notation θ, g, η, λ, t there). Adafactor alone needs each
tensor's shape (it factors the second moment of matrices into row and column averages).
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from trainkit.backend import scalar, xp
from trainkit.optim.optimizers import Optimizer, OptimizerConfig, _Betas, _WeightDecay
from trainkit.optim.tensors import tensor_views
from trainkit.registry import register

# --------------------------------------------------------------------------- schemas


class AdamaxConfig(_Betas):
    """Adamax: Adam with the infinity norm in place of the second moment (torch.optim.Adamax)."""

    name: Literal["adamax"] = "adamax"
    lr: float = Field(2e-3, ge=0, description="learning rate")


class AdadeltaConfig(_WeightDecay):
    """Adadelta: steps scaled by the ratio of running RMS of updates and of gradients (torch.optim.Adadelta)."""

    name: Literal["adadelta"] = "adadelta"
    lr: float = Field(1.0, ge=0, description="scales the delta before it is applied")
    rho: float = Field(0.9, ge=0, le=1, description="decay rate of both running averages")
    eps: float = Field(1e-6, ge=0, description="added inside both square roots")


class RpropConfig(OptimizerConfig):
    """Rprop: per-coordinate step sizes grown or shrunk by the sign agreement of gradients (torch.optim.Rprop)."""

    name: Literal["rprop"] = "rprop"
    lr: float = Field(1e-2, ge=0, description="initial step size (a schedule changes nothing after step 1)")
    etas: tuple[float, float] = Field((0.5, 1.2), description="(η−, η+): shrink and growth factors")
    step_sizes: tuple[float, float] = Field((1e-6, 50.0), description="minimal and maximal step size")
    maximize: bool = Field(False, description="maximize the objective instead of minimizing it")

    @field_validator("etas")
    @classmethod
    def _etas_around_one(cls, v):
        if not 0.0 < v[0] < 1.0 < v[1]:
            raise ValueError(f"invalid eta values: {v[0]}, {v[1]} (need 0 < η− < 1 < η+)")
        return v


class ASGDConfig(_WeightDecay):
    """Averaged SGD with a decaying step size (torch.optim.ASGD)."""

    name: Literal["asgd"] = "asgd"
    lr: float = Field(1e-2, ge=0, description="learning rate")
    lambd: float = Field(1e-4, description="decay term")
    alpha: float = Field(0.75, description="power of the step-size decay")
    t0: float = Field(1e6, description="step at which averaging starts")


class AdafactorConfig(OptimizerConfig):
    """Adafactor: factored second moments for matrices, relative step sizes (torch.optim.Adafactor)."""

    name: Literal["adafactor"] = "adafactor"
    lr: float = Field(1e-2, ge=0, description="caps the relative step size ρₜ = min(η, 1/√t)")
    beta2_decay: float = Field(-0.8, le=0, description="β₂ₜ = 1 − t^beta2_decay")
    eps: tuple[Optional[float], float] = Field(
        (None, 1e-3), description="(ε₁ for the variance, default the dtype's machine epsilon; ε₂ for the RMS of θ)"
    )
    d: float = Field(1.0, ge=1, description="clipping threshold of the update's RMS")
    weight_decay: float = Field(0.0, ge=0, description="decoupled decay: θ ← θ(1 − ηλ)")
    maximize: bool = Field(False, description="maximize the objective instead of minimizing it")

    @field_validator("eps")
    @classmethod
    def _eps_non_negative(cls, v):
        for i, e in enumerate(v):
            if e is not None and e < 0:
                raise ValueError(f"epsilon{i + 1} should be >= 0 but is: {e}")
        return v


# --------------------------------------------------------------------------- rules


@register("optimizers", AdamaxConfig)
class Adamax(Optimizer):
    """m ← β₁m + (1 − β₁)g;  u ← max(β₂u, |g| + ε);  θ ← θ − η/(1 − β₁ᵗ) · m/u.
    ε sits inside the max, as in torch (Kingma & Ba add none)."""

    state_names = ("exp_avg", "exp_inf")

    def update(self, lr):
        c, tmp = self.cfg, self.tmp
        b1, b2 = c.betas
        m, u = self.state["exp_avg"], self.state["exp_inf"]
        g = self._prepare_grad()
        m *= b1
        m += (1.0 - b1) * g
        u *= b2
        xp.abs(g, out=tmp)
        tmp += c.eps
        xp.maximum(u, tmp, out=u)
        xp.divide(m, u, out=tmp)
        tmp *= lr / (1.0 - b1**self.t)
        self.p -= tmp


@register("optimizers", AdadeltaConfig)
class Adadelta(Optimizer):
    """v ← ρv + (1 − ρ)g²;  Δ = √(u + ε)/√(v + ε) · g;  u ← ρu + (1 − ρ)Δ²;  θ ← θ − ηΔ."""

    state_names = ("square_avg", "acc_delta")

    def update(self, lr):
        c, delta = self.cfg, self.tmp
        v, u = self.state["square_avg"], self.state["acc_delta"]
        g = self._prepare_grad()
        v *= c.rho
        v += (1.0 - c.rho) * g * g
        xp.add(u, c.eps, out=delta)
        xp.sqrt(delta, out=delta)
        delta /= xp.sqrt(v + c.eps)
        delta *= g
        u *= c.rho
        u += (1.0 - c.rho) * delta * delta
        delta *= lr
        self.p -= delta


@register("optimizers", RpropConfig)
class Rprop(Optimizer):
    """s = sign(gₜ·gₜ₋₁);  step ← clip(step·(η+ if s > 0, η− if s < 0, 1 if s = 0), min, max);
    where s < 0 the gradient is taken as 0 (no move, and no sign to compare next time);
    θ ← θ − sign(g)·step.  step starts at η (torch reads lr only then)."""

    state_names = ("prev", "step_size")

    def update(self, lr):
        c = self.cfg
        prev, size = self.state["prev"], self.state["step_size"]
        g = self._prepare_grad()
        if self.t == 1:
            size[...] = lr
        s = xp.sign(g * prev)
        factor = xp.where(s > 0, c.etas[1], xp.where(s < 0, c.etas[0], 1.0))
        size *= factor
        xp.clip(size, c.step_sizes[0], c.step_sizes[1], out=size)
        xp.copyto(prev, g)
        prev[s < 0] = 0.0
        self.p -= xp.sign(prev) * size


@register("optimizers", ASGDConfig)
class ASGD(Optimizer):
    """θ ← θ(1 − λ_d ηₜ) − ηₜ g;  θ̄ ← θ̄ + μₜ(θ − θ̄) (θ̄ = θ while μₜ = 1);
    then ηₜ₊₁ = η/(1 + λ_d η t)^α and μₜ₊₁ = 1/max(1, t − t0). η₁ = η. θ̄ is kept in
    the state (`ax`) as torch keeps it; training and evaluation use θ."""

    state_names = ("ax",)

    def __init__(self, cfg, params, grads):
        super().__init__(cfg, params, grads)
        self.eta, self.mu = cfg.lr, 1.0

    def update(self, lr):
        c, ax = self.cfg, self.state["ax"]
        g = self._prepare_grad()
        if self.t == 1:
            self.eta = lr  # torch takes η₁ from the group's lr at the first step
        self.p *= 1.0 - c.lambd * self.eta
        xp.multiply(g, self.eta, out=self.tmp)
        self.p -= self.tmp
        if self.mu != 1.0:
            xp.subtract(self.p, ax, out=self.tmp)
            self.tmp *= self.mu
            ax += self.tmp
        else:
            ax[...] = self.p
        self.eta = lr / (1.0 + c.lambd * lr * self.t) ** c.alpha
        self.mu = 1.0 / max(1.0, self.t - c.t0)

    def state_dict(self):
        return {**super().state_dict(), "eta": self.eta, "mu": self.mu}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.eta, self.mu = float(state["eta"]), float(state["mu"])


@register("optimizers", AdafactorConfig)
class Adafactor(Optimizer):
    """β̂₂ = 1 − t^c;  matrices: R ← β̂₂R + (1−β̂₂)·mean_cols(g²), C likewise over rows, V = RC/mean(R);
    other tensors: V ← β̂₂V + (1−β̂₂)g².  U = g/√max(V, ε₁²);  α = max(ε₂, RMS(θ))·min(η, 1/√t);
    θ ← θ(1 − ηλ) − α/max(1, RMS(U)/d) · U  (per tensor; matrices are the last two axes)."""

    uses_shapes = True
    decoupled = True

    def __init__(self, cfg, params, grads, shapes=None):
        super().__init__(cfg, params, grads)
        self.params, self.grads = tensor_views(params, shapes), tensor_views(grads, shapes)
        for name, p in self.params.items():
            if p.ndim > 1:
                self.state[f"row_var/{name}"] = xp.zeros(p.shape[:-1] + (1,), p.dtype)
                self.state[f"col_var/{name}"] = xp.zeros(p.shape[:-2] + (1, p.shape[-1]), p.dtype)
            else:
                self.state[f"variance/{name}"] = xp.zeros_like(p)

    def update(self, lr):
        c = self.cfg
        self._prepare_grad()  # maximize; the decay is decoupled, below
        eps1 = c.eps[0] if c.eps[0] is not None else float(xp.finfo(self.p.dtype).eps)
        one_minus_beta2 = self.t**c.beta2_decay
        rho = min(lr, 1.0 / self.t**0.5)
        for name, p in self.params.items():
            g = self.grads[name]
            alpha = max(c.eps[1], scalar(xp.linalg.norm(p)) / p.size**0.5) * rho
            if c.weight_decay:
                p *= 1.0 - lr * c.weight_decay
            g2 = g * g
            if p.ndim > 1:
                row, col = self.state[f"row_var/{name}"], self.state[f"col_var/{name}"]
                row += one_minus_beta2 * (g2.mean(axis=-1, keepdims=True) - row)
                col += one_minus_beta2 * (g2.mean(axis=-2, keepdims=True) - col)
                var = row @ col
                var /= xp.maximum(row.mean(axis=-2, keepdims=True), eps1)
            else:
                var = self.state[f"variance/{name}"]
                var += one_minus_beta2 * (g2 - var)
                var = var.copy()
            u = g / xp.sqrt(xp.maximum(var, eps1 * eps1))
            denom = max(1.0, scalar(xp.linalg.norm(u)) / (u.size**0.5 * c.d))
            p -= (alpha / denom) * u
