"""Search methods: which points (one value per swept key) a sweep tries, in which order,
and each trial's seed. Everything follows from the sweep's seed, so a rerun tries the same."""

from __future__ import annotations

import hashlib
import itertools
import json
import math

import numpy as np

from trainkit.sweep.spec import Parameter, SweepSpec


def grid(spec: SweepSpec) -> list[dict]:
    """Every combination, the first key varying slowest."""
    keys = list(spec.parameters)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(spec.parameters[k].values for k in keys))]


def draw(p: Parameter, rng: np.random.Generator):
    """One value of a parameter: a choice among its values, or a draw from its distribution."""
    if p.values is not None:
        return p.values[int(rng.integers(len(p.values)))]
    if p.distribution == "uniform":
        return float(rng.uniform(p.min, p.max))
    if p.distribution == "log_uniform":
        return float(math.exp(rng.uniform(math.log(p.min), math.log(p.max))))
    return int(rng.integers(int(p.min), int(p.max) + 1))


def random(spec: SweepSpec) -> list[dict]:
    """num_samples points, each key drawn independently, from a generator seeded by the sweep."""
    rng = np.random.default_rng(spec.seed)
    return [{k: draw(p, rng) for k, p in spec.parameters.items()} for _ in range(spec.num_samples)]


def points(spec: SweepSpec) -> list[dict]:
    """The points grid and random search try (tpe chooses its points as results come in)."""
    return grid(spec) if spec.method == "grid" else random(spec)


def check_points(spec: SweepSpec, limit: int = 512) -> list[dict]:
    """Points that cover what any trial can see, for validating before anything runs: every
    combination of each key's values (a distribution's min and max), or, past `limit`
    combinations, each key's values in turn with the other keys at their first."""
    cands = {
        k: p.values
        if p.values is not None
        else ([int(p.min), int(p.max)] if p.distribution == "int_uniform" else [p.min, p.max])
        for k, p in spec.parameters.items()
    }
    if math.prod(len(v) for v in cands.values()) <= limit:
        keys = list(cands)
        return [dict(zip(keys, combo)) for combo in itertools.product(*cands.values())]
    first = {k: v[0] for k, v in cands.items()}
    return [{**first, k: v} for k, vs in cands.items() for v in vs]


def trial_seed(sweep_seed: int, values: dict, repeat: int) -> int:
    """A trial's seed: a hash of the sweep's seed, the point's values and the repeat, so it
    does not depend on the order trials run in (or on which other points the sweep has)."""
    text = json.dumps([sweep_seed, sorted(values.items()), repeat], sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF
