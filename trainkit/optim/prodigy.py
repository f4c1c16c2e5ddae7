"""Prodigy (Mishchenko & Defazio 2023, "Prodigy: An Expeditiously Adaptive Parameter-Free
Learner"), as the `prodigyopt` package's Prodigy: Adam whose step size d is estimated online
from how far the parameters have moved against the gradients. Leave lr at 1.0 (it multiplies d);
schedules still apply on top, as in the reference.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal, Optional

from pydantic import Field

from trainkit.backend import scalar, xp
from trainkit.optim.optimizers import Optimizer, _Betas
from trainkit.registry import register


class ProdigyConfig(_Betas):
    """Prodigy: learning-rate-free Adam, the step size estimated from the distance travelled (Mishchenko & Defazio 2023)."""

    name: Literal["prodigy"] = "prodigy"
    learning_rate_free: ClassVar[bool] = True  # compare-optimizers --lr-grid auto keeps lr 1.0
    lr: float = Field(1.0, gt=0, description="multiplies the estimated step size d; keep 1.0")
    beta3: Optional[float] = Field(None, ge=0, le=1, description="decay of the d estimate's sums (default √β₂)")
    eps: float = Field(1e-8, gt=0, description="added to √v, scaled by d")
    decouple: bool = Field(True, description="decoupled (AdamW-style) weight decay")
    use_bias_correction: bool = False
    safeguard_warmup: bool = Field(False, description="leave the rate out of the denominator sum during warmup")
    d0: float = Field(1e-6, gt=0, description="initial step-size estimate")
    d_coef: float = Field(1.0, gt=0, description="multiplies the estimate")
    growth_rate: Optional[float] = Field(None, gt=0, description="bound on d's growth factor per step (default none)")


@register("optimizers", ProdigyConfig)
class Prodigy(Optimizer):
    """With d the current estimate and δ = d·η (·bias correction):  m ← β₁m + d(1 − β₁)g,
    v ← β₂v + d²(1 − β₂)g²;  s ← β₃s + (d/d₀)δg;  N ← β₃N + (d/d₀)δ·gᵀ(θ₀ − θ);
    d ← max(d, d_coef·N/‖s‖₁) (capped by growth_rate);  θ ← θ − δ·m/(√v + d·ε)."""

    state_names = ("exp_avg", "exp_avg_sq", "s")

    def __init__(self, cfg, params, grads):
        super().__init__(cfg, params, grads)
        self.state["p0"] = params.copy()
        self.d = self.d_max = cfg.d0
        self.d_numerator, self.k = 0.0, 0
        self.decoupled = cfg.decouple  # else `_prepare_grad` adds λθ to g

    def update(self, lr):
        c, g, tmp = self.cfg, self._prepare_grad(), self.tmp
        b1, b2 = c.betas
        b3 = c.beta3 if c.beta3 is not None else math.sqrt(b2)
        m, v, s, p0 = (self.state[k] for k in ("exp_avg", "exp_avg_sq", "s", "p0"))
        d, k = self.d, self.k
        bias = (1 - b2 ** (k + 1)) ** 0.5 / (1 - b1 ** (k + 1)) if c.use_bias_correction else 1.0
        dlr = d * lr * bias
        xp.subtract(p0, self.p, out=tmp)
        delta_numerator = (d / c.d0) * dlr * scalar(g @ tmp)
        m *= b1
        m += d * (1 - b1) * g
        v *= b2
        v += d * d * (1 - b2) * g * g
        s *= b3
        s += ((d / c.d0) * (d if c.safeguard_warmup else dlr)) * g
        d_denom = scalar(xp.abs(s).sum())
        if d_denom == 0:
            return  # no gradient yet: the reference leaves everything else as it was
        self.d_numerator = self.d_numerator * b3 + delta_numerator
        d_hat = c.d_coef * self.d_numerator / d_denom
        if d == c.d0:
            d = max(d, d_hat)
        self.d_max = max(self.d_max, d_hat)
        self.d = d = self.d_max if c.growth_rate is None else min(self.d_max, d * c.growth_rate)
        if c.weight_decay and c.decouple:
            self.p -= (c.weight_decay * dlr) * self.p
        xp.sqrt(v, out=tmp)
        tmp += d * c.eps
        xp.divide(m, tmp, out=tmp)
        tmp *= dlr
        self.p -= tmp
        self.k += 1

    def state_dict(self):
        extra = {"d": self.d, "d_max": self.d_max, "d_numerator": self.d_numerator, "k": self.k}
        return {**super().state_dict(), **extra}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.d, self.d_max = float(state["d"]), float(state["d_max"])
        self.d_numerator, self.k = float(state["d_numerator"]), int(state["k"])
