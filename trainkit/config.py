"""Config loading: YAML with line numbers, `--set` overrides, pydantic validation, errors.

Every problem in a config is collected and reported together, each with `file:line:col`,
the dotted key, what was expected, what was got, and a "did you mean" where one exists.
"""

from __future__ import annotations

import difflib
import functools
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, BeforeValidator, Field, ValidationError, create_model

from trainkit import registry
from trainkit.errors import ConfigError, Issue
from trainkit.schema import Strict

Path_ = tuple  # a key path: ("optimizer", "lr") or ("model", "layers", 2, "p")


# --------------------------------------------------------------------------- sections


class EarlyStoppingConfig(Strict):
    """Stop when a monitored metric stops improving."""

    monitor: str = Field("val_loss", description="metric to watch, e.g. val_loss, val_accuracy")
    patience: int = Field(10, ge=1, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as improvement")
    mode: Literal["auto", "min", "max"] = Field("auto", description="auto: max for accuracy-like metrics")
    restore_best: bool = Field(True, description="end with the parameters of the best epoch")


class TrainConfig(Strict):
    epochs: int = Field(100, ge=1, le=10_000_000, description="passes over the training set")
    batch_size: Union[Literal["full"], Annotated[int, Field(ge=1)], None] = Field(
        None, description="samples per step, or `full`; default: full for gd, else 32"
    )
    shuffle: bool = Field(True, description="reshuffle the training set every epoch")
    dtype: Literal["float32", "float64"] = "float32"
    log_every: Optional[Annotated[int, Field(ge=1)]] = Field(
        None, description="epochs between plain log lines; default: about 50 lines per run"
    )
    early_stopping: Optional[EarlyStoppingConfig] = None
    clip_grad_norm: Optional[Annotated[float, Field(gt=0)]] = Field(None, description="max global L2 norm")
    clip_grad_value: Optional[Annotated[float, Field(gt=0)]] = Field(None, description="max |gradient|")
    metrics: Optional[list[Literal["mse", "mae", "r2", "accuracy", "precision", "recall", "f1"]]] = Field(
        None,
        description="default: mse, mae, r2 (regression; the loss itself left out) or accuracy (+ precision, recall, f1 for binary)",
    )
    checkpoint_every: Optional[Annotated[int, Field(ge=1)]] = Field(
        None, description="epochs between checkpoints in the run dir (always at the end)"
    )


class RegularizationConfig(Strict):
    """Penalty added to the loss: l1 * sum|w| + l2 * sum w^2."""

    l1: float = Field(0.0, ge=0)
    l2: float = Field(0.0, ge=0)
    apply_to_bias: bool = False


class OutputConfig(Strict):
    dir: Optional[str] = Field(None, description="run directory (relative to the working directory)")
    overwrite: bool = False


class CompareConfig(Strict):
    """What `trainkit compare-optimizers` runs when no -o options are given."""

    optimizers: list[Union[str, dict]] = Field(
        default_factory=list, description='specs like "sgd momentum=0.9" or {name: sgd, momentum: 0.9}'
    )
    seeds: int = Field(1, ge=1, le=1000, description="repeat each optimizer with this many seeds")
    lr_grid: Union[Literal["auto"], list[Annotated[float, Field(gt=0)]], None] = Field(
        None, description="learning rates to try per optimizer, or auto"
    )
    target_loss: Optional[float] = Field(None, description="report when each run first reaches this train loss")


# --------------------------------------------------------------------------- the run schema


def _name_shorthand(v):
    """`optimizer: adam` is `optimizer: {name: adam}`."""
    return {"name": v} if isinstance(v, str) else v


def component_union(kind: str):
    """One kind's schemas as a union discriminated on `name`."""
    schemas = tuple(e.schema for e in registry.entries(kind))
    ann = schemas[0] if len(schemas) == 1 else Annotated[Union[schemas], Field(discriminator="name")]
    return Annotated[ann, BeforeValidator(_name_shorthand)]


@functools.cache
def run_config_model() -> type[BaseModel]:
    """The schema of a whole run, built once the registry is loaded."""
    registry.load_all()
    return create_model(
        "RunConfig",
        __base__=Strict,
        seed=(int, Field(0, ge=0, lt=2**63, description="fixes every random choice of the run")),
        data=(component_union("datasets"), ...),
        model=(component_union("models"), ...),
        loss=(
            Optional[component_union("losses")],
            Field(None, description="default: from the task"),
        ),
        optimizer=(component_union("optimizers"), ...),
        schedule=(Optional[component_union("schedules")], None),
        regularization=(RegularizationConfig, RegularizationConfig()),
        train=(TrainConfig, TrainConfig()),
        output=(OutputConfig, OutputConfig()),
        compare=(Optional[CompareConfig], None),
    )


@functools.cache
def playground_config_model() -> type[BaseModel]:
    """The schema of an optimizer-playground config (a 2-D test function, no data)."""
    from trainkit.playground import Problem

    return create_model(
        "PlaygroundConfig",
        __base__=Strict,
        seed=(int, Field(0, ge=0)),
        problem=(Problem, ...),
        optimizer=(Optional[component_union("optimizers")], None),
        steps=(int, Field(1000, ge=1, le=10_000_000, description="optimizer steps")),
        tolerance=(float, Field(1e-10, gt=0, description="stop when the gradient norm is below this")),
        compare=(Optional[CompareConfig], None),
    )


_EXAMPLES = {
    "data": "data: {name: linear, n_samples: 100}",
    "model": "model: {name: linear}",
    "optimizer": "optimizer: {name: sgd, lr: 0.01}",
}


# --------------------------------------------------------------------------- YAML with marks


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
                issues.append(Issue(src, line, col, _dotted(path), f"keys must be strings, got {key!r}"))
                continue
            key = str(key)
            if key in out:
                first = smap.locate(path + (key,))
                issues.append(
                    Issue(
                        src,
                        line,
                        col,
                        _dotted(path + (key,)),
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


# --------------------------------------------------------------------------- overrides


def apply_override(raw: dict, text: str, smap: SourceMap) -> None:
    """Apply one `--set a.b.c=value` (value parsed as YAML) to the raw config in place."""
    label = f"--set {text}"
    key, sep, value_text = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError.one(
            label,
            f"an override must be in the form key.path=value, got {text!r}",
            "e.g. --set optimizer.lr=0.01 or --set model.hidden=[64,32]",
        )
    path: list[Any] = [int(p) if p.isdigit() else p for p in key.split(".")]
    value, _ = parse_yaml(value_text if value_text.strip() else "null", label)
    node = raw
    for i, part in enumerate(path[:-1]):
        nxt = node[part] if _has(node, part) else None
        if isinstance(nxt, str) and not isinstance(path[i + 1], int):
            nxt = {"name": nxt}  # `optimizer: adam` shorthand being extended by a key
        elif not isinstance(nxt, (dict, list)):
            nxt = {}
        _put(node, part, nxt, label)
        node = nxt
    _put(node, path[-1], value, label)
    smap.drop_under(tuple(path))
    smap.set(tuple(path), label, None, None)


def _has(node, part) -> bool:
    if isinstance(node, list):
        return isinstance(part, int) and part < len(node)
    return part in node


def _put(node, part, value, label):
    if isinstance(node, list):
        if not isinstance(part, int) or part > len(node):
            raise ConfigError.one(label, f"index {part} is out of range for a list of {len(node)}", key=str(part))
        if part == len(node):
            node.append(value)
        else:
            node[part] = value
    else:
        node[str(part)] = value


# --------------------------------------------------------------------------- validation


@dataclass
class LoadedConfig:
    """A validated run config plus where it came from, for messages and relative paths."""

    config: Any  # RunConfig instance
    source: str
    base_dir: Path
    smap: SourceMap = field(repr=False)

    def issue(self, path: Path_, message: str, hint: str | None = None) -> Issue:
        src, line, col = self.smap.locate(path)
        return Issue(src, line, col, _dotted(path), message, hint)

    def error(self, path: Path_, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError([self.issue(path, message, hint)])

    def resolve_path(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.base_dir / q

    def resolved(self) -> dict:
        """The fully resolved config (defaults included) as plain data."""
        return self.config.model_dump(mode="json", by_alias=True)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (), kind: str = "run") -> LoadedConfig:
    """Read, override and validate a config file. Raises ConfigError with every problem.

    kind: "run" (a training config), or "any" to also accept a playground config (one
    with a `problem:` block, for compare-optimizers)."""
    p = Path(path)
    source = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError.one(
            source, "config file not found", "check the path; example configs live in configs/"
        ) from None
    except IsADirectoryError:
        raise ConfigError.one(
            source, "is a directory, not a config file", f"for a run directory, use {Path(source) / 'config.yaml'}"
        ) from None
    except UnicodeDecodeError as e:
        raise ConfigError.one(source, f"not a UTF-8 text file (byte {e.start})") from None
    except OSError as e:
        raise ConfigError.one(source, f"cannot read: {e.strerror}") from None
    return load_config_text(text, source, overrides, base_dir=p.resolve().parent, kind=kind)


def load_config_text(
    text: str, source: str = "<config>", overrides=(), base_dir: Path | None = None, kind: str = "run"
) -> LoadedConfig:
    raw, smap = parse_yaml(text, source)
    if raw is None:
        raise ConfigError.one(
            source, "config is empty", "a config needs at least data, model and optimizer; see configs/linreg.yaml"
        )
    if not isinstance(raw, dict):
        raise ConfigError.one(
            source, f"the top level must be a mapping of keys, got a {_type_name(raw)}", line=1, column=1
        )
    for text_ in overrides:
        apply_override(raw, text_, smap)
    if "problem" in raw:
        if kind != "any":
            _, line, col = smap.locate(("problem",))
            raise ConfigError.one(
                source,
                "this is an optimizer-playground config (a test function, no data)",
                f"run it with: trainkit compare-optimizers {source}",
                key="problem",
                line=line,
                column=col,
            )
        return validate(raw, smap, base_dir or Path.cwd(), playground_config_model())
    return validate(raw, smap, base_dir or Path.cwd())


def validate(raw: dict, smap: SourceMap, base_dir: Path, model: type[BaseModel] | None = None) -> LoadedConfig:
    model = model or run_config_model()
    try:
        cfg = model.model_validate(raw)
    except ValidationError as e:
        issues = [_issue_from_error(err, raw, smap, model) for err in e.errors()]
        issues.sort(key=lambda i: (i.source != smap.source, i.line or 0, i.column or 0))
        raise ConfigError(issues) from None
    loaded = LoadedConfig(cfg, smap.source, base_dir, smap)
    issues = cross_field_issues(loaded) if model is run_config_model() else []
    if issues:
        raise ConfigError(issues)
    return loaded


def cross_field_issues(loaded: LoadedConfig) -> list[Issue]:
    """Rules that involve more than one block (those within a block live in its schema)."""
    cfg = loaded.config
    issues = []
    if cfg.optimizer.name == "gd" and isinstance(cfg.train.batch_size, int):
        issues.append(
            loaded.issue(
                ("train", "batch_size"),
                "optimizer gd is full-batch gradient descent and cannot use mini-batches",
                "set train.batch_size: full, or use optimizer sgd for mini-batch SGD",
            )
        )
    if (
        cfg.loss is not None
        and cfg.loss.name == "cross_entropy"
        and getattr(cfg.model, "output_activation", None) == "softmax"
    ):
        issues.append(
            loaded.issue(
                ("model", "output_activation"),
                "cross_entropy takes logits, so the model must not end in softmax",
                "remove output_activation: softmax; predictions are turned into probabilities for you",
            )
        )
    return issues


# --------------------------------------------------------------------------- messages


def _issue_from_error(err: dict, raw: dict, smap: SourceMap, root: type[BaseModel]) -> Issue:
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
        message = f"expected a mapping of keys, got {_type_name(got)} {got!r}"
    else:
        message = err["msg"][0].lower() + err["msg"][1:]
        if typ.startswith("value_error"):
            message = message.removeprefix("value error, ")
        if got is not None and not isinstance(got, (dict, list)) and typ != "value_error":
            message += f", got {got!r}"
    src, line, col = smap.locate(path)
    return Issue(src, line, col, _dotted(path), message, hint)


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
    close = difflib.get_close_matches(got, choices, n=1, cutoff=0.5)
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
    import re

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


def _type_name(v) -> str:
    return {
        dict: "mapping",
        list: "list",
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        type(None): "null",
    }.get(type(v), type(v).__name__)


def _dotted(path: Path_) -> str:
    out = ""
    for seg in path:
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else str(seg))
    return out


def dump_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True)
