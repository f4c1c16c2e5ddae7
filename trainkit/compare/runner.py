"""compare-optimizers: the same problem under several optimizers, fairly, side by side.

Fair means: every optimizer starts from the same initial parameters, sees the same data
split and the same batch order (all follow from the seed, which every run shares), and
gets the same epoch (or step) budget. `gd` takes its textbook full batch. Runs are
independent, so they run in worker processes (backend/pool.py); the results do not depend on how
many. Which optimizers: specs.py; how they are scored and ranked: ranking.py.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainkit import registry
from trainkit.backend import pool
from trainkit.backend.pool import Interrupted
from trainkit.compare.ranking import pick_lr, run_status, summarize, verdict
from trainkit.compare.specs import Contender, contenders_for, parse_spec
from trainkit.config import LoadedConfig, load_config
from trainkit.errors import ConfigError

AUTO_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)

__all__ = ["compare", "Comparison", "Contender", "Interrupted", "contenders_for", "parse_spec", "summarize"]


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
    verdict: str = ""  # who won, a tie, or no winner, in words
    picked_on: str = ""  # what the lr search and the ranking minimise: val loss, train loss, final f
    notes: list[str] = field(default_factory=list)  # what differs between runs beyond the optimizer

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "verdict": self.verdict,
            "picked_on": self.picked_on,
            "runs": self.runs,
            "summary": self.summary,
            "lr_search": self.lr_search,
            "notes": self.notes,
            "config": self.config,
        }


# --------------------------------------------------------------------------- workers


_stopped = False  # in a worker: a signal stopped one of its runs, so it starts no other


def _train_job(config: str, overrides: tuple[str, ...], run_dir: str | None) -> dict:
    global _stopped
    from trainkit import api
    from trainkit.runs.rundir import RunDir

    if _stopped:  # a job queued before the parent stopped the pool
        return {"status": "interrupted", "stop_reason": "not started: the comparison was stopped"}
    loaded = load_config(config, overrides)
    rd = RunDir(run_dir) if run_dir else None
    try:
        result = api.train(loaded, run_dir=rd)
    finally:
        if rd:
            rd.close()
    _stopped = result.status == "interrupted"
    doc = result.to_dict()
    doc.pop("config")
    return doc


def _playground_job(config: str, overrides: tuple[str, ...], run_dir: str | None) -> dict:
    from trainkit.compare.playground import run_problem

    cfg = load_config(config, overrides, kind="any").config
    entry = registry.get("optimizers", cfg.optimizer.name)
    result = run_problem(cfg.problem, entry, cfg.optimizer, cfg.steps, cfg.tolerance)
    if run_dir:
        from trainkit.runs.rundir import atomic_write, json_text

        Path(run_dir).mkdir(parents=True, exist_ok=True)
        atomic_write(Path(run_dir) / "summary.json", json_text(result, indent=2).encode())
    return result


# --------------------------------------------------------------------------- planning


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
            if registry.get("optimizers", spec["name"]).schema.full_batch:
                ov.append("train.batch_size=full")
        run_dir = str(out / _slug(f"{contender.label}-lr{lr:g}-seed{seed}")) if out else None
        jobs.append(Job(contender.label, spec, seed, tuple(ov), run_dir))
    return jobs


def _picked_on(playground: bool, runs: list[dict]) -> str:
    if playground:
        return "final f"
    return "val loss" if any("val_loss" in r["metrics"] for r in runs) else "train loss"


def _check_numbers(loaded: LoadedConfig, grid, target, from_cli_grid: bool, from_cli_target: bool) -> None:
    if isinstance(grid, list):
        bad = [v for v in grid if not (math.isfinite(v) and v > 0)]
        if bad or not grid:
            raise ConfigError.one(
                "--lr-grid" if from_cli_grid else f"{loaded.source}: compare.lr_grid",
                f"learning rates must be finite positive numbers, got {bad[0] if bad else 'none'}",
                "e.g. --lr-grid 1e-3,1e-2,1e-1 or --lr-grid auto",
            )
    if target is not None and not math.isfinite(target):
        raise ConfigError.one(
            "--target-loss" if from_cli_target else f"{loaded.source}: compare.target_loss",
            f"the target loss must be a finite number, got {target}",
            "e.g. --target-loss 0.1",
        )
    if target is not None and target < 0 and not hasattr(loaded.config, "problem"):  # a playground's f may be < 0
        raise ConfigError.one(
            "--target-loss" if from_cli_target else f"{loaded.source}: compare.target_loss",
            f"every trainkit loss is 0 or more, so a target loss of {target:g} is never reached",
            "e.g. --target-loss 0.1",
        )


def _check_output_dir(out: Path) -> None:
    """Refuse a folder that already holds a comparison, as run dirs refuse an earlier run."""
    from trainkit.runs.rundir import FILES, RunDirError

    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a directory\n    help: choose another --output-dir")
    if not out.is_dir():
        return
    held = sorted(
        p.name
        for p in out.iterdir()
        if p.name in ("comparison.csv", "comparison.json") or (p.is_dir() and any((p / f).exists() for f in FILES))
    )
    if held:
        more = f", ... ({len(held)} in all)" if len(held) > 3 else ""
        raise RunDirError(
            f"{out}: already holds a comparison ({', '.join(held[:3])}{more}); refusing to overwrite it\n"
            f"    help: choose another --output-dir, or delete {out} first"
        )


def _progress_line(job: Job, result: dict, playground: bool, search: bool) -> str:
    what = "lr search " if search else ""
    lr = job.optimizer["lr"]
    status = run_status(result, playground)
    if playground:
        value = f"f={result['final_value']:.4g}"
    else:
        m = result["metrics"]
        key = "val_loss" if "val_loss" in m else "train_loss"
        value = f"{key}={m[key]:.4g}" if key in m else ""
    return f"{what}{job.label} lr={lr:g} seed {job.seed}: {status} {value}".rstrip()


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
    on_progress: Callable[[int, int, str], None] | None = None,
) -> Comparison:
    """Run the comparison. `on_progress(done, total, line)` after each run finishes.

    The lr search (when a grid is given) tries every rate on the first seed and keeps, per
    optimizer, the one with the lowest final validation loss (train loss without a
    validation split), ignoring runs that diverged or exploded; the test split, where there
    is one, is reported beside it and never used to choose."""
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
    _check_numbers(loaded, grid, target, lr_grid is not None, target_loss is not None)
    seed_list = [loaded.config.seed + i for i in range(n_seeds)]
    out = Path(output_dir) if output_dir else None
    if out:
        _check_output_dir(out)
        out.mkdir(parents=True, exist_ok=True)
    n_workers = jobs or os.cpu_count() or 1
    fn = _playground_job if playground else _train_job
    config_path = str(config)
    total = (len(contenders) * len(grid) if grid else 0) + len(contenders) * n_seeds
    finished = [0]

    def run(jobs: list[Job], search: bool) -> list[dict]:
        def on_result(i: int, result: dict) -> None:
            finished[0] += 1
            if on_progress:
                on_progress(finished[0], total, _progress_line(jobs[i], result, playground, search))

        return pool.run_all(fn, [(config_path, j.overrides, j.run_dir) for j in jobs], n_workers, on_result)

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
        results = run(search_jobs, True)
        picked_on = _picked_on(playground, results)
        for c in contenders:
            if c.label in fixed_lr:
                chosen[c.label] = fixed_lr[c.label]
                note = f"none, learning-rate-free: its documented lr {fixed_lr[c.label]:g}"
                entry = {"scores": [], "chosen_lr": fixed_lr[c.label], "note": note}
                lr_search.append({"optimizer": c.label, "picked_on": picked_on, **entry})
                continue
            mine = [(j.optimizer["lr"], r) for j, r in zip(search_jobs, results) if j.label == c.label]
            chosen[c.label], entry = pick_lr(mine, playground)
            lr_search.append({"optimizer": c.label, "picked_on": picked_on, **entry})
    all_jobs = [
        j
        for c in contenders
        for j in _jobs(
            loaded, c, chosen.get(c.label, _default_lr(loaded, c.spec)), seed_list, out, playground, overrides
        )
    ]
    results = run(all_jobs, False)
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
        verdict(summary),
        _picked_on(playground, runs),
        [] if playground else _batch_notes(loaded, contenders, runs),
    )
    if out:
        write_outputs(comp, out)
    return comp


def _batch_notes(loaded: LoadedConfig, contenders: list[Contender], runs: list[dict]) -> list[str]:
    """Say so when a full-batch optimizer (gd, lbfgs: trainkit runs them on the whole training
    set only) is compared with mini-batch ones: their steps per epoch differ."""
    from trainkit.optim.optimizers import resolve_batch_size

    full = [c.label for c in contenders if registry.get("optimizers", c.spec["name"]).schema.full_batch]
    if not full or len(full) == len(contenders) or loaded.config.train.batch_size == "full":
        return []
    others = [c.label for c in contenders if c.label not in full]
    n_train = next((r["info"]["n_train"] for r in runs if r.get("info")), None)
    size = resolve_batch_size(registry.get("optimizers", "sgd").schema(), loaded.config.train.batch_size, n_train)
    if n_train is not None and size >= n_train:  # one batch holds the whole training set: full batch too
        return []
    return [
        f"{', '.join(full)} ran full batch (trainkit runs {'it' if len(full) == 1 else 'them'} on the whole "
        f"training set only: one step per epoch); {', '.join(others)} ran mini-batches of {size}"
    ]


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


def write_outputs(comp: Comparison, out: Path) -> None:
    from trainkit.runs.inference import to_csv
    from trainkit.runs.rundir import atomic_write, json_text

    cols: list[str] = []  # every row's keys: a row whose every seed broke has no metrics
    for r in comp.summary:
        cols += [k for k in r if k not in cols and k not in ("curve", "val_curve", "final_point")]
    rows = [[r.get(k) for k in cols] for r in comp.summary]
    atomic_write(out / "comparison.csv", to_csv(cols, rows).encode())
    atomic_write(out / "comparison.json", json_text(comp.to_dict(), indent=2).encode())
