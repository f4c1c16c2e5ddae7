"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates", §3.3; fastai's lr_find).

From a fresh copy of the config's initial model, train with the rate growing exponentially
from `start_lr` to `end_lr` over `steps` optimizer steps (mini-batches as the config says,
epochs repeating as needed), recording the loss of each batch. The loss is smoothed by a
bias-corrected exponential average (β = 0.98, as fastai), and the test stops early once the
smoothed loss exceeds `diverge` × its minimum (or turns non-finite). Two suggestions:

- `minimum`: the rate at the smoothed minimum, divided by 10 (fastai v1's "min/10"): the loss
  still falls fast there, and a tenth of the edge leaves room for the schedule and the noise;
- `steepest`: the rate where the smoothed loss falls fastest against log(rate) (fastai's
  "steep"), looked for before the minimum.

`suggested_lr` is the one `suggest` names (default `minimum`, the steadier of the two).
Nothing is written: the run the config describes is untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from trainkit.config import LoadedConfig

SMOOTHING = 0.98


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # each step's batch loss (at the rate in force for that step)
    smoothed: list[float]
    suggestion: str  # "minimum" or "steepest"
    suggested_lr: float | None
    minimum_lr: float | None  # rate at the smoothed minimum / 10
    steepest_lr: float | None
    stop_reason: str
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        finite = [v if math.isfinite(v) else None for v in self.losses]
        return {
            "suggested_lr": self.suggested_lr,
            "suggestion": self.suggestion,
            "minimum_lr": self.minimum_lr,
            "steepest_lr": self.steepest_lr,
            "stop_reason": self.stop_reason,
            "steps": len(self.lrs),
            "lrs": self.lrs,
            "losses": finite,
            "smoothed": [v if math.isfinite(v) else None for v in self.smoothed],
            "info": self.info,
        }


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """Bias-corrected exponential moving average: aₜ = βaₜ₋₁ + (1 − β)ℓₜ, reported as aₜ/(1 − βᵗ)."""
    out, avg = [], 0.0
    for t, loss in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta**t))
    return out


def suggestions(lrs: list[float], smoothed: list[float]) -> tuple[float | None, float | None]:
    """(rate at the smoothed minimum / 10, rate of steepest descent before that minimum)."""
    if len(smoothed) < 3:
        return None, None
    best = int(np.argmin(smoothed))
    if best == 0:
        return None, None  # the loss never fell below its start: nothing to suggest
    minimum = lrs[best] / 10
    if best < 2:
        return minimum, None
    slopes = np.gradient(np.asarray(smoothed[: best + 1]), np.log(np.asarray(lrs[: best + 1])))
    return minimum, float(lrs[int(np.argmin(slopes))])


def check_options(start_lr: float, end_lr: float, steps: int, diverge: float, suggest: str) -> None:
    from trainkit.errors import ConfigError

    for option, value, hint in (
        ("--start-lr", start_lr, "e.g. --start-lr 1e-7"),
        ("--end-lr", end_lr, "e.g. --end-lr 10"),
        ("--diverge", diverge, "e.g. --diverge 4 (larger lets the ramp run further)"),
    ):  # checked first, so that nan or inf is named for what it is, not as a failed comparison
        if not math.isfinite(value):
            raise ConfigError.one(option, f"must be a finite number, got {value:g}", hint)
    if not start_lr > 0:
        raise ConfigError.one("--start-lr", f"must be a positive number, got {start_lr:g}", "e.g. --start-lr 1e-7")
    if not end_lr > start_lr:
        raise ConfigError.one(
            "--end-lr", f"must be larger than --start-lr ({start_lr:g}), got {end_lr:g}", "e.g. --end-lr 10"
        )
    if steps < 3:
        raise ConfigError.one("--steps", f"the ramp needs at least 3 steps, got {steps}", "e.g. --steps 200")
    if not diverge > 1:
        raise ConfigError.one(
            "--diverge", f"must be above 1 (a multiple of the best loss), got {diverge:g}", "e.g. --diverge 4"
        )
    if suggest not in ("minimum", "steepest"):
        raise ConfigError.one("--suggest", f"choose minimum or steepest, got {suggest!r}")


def lr_find(
    loaded: LoadedConfig,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 200,
    diverge: float = 4.0,
    suggest: str = "minimum",
) -> LRFindResult:
    from trainkit import api
    from trainkit.runs.trainer import _Batches

    check_options(start_lr, end_lr, steps, diverge, suggest)
    exp = api.build(loaded)
    if exp.xp is not np:  # its loop runs outside the run's `using` block
        raise loaded.error(("train", "device"), "lr-find runs on the CPU", "use --set train.device=cpu")
    tr, opt = exp.trainer, exp.trainer.opt
    X, T = exp.arrays["X_train"], exp.arrays["T_train"]
    n = len(X)
    bs = n if tr.cfg.batch_size in (None, "full") else min(int(tr.cfg.batch_size), n)
    batches = _Batches(X, T, bs, tr.cfg.shuffle and bs < n)
    ratio = end_lr / start_lr
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    avg, best = 0.0, math.inf
    stop = f"ran all {steps} steps up to lr {end_lr:g}"
    with np.errstate(all="ignore"):
        while len(lrs) < steps:
            for xb, tb in batches.epoch(tr.rng):
                i = len(lrs)
                lr = start_lr * ratio ** (i / max(1, steps - 1))
                loss = tr.loss_and_grad(xb, tb)  # forward, backward, regularization, clipping
                if getattr(opt, "needs_closure", False):
                    opt.closure = lambda xb=xb, tb=tb: tr.loss_and_grad(xb, tb)
                lrs.append(lr)
                losses.append(loss)
                if not math.isfinite(loss):
                    smoothed.append(math.inf)
                    stop = f"loss became {loss} at lr {lr:.3g} (step {i + 1})"
                    break
                avg = SMOOTHING * avg + (1 - SMOOTHING) * loss
                smoothed.append(avg / (1 - SMOOTHING ** (i + 1)))
                best = min(best, smoothed[-1])
                if smoothed[-1] > diverge * best:
                    stop = f"smoothed loss passed {diverge:g}× its minimum at lr {lr:.3g} (step {i + 1})"
                    break
                opt.step(lr)
                if len(lrs) == steps:
                    break
            else:
                continue
            break
    finite = [s for s in smoothed if math.isfinite(s)]
    minimum_lr, steepest_lr = suggestions(lrs[: len(finite)], finite)
    chosen = steepest_lr if suggest == "steepest" else minimum_lr
    info = {
        "optimizer": loaded.config.optimizer.name,
        "batch_size": bs,
        "start_lr": start_lr,
        "end_lr": end_lr,
        "diverge": diverge,
    }
    return LRFindResult(lrs, losses, smoothed, suggest, chosen, minimum_lr, steepest_lr, stop, info)
