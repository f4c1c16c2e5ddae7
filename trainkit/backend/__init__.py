"""The array module and dtype policy.

Engine code (layers, losses, optimizers) takes `xp` from here rather than importing numpy.
`xp` is a module object holding the names of the run's array module, numpy or CuPy: a run
picks its module once, at build time, and holds it for its whole life with
`using(module)`, a context manager that fills `xp` with that module's names and puts the
previous ones back when its block ends (an exception included). So nothing outlives a run,
and `xp.add` costs a plain module attribute lookup (a proxy object resolving each attribute
per call cost numpy runs 0.4-2.4 µs per call). Runs happen on the main thread (they install
signal handlers); `using` refuses to switch modules on another thread. Outside any run `xp`
is numpy, so library code and tests that never ask for a device see no change.

Host/device boundary, always explicit: `to_device(a)` puts a host array on the run's device
(identity for numpy), `to_numpy(a)` brings one back (`.get()` for CuPy), `scalar(a)` reads one
number. Initial parameters, the shuffle order and checkpoints stay host numpy arrays, so a
CPU run and a GPU run start identically and their files are the same.
"""

from __future__ import annotations

import contextlib
import threading
import types

import numpy

DTYPES = {"float32": numpy.float32, "float64": numpy.float64}

xp = types.ModuleType("trainkit.backend.xp")
_stack = [numpy]  # the modules of the `using` blocks in force; numpy at the bottom


def _missing(name):
    """A name not copied into xp (a lazily loaded submodule, a test module's names)."""
    return getattr(_stack[-1], name)


def _load(module) -> None:
    names = xp.__dict__
    names.clear()
    names.update(vars(module))
    names.update(__name__="trainkit.backend.xp", __getattr__=_missing)


_load(numpy)


def current():
    """The array module of the run in progress (numpy outside any run)."""
    return _stack[-1]


@contextlib.contextmanager
def using(module):
    """Run the block with `module` (numpy, cupy, or a module with numpy's API) as `xp`."""
    switch = module is not _stack[-1]
    if switch and threading.current_thread() is not threading.main_thread():
        raise RuntimeError("trainkit runs on the main thread: the array module is switched only there")
    _stack.append(module)
    if switch:
        _load(module)
    try:
        yield module
    finally:
        _stack.pop()
        if switch:
            _load(_stack[-1])


def dtype_of(name: str):
    """The array dtype for a config's `train.dtype` name."""
    return DTYPES[name]


def to_numpy(a):
    """A host numpy array (identity for numpy; `.get()` for CuPy)."""
    return a.get() if hasattr(a, "get") else a


def to_device(a, dtype=None):
    """A host array (or nested lists) as an array of the current module, on its device."""
    return _stack[-1].asarray(a, dtype=dtype)


def take_rows(X, idx, out):
    """X[idx] written into `out`. numpy: mode="clip" (the indices are valid anyway) lets take
    write straight into `out`, the default mode buffers the copy and is 2-4x slower; CuPy's
    take has no `mode`."""
    m = _stack[-1]
    if m is numpy:
        return numpy.take(X, idx, axis=0, out=out, mode="clip")
    return m.take(X, idx, axis=0, out=out)


def scalar(a) -> float:
    """One number of an array as a Python float: the explicit (synchronising) read."""
    return float(to_numpy(a))
