"""When a run has diverged although every number is still finite.

NaN/inf is caught where it appears (trainer.py). This module adds the explosion rule, checked
once per epoch (never per step), so it costs nothing on the hot path:

- loss explosion: the epoch's train loss L_e is above max(FACTOR · |L_1|, FLOOR) for PATIENCE
  consecutive epochs, L_1 being the first epoch's train loss. FLOOR keeps a run that starts
  near zero (a fine-tuned model) from being called diverged over a harmless rise.
- parameter overflow: some |θ_i| is beyond float32's range (≈3.4e38), so the parameters could
  not be saved or used as float32 any more (only float64 runs get there; float32 ones are inf).

The rule has no state of its own: it reads the run's history, which the checkpoint already
holds, so a resumed run decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import math

import numpy as np

from trainkit.backend import scalar

FACTOR = 1e4
FLOOR = 1.0
PATIENCE = 3
FLOAT32_MAX = float(np.finfo(np.float32).max)


def threshold(first_loss: float) -> float:
    """The train loss above which an epoch counts as exploding."""
    return max(FACTOR * abs(first_loss), FLOOR)


def exploding(history: list[dict], key: str = "train_loss") -> bool:
    """True when any epoch's loss in `history` is non-finite or above the threshold
    (for judging finished runs, e.g. in compare-optimizers, whatever their length)."""
    if not history:
        return False
    limit = threshold(history[0][key])
    return any(not (row[key] <= limit) for row in history)  # `not <=` also catches NaN


def check(history: list[dict], row: dict, flat) -> str | None:
    """Why the run must stop after the epoch of `row` (not yet in `history`), or None.
    A few float comparisons and, for float64, one dot product: cheap enough for every epoch."""
    if history:
        first = history[0]["train_loss"]
        limit = max(FACTOR * abs(first), FLOOR)
        if row["train_loss"] > limit and len(history) >= PATIENCE - 1:
            if all(r["train_loss"] > limit for r in history[len(history) - PATIENCE + 1 :]):
                return (
                    f"loss explosion: train loss {row['train_loss']:.3g} at epoch {row['epoch']} is above "
                    f"{FACTOR:g} × the first epoch's ({first:.3g}) for {PATIENCE} epochs in a row"
                )
    # float32 parameters beyond its range are inf, caught by the trainer's NaN/inf check.
    # ‖θ‖² ≤ max² rules out any |θ_i| > max with one dot product; only past it, look closer.
    if flat.dtype.itemsize > 4 and flat.size and not scalar(flat @ flat) <= FLOAT32_MAX**2:
        biggest = scalar(abs(flat).max())
        if biggest > FLOAT32_MAX and math.isfinite(biggest):
            return (
                f"parameter overflow: parameters reached {biggest:.3g} at epoch {row['epoch']}, beyond float32's range"
            )
    return None
