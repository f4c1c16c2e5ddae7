"""compare-optimizers: the same problem under several optimizers, fairly, side by side.

Fair means: every optimizer starts from the same initial parameters, sees the same data
split and the same batch order (all follow from the seed, which every run shares), and
gets the same epoch (or step) budget. `gd` takes its textbook full batch. Runs are
independent, so they run in worker processes; the results do not depend on how many.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainkit import registry
from trainkit.config import LoadedConfig, load_config, parse_yaml
from trainkit.errors import ConfigError, Issue

DEFAULT_SET = ("gd", "sgd", "momentum", "adam")
ALIASES = {"momentum": "sgd momentum=0.9", "nesterov": "sgd momentum=0.9 nesterov=true"}
AUTO_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


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
        name, *pairs = text.split()
        d = {"name": name}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise ConfigError.one(
                    source, f"optimizer options must be key=value, got {pair!r}", 'e.g. -o "sgd momentum=0.9 lr=0.01"'
                )
            d[key], _ = parse_yaml(value, source)
    entry_names = registry.names("optimizers")
    if d.get("name") not in entry_names:
        from trainkit.config.errors import _did_you_mean

        raise ConfigError.one(
            source,
            f"unknown optimizer {d.get('name')!r}",
            _did_you_mean(str(d.get("name")), entry_names, "choose one of"),
            key="name",
        )
    from pydantic import ValidationError

    try:
        registry.get("optimizers", d["name"]).schema.model_validate(d)
    except ValidationError as e:
        issues = [Issue(source, None, None, ".".join(map(str, err["loc"])), err["msg"]) for err in e.errors()]
        raise ConfigError(issues) from None
    return Contender(str(label or _label(d)), d)


def _label(d: dict) -> str:
    """The optimizer and its options but the lr, which has a column of its own."""
    extras = " ".join(f"{k}={v}" for k, v in d.items() if k not in ("name", "lr"))
    return f"{d['name']} {extras}".strip()


@dataclass
class Job:
    label: str
    optimizer: dict
    seed: int
    overrides: tuple[str, ...]
    run_dir: str | None = None


@dataclass
class Comparison:
    runs: list[dict]
    summary: list[dict]
    config: dict
    kind: str  # "train" or "playground"
    problem: Any = None
    lr_search: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "runs": self.runs,
            "summary": self.summary,
            "lr_search": self.lr_search,
            "config": self.config,
        }


# --------------------------------------------------------------------------- workers


def _train_job(config: str, overrides: tuple[str, ...], run_dir: str | None) -> dict:
    from trainkit import api
    from trainkit.runs.rundir import RunDir

    loaded = load_config(config, overrides)
    rd = RunDir(run_dir) if run_dir else None
    try:
        result = api.train(loaded, run_dir=rd)
    finally:
        if rd:
            rd.close()
    doc = result.to_dict()
    doc.pop("config")
    return doc


def _playground_job(config: str, overrides: tuple[str, ...], run_dir: str | None) -> dict:
    from trainkit.compare.playground import run_problem

    cfg = load_config(config, overrides, kind="any").config
    entry = registry.get("optimizers", cfg.optimizer.name)
    result = run_problem(cfg.problem, entry, cfg.optimizer, cfg.steps, cfg.tolerance)
    if run_dir:
        from trainkit.runs.rundir import atomic_write

        Path(run_dir).mkdir(parents=True, exist_ok=True)
        atomic_write(Path(run_dir) / "summary.json", json.dumps(result, indent=2).encode())
    return result


def _run_all(fn, jobs: list[Job], config: str, n_workers: int) -> list[dict]:
    args = [(config, j.overrides, j.run_dir) for j in jobs]
    if n_workers <= 1 or len(jobs) <= 1:
        return [fn(*a) for a in args]
    # One BLAS thread per worker: the workers already use every core between them.
    saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: "1" for k in saved})
    try:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(n_workers, len(jobs)), mp_context=ctx) as pool:
            return list(pool.map(fn, *zip(*args)))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------- planning


def contenders_for(loaded: LoadedConfig, specs: list[str] | None) -> list[Contender]:
    block = loaded.config.compare
    if specs:
        out = [parse_spec(s, f"-o {s!r}") for s in specs]
    elif block is not None and block.optimizers:
        out = [parse_spec(s, f"{loaded.source}: compare.optimizers[{i}]") for i, s in enumerate(block.optimizers)]
    else:
        out = [parse_spec(s, "default set") for s in DEFAULT_SET]
    labels = [c.label for c in out]
    for c in out:  # the same optimizer twice (e.g. at two rates): tell them apart by every option
        if labels.count(c.label) > 1:
            c.label = " ".join([c.spec["name"], *(f"{k}={v}" for k, v in c.spec.items() if k != "name")])
    if len({c.label for c in out}) < len(out):
        raise ConfigError.one("compare", "the same optimizer is listed twice", key="optimizers")
    return out


def _default_lr(loaded: LoadedConfig, spec: dict) -> float:
    if "lr" in spec:
        return float(spec["lr"])
    own = getattr(loaded.config, "optimizer", None)
    if own is not None and own.name == spec["name"]:
        return float(own.lr)
    return float(registry.get("optimizers", spec["name"]).schema.model_fields["lr"].default)


def _lr_free(spec: dict) -> bool:
    return getattr(registry.get("optimizers", spec["name"]).schema, "learning_rate_free", False)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")


def _jobs(
    loaded, contender: Contender, lr: float, seeds: list[int], out: Path | None, playground: bool, user_overrides=()
) -> list[Job]:
    spec = {**contender.spec, "lr": lr}
    jobs = []
    for seed in seeds:
        ov = [*user_overrides, f"seed={seed}", "compare=null"]
        if playground:
            ov.append(f"optimizer={json.dumps(spec)}")
        else:
            ov += [f"optimizer={json.dumps(spec)}", "output.dir=null"]
            if spec["name"] in ("gd", "lbfgs"):  # full-batch methods
                ov.append("train.batch_size=full")
        run_dir = str(out / _slug(f"{contender.label}-lr{lr:g}-seed{seed}")) if out else None
        jobs.append(Job(contender.label, spec, seed, tuple(ov), run_dir))
    return jobs


def _score(run: dict, playground: bool) -> float:
    if run["status"] == "diverged":
        return math.inf
    if playground:
        return run["final_value"]
    m = run["metrics"]
    return m.get("val_loss", m.get("train_loss", math.inf))


# --------------------------------------------------------------------------- the comparison


def compare(
    config: str | Path,
    specs: list[str] | None = None,
    seeds: int | None = None,
    lr_grid: list[float] | str | None = None,
    target_loss: float | None = None,
    jobs: int | None = None,
    output_dir: str | Path | None = None,
    overrides=(),
) -> Comparison:
    loaded = load_config(config, overrides, kind="any")
    playground = hasattr(loaded.config, "problem")
    block = loaded.config.compare
    contenders = contenders_for(loaded, specs)
    n_seeds = seeds or (block.seeds if block else 1)
    grid = lr_grid if lr_grid is not None else (block.lr_grid if block else None)
    fixed_lr: dict[str, float] = {}
    if grid == "auto":
        grid = list(AUTO_GRID)
        # learning-rate-free optimizers (prodigy) keep their documented lr instead of a search
        fixed_lr = {c.label: _default_lr(loaded, c.spec) for c in contenders if _lr_free(c.spec)}
    target = target_loss if target_loss is not None else (block.target_loss if block else None)
    seed_list = [loaded.config.seed + i for i in range(n_seeds)]
    out = Path(output_dir) if output_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    n_workers = jobs or os.cpu_count() or 1
    fn = _playground_job if playground else _train_job
    config_path = str(config)

    lr_search: list[dict] = []
    chosen: dict[str, float] = {}
    if grid:
        search_jobs = [
            j
            for c in contenders
            if c.label not in fixed_lr
            for lr in grid
            for j in _jobs(loaded, c, lr, seed_list[:1], None, playground, overrides)
        ]
        results = _run_all(fn, search_jobs, config_path, n_workers)
        for c in contenders:
            if c.label in fixed_lr:
                chosen[c.label] = fixed_lr[c.label]
                note = f"none, learning-rate-free: its documented lr {fixed_lr[c.label]:g}"
                lr_search.append({"optimizer": c.label, "scores": [], "chosen_lr": fixed_lr[c.label], "note": note})
                continue
            scored = [
                (j.optimizer["lr"], _score(r, playground)) for j, r in zip(search_jobs, results) if j.label == c.label
            ]
            best_lr = min(scored, key=lambda t: (t[1], -t[0]))[0]
            chosen[c.label] = best_lr
            lr_search.append(
                {"optimizer": c.label, "scores": [{"lr": lr, "score": s} for lr, s in scored], "chosen_lr": best_lr}
            )
    all_jobs = [
        j
        for c in contenders
        for j in _jobs(
            loaded, c, chosen.get(c.label, _default_lr(loaded, c.spec)), seed_list, out, playground, overrides
        )
    ]
    results = _run_all(fn, all_jobs, config_path, n_workers)
    runs = []
    for j, r in zip(all_jobs, results):
        runs.append(
            {
                "optimizer": {"label": j.label, **j.optimizer},
                "seed": j.seed,
                **r,
                **({"to_target": _to_target(r, target, playground)} if target is not None else {}),
            }
        )
    summary = summarize(contenders, runs, playground, target)
    cfg = loaded.resolved()
    cfg.pop("compare", None)
    comp = Comparison(
        runs,
        summary,
        cfg,
        "playground" if playground else "train",
        loaded.config.problem if playground else None,
        lr_search,
    )
    if out:
        write_outputs(comp, out)
    return comp


def _to_target(run: dict, target: float, playground: bool) -> dict | None:
    if playground:
        for i, v in enumerate(run["values"]):
            if v <= target:
                return {"step": run["value_steps"][i]}
        return None
    elapsed = 0.0
    for row, dt in zip(run["history"], run["timing"]["epoch_s"]):
        elapsed += dt
        if row["train_loss"] <= target:
            return {"epoch": row["epoch"], "wall_s": elapsed}
    return None


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def summarize(contenders: list[Contender], runs: list[dict], playground: bool, target) -> list[dict]:
    rows = []
    for c in contenders:
        mine = [r for r in runs if r["optimizer"]["label"] == c.label]
        ok = [r for r in mine if r["status"] != "diverged"]
        row: dict[str, Any] = {
            "optimizer": c.label,
            "lr": mine[0]["optimizer"]["lr"],
            "runs": len(mine),
            "status": _status(mine),
        }
        if playground:
            for key in ("final_value", "distance_to_minimum", "steps"):
                row[key], row[key + "_std"] = _mean_std([r.get(key) for r in ok])
            row["final_point"] = mine[0]["final_point"]
            row["wall_s"], _ = _mean_std([r["timing"]["wall_s"] for r in mine])
            row["curve"] = mine[0]["values"]
        else:
            keys = sorted({k for r in ok for k in r["metrics"]}, key=_metric_order)
            for k in keys:
                row[k], row[k + "_std"] = _mean_std([r["metrics"].get(k) for r in ok])
            if any("val_loss" in r["history"][0] for r in ok if r["history"]):
                row["best_val_loss"], _ = _mean_std([min(h["val_loss"] for h in r["history"]) for r in ok])
                row["best_epoch"], _ = _mean_std([min(r["history"], key=lambda h: h["val_loss"])["epoch"] for r in ok])
            row["wall_s"], _ = _mean_std([r["timing"]["train_s"] for r in mine])
            row["curve"] = [h["train_loss"] for h in mine[0]["history"]]
            row["val_curve"] = [h["val_loss"] for h in mine[0]["history"] if "val_loss" in h]
        if target is not None:
            reached = [r["to_target"] for r in mine if r.get("to_target")]
            unit = "step" if playground else "epoch"
            row["to_target_" + unit], _ = _mean_std([t[unit] for t in reached])
            row["reached_target"] = f"{len(reached)}/{len(mine)}"
            if not playground:
                row["to_target_wall_s"], _ = _mean_std([t["wall_s"] for t in reached])
        row["score"], _ = _mean_std([_score(r, playground) for r in mine]) if ok else (None, None)
        rows.append(row)
    finite = [r for r in rows if r["score"] is not None and r["status"] != "diverged"]
    if finite:
        min(finite, key=lambda r: r["score"])["winner"] = True
    return rows


def _status(runs: list[dict]) -> str:
    statuses = sorted({r["status"] for r in runs})
    return (
        statuses[0] if len(statuses) == 1 else ", ".join(f"{s} {sum(r['status'] == s for r in runs)}" for s in statuses)
    )


def _metric_order(k: str) -> tuple:
    split = {"train": 0, "val": 1, "test": 2}.get(k.split("_")[0], 3)
    return (split, 0 if k.endswith("_loss") else 1, k)


def write_outputs(comp: Comparison, out: Path) -> None:
    from trainkit.runs.inference import to_csv
    from trainkit.runs.rundir import atomic_write

    cols = [k for k in comp.summary[0] if k not in ("curve", "val_curve", "final_point")]
    rows = [[r.get(k) for k in cols] for r in comp.summary]
    atomic_write(out / "comparison.csv", to_csv(cols, rows).encode())
    atomic_write(out / "comparison.json", json.dumps(comp.to_dict(), indent=2).encode())
