"""Turning pydantic's validation errors into messages a person can act on: the file, line
and column of the key, what is allowed and what was given, and a "did you mean" where one
exists. This is the one place that words them; no pydantic internals (union member names
such as `literal['full']` or `constrained-int`, class names) reach the user.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel

from trainkit.config.base import CHOICE_TAGS, NamedUnion, by_name
from trainkit.config.yamlsource import Path_, SourceMap, dotted, shown, type_name
from trainkit.errors import Issue

_EXAMPLES = {
    "data": "data: {name: linear, n_samples: 100}",
    "model": "model: {name: linear}",
    "optimizer": "optimizer: {name: sgd, lr: 0.01}",
}
# torch's constructor arguments that trainkit takes from the input's shape (the data or the
# previous layer): "did you mean 'out_channels'?" would be the wrong advice for them
_INFERRED = ("in_channels", "in_features", "num_features")
_MAX_MESSAGE = 400  # characters; a validator that echoes a huge value is cut here
# Other tools' names for the trial count (Optuna's n_trials, W&B's count): spelling distance
# points the wrong way for these ('max_trials' is nearest 'max_failures').
_SYNONYMS = {
    "max_trials": "num_samples",
    "n_trials": "num_samples",
    "num_trials": "num_samples",
    "count": "num_samples",
}


def issues_from_errors(errors: list[dict], raw: Any, smap: SourceMap, root: type[BaseModel]) -> list[Issue]:
    """One issue per problem. Pydantic reports a value that fits no member of a union once per
    member (`batch_size.literal['full']`, `batch_size.constrained-int`); those become one issue
    that says what the key allows."""
    issues, unions = [], set()
    for err in errors:
        path, union_at = _locate(err["loc"], raw, err["type"])
        if union_at is None:
            issues.append(issue_from_error(err, path, raw, smap, root))
        elif union_at not in unions:
            unions.add(union_at)
            issues.append(_union_issue(union_at, raw, smap, root))
    return issues


def issue_from_error(err: dict, path: Path_, raw: Any, smap: SourceMap, root: type[BaseModel]) -> Issue:
    typ, got, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    hint = None
    if typ == "extra_forbidden":
        known = _known_keys(path[:-1], raw, root)
        message = f"unknown key {shown(path[-1])}"
        hint = did_you_mean(str(path[-1]), known, "valid keys")
        if path[-1] in _INFERRED:
            hint = f"{path[-1]} comes from the input's shape (the data or the previous layer): remove it"
    elif typ == "missing" and path and isinstance(path[-1], int):  # a list too short for a tuple
        return _union_issue(path[:-1], raw, smap, root)
    elif typ == "missing":
        message = "missing required key"
        if len(path) == 1 and path[0] in _EXAMPLES:
            hint = f"add e.g. `{_EXAMPLES[path[0]]}`"
    elif typ == "union_tag_invalid":
        tags = _quoted(ctx["expected_tags"])
        given = _value_at(raw, path)
        given = given.get("name") if isinstance(given, dict) else ctx["tag"]
        message = f"unknown {_kind_of(path)} {shown(given)}"
        hint = (
            did_you_mean(given, tags, "choose one of")
            if isinstance(given, str)
            else "choose one of: " + ", ".join(tags)
        )
        path = path + ("name",)
    elif typ == "union_tag_not_found":
        ann = _annotation_at(root, path, raw)
        tags = [m.model_fields["name"].default for m in _models_in(ann) if "name" in m.model_fields]
        message = "missing key 'name'"
        hint = "choose one of: " + ", ".join(tags) if tags else None
    elif typ == "literal_error":
        # from the schema: pydantic's text "'auto', 1 or 2" quotes only the strings
        expected = _literals(_annotation_at(root, path, raw)) or _quoted(ctx["expected"])
        message = f"expected {_or([shown(e) for e in expected])}, got {shown(got)}"
        names = [e for e in expected if isinstance(e, str)]
        hint = did_you_mean(got, names, None) if isinstance(got, str) else None
    elif typ in ("model_type", "model_attributes_type", "dict_type"):
        message = f"expected a mapping of keys, got {type_name(got)} {shown(got)}"
    elif typ in ("too_short", "too_long"):
        least = typ == "too_short"
        n = ctx.get("min_length" if least else "max_length")
        message = f"expected {'at least' if least else 'at most'} {n} item{'s' if n != 1 else ''}, got {ctx.get('actual_length')}"
    else:
        message = err["msg"][0].lower() + err["msg"][1:]
        if typ.startswith("value_error") or typ == "assertion_error":
            message = message.removeprefix("value error, ").removeprefix("assertion failed, ")
        else:
            # "input should be a valid integer, unable to parse string as an integer": the
            # second half repeats the first in pydantic's terms
            message = message.split(", ")[0].replace("a valid tuple", "a list")
            if message.startswith("unable to parse"):  # e.g. an integer too large for a Literal
                ann = _annotation_at(root, path, raw)
                message = f"expected {describe(ann)}" if ann is not None else "expected a number"
            message += f", got {shown(got)}"
            if typ in ("list_type", "tuple_type") and isinstance(got, str) and got.strip():
                # "4, 8" or a quoted "[4, 8]": the YAML list it was meant to be
                hint = f"write a YAML list, without quotes: [{got.strip().strip('[]').strip()}]"
            elif typ in ("list_type", "tuple_type") and isinstance(got, (int, float)) and not isinstance(got, bool):
                hint = f"a list of one: [{got}]"
    src, line, col = smap.locate(path)
    return Issue(src, line, col, dotted(path), _clip(message), hint)


def _union_issue(path: Path_, raw: Any, smap: SourceMap, root: type[BaseModel]) -> Issue:
    got = _value_at(raw, path)
    ann = _annotation_at(root, path, raw)
    allowed = describe(ann) if ann is not None else "another value"
    hint = None
    if isinstance(got, str):
        hint = did_you_mean(got, [v for v in _literals(ann) if isinstance(v, str)], None)
    src, line, col = smap.locate(path)
    return Issue(src, line, col, dotted(path), _clip(f"expected {allowed}, got {shown(got)}"), hint)


# --------------------------------------------------------------------------- locations


def _locate(loc: tuple, raw: Any, typ: str) -> tuple[Path_, Path_ | None]:
    """The key path of an error without the union tags pydantic puts in locations
    (optimizer.adam.lr -> optimizer.lr), and the path of the plain union (one without a
    `name` to choose its member) whose members all failed, if the error is one of those."""
    out: list[Any] = []
    node = raw
    for i, seg in enumerate(loc):
        if seg in CHOICE_TAGS:
            continue
        if isinstance(node, str) and isinstance(seg, str):
            node = by_name(node)
        if isinstance(node, dict) and isinstance(seg, str) and seg not in node:
            if node.get("name") == seg:
                continue  # the member of a name-keyed union
            if i == len(loc) - 1 and typ == "missing":
                out.append(seg)
                break
            return tuple(out), tuple(out)
        if not isinstance(node, (dict, list)) or (isinstance(node, list) and not isinstance(seg, int)):
            return tuple(out), tuple(out)
        out.append(seg)
        node = _child(node, seg)
    return tuple(out), None


def _child(node: Any, seg: Any) -> Any:
    if isinstance(node, str):
        node = by_name(node)
    if isinstance(node, dict):
        return node.get(seg)
    if isinstance(node, list) and isinstance(seg, int) and seg < len(node):
        return node[seg]
    return None


def _value_at(raw: Any, path: Path_) -> Any:
    for seg in path:
        raw = _child(raw, seg)
    return raw


# --------------------------------------------------------------------------- the schema at a path


def _unwrap(ann) -> tuple[Any, list]:
    """Annotated[T, constraints...] -> (T, constraints), with Field(...) metadata flattened."""
    meta: list = []
    while typing.get_origin(ann) is Annotated:
        ann, *extra = typing.get_args(ann)
        for m in extra:
            meta += getattr(m, "metadata", None) or [m]
    return ann, meta


def union_members(ann) -> list:
    """The alternatives of a (possibly Optional, possibly name-keyed) union, or [ann]."""
    ann, meta = _unwrap(ann)
    for m in meta:
        if isinstance(m, NamedUnion):
            return list(m.members())
    if typing.get_origin(ann) in (Union, types.UnionType):
        return [x for a in typing.get_args(ann) for x in union_members(a)]
    return [ann]


def _models_in(ann) -> list[type[BaseModel]]:
    return [m for m in union_members(ann) if isinstance(m, type) and issubclass(m, BaseModel)]


def _annotation_at(root: type[BaseModel], path: Path_, raw: Any) -> Any:
    """The annotation of the key at `path` (constraints included), choosing union members by
    the raw `name`; None where the schema has no such key."""
    ann, node = root, raw
    for seg in path:
        parent, node = node, _child(node, seg)
        if isinstance(seg, int):
            seqs = [m for m in union_members(ann) if typing.get_origin(m) in (list, tuple)]
            args = typing.get_args(seqs[0]) if seqs else ()
            if not args:
                return None
            fixed = typing.get_origin(seqs[0]) is tuple and Ellipsis not in args and len(args) > seg
            ann = args[seg] if fixed else args[0]
            continue
        models = _choose(_models_in(ann), parent)
        fields = [f for m in models for k, f in m.model_fields.items() if seg in (k, f.alias)]
        if not fields:
            return None
        f = fields[0]  # pydantic keeps Annotated's extras (constraints, NamedUnion) apart
        ann = Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation
    return ann


def _choose(models: list[type[BaseModel]], node: Any) -> list[type[BaseModel]]:
    node = by_name(node)
    if len(models) > 1 and isinstance(node, dict):
        named = [m for m in models if "name" in m.model_fields and m.model_fields["name"].default == node.get("name")]
        return named or models
    return models


def _known_keys(path: Path_, raw: Any, root: type[BaseModel]) -> list[str]:
    """Keys of the schema at `path`, choosing union members by the raw `name`."""
    ann = root if not path else _annotation_at(root, path, raw)
    keys: list[str] = []
    for m in _choose(_models_in(ann), _value_at(raw, path)):
        keys += [f.alias or k for k, f in m.model_fields.items() if (f.alias or k) not in keys]
    return keys


def _literals(ann) -> list:
    return [v for m in union_members(ann) if typing.get_origin(m) is Literal for v in typing.get_args(m)]


def describe(ann, meta: list | None = None) -> str:
    """What a key allows, in words: "'full' or an integer >= 1", "a list of numbers > 0"."""
    ann, inner = _unwrap(ann)
    meta = [*(meta or []), *inner]
    named = [m for m in meta if isinstance(m, NamedUnion)]
    if named:
        return _or([f"{{name: {m.model_fields['name'].default}, ...}}" for m in named[0].members()])
    if typing.get_origin(ann) in (Union, types.UnionType):
        members = [m for m in typing.get_args(ann) if m is not type(None)]
        return _or(list(dict.fromkeys(describe(m) for m in members)))
    if typing.get_origin(ann) is Literal:
        return _or([shown(v) for v in typing.get_args(ann)])
    if ann is bool:
        return "true or false"
    if ann in (int, float):
        return ("an integer" if ann is int else "a number") + _bounds(meta)
    if ann is str:
        return "a string"
    if typing.get_origin(ann) in (list, tuple):
        args = [a for a in typing.get_args(ann) if a is not Ellipsis]
        n = f"{len(args)} " if typing.get_origin(ann) is tuple and len(args) > 1 else ""
        return f"a list of {n}{_plural(describe(args[0]))}" if args else "a list"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "a mapping of " + ", ".join(f.alias or k for k, f in ann.model_fields.items())
    if typing.get_origin(ann) is dict or ann is dict:
        return "a mapping"
    return "a value"


def _bounds(meta: list) -> str:
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    out = [f"{words[k]} {getattr(m, k)}" for m in meta for k in words if getattr(m, k, None) is not None]
    return " " + " and ".join(out) if out else ""


def _plural(noun: str) -> str:
    if " or " in noun:
        return f"({noun})"
    for one, many in (("an integer", "integers"), ("a number", "numbers"), ("a string", "strings")):
        if noun.startswith(one):
            return many + noun[len(one) :]
    return f"({noun})"


# --------------------------------------------------------------------------- words


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _clip(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"


def did_you_mean(got: str, choices: list[str], label: str | None) -> str | None:
    close = [_SYNONYMS[got]] if _SYNONYMS.get(got) in choices else []
    if not close and len(got) <= 64:  # a long value is no typo; difflib on it would only cost time
        # of the close matches, the one nearest in length: 'adma' is 'adam' misspelt, not 'adamax'
        close = sorted(difflib.get_close_matches(got, choices, n=3, cutoff=0.5), key=lambda c: abs(len(c) - len(got)))
        if not close:
            low = {c.lower(): c for c in choices}
            close = [low[got.lower()]] if got.lower() in low else []
        if not close:
            # "learning_rate" -> "lr": match on initials of underscore-separated words
            initials = "".join(w[0] for w in got.split("_") if w)
            close = [c for c in choices if c == initials]
    if close:
        return f"did you mean {close[0]!r}?"
    return f"{label}: {', '.join(choices)}" if label and choices else None


def _quoted(s: str) -> list[str]:
    return re.findall(r"'([^']*)'", s)


def _kind_of(path: Path_) -> str:
    names = {
        "data": "dataset",
        "model": "model",
        "loss": "loss",
        "optimizer": "optimizer",
        "schedule": "schedule",
        "layers": "layer",
        "problem": "problem",
        "augment": "augmentation",
    }
    for seg in reversed(path):
        if seg in names:
            return names[seg]
    return "name"


def option_issues(errors: list[dict], raw: dict, source: str, schema: type[BaseModel]) -> list[Issue]:
    """The same wording for a block given on the command line (compare's `-o "sgd lr=0.1"`),
    which has no lines to point at."""
    smap = SourceMap(source)
    smap.set((), source, None, None)
    return issues_from_errors(errors, raw, smap, schema)
