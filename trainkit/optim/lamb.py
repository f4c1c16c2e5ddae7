"""LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning"), as torch-optimizer's Lamb.

Adam's direction, rescaled per tensor so that its step is proportional to the tensor's own
norm (the layer-wise "trust ratio"). Needs each tensor's shape; the playground's point is one
tensor.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator

from trainkit.backend import scalar, xp
from trainkit.optim.optimizers import Optimizer, OptimizerConfig, _adam_moments, _Betas
from trainkit.optim.tensors import tensor_views
from trainkit.registry import register


class LambConfig(OptimizerConfig):
    """LAMB: Adam's direction with a per-tensor trust ratio ‖θ‖/‖step‖ (You et al. 2020)."""

    name: Literal["lamb"] = "lamb"
    lr: float = Field(1e-3, gt=0, description="learning rate")
    betas: tuple[float, float] = Field((0.9, 0.999), description="decay rates of the two moments")
    eps: float = Field(1e-6, ge=0, description="added to √v")
    weight_decay: float = Field(0.0, ge=0, description="λθ added to the Adam step before the trust ratio")
    clamp_value: float = Field(10.0, ge=0, description="‖θ‖ is clipped to this in the trust ratio")
    adam: bool = Field(False, description="trust ratio 1: plain Adam (without bias correction) plus decay")
    debias: bool = Field(False, description="apply Adam's bias correction √(1 − β₂ᵗ)/(1 − β₁ᵗ)")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v):
        return _Betas._betas_in_range(v)


@register("optimizers", LambConfig)
class Lamb(Optimizer):
    """m, v as Adam;  r = m/(√v + ε) + λθ;  per tensor: φ = min(‖θ‖, clamp)/‖r‖ (1 if either is 0);
    θ ← θ − η·b·φ·r, with b = √(1 − β₂ᵗ)/(1 − β₁ᵗ) if debias else 1."""

    uses_shapes = True
    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, cfg, params, grads, shapes=None):
        super().__init__(cfg, params, grads)
        self.tensors = list(zip(tensor_views(params, shapes).values(), tensor_views(self.tmp, shapes).values()))

    def update(self, lr):
        c, tmp = self.cfg, self.tmp
        b1, b2 = c.betas
        m, v = self.state["exp_avg"], self.state["exp_avg_sq"]
        _adam_moments(m, v, self.g, b1, b2, tmp)
        bias = math.sqrt(1 - b2**self.t) / (1 - b1**self.t) if c.debias else 1.0
        xp.sqrt(v, out=tmp)
        tmp += c.eps
        xp.divide(m, tmp, out=tmp)
        if c.weight_decay:
            tmp += c.weight_decay * self.p
        for p, r in self.tensors:  # r: this tensor's part of the step in `tmp`
            w_norm = min(scalar(xp.linalg.norm(p)), c.clamp_value)
            r_norm = scalar(xp.linalg.norm(r))
            trust = 1.0 if c.adam or w_norm == 0 or r_norm == 0 else w_norm / r_norm
            r *= lr * bias * trust
        self.p -= tmp
