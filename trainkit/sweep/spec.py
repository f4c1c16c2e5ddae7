"""The `sweep:` block of a config, close to W&B's sweep schema; the rest of the file is the
base config every trial starts from.

    sweep:
      method: random               # grid | random | tpe
      metric: {name: val_loss, goal: minimize}
      parameters:                  # dotted config keys, as --set takes them
        optimizer.lr: {distribution: log_uniform, min: 1.0e-4, max: 1.0e-1}
        model.hidden: {values: [[32], [64, 64]]}
      num_samples: 20              # random / tpe: points to try (grid: every combination)
      seeds: 1                     # each point run with this many seeds, aggregated
      early_terminate: {type: asha, min_epochs: 1, eta: 3}
      max_failures: 3              # stop the sweep after this many failed trials
      seed: 0                      # the sweep's own seed: sampling and every trial's seed
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from trainkit.config.base import Strict


class Parameter(Strict):
    """One swept key: a list of `values`, or a `distribution` on [min, max]:
    uniform U(min, max); log_uniform exp(U(ln min, ln max)); int_uniform an integer in
    {min, ..., max}, each equally likely."""

    values: Optional[list[Any]] = Field(None, min_length=1, description="the values to try")
    distribution: Optional[Literal["uniform", "log_uniform", "int_uniform"]] = None
    min: Optional[float] = None
    max: Optional[float] = None

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.values is None) == (self.distribution is None):
            raise ValueError("give either `values: [...]` or `distribution:` with min and max")
        if self.distribution is not None:
            if self.min is None or self.max is None:
                raise ValueError(f"distribution {self.distribution} needs both min and max")
            if not (math.isfinite(self.min) and math.isfinite(self.max)) or self.min >= self.max:
                raise ValueError(f"min must be below max, got min={self.min:g}, max={self.max:g}")
            if self.distribution == "log_uniform" and self.min <= 0:
                raise ValueError(f"log_uniform needs min > 0, got {self.min:g}")
            if self.distribution == "int_uniform" and not (self.min.is_integer() and self.max.is_integer()):
                raise ValueError("int_uniform needs whole numbers for min and max")
        elif self.min is not None or self.max is not None:
            raise ValueError("min and max go with a distribution, not with values")
        return self


class Metric(Strict):
    name: str = Field("val_loss", description="a metric the runs record: val_loss, val_accuracy, train_loss, ...")
    goal: Literal["minimize", "maximize"] = "minimize"


class Asha(Strict):
    """Successive halving on the epoch budget: every trial runs min_epochs (rung 0); the best
    1/eta of a rung continue to eta times as many epochs, up to train.epochs."""

    type: Literal["asha"]
    min_epochs: int = Field(1, ge=1, description="epochs of the first rung")
    eta: int = Field(3, ge=2, description="keep the best 1/eta at each rung; epochs grow eta times")


class SweepSpec(Strict):
    method: Literal["grid", "random", "tpe"]
    metric: Metric = Metric()
    parameters: dict[str, Parameter] = Field(..., min_length=1, description="dotted config keys to sweep")
    num_samples: Optional[int] = Field(None, ge=1, le=1_000_000, description="points to try (random, tpe)")
    seeds: int = Field(1, ge=1, le=1000, description="run each point with this many seeds")
    early_terminate: Optional[Asha] = None
    max_failures: Optional[int] = Field(None, ge=1, description="stop the sweep after this many failed trials")
    seed: int = Field(0, ge=0, lt=2**63, description="the sweep's seed: sampling and the trials' seeds")

    @model_validator(mode="after")
    def _method_rules(self):
        if self.method == "grid":
            drawn = [k for k, p in self.parameters.items() if p.values is None]
            if drawn:
                raise ValueError(f"grid needs `values:` for every parameter; {', '.join(drawn)} has a distribution")
            if self.num_samples is not None:
                raise ValueError("grid runs every combination: leave num_samples out")
        elif self.num_samples is None:
            raise ValueError(f"method {self.method} needs num_samples")
        if self.method == "tpe" and self.early_terminate is not None:
            raise ValueError("tpe chooses points from finished trials: early_terminate goes with grid or random")
        return self
