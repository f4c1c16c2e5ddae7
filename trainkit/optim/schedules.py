"""Learning-rate schedules, stepped once per epoch as torch.optim.lr_scheduler's are, or
once per optimizer step with `interval: step` (then step_size, milestones, T_max and
warmup_epochs count steps).

`lr(i)` gives the rate in force during epoch (or step) `i` (0-based) from the optimizer's
base rate η₀; `observe(epoch, metrics)` lets a schedule react to the epoch's results (only
`reduce_on_plateau` does). The rate in force at the end of each epoch is in the history as `lr`.
"""

from __future__ import annotations

import bisect
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


# --------------------------------------------------------------------------- cycles, restarts, sequences


class OneCycleConfig(ScheduleConfig):
    """One cycle (Smith & Topin 2018): warm up to max_lr, then anneal far below the start (torch.optim.lr_scheduler.OneCycleLR)."""

    name: Literal["one_cycle"] = "one_cycle"
    total_steps: int = Field(ge=1, description="length of the cycle (epochs, or steps with interval: step)")
    max_lr: Optional[float] = Field(None, gt=0, description="peak rate (default: the optimizer's lr)")
    pct_start: float = Field(0.3, ge=0, le=1, description="fraction of the cycle spent rising")
    anneal_strategy: Literal["cos", "linear"] = "cos"
    div_factor: float = Field(25.0, gt=0, description="the cycle starts at max_lr / div_factor")
    final_div_factor: float = Field(1e4, gt=0, description="and ends at max_lr / (div_factor · final_div_factor)")
    three_phase: bool = Field(False, description="rise, fall back to the start, then anneal (fast.ai's variant)")


class CyclicConfig(ScheduleConfig):
    """Cyclical rates (Smith 2015) between the optimizer's lr and max_lr (torch.optim.lr_scheduler.CyclicLR)."""

    name: Literal["cyclic"] = "cyclic"
    max_lr: float = Field(gt=0, description="upper end of the cycle (the optimizer's lr is the lower)")
    step_size_up: int = Field(2000, ge=1, description="epochs (or steps) rising")
    step_size_down: Optional[int] = Field(None, ge=1, description="epochs (or steps) falling (default step_size_up)")
    mode: Literal["triangular", "triangular2", "exp_range"] = "triangular"
    gamma: float = Field(1.0, gt=0, description="exp_range: the amplitude is scaled by gamma^step")


class CosineWarmRestartsConfig(ScheduleConfig):
    """Cosine annealing restarted every T_i epochs, T_i growing by T_mult (SGDR; torch's CosineAnnealingWarmRestarts)."""

    name: Literal["cosine_warm_restarts"] = "cosine_warm_restarts"
    T_0: int = Field(ge=1, description="length of the first period")
    T_mult: int = Field(1, ge=1, description="each period is T_mult times the previous")
    eta_min: float = Field(0.0, ge=0)


class PolynomialConfig(ScheduleConfig):
    """Polynomial decay to zero over total_iters (torch.optim.lr_scheduler.PolynomialLR)."""

    name: Literal["polynomial"] = "polynomial"
    total_iters: int = Field(5, ge=1, description="epochs (or steps) until the rate reaches 0")
    power: float = Field(1.0, ge=0)


_Member = named_union(
    ConstantConfig,
    StepConfig,
    MultiStepConfig,
    ExponentialConfig,
    CosineConfig,
    LinearWarmupConfig,
    OneCycleConfig,
    CyclicConfig,
    CosineWarmRestartsConfig,
    PolynomialConfig,
)


class SequentialConfig(ScheduleConfig):
    """Schedules one after another, switching at the milestones (torch.optim.lr_scheduler.SequentialLR)."""

    name: Literal["sequential"] = "sequential"
    schedules: list[_Member] = Field(min_length=1, description="each counts its epochs from its own start")
    milestones: list[Annotated[int, Field(ge=1)]] = Field(description="where each next schedule starts")

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, v, info):
        n = len(info.data.get("schedules") or ())
        if n and len(v) != n - 1:
            raise ValueError(f"{n} schedules need {n - 1} milestones, got {len(v)}")
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"milestones must be strictly increasing, got {v}")
        return v

    @field_validator("schedules")
    @classmethod
    def _one_interval(cls, v):
        for i, member in enumerate(v):
            if "interval" in member.model_fields_set:
                raise ValueError(f"schedules[{i}] sets interval: set it once, on the sequential schedule")
        return v


