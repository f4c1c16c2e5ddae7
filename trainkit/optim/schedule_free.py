"""Schedule-free SGD and AdamW (Defazio et al. 2024, "The Road Less Scheduled"), as the
`schedulefree` package's SGDScheduleFree and AdamWScheduleFree.

Three sequences: z takes the base optimizer's steps, x is a running average of z (the point
to evaluate and to keep), and the gradient is taken at their interpolation y = (1 − β)z + βx.
The parameters hold y while training and x while evaluating: the trainer calls
`switch_to_eval()` after each epoch's steps (validation, checkpoints, the final parameters and
test metrics see x) and `switch_to_train()` before the next, exactly where the reference asks
its users to switch with its eval and train methods. No schedule is needed (a linear warmup is
built in); the rate may still be scheduled, as in the reference.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trainkit.backend import xp
from trainkit.optim.optimizers import Optimizer, OptimizerConfig, _Betas
from trainkit.registry import register


class _ScheduleFreeConfig(OptimizerConfig):
    weight_decay: float = Field(0.0, ge=0, description="λy added to the step direction")
    warmup_steps: int = Field(0, ge=0, description="linear warmup of the rate over this many steps")
    r: float = Field(0.0, description="polynomial weighting of the average: weight ∝ t^r")
    weight_lr_power: float = Field(2.0, description="weights in the average ∝ (max rate so far)^power")


class ScheduleFreeSGDConfig(_ScheduleFreeConfig):
    """Schedule-free SGD: momentum replaced by averaging and interpolation (Defazio et al. 2024)."""

    name: Literal["schedule_free_sgd"] = "schedule_free_sgd"
    lr: float = Field(1.0, ge=0, description="learning rate")
    momentum: float = Field(0.9, gt=0, lt=1, description="β: where between z and x the gradient is taken")


class ScheduleFreeAdamWConfig(_ScheduleFreeConfig, _Betas):
    """Schedule-free AdamW: Adam's scaling on the schedule-free iterates (Defazio et al. 2024)."""

    name: Literal["schedule_free_adamw"] = "schedule_free_adamw"
    lr: float = Field(0.0025, ge=0, description="learning rate")
    weight_decay: float = Field(0.0, ge=0, description="λy added to the normalised step direction")


def _lerp(a, b, w: float) -> None:
    """a ← a + w(b − a) in place, with torch.lerp's two formulas (exact at w = 1)."""
    if w < 0.5:
        a += w * (b - a)
    else:
        a[...] = b - (b - a) * (1.0 - w)


class _ScheduleFree(Optimizer):
    """ηₜ = η·min(1, t/warmup);  cₜ = wₜ/Σwᵢ with wₜ = t^r·(max ηᵢ)^power;  d = direction(g) + λy;
    y ← (1 − cₜ)y + cₜz − ηₜ(1 − β(1 − cₜ))·d  (= the interpolation of the new x and z);  z ← z − ηₜd."""

    averaged_eval = (
        True  # the trainer evaluates and saves at x: switch_to_eval() after training steps, switch_to_train() before
    )
    decoupled = True  # `_prepare_grad` only negates (maximize); the decay is λy in the direction

    def __init__(self, cfg, params, grads):
        super().__init__(cfg, params, grads)
        self.state["z"] = params.copy()
        self.weight_sum, self.lr_max, self.train_mode = 0.0, -1.0, True

    def direction(self, g):
        return g

    def update(self, lr):
        if not self.train_mode:
            raise RuntimeError("a schedule-free optimizer steps in train mode: call switch_to_train() first")
        c, y, z, k = self.cfg, self.p, self.state["z"], self.t - 1
        lr = lr * ((k + 1) / c.warmup_steps if k < c.warmup_steps else 1.0)
        self.lr_max = max(lr, self.lr_max)
        weight = (k + 1) ** c.r * self.lr_max**c.weight_lr_power
        self.weight_sum += weight
        ckp1 = weight / self.weight_sum if self.weight_sum else 0.0
        d = self.direction(self._prepare_grad())
        if c.weight_decay:
            d += c.weight_decay * y
        _lerp(y, z, ckp1)
        y += lr * (self.beta * (1 - ckp1) - 1) * d
        z -= lr * d

    def switch_to_eval(self) -> None:
        """Parameters ← x = (y − (1 − β)z)/β."""
        if self.train_mode:
            _lerp(self.p, self.state["z"], 1 - 1 / self.beta)
            self.train_mode = False

    def switch_to_train(self) -> None:
        """Parameters ← y = (1 − β)z + βx."""
        if not self.train_mode:
            _lerp(self.p, self.state["z"], 1 - self.beta)
            self.train_mode = True

    def state_dict(self):
        extra = {"weight_sum": self.weight_sum, "lr_max": self.lr_max, "train_mode": self.train_mode}
        return {**super().state_dict(), **extra}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.weight_sum, self.lr_max = float(state["weight_sum"]), float(state["lr_max"])
        self.train_mode = bool(state["train_mode"])


@register("optimizers", ScheduleFreeSGDConfig)
class ScheduleFreeSGD(_ScheduleFree):
    """The schedule-free step with direction g (β = momentum)."""

    @property
    def beta(self):
        return self.cfg.momentum


@register("optimizers", ScheduleFreeAdamWConfig)
class ScheduleFreeAdamW(_ScheduleFree):
    """The schedule-free step with direction g/(√(v/(1 − β₂ᵗ)) + ε), v ← β₂v + (1 − β₂)g² (β = β₁)."""

    def __init__(self, cfg, params, grads):
        super().__init__(cfg, params, grads)
        self.state["exp_avg_sq"] = xp.zeros_like(params)

    @property
    def beta(self):
        return self.cfg.betas[0]

    def direction(self, g):
        b2, v, tmp = self.cfg.betas[1], self.state["exp_avg_sq"], self.tmp
        v *= b2
        v += (1 - b2) * g * g
        xp.divide(v, 1 - b2**self.t, out=tmp)
        xp.sqrt(tmp, out=tmp)
        tmp += self.cfg.eps
        xp.divide(g, tmp, out=tmp)
        return tmp
