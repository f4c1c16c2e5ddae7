"""Config loading: the run schema, `--set` overrides, validation, cross-field rules.

YAML reading with positions lives in yamlsource.py, the wording of errors in
errors.py. Every problem in a config is collected and reported together.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, Field, ValidationError, create_model

from trainkit import registry
from trainkit.config.base import Component, Strict, by_name, named_union
from trainkit.config.errors import issues_from_errors, union_members
from trainkit.config.yamlsource import Path_, SourceMap, dotted, dump_yaml, parse_yaml, shown, type_name
from trainkit.errors import ConfigError, Issue

__all__ = ["LoadedConfig", "load_config", "load_config_text", "parse_yaml", "dump_yaml", "SourceMap"]


# --------------------------------------------------------------------------- sections


class EarlyStoppingConfig(Strict):
    """Stop when a monitored metric stops improving."""

    monitor: str = Field("val_loss", description="metric to watch, e.g. val_loss, val_accuracy")
    patience: int = Field(10, ge=1, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as improvement")
    mode: Literal["auto", "min", "max"] = Field("auto", description="auto: max for accuracy-like metrics")
    restore_best: bool = Field(True, description="end with the parameters of the best epoch")


def _device(spec: str) -> str:
    """train.device: cpu, cuda or cuda:N (whether it is usable is checked when a run builds)."""
    from trainkit.backend.device import DeviceError, parse

    try:
        parse(spec)
    except DeviceError as e:
        raise ValueError(e.reason) from None
    return spec


class TrainConfig(Strict):
    epochs: int = Field(100, ge=1, le=10_000_000, description="passes over the training set")
    batch_size: Union[Literal["full"], Annotated[int, Field(ge=1)], None] = Field(
        None, description="samples per step, or `full`; default: full for gd, else 32"
    )
    shuffle: bool = Field(True, description="reshuffle the training set every epoch")
    dtype: Literal["float32", "float64"] = Field("float32", description="precision of parameters and arithmetic")
    device: Annotated[str, AfterValidator(_device)] = Field(
        "cpu", description="cpu, or cuda / cuda:N (a GPU, through CuPy: pip install 'trainkit[cuda12]')"
    )
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
        None, description="epochs between checkpoints in the run dir; default: every ~10 s (and always at the end)"
    )
    threads: Union[Literal["auto"], Annotated[int, Field(ge=1)]] = Field(
        "auto", description="BLAS threads: a number, or auto (1 for small models, up to one per core for large ones)"
    )
    sync_batch_norm: bool = Field(
        False, description="data-parallel (MPI) runs: batch norm statistics over the global batch, not each rank's rows"
    )


class RegularizationConfig(Strict):
    """Penalty added to the loss: l1 * sum|w| + l2 * sum w^2."""

    l1: float = Field(0.0, ge=0, description="weight of the L1 penalty sum|w|")
    l2: float = Field(0.0, ge=0, description="weight of the L2 penalty sum w^2")
    apply_to_bias: bool = Field(False, description="penalise biases too")


class OutputConfig(Strict):
    dir: Optional[str] = Field(None, description="run directory (relative to the working directory)")
    overwrite: bool = Field(False, description="replace an existing run directory")


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


@functools.cache
def run_config_model() -> type[BaseModel]:
    """The schema of a whole run, built once the registry is loaded."""
    from trainkit.compress.distill import DistillConfig
    from trainkit.compress.prune import PruneConfig
    from trainkit.sweep.spec import SweepSpec

    registry.load_all()
    return create_model(
        "RunConfig",
        __base__=Strict,
        seed=(int, Field(0, ge=0, lt=2**63, description="fixes every random choice of the run")),
        data=(named_union("datasets"), ...),
        model=(named_union("models"), ...),
        loss=(
            Optional[named_union("losses")],
            Field(None, description="default: from the task"),
        ),
        optimizer=(named_union("optimizers"), ...),
        schedule=(Optional[named_union("schedules")], None),
        regularization=(RegularizationConfig, RegularizationConfig()),
        train=(TrainConfig, TrainConfig()),
        output=(OutputConfig, OutputConfig()),
        compare=(Optional[CompareConfig], None),
        sweep=(Optional[SweepSpec], Field(None, description="what `trainkit sweep` runs; train ignores it")),
        prune=(Optional[PruneConfig], Field(None, description="magnitude pruning during training")),
        distill=(Optional[DistillConfig], Field(None, description="knowledge distillation from a teacher run")),
    )


@functools.cache
def playground_config_model() -> type[BaseModel]:
    """The schema of an optimizer-playground config (a 2-D test function, no data)."""
    from trainkit.compare.playground import Problem

    return create_model(
        "PlaygroundConfig",
        __base__=Strict,
        seed=(int, Field(0, ge=0)),
        problem=(Problem, ...),
        optimizer=(Optional[named_union("optimizers")], None),
        steps=(int, Field(1000, ge=1, le=10_000_000, description="optimizer steps")),
        tolerance=(float, Field(1e-10, gt=0, description="stop when the gradient norm is below this")),
        compare=(Optional[CompareConfig], None),
    )


def settings(model: type[BaseModel] | None = None, prefix: str = "") -> list[tuple[str, Any]]:
    """The run config's keys outside its named components (seed, train.*, regularization.*,
    output.*, ...) as (dotted key, pydantic field), for `trainkit list sections`."""
    out = []
    for name, f in (model or run_config_model()).model_fields.items():
        key = prefix + (f.alias or name)
        ann = Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation
        blocks = [m for m in union_members(ann) if isinstance(m, type) and issubclass(m, BaseModel)]
        if any(issubclass(m, Component) for m in blocks):
            continue  # data, model, loss, ...: listed by kind
        out += settings(blocks[0], key + ".") if blocks else [(key, f)]
    return out


# --------------------------------------------------------------------------- overrides


def apply_override(raw: dict, text: str, smap: SourceMap, label: str | None = None) -> None:
    """Apply one `--set a.b.c=value` (value parsed as YAML) to the raw config in place.

    Errors name `label`, the option as the user typed it (`--seed -1`), by default `--set TEXT`."""
    label = label or f"--set {text}"
    label = label if len(label) <= 200 else label[:199] + "…"
    key, sep, value_text = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError.one(
            label,
            f"an override must be in the form key.path=value, got {shown(text)}",
            "e.g. --set optimizer.lr=0.01 or --set model.hidden=[64,32]",
        )
    path: list[Any] = [int(p) if p.isdigit() else p for p in key.split(".")]
    try:
        value, _ = parse_yaml(value_text if value_text.strip() else "null", label)
    except ConfigError as e:  # `--set x=[1:1:3` would read as part of the value: say the column in words
        raise ConfigError(
            [
                replace(
                    i,
                    line=None,
                    column=None,
                    message=f"{i.message} ({'' if i.line == 1 else f'line {i.line}, '}column {i.column} of the value)",
                )
                if i.line is not None
                else i
                for i in e.issues
            ]
        ) from None
    node = raw
    for i, part in enumerate(path[:-1]):
        nxt = node[part] if _has(node, part) else None
        if isinstance(nxt, str) and not isinstance(path[i + 1], int):
            nxt = by_name(nxt)  # `optimizer: adam` shorthand being extended by a key
        elif not isinstance(nxt, (dict, list)):
            nxt = {}  # made by this override (`--set seed.x=1`): its errors are the override's
            smap.drop_under(tuple(path[: i + 1]))
            smap.set(tuple(path[: i + 1]), label, None, None)
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
        return Issue(src, line, col, dotted(path), message, hint)

    def error(self, path: Path_, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError([self.issue(path, message, hint)])

    def resolve_path(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.base_dir / q

    def resolved(self) -> dict:
        """The fully resolved config (defaults included) as plain data."""
        return self.config.model_dump(mode="json", by_alias=True)


MAX_CONFIG_BYTES = 4 * 2**20
_TOO_LARGE = f"larger than {MAX_CONFIG_BYTES // 2**20} MB, too large for a config"


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (), kind: str = "run") -> LoadedConfig:
    """Read, override and validate a config file. Raises ConfigError with every problem.

    overrides: "key.path=value" strings, or (text, label) pairs where label is what the
    user typed (`--seed -1`) for messages to name.

    kind: "run" (a training config), or "any" to also accept a playground config (one
    with a `problem:` block, for compare-optimizers)."""
    p = Path(path)
    source = str(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)  # bounded: /dev/zero or a data file by mistake
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError.one(source, _TOO_LARGE, "is this a config file? configs are a few lines of YAML")
        text = data.decode("utf-8")
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
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError.one(source, _TOO_LARGE)
    raw, smap = parse_yaml(text, source)
    if raw is None:
        raise ConfigError.one(
            source, "config is empty", "a config needs at least data, model and optimizer; see configs/linreg.yaml"
        )
    if not isinstance(raw, dict):
        raise ConfigError.one(
            source, f"the top level must be a mapping of keys, got a {type_name(raw)}", line=1, column=1
        )
    for item in overrides:
        text_, label = (item, None) if isinstance(item, str) else item
        apply_override(raw, text_, smap, label)
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
        issues = issues_from_errors(e.errors(), raw, smap, model)
        issues.sort(key=lambda i: (i.source != smap.source, i.line or 0, i.column or 0))
        raise ConfigError(issues) from None
    loaded = LoadedConfig(cfg, smap.source, base_dir, smap)
    issues = cross_field_issues(loaded) if model is run_config_model() else []
    if issues:
        raise ConfigError(issues)
    return loaded


def cross_field_issues(loaded: LoadedConfig) -> list[Issue]:
    """Rules that involve more than one block (those within a block live in its schema)."""
    from trainkit.compress import prune
    from trainkit.optim.optimizers import BatchSizeError, resolve_batch_size

    cfg = loaded.config
    issues = prune.config_issues(loaded)
    try:
        resolve_batch_size(cfg.optimizer, cfg.train.batch_size)
    except BatchSizeError as e:
        issues.append(loaded.issue(("train", "batch_size"), e.message, e.hint))
    return issues
