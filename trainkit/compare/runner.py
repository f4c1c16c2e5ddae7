"""compare-optimizers: the same problem under several optimizers, fairly, side by side.

Fair means: every optimizer starts from the same initial parameters, sees the same data
split and the same batch order (all follow from the seed, which every run shares), and
gets the same epoch (or step) budget. `gd` takes its textbook full batch. Runs are
independent, so they run in worker processes; the results do not depend on how many.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import re
import signal
import statistics
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainkit import registry
from trainkit.config import LoadedConfig, SourceMap, load_config, parse_yaml
from trainkit.config.errors import _did_you_mean, issue_from_error
from trainkit.errors import EXIT_SIGINT, EXIT_SIGTERM, ConfigError, Issue, TrainkitError
from trainkit.runs import divergence

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
            _did_you_mean(str(d.get("name")), entry_names, "choose one of"),
            key="name",
        )
    from pydantic import ValidationError

    schema = registry.get("optimizers", d["name"]).schema
    try:
        schema.model_validate(d)
    except ValidationError as e:
        raise ConfigError([_spec_issue(source, d, err, schema) for err in e.errors()]) from None
    return Contender(str(label or _label(d)), d)


def _spec_issue(source: str, spec: dict, err: dict, schema) -> Issue:
    """One schema error in an optimizer spec, worded exactly as in a config (did you mean ...)."""
    smap = SourceMap(source)
    smap.set((), source, None, None)  # a command-line option has no line and column
    return issue_from_error(err, spec, smap, schema)


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
    verdict: str = ""  # who won, a tie, or no winner, in words
    picked_on: str = ""  # what the lr search and the ranking minimise: val loss, train loss, final f

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "verdict": self.verdict,
            "picked_on": self.picked_on,
            "runs": self.runs,
            "summary": self.summary,
            "lr_search": self.lr_search,
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
        from trainkit.runs.rundir import atomic_write

        Path(run_dir).mkdir(parents=True, exist_ok=True)
        atomic_write(Path(run_dir) / "summary.json", json.dumps(result, indent=2).encode())
    return result


class Interrupted(TrainkitError):
    """The comparison was stopped by SIGINT or SIGTERM; every worker has stopped before this
    is raised, so nothing writes into --output-dir after the parent exits."""

    kind = "interrupted"

    def __init__(self, signal_name: str):
        self.signal_name = signal_name
        self.exit_code = EXIT_SIGTERM if signal_name == "SIGTERM" else EXIT_SIGINT
        super().__init__(f"interrupted by {signal_name}; every run and worker process has stopped")

    def __reduce__(self):
        return (type(self), (self.signal_name,))


class _Stop(BaseException):
    """Raised by the signal handler in the parent (a BaseException: no `except Exception` eats it)."""

    def __init__(self, signal_name: str):
        self.signal_name = signal_name


@contextlib.contextmanager
def _signals_stop():
    """While runs are going, SIGINT/SIGTERM raise _Stop in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Stop(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group: the parent alone decides, and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _one_blas_thread():
    """One BLAS thread per worker: the workers already use every core between them."""
    saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: "1" for k in saved})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and stop what has: SIGTERM makes a training worker end
    after its current step (its run dir gets a resumable checkpoint); then wait for them all."""
    procs = list((pool._processes or {}).values())  # the executor's only handle on its workers
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
            p.join()


def _run_all(fn, jobs: list[Job], config: str, n_workers: int, on_result=None) -> list[dict]:
    """Every job's result, in job order; `on_result(job, result)` as each one finishes.
    Raises Interrupted on SIGINT/SIGTERM, once no worker is left running."""
    args = [(config, j.overrides, j.run_dir) for j in jobs]
    results: list[dict] = [{}] * len(jobs)

    def done(i: int, result: dict) -> None:
        if result["status"] == "interrupted":  # the run itself saw the signal
            raise _Stop("SIGTERM" if "SIGTERM" in result.get("stop_reason", "") else "SIGINT")
        results[i] = result
        if on_result:
            on_result(jobs[i], result)

    try:
        with _signals_stop():
            if n_workers <= 1 or len(jobs) <= 1:
                for i, a in enumerate(args):
                    done(i, fn(*a))
                return results
            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(min(n_workers, len(jobs)), mp_context=ctx, initializer=_worker_init)
            try:
                with _one_blas_thread():  # workers start at submit and inherit the environment
                    futures = {pool.submit(fn, *a): i for i, a in enumerate(args)}
                for f in as_completed(futures):
                    done(futures[f], f.result())
            except BaseException:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                _stop_workers(pool)
                raise
            pool.shutdown(wait=True)
            return results
    except _Stop as stop:
        raise Interrupted(stop.signal_name) from None


# --------------------------------------------------------------------------- planning


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


def _default_lr(loaded: LoadedConfig, spec: dict) -> float:
    if "lr" in spec:
        return float(spec["lr"])
    own = getattr(loaded.config, "optimizer", None)
    if own is not None and own.name == spec["name"]:
        return float(own.lr)
    return float(registry.get("optimizers", spec["name"]).schema.model_fields["lr"].default)


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
            if spec["name"] == "gd":
                ov.append("train.batch_size=full")
        run_dir = str(out / _slug(f"{contender.label}-lr{lr:g}-seed{seed}")) if out else None
        jobs.append(Job(contender.label, spec, seed, tuple(ov), run_dir))
    return jobs


def _broken(run: dict, playground: bool) -> bool:
    """Diverged, or exploding on the way there (runs/divergence.py): such a run's final numbers
    mean nothing (a float32 val loss can underflow to exactly 0.0 on its way to 5e17)."""
    if run["status"] == "diverged":
        return True
    if playground:
        return not math.isfinite(run["final_value"])
    return divergence.exploding(run["history"])


def _score(run: dict, playground: bool) -> float:
    """What the lr search and the ranking minimise: the final validation loss (train loss
    without a validation split; f on a playground); inf for a broken run."""
    if _broken(run, playground):
        return math.inf
    if playground:
        return run["final_value"]
    m = run["metrics"]
    value = m.get("val_loss", m.get("train_loss", math.inf))
    return value if math.isfinite(value) else math.inf


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
    status = "exploding" if result["status"] != "diverged" and _broken(result, playground) else result["status"]
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
    if grid == "auto":
        grid = list(AUTO_GRID)
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

    def report(search: bool):
        def on_result(job: Job, result: dict) -> None:
            finished[0] += 1
            if on_progress:
                on_progress(finished[0], total, _progress_line(job, result, playground, search))

        return on_result

    lr_search: list[dict] = []
    chosen: dict[str, float] = {}
    if grid:
        search_jobs = [
            j
            for c in contenders
            for lr in grid
            for j in _jobs(loaded, c, lr, seed_list[:1], None, playground, overrides)
        ]
        results = _run_all(fn, search_jobs, config_path, n_workers, report(True))
        picked_on = _picked_on(playground, results)
        for c in contenders:
            mine = [(j.optimizer["lr"], r) for j, r in zip(search_jobs, results) if j.label == c.label]
            chosen[c.label], entry = _pick_lr(mine, playground)
            lr_search.append({"optimizer": c.label, "picked_on": picked_on, **entry})
    all_jobs = [
        j
        for c in contenders
        for j in _jobs(
            loaded, c, chosen.get(c.label, _default_lr(loaded, c.spec)), seed_list, out, playground, overrides
        )
    ]
    results = _run_all(fn, all_jobs, config_path, n_workers, report(False))
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
    )
    if out:
        write_outputs(comp, out)
    return comp


def _pick_lr(tried: list[tuple[float, dict]], playground: bool) -> tuple[float, dict]:
    """The rate with the lowest score among runs that neither diverged nor exploded; the
    largest of tied rates; the smallest rate, said so, when every one broke."""
    scores = [(lr, _score(r, playground)) for lr, r in tried]
    entry: dict[str, Any] = {
        "scores": [
            {
                "lr": lr,
                "score": s if math.isfinite(s) else None,
                "status": "exploding" if r["status"] != "diverged" and _broken(r, playground) else r["status"],
            }
            for (lr, r), (_, s) in zip(tried, scores)
        ]
    }
    ok = [(lr, s) for lr, s in scores if math.isfinite(s)]
    if not ok:
        lr = min(lr for lr, _ in scores)
        entry.update(chosen_lr=lr, note=f"every rate diverged or exploded; ran the smallest, {lr:g}")
        return lr, entry
    best = min(s for _, s in ok)
    tied = sorted(lr for lr, s in ok if s == best)
    lr = tied[-1]
    entry["chosen_lr"] = lr
    if len(tied) > 1:
        entry["note"] = f"tie between lr {', '.join(f'{t:g}' for t in tied)}; took the largest"
    return lr, entry


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
    """One row per optimizer, means over the seeds that did not break, ranked by (seeds
    diverged or exploded, mean score): one that broke on any seed ranks below all that did not."""
    rows = []
    for c in contenders:
        mine = [r for r in runs if r["optimizer"]["label"] == c.label]
        ok = [r for r in mine if not _broken(r, playground)]
        row: dict[str, Any] = {
            "optimizer": c.label,
            "lr": mine[0]["optimizer"]["lr"],
            "runs": len(mine),
            "diverged_seeds": len(mine) - len(ok),
            "status": _status(mine, playground),
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
        row["score"], _ = _mean_std([_score(r, playground) for r in ok])
        rows.append(row)
    order = sorted(range(len(rows)), key=lambda i: _rank_key(rows[i]))
    for rank, i in enumerate(order, start=1):
        rows[i]["rank"] = rank
    best = [r for r in rows if r["diverged_seeds"] == 0 and r["score"] is not None]
    if best:
        top = min(_rank_key(r) for r in best)
        first = [r for r in best if _rank_key(r) == top]
        if len(first) == 1:
            first[0]["winner"] = True
    return rows


def _rank_key(row: dict) -> tuple:
    return (row["diverged_seeds"], math.inf if row["score"] is None else row["score"])


def verdict(rows: list[dict]) -> str:
    """The outcome in words: the winner, a tie, or why there is none."""
    winner = next((r for r in rows if r.get("winner")), None)
    if winner:
        return f"winner: {winner['optimizer']} (lr {winner['lr']:g})"
    clean = [r for r in rows if r["diverged_seeds"] == 0 and r["score"] is not None]
    if clean:
        top = min(_rank_key(r) for r in clean)
        tied = [r["optimizer"] for r in clean if _rank_key(r) == top]
        return f"no winner: a tie between {', '.join(tied)}"
    return "no winner: every optimizer diverged or exploded on at least one seed"


def _status(runs: list[dict], playground: bool) -> str:
    each = ["exploding" if r["status"] != "diverged" and _broken(r, playground) else r["status"] for r in runs]
    kinds = sorted(set(each))
    return kinds[0] if len(kinds) == 1 else ", ".join(f"{s} {each.count(s)}" for s in kinds)


def _metric_order(k: str) -> tuple:
    split = {"train": 0, "val": 1, "test": 2}.get(k.split("_")[0], 3)
    return (split, 0 if k.endswith("_loss") else 1, k)


def write_outputs(comp: Comparison, out: Path) -> None:
    from trainkit.runs.inference import to_csv
    from trainkit.runs.rundir import atomic_write

    cols: list[str] = []  # every row's keys: a row whose every seed broke has no metrics
    for r in comp.summary:
        cols += [k for k in r if k not in cols and k not in ("curve", "val_curve", "final_point")]
    rows = [[r.get(k) for k in cols] for r in comp.summary]
    atomic_write(out / "comparison.csv", to_csv(cols, rows).encode())
    atomic_write(out / "comparison.json", json.dumps(comp.to_dict(), indent=2).encode())
