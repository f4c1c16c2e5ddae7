"""Base classes for config schemas. Every block forbids unknown keys."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """A config block: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class Component(Strict):
    """A block selected by `name` from the registry; subclasses fix `name` with a Literal."""

    name: str


class InitFromFile(Strict):
    """Load initial parameters by name from an .npz file (path relative to the config)."""

    from_: str = Field(alias="from", description="path of an .npz file holding the parameters")


class InitScheme(Strict):
    """A named initialisation scheme with its options."""

    name: Literal[
        "default",
        "xavier_uniform",
        "xavier_normal",
        "kaiming_uniform",
        "kaiming_normal",
        "normal",
        "zeros",
    ]
    std: float = Field(0.01, gt=0, description="standard deviation for `normal`")
    gain: float = Field(1.0, gt=0, description="gain for the xavier schemes")


InitConfig = Union[InitFromFile, InitScheme]


def init_shorthand(v):
    """`init: xavier_uniform` is `init: {name: xavier_uniform}`."""
    return {"name": v} if isinstance(v, str) else v
