"""Turning pydantic's validation errors into messages a person can act on: the file, line
and column of the key, what was expected and got, and a "did you mean" where one exists."""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any

from pydantic import BaseModel

from trainkit import registry
from trainkit.config.yamlsource import Path_, SourceMap, dotted, type_name
from trainkit.errors import Issue

_EXAMPLES = {
    "data": "data: {name: linear, n_samples: 100}",
    "model": "model: {name: linear}",
    "optimizer": "optimizer: {name: sgd, lr: 0.01}",
}


def issue_from_error(err: dict, raw: dict, smap: SourceMap, root: type[BaseModel]) -> Issue:
    path = _strip_tags(err["loc"], raw)
    typ, got = err["type"], err.get("input")
    hint = None
    if typ == "extra_forbidden":
        known = _known_keys(path[:-1], raw, root)
        message = f"unknown key {path[-1]!r}"
        hint = _did_you_mean(str(path[-1]), known, "valid keys")
    elif typ == "missing":
        message = "missing required key"
        if len(path) == 1 and path[0] in _EXAMPLES:
            hint = f"add e.g. `{_EXAMPLES[path[0]]}`"
    elif typ == "union_tag_invalid":
        tags = _quoted(err["ctx"]["expected_tags"])
        kind = _kind_of(path)
        message = f"unknown {kind} {err['ctx']['tag']!r}"
        hint = _did_you_mean(str(err["ctx"]["tag"]), tags, "choose one of")
        path = path + ("name",)
    elif typ == "union_tag_not_found":
        kind = _kind_of(path) + "s"
        tags = registry.names(kind) if kind in registry.KINDS else []
        message = "missing key 'name'"
        hint = "choose one of: " + ", ".join(tags) if tags else None
    elif typ == "literal_error":
        expected = _quoted(err["ctx"]["expected"])
        message = f"{err['msg']}, got {got!r}"
        hint = _did_you_mean(str(got), expected, None) if isinstance(got, str) else None
    elif typ in ("model_type", "model_attributes_type", "dict_type"):
        message = f"expected a mapping of keys, got {type_name(got)} {got!r}"
    else:
        message = err["msg"][0].lower() + err["msg"][1:]
        if typ.startswith("value_error"):
            message = message.removeprefix("value error, ")
        if got is not None and not isinstance(got, (dict, list)) and typ != "value_error":
            message += f", got {got!r}"
    src, line, col = smap.locate(path)
    return Issue(src, line, col, dotted(path), message, hint)


def _strip_tags(loc: tuple, raw: Any) -> Path_:
    """Drop the union tags pydantic puts in locations (optimizer.adam.lr -> optimizer.lr)."""
    out: list[Any] = []
    node = raw
    for seg in loc:
        if isinstance(node, str) and not out[-1:] == [seg]:
            node = {"name": node}
        if isinstance(node, dict) and seg not in node and node.get("name") == seg:
            continue
        if seg in ("function-before[_name_shorthand(), tagged-union]",):
            continue
        out.append(seg)
        if isinstance(node, dict):
            node = node.get(seg)
        elif isinstance(node, list) and isinstance(seg, int) and seg < len(node):
            node = node[seg]
        else:
            node = None
    return tuple(out)


def _models_in(ann) -> list[type[BaseModel]]:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(ann):
        found += _models_in(arg)
    return found


def _known_keys(path: Path_, raw: Any, root: type[BaseModel]) -> list[str]:
    """Keys of the schema at `path`, choosing union members by the raw `name`."""
    models = [root]
    node = raw
    for seg in path:
        node = (
            node.get(seg)
            if isinstance(node, dict)
            else (node[seg] if isinstance(node, list) and isinstance(seg, int) and seg < len(node) else None)
        )
        if isinstance(seg, int):
            continue
        nxt: list[type[BaseModel]] = []
        for m in models:
            if seg in m.model_fields:
                nxt += _models_in(m.model_fields[seg].annotation)
        if isinstance(node, str):
            node = {"name": node}
        if len(nxt) > 1 and isinstance(node, dict):
            named = [m for m in nxt if "name" in m.model_fields and m.model_fields["name"].default == node.get("name")]
            nxt = named or nxt
        models = nxt
    keys: list[str] = []
    for m in models:
        keys += [f.alias or k for k, f in m.model_fields.items() if (f.alias or k) not in keys]
    return keys


def _did_you_mean(got: str, choices: list[str], label: str | None) -> str | None:
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
