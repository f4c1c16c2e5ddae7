"""YAML read as plain data, keeping where every key came from (file, line, column).

The document is walked node by node (not `yaml.safe_load`) so that each key's position is
kept in a SourceMap, duplicate keys are errors rather than silently last-wins, and any tag
that would build a Python object is refused.
"""

from __future__ import annotations

from typing import Any

import yaml

from trainkit.errors import ConfigError, Issue

Path_ = tuple  # a key path: ("optimizer", "lr") or ("model", "layers", 2, "p")


class SourceMap:
    """Where each key path came from: (source, line, column), 1-based."""

    def __init__(self, source: str):
        self.source = source
        self._marks: dict[Path_, tuple[str, int | None, int | None]] = {(): (source, 1, 1)}

    def set(self, path: Path_, source: str, line: int | None, col: int | None) -> None:
        self._marks[tuple(path)] = (source, line, col)

    def drop_under(self, path: Path_) -> None:
        n = len(path)
        for p in [p for p in self._marks if len(p) > n and p[:n] == tuple(path)]:
            del self._marks[p]

    def locate(self, path: Path_) -> tuple[str, int | None, int | None]:
        path = tuple(path)
        while path not in self._marks:
            path = path[:-1]
        return self._marks[path]


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class _Loader(yaml.SafeLoader):
    """SafeLoader: no tags that build Python objects; nodes walked by hand to keep marks."""


def _construct(loader: _Loader, node, path: Path_, smap: SourceMap, issues: list[Issue]):
    src = smap.source
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"could not determine a constructor for the tag {node.tag!r}",
            node.start_mark,
        )
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            line, col = knode.start_mark.line + 1, knode.start_mark.column + 1
            if not isinstance(key, (str, int, float, bool)) or isinstance(key, bool):
                issues.append(Issue(src, line, col, dotted(path), f"keys must be strings, got {key!r}"))
                continue
            key = str(key)
            if key in out:
                first = smap.locate(path + (key,))
                issues.append(
                    Issue(
                        src,
                        line,
                        col,
                        dotted(path + (key,)),
                        f"duplicate key (first set on line {first[1]})",
                        "remove one of the two; YAML would silently keep only the last",
                    )
                )
                continue
            smap.set(path + (key,), src, line, col)
            out[key] = _construct(loader, vnode, path + (key,), smap, issues)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            smap.set(path + (i,), src, item.start_mark.line + 1, item.start_mark.column + 1)
            items.append(_construct(loader, item, path + (i,), smap, issues))
        return items
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, source: str, smap: SourceMap | None = None, base: Path_ = ()) -> tuple[Any, SourceMap]:
    """Parse YAML text keeping each key's line; raise ConfigError on syntax or unsafe tags."""
    smap = smap or SourceMap(source)
    issues: list[Issue] = []
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        data = None if node is None else _construct(loader, node, base, smap, issues)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or str(e)
        hint = None
        if "could not determine a constructor" in problem:
            problem = f"tag {e.problem.split('tag ')[-1]} is not allowed"
            hint = "configs are plain data; tags that build Python objects are rejected for safety"
        elif "\t" in problem or "\\t" in problem or "tab" in problem.lower():
            hint = "indent YAML with spaces, not tabs"
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigError.one(source, f"invalid YAML: {problem}", hint, line=line, column=col) from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (control bytes, binary data)
        line = text.count("\n", 0, e.position) + 1
        col = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        raise ConfigError.one(
            source,
            f"invalid YAML: character #x{e.character:04x} is not allowed",
            "is this a text file?",
            line=line,
            column=col,
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError.one(source, f"invalid YAML: {e}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if issues:
        raise ConfigError(issues)
    return data, smap


def dotted(path: Path_) -> str:
    out = ""
    for seg in path:
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else str(seg))
    return out


def type_name(v) -> str:
    return {
        dict: "mapping",
        list: "list",
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        type(None): "null",
    }.get(type(v), type(v).__name__)


def dump_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True)
