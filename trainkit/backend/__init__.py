"""The array module and dtype policy.

Engine code (layers, losses, optimizers) takes `xp` from here rather than importing numpy.
`xp` is a thin proxy: every attribute it is asked for (`xp.zeros`, `xp.exp`, ...) comes from
the array module of the run in progress, numpy or CuPy. A run picks its module once, at build
time, and holds it for its whole life with `using(module)`, a context manager over a
contextvars.ContextVar: nothing global is assigned, a run's choice ends when its `with`
block does (an exception included), and threads each start from numpy. Outside any run
`xp` is numpy, so library code and tests that never ask for a device see no change.

Host/device boundary, always explicit: `to_device(a)` puts a host array on the run's device
(identity for numpy), `to_numpy(a)` brings one back (`.get()` for CuPy), `scalar(a)` reads one
number. Initial parameters, the shuffle order and checkpoints stay host numpy arrays, so a
CPU run and a GPU run start identically and their files are the same.
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy

DTYPES = {"float32": numpy.float32, "float64": numpy.float64}

_module = contextvars.ContextVar("trainkit_array_module", default=numpy)


class _ArrayModule:
    """`xp`: the current run's array module, looked up per attribute."""

    __slots__ = ()

    def __getattr__(self, name):
        return getattr(_module.get(), name)

    def __repr__(self) -> str:
        return f"<trainkit.backend.xp -> {_module.get().__name__}>"


xp = _ArrayModule()


def current():
    """The array module of the run in progress (numpy outside any run)."""
    return _module.get()


@contextlib.contextmanager
def using(module):
    """Run the block with `module` (numpy, cupy, or a module with numpy's API) as `xp`."""
    token = _module.set(module)
    try:
        yield module
    finally:
        _module.reset(token)


def dtype_of(name: str):
    """The array dtype for a config's `train.dtype` name."""
    return DTYPES[name]


def to_numpy(a):
    """A host numpy array (identity for numpy; `.get()` for CuPy)."""
    return a.get() if hasattr(a, "get") else a


def to_device(a, dtype=None):
    """A host array (or nested lists) as an array of the current module, on its device."""
    return _module.get().asarray(a, dtype=dtype)


def take_rows(X, idx, out):
    """X[idx] written into `out`. numpy: mode="clip" (the indices are valid anyway) lets take
    write straight into `out`, the default mode buffers the copy and is 2-4x slower; CuPy's
    take has no `mode`."""
    m = _module.get()
    if m is numpy:
        return numpy.take(X, idx, axis=0, out=out, mode="clip")
    return m.take(X, idx, axis=0, out=out)


def scalar(a) -> float:
    """One number of an array as a Python float: the explicit (synchronising) read."""
    return float(to_numpy(a))
