"""A numpy that behaves like a GPU array module: the CI stand-in for CuPy.

`strict` has numpy's API (it computes with numpy) but its arrays, like CuPy's, live
"elsewhere": nothing converts them to the host implicitly. np.asarray(a), float(a), int(a),
bool(a), a.item(), a.tolist(), iteration and mixing them with host numpy arrays in one
operation all raise TypeError (CuPy raises TypeError on np.asarray and on mixing; float,
bool and item it allows but each one waits for the GPU, which the hot path must not do).
The only way back is `a.get()`, which trainkit.backend.to_numpy calls. Training with
`trainkit.backend.using(strict)` therefore fails wherever a run on CuPy would fail or sync
by accident, on a machine without a GPU.
"""

from __future__ import annotations

import types

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

_REFUSED = (
    "implicit conversion of a device array to the host is not allowed (CuPy refuses it too); "
    "read it with trainkit.backend.to_numpy / scalar"
)


class HostConversionError(TypeError):
    """A device array met the host without trainkit.backend.to_numpy."""


def _mixed(what) -> HostConversionError:
    return HostConversionError(f"a host numpy array met a device array in {what} (CuPy: 'Unsupported type')")


def _unwrap(x, what):
    """Device arrays to their numpy payload; host ndarrays refused (as CuPy does)."""
    if isinstance(x, StrictArray):
        return x._a
    if isinstance(x, np.ndarray):
        raise _mixed(what)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, what) for v in x)
    return x


def _wrap(x):
    """numpy results as device arrays; numpy scalars as 0-d device arrays (CuPy's reductions)."""
    if isinstance(x, np.ndarray):
        return StrictArray(x)
    if isinstance(x, np.generic):
        return StrictArray(np.asarray(x))
    if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
        return type(x)(_wrap(v) for v in x)
    return x


class StrictArray(NDArrayOperatorsMixin):
    """A numpy array that refuses to leave the "device" except through `.get()`."""

    __slots__ = ("_a",)

    def __init__(self, a: np.ndarray):
        self._a = a

    # ---- the one way out
    def get(self) -> np.ndarray:
        return self._a.copy()

    # ---- implicit host conversions: refused
    def _refuse(self, *args, **kwargs):
        raise HostConversionError(_REFUSED)

    __array__ = __float__ = __int__ = __bool__ = __complex__ = __index__ = __iter__ = __contains__ = _refuse
    tolist = item = tobytes = _refuse

    # ---- numpy dispatch (np.exp(a), np.sum(a) reach here as they reach CuPy)
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        what = f"{ufunc.__name__}.{method}" if method != "__call__" else ufunc.__name__
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = _unwrap(out, what)
        result = getattr(ufunc, method)(*_unwrap(inputs, what), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        what = func.__name__
        return _wrap(func(*_unwrap(args, what), **{k: _unwrap(v, what) for k, v in kwargs.items()}))

    # ---- the ndarray surface
    def __len__(self) -> int:
        return len(self._a)

    def __repr__(self) -> str:
        return f"strict.{self._a!r}"

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key, "an index")])

    def __setitem__(self, key, value):
        self._a[_unwrap(key, "an index")] = _unwrap(value, "an assignment")

    def __getattr__(self, name):
        if name.startswith("__"):  # __array_interface__ & co. would hand numpy the data
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):

            def method(*args, **kwargs):
                what = f"ndarray.{name}"
                return _wrap(attr(*_unwrap(args, what), **{k: _unwrap(v, what) for k, v in kwargs.items()}))

            return method
        return _wrap(attr)


def _strict_call(f, name):
    def call(*args, **kwargs):
        what = f"xp.{name}"
        return _wrap(f(*_unwrap(args, what), **{k: _unwrap(v, what) for k, v in kwargs.items()}))

    return call


class _StrictUfunc:
    """A ufunc with its methods (CuPy's ufuncs have reduce, accumulate, outer, at too)."""

    def __init__(self, uf: np.ufunc):
        self._uf = uf

    def __call__(self, *args, **kwargs):
        return _strict_call(self._uf, self._uf.__name__)(*args, **kwargs)

    def __getattr__(self, name):
        attr = getattr(self._uf, name)
        return _strict_call(attr, f"{self._uf.__name__}.{name}") if callable(attr) else attr


def _copy_in(x, dtype=None, copy=True):
    """cupy.asarray of host data: a copy on the device."""
    if isinstance(x, StrictArray):
        a = x._a if dtype is None else x._a.astype(dtype, copy=False)
        return StrictArray(a.copy() if copy and a is x._a else a)
    return StrictArray(np.array(x, dtype=dtype, copy=True))


class _StrictModule(types.ModuleType):
    """numpy's names, computing on StrictArrays."""

    def __init__(self, name: str, base):
        super().__init__(name)
        self._base = base

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "ndarray":
            return StrictArray
        if name in ("asarray", "asanyarray", "ascontiguousarray"):
            return lambda x, dtype=None, **_: _copy_in(x, dtype, copy=False)
        if name == "array":
            return lambda x, dtype=None, copy=True, **_: _copy_in(x, dtype, copy=copy)
        if name in _NO_KWARGS:
            refused = _NO_KWARGS[name]
            inner = getattr(self, f"_{name}_numpy")

            def checked(*args, **kwargs):
                if refused & kwargs.keys():
                    raise TypeError(f"cupy.{name} takes no {', '.join(sorted(refused & kwargs.keys()))}")
                return inner(*args, **kwargs)

            return checked
        if name.endswith("_numpy") and name.startswith("_"):
            name = name[1:-6]
        attr = getattr(self._base, name)
        if isinstance(attr, types.ModuleType):
            return _StrictModule(f"{self.__name__}.{name}", attr)
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes, finfo, constants
        if isinstance(attr, np.ufunc):
            return _StrictUfunc(attr)

        def function(*args, **kwargs):
            what = f"xp.{name}"
            return _wrap(attr(*_unwrap(args, what), **{k: _unwrap(v, what) for k, v in kwargs.items()}))

        return function


# numpy keywords CuPy's functions do not take.
_NO_KWARGS = {"take": {"mode"}}

strict = _StrictModule("strict", np)
