"""Name -> component, per kind. Each entry carries its pydantic schema; `trainkit list` reads it.

A component module declares a schema (a pydantic model whose `name` field is a Literal) and
registers its builder::

    @register("optimizers", SGDConfig)
    class SGD(Optimizer): ...

The config layer turns each kind's schemas into one discriminated union on `name`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KINDS = ("datasets", "augmentations", "models", "layers", "losses", "optimizers", "schedules")

# Modules whose import registers components; loaded on first lookup so `--help` stays fast.
_COMPONENT_MODULES = (
    "trainkit.data.augment",
    "trainkit.data.synthetic",
    "trainkit.data.signals",
    "trainkit.data.loaders",
    "trainkit.data.images",
    "trainkit.nn.layers",
    "trainkit.nn.conv",
    "trainkit.nn.pooling",
    "trainkit.nn.norm",
    "trainkit.nn.channel_dropout",
    "trainkit.nn.models",
    "trainkit.losses",
    "trainkit.optim.optimizers",
    "trainkit.optim.adaptive",
    "trainkit.optim.muon",
    "trainkit.optim.lbfgs",
    "trainkit.optim.lion",
    "trainkit.optim.lamb",
    "trainkit.optim.schedule_free",
    "trainkit.optim.prodigy",
    "trainkit.optim.schedules",
)


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    schema: type  # pydantic model validating the component's block
    build: Callable[..., Any]

    @property
    def description(self) -> str:
        doc = self.schema.__doc__ or self.build.__doc__ or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


_REGISTRY: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
_loaded = False


def register(kind: str, schema: type):
    """Class/function decorator: register `build` under `kind` with the name from `schema`."""
    name = schema.model_fields["name"].default

    def deco(build):
        if name in _REGISTRY[kind]:
            raise RuntimeError(f"{kind} {name!r} registered twice")
        _REGISTRY[kind][name] = Entry(kind, name, schema, build)
        return build

    return deco


def load_all() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _COMPONENT_MODULES:
            importlib.import_module(mod)


def entries(kind: str) -> list[Entry]:
    load_all()
    return list(_REGISTRY[kind].values())


def names(kind: str) -> list[str]:
    return [e.name for e in entries(kind)]


def get(kind: str, name: str) -> Entry:
    load_all()
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        raise KeyError(f"unknown {kind[:-1]} {name!r}; choose one of: {', '.join(names(kind))}") from None


def build(kind: str, cfg, **kwargs):
    """Instantiate the component that `cfg.name` selects, passing its validated config."""
    return get(kind, cfg.name).build(cfg, **kwargs)
