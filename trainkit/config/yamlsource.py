"""YAML read as plain data, keeping where every key came from (file, line, column).

The document is walked node by node (not `yaml.safe_load`) so that each key's position is
kept in a SourceMap, duplicate keys are errors rather than silently last-wins, and any tag
that would build a Python object is refused.
"""

from __future__ import annotations

import re
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
_MERGE = "tag:yaml.org,2002:merge"
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"

# Bounds that keep a hostile or mistaken file cheap: an alias bomb (10 lines that expand to
# gigabytes), a self-referencing alias, or nesting deep enough to exhaust the stack.
MAX_DEPTH = 100  # nesting levels of mappings and lists
MAX_VALUES = 100_000  # keys, items and scalars after aliases (*name) are expanded

# Numbers as YAML 1.2 reads them: `1e-3` is a float (YAML 1.1 wanted `1.0e-3`), while
# YAML 1.1's sexagesimal `1:30` (= 90) and octal `010` (= 8) stay the strings they look like.
_INT_RE = r"^[-+]?(?:0|[1-9][0-9_]*)$|^[-+]?0x[0-9a-fA-F_]+$|^[-+]?0b[01_]+$"
_FLOAT_RE = (
    r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?$"
    r"|^[-+]?[0-9][0-9_]*(?:[eE][-+]?[0-9]+)$"
    r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
)
# Booleans as YAML 1.2 reads them: only true/false. YAML 1.1's yes/no/on/off become the
# strings they look like, so a column or class named `no` stays "no" (a boolean key still
# takes them: pydantic reads "yes"/"no"/"on"/"off" as booleans).
_BOOL_RE = r"^(?:true|True|TRUE|false|False|FALSE)$"


class _Loader(yaml.SafeLoader):
    """SafeLoader: no tags that build Python objects; nodes walked by hand to keep marks."""

    yaml_implicit_resolvers = {
        ch: [r for r in rs if r[0] not in (_INT, _FLOAT, _BOOL)]
        for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def compose_node(self, parent, index):
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.add_implicit_resolver(_INT, re.compile(_INT_RE), list("-+0123456789"))
_Loader.add_implicit_resolver(_FLOAT, re.compile(_FLOAT_RE), list("-+.0123456789"))
_Loader.add_implicit_resolver(_BOOL, re.compile(_BOOL_RE), list("tTfF"))


class _Dumper(yaml.SafeDumper):
    """Quotes a string that either YAML 1.1 or trainkit's reading would take for a number."""


for _ch, _rs in _Loader.yaml_implicit_resolvers.items():
    for _tag, _re in _rs:
        if _tag in (_INT, _FLOAT):
            _Dumper.add_implicit_resolver(_tag, _re, [_ch])


class _TooBig(Exception):
    """The document expands past MAX_VALUES or refers to itself."""


class _Builder:
    """Builds plain data from a composed node graph, recording each key's position.

    Aliases are followed (each use is built afresh, as YAML means), but the number of values
    built is bounded and an alias inside its own anchor is refused, so no document can make
    this run long or deep. Merge keys (`<<: *base`) follow YAML: the explicit keys of the
    mapping win over merged ones, and earlier merged mappings over later ones."""

    def __init__(self, loader: _Loader, smap: SourceMap, issues: list[Issue]):
        self.loader, self.smap, self.issues = loader, smap, issues
        self.count = 0
        self.active: set[int] = set()  # nodes being built: meeting one again is a cycle

    def build(self, node, path: Path_):
        self.count += 1
        if self.count > MAX_VALUES:
            raise _TooBig(
                f"the config expands to more than {MAX_VALUES} values",
                "aliases (*name) nested in aliases multiply; write the values out",
                node,
            )
        if len(path) > MAX_DEPTH:
            raise _TooBig(f"the config is nested deeper than {MAX_DEPTH} levels", None, node)
        if id(node) in self.active:
            raise _TooBig("an alias (*name) refers to a value that contains it", "remove the self-reference", node)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            raise yaml.constructor.ConstructorError(
                None, None, f"could not determine a constructor for the tag {node.tag!r}", node.start_mark
            )
        if isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node, deep=True)
        self.active.add(id(node))
        try:
            return self._mapping(node, path) if isinstance(node, yaml.MappingNode) else self._sequence(node, path)
        finally:
            self.active.discard(id(node))

    def _sequence(self, node, path: Path_) -> list:
        items = []
        for i, item in enumerate(node.value):
            self.smap.set(path + (i,), self.smap.source, *_pos(item))
            items.append(self.build(item, path + (i,)))
        return items

    def _mapping(self, node, path: Path_) -> dict:
        src = self.smap.source
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            if knode.tag == _MERGE:
                out.update(self._merged(vnode, path))
        first_line: dict[str, int] = {}
        for knode, vnode in node.value:
            if knode.tag == _MERGE:
                continue
            line, col = _pos(knode)
            key = self.loader.construct_object(knode, deep=True) if isinstance(knode, yaml.ScalarNode) else None
            if not isinstance(key, (str, int, float)) or isinstance(key, bool):
                got = type_name(key) if isinstance(knode, yaml.ScalarNode) else _node_kind(knode)
                self.issues.append(Issue(src, line, col, dotted(path), f"keys must be strings, got {got}"))
                continue
            key = str(key)
            if key in first_line:
                self.issues.append(
                    Issue(
                        src,
                        line,
                        col,
                        dotted(path + (key,)),
                        f"duplicate key (first set on line {first_line[key]})",
                        "remove one of the two; YAML would silently keep only the last",
                    )
                )
                continue
            first_line[key] = line
            if key in out:  # replaces a merged value: forget where that one's keys came from
                self.smap.drop_under(path + (key,))
            self.smap.set(path + (key,), src, line, col)
            out[key] = self.build(vnode, path + (key,))
        return out

    def _merged(self, vnode, path: Path_) -> dict:
        """The keys a `<<` brings in: one mapping, or a list of them (earlier ones win)."""
        sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
        merged: dict[Any, Any] = {}
        for s in reversed(sources):
            if not isinstance(s, yaml.MappingNode):
                line, col = _pos(s)
                self.issues.append(
                    Issue(
                        self.smap.source,
                        line,
                        col,
                        dotted(path + ("<<",)),
                        f"a merge key (<<) takes a mapping or a list of mappings, got {_node_kind(s)}",
                    )
                )
                continue
            merged.update(self.build(s, path))
        return merged


