"""Which trials start first when several run at once: the longest.

Trials started in grid order can leave one worker a whole long trial behind the others at the
end (a grid that alternates a small and a big model: measured on 2 cores, the workers were
both busy only 1.64 of 2 of the time). Longest first ends within 4/3 of the best possible
order (Graham 1969, LPT). Only the order in which trials start changes: each trial's result
depends on its own config and seed alone.

A trial's cost is estimated in multiply-adds:

    epochs · (steps · STEP_MACS + 3 · n_train · macs_per_sample(model))

the model built on the base config's data (loaded once, here, and only when a swept key
changes the model or the epochs); STEP_MACS stands for the fixed work of a step.
"""

from __future__ import annotations

import math

from trainkit.config import load_config

# A step's fixed work (Python, elementwise passes, the optimizer update) in multiply-adds:
# a step of a 2→32→1 MLP at batch 32 takes about as long as 2^18 multiply-adds of its
# small GEMMs (about 60 µs at 4–5 GMAC/s on the 2-core machine).
STEP_MACS = 2**18


def order(spec_path: str, overrides: list[list[str]], epochs: int | None, swept: list[str]) -> list[int]:
    """Indices of the trials (their `overrides`), the costliest first; ties keep their order.
    The given order when no swept key changes the cost, or when an estimate cannot be made
    (it is a heuristic: a trial that cannot be built fails in its own worker, with its row)."""
    n = len(overrides)
    if n < 2 or not any(k.startswith("model.") or k in ("model", "train.epochs") for k in swept):
        return list(range(n))
    try:
        costs = _costs(spec_path, overrides, epochs)
    except Exception:  # noqa: BLE001 - the order is an optimisation, never a reason to fail
        return list(range(n))
    return sorted(range(n), key=lambda i: -costs[i])


def _costs(spec_path: str, overrides: list[list[str]], epochs: int | None) -> list[float]:
    from trainkit.api import model_for
    from trainkit.data.pipeline import prepare
    from trainkit.optim.optimizers import resolve_batch_size

    extra = [f"train.epochs={epochs}"] if epochs else []
    data, state = prepare(load_config(spec_path, [*overrides[0], *extra]))
    n_train = len(data["train"])
    n_out = state.n_outputs(data["train"].y)
    del data
    costs = []
    for ov in overrides:
        loaded = load_config(spec_path, [*ov, *extra])
        cfg = loaded.config
        net, _, _ = model_for(loaded, state, n_out)
        batch = resolve_batch_size(cfg.optimizer, cfg.train.batch_size, n_train)
        steps = 1 if batch == "full" else math.ceil(n_train / batch)
        costs.append(cfg.train.epochs * (steps * STEP_MACS + net.macs_per_step(1) * n_train))
    return costs
