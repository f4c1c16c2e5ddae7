"""Learning-rate schedules, stepped once per epoch as torch.optim.lr_scheduler's are, or
once per optimizer step with `interval: step` (then step_size, milestones, T_max and
warmup_epochs count steps).

`lr(i)` gives the rate in force during epoch (or step) `i` (0-based) from the optimizer's
base rate η₀; `observe(epoch, metrics)` lets a schedule react to the epoch's results (only
`reduce_on_plateau` does). The rate in force at the end of each epoch is in the history as `lr`.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional

from pydantic import Field, field_validator

from trainkit.config.base import Component, named_union
from trainkit.registry import register


class ScheduleConfig(Component):
    interval: Literal["epoch", "step"] = Field(
        "epoch", description="epoch: set once per epoch; step: every optimizer step (sizes then count steps)"
    )


class ConstantConfig(ScheduleConfig):
    """Constant rate η₀."""

    name: Literal["constant"] = "constant"


class StepConfig(ScheduleConfig):
    """Multiply the rate by gamma every step_size epochs: η₀ γ^⌊e/step_size⌋."""

    name: Literal["step"] = "step"
    step_size: int = Field(ge=1)
    gamma: float = Field(0.1, gt=0)


class MultiStepConfig(ScheduleConfig):
    """Multiply the rate by gamma at each milestone epoch."""

    name: Literal["multistep"] = "multistep"
    milestones: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    gamma: float = Field(0.1, gt=0)

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, v):
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"milestones must be strictly increasing, got {v}")
        return v


class ExponentialConfig(ScheduleConfig):
    """Multiply the rate by gamma every epoch: η₀ γ^e."""

    name: Literal["exponential"] = "exponential"
    gamma: float = Field(gt=0)


class CosineConfig(ScheduleConfig):
    """Cosine annealing from η₀ to eta_min over T_max epochs."""

    name: Literal["cosine"] = "cosine"
    T_max: int = Field(ge=1, description="epochs of one half cosine")
    eta_min: float = Field(0.0, ge=0)


_Then = named_union(StepConfig, MultiStepConfig, ExponentialConfig, CosineConfig, ConstantConfig)


class LinearWarmupConfig(ScheduleConfig):
    """Ramp linearly from start_factor·η₀ to η₀ over warmup_epochs, then follow `then`."""

    name: Literal["linear_warmup"] = "linear_warmup"
    warmup_epochs: int = Field(ge=1)
    start_factor: float = Field(0.1, gt=0, le=1)
    then: Optional[_Then] = Field(None, description="schedule after the warmup (epochs counted from its end)")


class ReduceOnPlateauConfig(ScheduleConfig):
    """Multiply the rate by factor when `monitor` stops improving for `patience` epochs."""

    name: Literal["reduce_on_plateau"] = "reduce_on_plateau"
    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    factor: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(10, ge=0)
    threshold: float = Field(1e-4, ge=0, description="relative improvement that counts")
    cooldown: int = Field(0, ge=0)
    min_lr: float = Field(0.0, ge=0)

    @field_validator("interval")
    @classmethod
    def _per_epoch(cls, v):
        if v != "epoch":
            raise ValueError("reduce_on_plateau reacts to each epoch's metrics: interval must be epoch")
        return v


class Schedule:
    def __init__(self, cfg, base_lr: float):
        self.cfg, self.base = cfg, base_lr

    def lr(self, epoch: int) -> float:
        return self.base

    def observe(self, epoch: int, metrics: dict) -> None:
        """Called after each epoch with its metrics."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@register("schedules", ConstantConfig)
class Constant(Schedule):
    """η = η₀."""


@register("schedules", StepConfig)
class Step(Schedule):
    """η = η₀ γ^⌊e / step_size⌋."""

    def lr(self, epoch):
        return self.base * self.cfg.gamma ** (epoch // self.cfg.step_size)


@register("schedules", MultiStepConfig)
class MultiStep(Schedule):
    """η = η₀ γ^(number of milestones ≤ e)."""

    def lr(self, epoch):
        return self.base * self.cfg.gamma ** sum(m <= epoch for m in self.cfg.milestones)


@register("schedules", ExponentialConfig)
class Exponential(Schedule):
    """η = η₀ γ^e."""

    def lr(self, epoch):
        return self.base * self.cfg.gamma**epoch


@register("schedules", CosineConfig)
class Cosine(Schedule):
    """η = η_min + ½(η₀ − η_min)(1 + cos(π e / T_max)), periodic beyond T_max as torch's closed form."""

    def lr(self, epoch):
        c = self.cfg
        return c.eta_min + 0.5 * (self.base - c.eta_min) * (1.0 + math.cos(math.pi * epoch / c.T_max))


@register("schedules", LinearWarmupConfig)
class LinearWarmup(Schedule):
    """η = η₀ (f + (1 − f) e / W) for e < W, then the `then` schedule at epoch e − W."""

    def __init__(self, cfg, base_lr):
        super().__init__(cfg, base_lr)
        self.then = build_schedule(cfg.then, base_lr) if cfg.then else Constant(cfg, base_lr)

    def lr(self, epoch):
        c = self.cfg
        if epoch < c.warmup_epochs:
            return self.base * (c.start_factor + (1.0 - c.start_factor) * epoch / c.warmup_epochs)
        return self.then.lr(epoch - c.warmup_epochs)


@register("schedules", ReduceOnPlateauConfig)
class ReduceOnPlateau(Schedule):
    """η ← max(η·factor, min_lr) after `patience` epochs without a relative improvement of
    `threshold` in `monitor` (torch's ReduceLROnPlateau, threshold_mode rel)."""

    def __init__(self, cfg, base_lr):
        super().__init__(cfg, base_lr)
        self.current = base_lr
        self.best = math.inf if cfg.mode == "min" else -math.inf
        self.bad_epochs = 0
        self.cooldown_left = 0

    def lr(self, epoch):
        return self.current

    def _better(self, x):
        t = self.cfg.threshold
        return x < self.best * (1.0 - t) if self.cfg.mode == "min" else x > self.best * (1.0 + t)

    def observe(self, epoch, metrics):
        c = self.cfg
        x = metrics.get(c.monitor)
        if x is None:
            return
        if self._better(x):
            self.best, self.bad_epochs = x, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > c.patience:
            self.current = max(self.current * c.factor, c.min_lr)
            self.cooldown_left, self.bad_epochs = c.cooldown, 0

    def state_dict(self):
        return {
            "current": self.current,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "cooldown_left": self.cooldown_left,
        }

    def load_state_dict(self, state):
        self.current, self.best = float(state["current"]), float(state["best"])
        self.bad_epochs, self.cooldown_left = int(state["bad_epochs"]), int(state["cooldown_left"])


def build_schedule(cfg, base_lr: float) -> Schedule:
    from trainkit import registry

    if cfg is None:
        return Constant(None, base_lr)
    return registry.get("schedules", cfg.name).build(cfg, base_lr)