def _pos(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _node_kind(node) -> str:
    return {yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list"}.get(type(node), "a value")


def parse_yaml(text: str, source: str, smap: SourceMap | None = None, base: Path_ = ()) -> tuple[Any, SourceMap]:
    """Parse YAML text keeping each key's line; raise ConfigError on syntax or unsafe tags."""
    smap = smap or SourceMap(source)
    issues: list[Issue] = []
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        data = None if node is None else _Builder(loader, smap, issues).build(node, base)
    except _TooBig as e:
        message, hint, node = e.args
        line, col = _pos(node)
        raise ConfigError.one(source, message, hint, line=line, column=col) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "syntax error"
        hint = None
        if "could not determine a constructor" in problem:
            problem = f"tag {e.problem.split('tag ')[-1]} is not allowed"
            hint = "configs are plain data; tags that build Python objects are rejected for safety"
        elif "\t" in problem or "\\t" in problem or "tab" in problem.lower():
            hint = "indent YAML with spaces, not tabs"
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigError.one(source, f"invalid YAML: {_cut(problem, 200)}", hint, line=line, column=col) from None
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
        raise ConfigError.one(source, f"invalid YAML: {_cut(str(e).splitlines()[0], 200)}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if issues:
        raise ConfigError(issues)
    return data, smap


def dotted(path: Path_) -> str:
    out = ""
    for seg in path:
        seg = seg if isinstance(seg, int) else _cut(str(seg), 40)
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else seg)
    return out


def shown(v, limit: int = 60) -> str:
    """A value as a message echoes it: in YAML's spelling (true, null, [1, 2], {a: 1}), and
    never much more than `limit` characters (a 5 MB value gives a short message)."""
    text = _inline(v, limit + 1)
    if len(text) <= limit:
        return text
    size = (
        f" ({len(v)} {'characters' if isinstance(v, str) else 'items' if len(v) != 1 else 'item'})"
        if isinstance(v, (str, list, dict))
        else ""
    )
    return text[: limit - 1] + "…" + size


def _inline(v, budget: int) -> str:
    """YAML flow text of `v`, stopped soon after `budget` characters."""
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "null"}[v]
    if isinstance(v, str):
        return repr(v[:budget])
    if isinstance(v, (list, dict)):
        parts, used = [], 0
        for item in v.items() if isinstance(v, dict) else v:
            if used > budget:
                break
            part = (
                f"{_inline(item[0], budget)}: {_inline(item[1], budget)}"
                if isinstance(v, dict)
                else _inline(item, budget)
            )
            parts.append(part)
            used += len(part) + 2
        return ("{%s}" if isinstance(v, dict) else "[%s]") % ", ".join(parts)
    return repr(v)[:budget]


def _cut(s: str, limit: int) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"


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
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, allow_unicode=True)
