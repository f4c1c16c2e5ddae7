"""The array module and dtype policy.

Engine code (layers, losses, optimizers) takes `xp` from here rather than importing numpy,
so that a GPU array module with numpy's API (CuPy) can be swapped in at one place.
"""

from __future__ import annotations

import numpy as xp

DTYPES = {"float32": xp.float32, "float64": xp.float64}


def dtype_of(name: str):
    """The array dtype for a config's `train.dtype` name."""
    return DTYPES[name]


def to_numpy(a):
    """A host numpy array (identity for numpy; `.get()` for CuPy)."""
    return a.get() if hasattr(a, "get") else a
