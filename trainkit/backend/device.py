"""Devices: `train.device` (cpu | cuda | cuda:N) to the array module a run computes with.

`cpu` is numpy. `cuda[:N]` is CuPy on GPU N (0 by default), made current for the run;
without CuPy, or without a GPU it can see, DeviceError says why and how to install it.
"""

from __future__ import annotations

import re

import numpy

INSTALL = "pip install 'trainkit[cuda12]' (CUDA 12) or 'trainkit[cuda13]' (CUDA 13)"
PATTERN = r"^(cpu|cuda(:[0-9]+)?)$"


class DeviceError(Exception):
    """A device the run cannot use: `reason`, and a hint (the install line)."""

    def __init__(self, reason: str, hint: str | None = INSTALL):
        super().__init__(reason)
        self.reason, self.hint = reason, hint


def parse(spec: str) -> tuple[str, int]:
    """("cpu", 0) or ("cuda", N) from `cpu`, `cuda`, `cuda:N`."""
    if not re.match(PATTERN, spec):
        raise DeviceError(f"unknown device {spec!r}: use cpu, cuda or cuda:N", None)
    kind, _, n = spec.partition(":")
    return kind, int(n or 0)


def _cupy():
    """The cupy module, or DeviceError saying why not."""
    try:
        import cupy
    except ImportError as e:
        raise DeviceError(f"device cuda needs CuPy, which is not installed ({e})") from None
    return cupy


def cuda_count() -> tuple[int, str | None]:
    """(GPUs CuPy sees, why none when 0)."""
    try:
        cupy = _cupy()
    except DeviceError as e:
        return 0, e.reason
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001 - no driver, no device: CUDA says which
        return 0, f"CuPy sees no GPU: {e}"
    return n, None if n else "CuPy sees no GPU"


def array_module(spec: str):
    """The array module for a device spec, its GPU made current; DeviceError if unusable."""
    kind, n = parse(spec)
    if kind == "cpu":
        return numpy
    cupy = _cupy()
    count, why = cuda_count()
    if count == 0:
        raise DeviceError(f"device {spec}: {why}")
    if n >= count:
        raise DeviceError(f"device {spec}: there is no GPU {n} (GPUs: {count}, numbered from 0)", None)
    cupy.cuda.Device(n).use()
    return cupy


def name_of(module) -> str:
    """`cpu`, `cuda:N`, or the module's name (a test module)."""
    if module is numpy:
        return "cpu"
    if module.__name__ == "cupy":
        return f"cuda:{module.cuda.Device().id}"
    return module.__name__


def list_devices() -> tuple[list[dict], str | None]:
    """Rows {device, name, memory_gb} for cpu and each CUDA GPU, and why there is none."""
    rows = [{"device": "cpu", "name": "numpy", "memory_gb": None}]
    count, why = cuda_count()
    if count:
        cupy = _cupy()
        for i in range(count):
            p = cupy.cuda.runtime.getDeviceProperties(i)
            name = p["name"].decode() if isinstance(p["name"], bytes) else str(p["name"])
            rows.append({"device": f"cuda:{i}", "name": name, "memory_gb": round(p["totalGlobalMem"] / 2**30, 1)})
    return rows, why
