"""Base classes for config schemas, and the one way to write a block chosen by `name`.

Every block forbids unknown keys and takes numbers strictly: an integer field takes only
integers and a number field only finite numbers, so `epochs: true`, `lr: .inf` or
`lr: 1e400` (inf once read) are errors instead of 1, inf or a silent overflow.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag


def _strict_numbers(schema):
    """Make every int and float in a pydantic core schema strict (no bools, no strings, no
    3.0 for an int) and every float finite. Walks the schema once, whatever the field types."""
    if isinstance(schema, dict):
        if schema.get("type") in ("int", "float"):
            schema["strict"] = True
        if schema.get("type") == "float":
            schema["allow_inf_nan"] = False
        for v in schema.values():
            _strict_numbers(v)
    elif isinstance(schema, list):
        for v in schema:
            _strict_numbers(v)
    return schema


class Strict(BaseModel):
    """A config block: unknown keys are errors, numbers are strict and finite, values are
    validated on assignment too. Schemas are built when first used, so a block may hold a
    union of registered components (`named_union("layers")`) before they are all registered."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True, defer_build=True)

    @classmethod
    def __get_pydantic_core_schema__(cls, source, handler):
        return _strict_numbers(handler(source))


class Component(Strict):
    """A block selected by `name` from the registry; subclasses fix `name` with a Literal."""

    name: str


def by_name(v):
    """The shorthand of every name-keyed block: `optimizer: adam` is `optimizer: {name: adam}`."""
    return {"name": v} if isinstance(v, str) else v


class NamedUnion:
    """Annotation: a block chosen by its `name` among some schemas, or among a registry kind's
    schemas looked up when the schema is first built (never at import time)."""

    def __init__(self, members: str | tuple[type, ...]):
        self._members = members

    def members(self) -> tuple[type, ...]:
        if isinstance(self._members, str):
            from trainkit import registry

            return tuple(e.schema for e in registry.entries(self._members))
        return self._members

    def __get_pydantic_core_schema__(self, source, handler):
        ms = self.members()
        return handler.generate_schema(ms[0] if len(ms) == 1 else Annotated[Union[ms], Field(discriminator="name")])


def named_union(*members: type | str) -> Any:
    """`named_union(StepConfig, CosineConfig)` or `named_union("optimizers")`: the type of a
    block chosen by `name`, the `name` shorthand included."""
    which = members[0] if len(members) == 1 and isinstance(members[0], str) else tuple(members)
    return Annotated[Any, NamedUnion(which), BeforeValidator(by_name)]


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


# Union tags of callable discriminators show up in error locations; errors.py drops them.
CHOICE_TAGS = ("<from file>", "<scheme>")


def _init_kind(v) -> str:
    from_file = isinstance(v, InitFromFile) or (isinstance(v, dict) and "from" in v)
    return CHOICE_TAGS[0] if from_file else CHOICE_TAGS[1]


InitConfig = Annotated[
    Union[Annotated[InitFromFile, Tag(CHOICE_TAGS[0])], Annotated[InitScheme, Tag(CHOICE_TAGS[1])]],
    Discriminator(_init_kind),
    BeforeValidator(by_name),
]
