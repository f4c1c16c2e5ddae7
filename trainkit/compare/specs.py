"""Which optimizers a comparison runs: specs like "sgd momentum=0.9 lr=0.01" (or
{name: sgd, momentum: 0.9} in a config's compare block), checked as strictly as a config's
optimizer block, with the same did-you-mean; the same optimizer twice is a mistake."""

from __future__ import annotations

import json
from dataclasses import dataclass

from trainkit import registry
from trainkit.config import LoadedConfig, parse_yaml
from trainkit.config.errors import did_you_mean, option_issues
from trainkit.errors import ConfigError

DEFAULT_SET = ("gd", "sgd", "momentum", "adam")
ALIASES = {"momentum": "sgd momentum=0.9", "nesterov": "sgd momentum=0.9 nesterov=true"}


@dataclass
class Contender:
    label: str
    spec: dict  # {name: ..., hyperparameters...}; lr filled in per run


def parse_spec(spec: str | dict, source: str) -> Contender:
    """'sgd momentum=0.9 nesterov=true' or {name: sgd, momentum: 0.9} -> a validated Contender."""
    label = None
    if isinstance(spec, dict):
        d = dict(spec)
        label = d.pop("label", None)
    else:
        text = ALIASES.get(spec.strip(), spec)
        if spec.strip() in ALIASES:
            label = spec.strip()
        if not text.split():
            raise ConfigError.one(source, "empty optimizer spec", 'e.g. -o sgd or -o "sgd momentum=0.9 lr=0.01"')
        name, *pairs = text.split()
        d = {"name": name}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise ConfigError.one(
                    source, f"optimizer options must be key=value, got {pair!r}", 'e.g. -o "sgd momentum=0.9 lr=0.01"'
                )
            if key in d:
                what = "the optimizer's name comes first, once" if key == "name" else f"{key} is given twice"
                raise ConfigError.one(source, what, f'e.g. -o "{name} lr=0.01"', key=key)
            d[key], _ = parse_yaml(value, source)
    entry_names = registry.names("optimizers")
    if d.get("name") not in entry_names:
        raise ConfigError.one(
            source,
            f"unknown optimizer {d.get('name')!r}",
            did_you_mean(str(d.get("name")), entry_names, "choose one of"),
            key="name",
        )
    from pydantic import ValidationError

    schema = registry.get("optimizers", d["name"]).schema
    try:
        schema.model_validate(d)
    except ValidationError as e:
        raise ConfigError(option_issues(e.errors(), d, source, schema)) from None
    return Contender(str(label or _label(d)), d)


def _label(d: dict) -> str:
    """The optimizer and its options but the lr, which has a column of its own."""
    extras = " ".join(f"{k}={v}" for k, v in d.items() if k not in ("name", "lr"))
    return f"{d['name']} {extras}".strip()


def contenders_for(loaded: LoadedConfig, specs: list[str] | None) -> list[Contender]:
    block = loaded.config.compare
    if specs:
        sources = [f"-o {s!r}" for s in specs]
        items = list(specs)
    elif block is not None and block.optimizers:
        sources = [f"{loaded.source}: compare.optimizers[{i}]" for i in range(len(block.optimizers))]
        items = list(block.optimizers)
    else:
        sources, items = ["default set"] * len(DEFAULT_SET), list(DEFAULT_SET)
    out = [parse_spec(s, src) for s, src in zip(items, sources)]
    seen: dict[str, str] = {}
    for c, src in zip(out, sources):  # the same settings twice, however spelled, is a mistake
        same = seen.setdefault(_identity(c.spec), src)
        if same is not src:
            raise ConfigError.one(
                src, f"the same optimizer as {same}", "list each optimizer once; compare rates with --lr-grid"
            )
    labels = [c.label for c in out]
    for c in out:  # the same optimizer twice (e.g. at two rates): tell them apart by every option
        if labels.count(c.label) > 1:
            c.label = " ".join([c.spec["name"], *(f"{k}={v}" for k, v in c.spec.items() if k != "name")])
    if len({c.label for c in out}) < len(out):
        raise ConfigError.one("compare", "two optimizers have the same label", key="optimizers")
    return out


def _identity(spec: dict) -> str:
    """The spec with every default filled in (the lr only where given: else it comes from the config)."""
    full = registry.get("optimizers", spec["name"]).schema.model_validate(spec).model_dump(mode="json")
    full["lr"] = spec.get("lr")
    return json.dumps(full, sort_keys=True)
