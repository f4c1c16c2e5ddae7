"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), as lion-pytorch.

The step is the sign of an interpolation between momentum and gradient, so every coordinate
moves by exactly ±η: use a rate 3-10× smaller than AdamW's, and a weight decay as much larger.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from trainkit.backend import xp
from trainkit.optim.optimizers import Optimizer, OptimizerConfig
from trainkit.registry import register


class LionConfig(OptimizerConfig):
    """Lion: the sign of interpolated momentum, evolved by program search (Chen et al. 2023)."""

    name: Literal["lion"] = "lion"
    lr: float = Field(1e-4, gt=0, description="learning rate: every coordinate moves by ±η")
    betas: tuple[float, float] = Field(
        (0.9, 0.99), description="(β₁ for the step's interpolation, β₂ for the momentum)"
    )
    weight_decay: float = Field(0.0, ge=0, description="decoupled decay: θ ← θ(1 − ηλ)")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v):
        for i, b in enumerate(v):
            if not 0.0 <= b <= 1.0:
                raise ValueError(f"invalid beta parameter at index {i}: {b} (each must be in [0, 1])")
        return v


@register("optimizers", LionConfig)
class Lion(Optimizer):
    """θ ← θ(1 − ηλ);  θ ← θ − η·sign(β₁m + (1 − β₁)g);  m ← β₂m + (1 − β₂)g."""

    state_names = ("exp_avg",)

    def update(self, lr):
        c, m, tmp = self.cfg, self.state["exp_avg"], self.tmp
        b1, b2 = c.betas
        if c.weight_decay:
            self.p *= 1.0 - lr * c.weight_decay
        xp.multiply(m, b1, out=tmp)
        tmp += (1.0 - b1) * self.g
        xp.sign(tmp, out=tmp)
        tmp *= lr
        self.p -= tmp
        m *= b2
        m += (1.0 - b2) * self.g
