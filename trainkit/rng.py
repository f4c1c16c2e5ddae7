"""Seeded random streams: one independent generator per purpose, all derived from `seed`.

Deriving each stream from (seed, purpose) rather than sharing one generator keeps, e.g.,
the data split unchanged when dropout is switched on, and makes every stream reproducible
across processes.
"""

from __future__ import annotations

import numpy as np

STREAMS = {"data": 1, "split": 2, "init": 3, "shuffle": 4, "dropout": 5, "augment": 6}


def stream(seed: int, purpose: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, STREAMS[purpose]])))