@register("schedules", OneCycleConfig)
class OneCycle(Schedule):
    """η rises from η_max/d to η_max over the first pct_start·T, then anneals (cos or linear) to
    η_max/(d·f) at T − 1 (three_phase: back to η_max/d by 2·pct_start·T, then to the floor);
    it stays at that floor from T − 1 on (torch raises past T)."""

    def __init__(self, cfg, base_lr):
        super().__init__(cfg, base_lr)
        top = cfg.max_lr if cfg.max_lr is not None else base_lr
        low = top / cfg.div_factor
        floor, T, pct = low / cfg.final_div_factor, cfg.total_steps, cfg.pct_start
        if cfg.three_phase:
            self.phases = [(pct * T - 1, low, top), (2 * pct * T - 2, top, low), (T - 1, low, floor)]
        else:
            self.phases = [(pct * T - 1, low, top), (T - 1, top, floor)]

    def lr(self, epoch):
        step = min(epoch, self.cfg.total_steps - 1)
        start = 0.0
        for i, (end, a, b) in enumerate(self.phases):
            if step <= end or i == len(self.phases) - 1:
                pct = (step - start) / (end - start)
                if self.cfg.anneal_strategy == "cos":
                    return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)
                return (b - a) * pct + a
            start = end


@register("schedules", CyclicConfig)
class Cyclic(Schedule):
    """x = position in the current cycle (0 to 1); h = x/r rising (r = up/(up + down)), (x − 1)/(r − 1)
    falling;  η = η₀ + (η_max − η₀)·h·s with s = 1 (triangular), 1/2^(cycle − 1) (triangular2),
    γ^e (exp_range)."""

    def lr(self, epoch):
        c = self.cfg
        up = float(c.step_size_up)
        total = up + float(c.step_size_down if c.step_size_down is not None else c.step_size_up)
        ratio = up / total
        cycle = math.floor(1 + epoch / total)
        x = 1.0 + epoch / total - cycle
        h = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        scale = {"triangular": 1.0, "triangular2": 1 / (2.0 ** (cycle - 1)), "exp_range": c.gamma**epoch}[c.mode]
        return self.base + (c.max_lr - self.base) * h * scale


@register("schedules", CosineWarmRestartsConfig)
class CosineWarmRestarts(Schedule):
    """T_cur = epochs since the last restart, T_i the current period;
    η = η_min + ½(η₀ − η_min)(1 + cos(π T_cur / T_i))."""

    def lr(self, epoch):
        c = self.cfg
        t_cur, t_i = epoch, c.T_0
        while t_cur >= t_i:  # whole periods, as torch's step() counts them
            t_cur, t_i = t_cur - t_i, t_i * c.T_mult
        return c.eta_min + (self.base - c.eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


@register("schedules", PolynomialConfig)
class Polynomial(Schedule):
    """η = η₀ (1 − min(e, T)/T)^power."""

    def lr(self, epoch):
        c = self.cfg
        return self.base * (1.0 - min(c.total_iters, epoch) / c.total_iters) ** c.power


@register("schedules", SequentialConfig)
class Sequential(Schedule):
    """η = schedule_k's rate at e − m_k, where m_k is the last milestone ≤ e (m_0 = 0)."""

    def __init__(self, cfg, base_lr):
        super().__init__(cfg, base_lr)
        self.members = [build_schedule(m, base_lr) for m in cfg.schedules]
        self.starts = [0, *cfg.milestones]

    def lr(self, epoch):
        k = bisect.bisect_right(self.starts, epoch) - 1
        return self.members[k].lr(epoch - self.starts[k])


def build_schedule(cfg, base_lr: float) -> Schedule:
    from trainkit import registry

    if cfg is None:
        return Constant(None, base_lr)
    return registry.get("schedules", cfg.name).build(cfg, base_lr)
