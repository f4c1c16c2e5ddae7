"""A sweep: its trials planned and checked before any runs, run by an executor, each an
ordinary run dir, recorded as they end, resumable.

The sweep dir holds `spec.yaml` (the file as given), `trials.jsonl` (one row per trial as it
ends, flushed), `results.csv` (rewritten as rows come in) and `trials/<id>/`, one run dir per
trial. A trial is one point (a value for every swept key) under one seed; its seed is a hash
of the sweep's seed, the point and the repeat (search.trial_seed).
"""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from trainkit.backend.pool import stop_on_signals
from trainkit.config import LoadedConfig, load_config, parse_yaml
from trainkit.config.loader import apply_override, validate
from trainkit.errors import ConfigError, Issue, TrainkitError
from trainkit.sweep import cost, search
from trainkit.sweep.spec import SweepSpec

DONE = ("completed", "early_stopped")  # a trial that ended this way is never run again
FAILED = ("diverged", "failed")  # rerun on --retry-failed


class SweepError(TrainkitError):
    kind = "sweep"


@dataclass
class Trial:
    id: str
    point: int
    repeat: int
    values: dict
    seed: int

    def overrides(self) -> list[str]:
        sets = [f"{k}={json.dumps(v)}" for k, v in self.values.items()]
        return [*sets, f"seed={self.seed}", "sweep=null", "output.dir=null"]


@dataclass
class Sweep:
    spec_path: Path
    loaded: LoadedConfig
    spec: SweepSpec
    trials: list[Trial]
    out: Path
    rows: dict[str, dict] = field(default_factory=dict)  # trial id -> its row, as it ended
    rung_rows: dict[tuple, dict] = field(default_factory=dict)  # (trial id, rung) -> the row there
    status: str = "completed"
    message: str = ""

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "message": self.message,
            "sweep_dir": str(self.out),
            "metric": self.spec.metric.model_dump(),
            "trials": [self.rows[t.id] for t in self.trials if t.id in self.rows],
            "ranking": ranking(self),
            "best_command": best_command(self),
        }


# --------------------------------------------------------------------------- planning


def load_sweep(spec_path: str | Path) -> tuple[LoadedConfig, SweepSpec]:
    loaded = load_config(spec_path)
    if loaded.config.sweep is None:
        raise ConfigError.one(
            str(spec_path),
            "this config has no `sweep:` block",
            "add e.g. `sweep: {method: grid, parameters: {optimizer.lr: {values: [0.01, 0.1]}}}`",
        )
    return loaded, loaded.config.sweep


def plan(spec: SweepSpec, points: list[dict] | None = None, start: int = 0) -> list[Trial]:
    """The trials of points start, start+1, ...: ids 000, 001, ... (000-s0, 000-s1, ... with seeds)."""
    points = search.points(spec) if points is None else points
    width = max(3, len(str((spec.num_samples or len(points)) - 1)))
    return [
        Trial(f"{i:0{width}d}" + (f"-s{r}" if spec.seeds > 1 else ""), i, r, v, search.trial_seed(spec.seed, v, r))
        for i, v in enumerate(points, start)
        for r in range(spec.seeds)
    ]


def check_points(loaded: LoadedConfig, points: list[dict]) -> None:
    """Validate every point's config before anything runs. A problem is reported at the
    swept key's line in the sweep block, with the did-you-mean `--set` gives."""
    raw0, smap0 = parse_yaml(Path(loaded.source).read_text(encoding="utf-8"), loaded.source)
    raw0.pop("sweep", None)
    issues: dict[tuple, Issue] = {}
    for values in points:
        raw, smap = copy.deepcopy(raw0), copy.deepcopy(smap0)
        where = smap0.locate(("sweep",))
        try:
            for key, value in values.items():
                where = smap0.locate(("sweep", "parameters", key))
                apply_override(raw, f"{key}={json.dumps(value)}", smap)
                path = tuple(int(p) if p.isdigit() else p for p in key.split("."))
                for n in range(1, len(path) + 1):  # the levels this key adds point at its sweep line
                    if n == len(path) or not _exists(raw0, path[:n]):
                        smap.set(path[:n], *where)
            validate(raw, smap, loaded.base_dir)
        except ConfigError as e:
            for i in e.issues:
                if i.line is None:  # from the override itself: show it at the sweep line
                    i = Issue(*where, i.key, i.message, i.hint)
                if (i.line, i.key, i.message) not in issues:
                    issues[(i.line, i.key, i.message)] = Issue(
                        i.source, i.line, i.column, i.key, f"{i.message} (with {_show(values)})", i.hint
                    )
    if issues:
        raise ConfigError(sorted(issues.values(), key=lambda i: (i.line or 0, i.column or 0)))


def _exists(raw, path: tuple) -> bool:
    node = raw
    for p in path:
        if isinstance(node, dict) and p in node:
            node = node[p]
        elif isinstance(node, list) and isinstance(p, int) and p < len(node):
            node = node[p]
        else:
            return False
    return True


def _show(values: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())


# --------------------------------------------------------------------------- one trial (in a worker)


def run_trial(
    spec_path: str, overrides: list[str], run_dir: str, metric: str, fresh: bool = False, epochs: int | None = None
) -> dict:
    """Train one trial into its run dir and return its row: continued from its checkpoint if
    it has one, or started afresh (`fresh`, a failed trial retried). Errors become rows: a
    sweep goes on past a failed trial."""
    from trainkit import api

    t0 = time.perf_counter()
    extra = [f"train.epochs={epochs}"] if epochs else []
    try:
        loaded = load_config(spec_path, [*overrides, *extra])
        resume = not fresh and (Path(run_dir) / "checkpoint.npz").exists()
        result = api.train(loaded, output_dir=run_dir, resume=resume, overwrite=not resume)
    except TrainkitError as e:
        return {"status": "failed", "error": str(e), "seconds": time.perf_counter() - t0}
    except Exception as e:  # noqa: BLE001 - a bug in one trial is that trial's row, not the sweep's end
        return {
            "status": "failed",
            "error": f"internal error: {type(e).__name__}: {e}",
            "seconds": time.perf_counter() - t0,
        }
    values = [h.get(metric) for h in result.history]
    # a run that diverged in its first epoch has no rows at all: it is diverged, not misconfigured
    if result.status not in ("interrupted", "diverged") and not any(v is not None for v in values):
        recorded = ", ".join(k for k in (result.history[0] if result.history else {}) if k not in ("epoch", "lr"))
        return {
            "status": "failed",
            "error": f"the sweep's metric {metric!r} is not recorded by this run; it records: {recorded}",
            "seconds": time.perf_counter() - t0,
        }
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return {
        "status": result.status,
        "error": result.stop_reason if result.status in ("diverged", "interrupted") else None,
        "epochs": result.epochs_run,
        "final": result.metrics.get(metric),
        "history": finite,
        "seconds": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------- the sweep dir


def open_sweep_dir(out: Path, spec_text: str, resume: bool) -> list[dict]:
    """Create the sweep dir, or (resume) read the rows of the trials that have ended."""
    from trainkit.runs.rundir import atomic_write

    stored = out / "spec.yaml"
    if not resume:
        if out.exists() and any(out.iterdir()):
            raise SweepError(
                f"{out}: a sweep (or other files) is already there\n"
                "    help: --resume to continue it (--retry-failed to rerun its failed trials), "
                "another --output-dir, or delete it"
            )
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(stored, spec_text.encode())
        return []
    if not stored.exists():
        raise SweepError(f"{out}: no sweep to resume (no spec.yaml)\n    help: start it without --resume")
    if stored.read_text(encoding="utf-8") != spec_text:
        raise SweepError(
            f"{out}: the spec has changed since this sweep started\n"
            f"    help: resume with the spec it started with ({stored}), or start a new sweep in another --output-dir"
        )
    rows: list[dict] = []
    path = out / "trials.jsonl"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # the last line of a sweep killed while writing it
                continue
            rows.append(row)
    return rows


def append_row(out: Path, row: dict) -> None:
    from trainkit.runs.rundir import json_text

    with open(out / "trials.jsonl", "a", encoding="utf-8") as f:
        f.write(json_text(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


RESULT_COLUMNS = ("best", "final", "epochs", "status", "seconds", "error")


def write_results(sweep: Sweep) -> None:
    from trainkit.runs.inference import to_csv
    from trainkit.runs.rundir import atomic_write

    keys = list(sweep.spec.parameters)
    name = sweep.spec.metric.name
    cols = ["trial", *keys, "seed", f"best_{name}", f"final_{name}", "epochs", "status", "seconds", "error"]
    rows = []
    for t in sweep.trials:
        r = sweep.rows.get(t.id)
        if r is None:
            continue
        vals = [json.dumps(v) if isinstance(v, (list, dict)) else v for v in t.values.values()]
        rows.append(
            [t.id, *vals, t.seed, r.get("best"), r.get("final"), r.get("epochs"), r["status"],
             round(r["seconds"], 3), r.get("error") or ""]
        )  # fmt: skip
    atomic_write(sweep.out / "results.csv", to_csv(cols, rows).encode())


# --------------------------------------------------------------------------- ranking


def _better(goal: str):
    return min if goal == "minimize" else max


def ranking(sweep: Sweep) -> list[dict]:
    """One row per point: its values, the mean (and std over seeds) of the final metric, best
    first; points that did not run to the end (pruned, failed) after those that did."""
    by_point: dict[int, list[dict]] = {}
    for t in sweep.trials:
        if t.id in sweep.rows:
            by_point.setdefault(t.point, []).append({**sweep.rows[t.id], "_trial": t})
    out = []
    for point, rows in by_point.items():
        ok = [r["final"] for r in rows if r["status"] not in FAILED and r.get("final") is not None]
        ok = [f for f in ok if math.isfinite(f)]
        out.append(
            {
                "point": point,
                "values": rows[0]["_trial"].values,
                "trials": [r["_trial"].id for r in rows],
                "mean": statistics.fmean(ok) if ok else None,
                "std": statistics.stdev(ok) if len(ok) > 1 else (0.0 if ok else None),
                "epochs": max((r.get("epochs") or 0) for r in rows),
                "status": ", ".join(sorted({r["status"] for r in rows})),
                "complete": all(r["status"] in DONE for r in rows),
            }
        )
    sign = 1 if sweep.spec.metric.goal == "minimize" else -1
    out.sort(key=lambda r: (not r["complete"], r["mean"] is None, sign * (r["mean"] or 0.0), r["point"]))
    return out


def best_command(sweep: Sweep) -> str | None:
    ranked = ranking(sweep)
    if not ranked or not ranked[0]["complete"]:
        return None
    import shlex

    t = next(t for t in sweep.trials if t.id == ranked[0]["trials"][0])
    sets = " ".join(f"--set {shlex.quote(s)}" for s in t.overrides()[:-1])
    return f"trainkit train {shlex.quote(str(sweep.spec_path))} {sets}"


# --------------------------------------------------------------------------- running


def rungs(spec: SweepSpec, epochs: int) -> list[int | None]:
    """Epoch budgets of the rungs: min_epochs * eta^k below train.epochs, then train.epochs.
    Without early termination, one rung: the config's own epochs (None: not overridden)."""
    asha = spec.early_terminate
    if asha is None:
        return [None]
    out, b = [], asha.min_epochs
    while b < epochs:
        out.append(b)
        b *= asha.eta
    return [*out, epochs]


def promoted(sw: Sweep, alive: list[int], rung: int) -> list[int]:
    """The best ceil(n/eta) points of a rung by their mean metric there (failures last)."""
    sign = 1 if sw.spec.metric.goal == "minimize" else -1
    keep = max(1, math.ceil(len(alive) / sw.spec.early_terminate.eta))

    def score(point):
        finals = [sw.rung_rows.get((t.id, rung), {}).get("final") for t in sw.trials if t.point == point]
        ok = [f for f in finals if f is not None and math.isfinite(f)]
        return (len(ok) < len(finals), sign * statistics.fmean(ok) if ok else 0.0, point)

    return sorted(sorted(alive, key=score)[:keep])


def sweep(
    spec_path: str | Path,
    jobs: int = 1,
    output_dir: str | Path | None = None,
    resume: bool = False,
    retry_failed: bool = False,
    executor: str = "local",
    address: str | None = None,
    on_trial=None,
) -> Sweep:
    """Run (or resume) the sweep in a config's `sweep:` block. Returns the Sweep with every
    recorded row; its status is completed, stopped (max_failures) or interrupted.

    With early_terminate (ASHA), the trials run rung by rung: every point to the first
    rung's epochs, the best 1/eta of them on (resumed from their checkpoints) to the next
    rung's, and so on; the others end as "pruned". Each rung's results are rows of
    trials.jsonl, so a resumed sweep replays the same decisions."""
    spec_path = Path(spec_path)
    loaded, spec = load_sweep(spec_path)
    trials = [] if spec.method == "tpe" else plan(spec)
    check_points(loaded, search.check_points(spec))
    out = Path(output_dir) if output_dir else Path("runs") / f"{spec_path.stem}-sweep"
    sw = Sweep(spec_path, loaded, spec, trials, out)
    sw.rung_rows = {
        (r["trial"], r.get("rung", 0)): r for r in open_sweep_dir(out, spec_path.read_text("utf-8"), resume)
    }
    (out / "trials").mkdir(exist_ok=True)
    rerun = DONE if retry_failed else DONE + FAILED
    ex = _executor(executor, min(jobs, len(trials) or jobs), address)
    state: dict = {"failures": 0}
    budgets = rungs(spec, loaded.config.train.epochs)
    alive = sorted({t.point for t in trials})
    with stop_on_signals(ex, state), closing(ex):  # closed: every worker has ended
        ex.start()  # the workers spawn and import while the first trials are ordered
        if spec.method == "tpe":
            _run_tpe(sw, ex, state, max(1, jobs), rerun, on_trial)
            budgets = []
        for k, budget in enumerate(budgets):
            batch = [t for t in trials if t.point in alive]
            _run_rung(sw, ex, state, k, budget, batch, rerun, on_trial)
            for t in batch:
                if (t.id, k) in sw.rung_rows:
                    sw.rows[t.id] = sw.rung_rows[(t.id, k)]
            if "signal" in state or "stopped" in state or k == len(budgets) - 1:
                break
            if any((t.id, k) not in sw.rung_rows for t in batch):
                break  # a rung that could not finish (stopped): nothing to promote from
            alive = promoted(sw, alive, k)
            for t in batch:
                if t.point not in alive:
                    sw.rows[t.id] = {**sw.rows[t.id], "status": "pruned"}
    write_results(sw)
    if "stopped" in state:
        sw.status, sw.message = "stopped", state["stopped"]
    if "signal" in state:
        sw.status, sw.message = "interrupted", f"stopped by {state['signal']}; continue with --resume"
    return sw


def _run_tpe(sw: Sweep, ex, state: dict, batch: int, rerun, on_trial) -> None:
    """Ask a batch of points, run their trials, tell their mean metric; until num_samples."""
    from trainkit.sweep.tpe import Tpe

    tpe = Tpe(sw.spec, sw.out)
    n = 0
    while n < sw.spec.num_samples and "signal" not in state and "stopped" not in state:
        new = plan(sw.spec, tpe.points(n, min(batch, sw.spec.num_samples - n)), start=n)
        sw.trials += new
        _run_rung(sw, ex, state, 0, None, new, rerun, on_trial)
        sw.rows.update({t.id: sw.rung_rows[(t.id, 0)] for t in new if (t.id, 0) in sw.rung_rows})
        for point in sorted({t.point for t in new}):
            rows = [sw.rung_rows.get((t.id, 0)) for t in new if t.point == point]
            if any(r is None for r in rows):
                continue  # not ended (stopped): asked again on --resume
            finals = [r.get("final") for r in rows if r["status"] not in FAILED]
            ok = len(finals) == len(rows) and all(f is not None and math.isfinite(f) for f in finals)
            tpe.tell(point, statistics.fmean(finals) if ok else None)
        n += len({t.point for t in new})


def _run_rung(sw: Sweep, ex, state: dict, k: int, budget, batch: list[Trial], rerun, on_trial) -> None:
    spec = sw.spec
    done = {t.id: sw.rung_rows[(t.id, k)] for t in batch if (t.id, k) in sw.rung_rows}
    state["failures"] += sum(1 for r in done.values() if r["status"] in FAILED and r["status"] in rerun)
    todo = [t for t in batch if done.get(t.id, {}).get("status") not in rerun]
    slots = getattr(ex, "workers", None)  # None: a cluster's, not known here
    if slots != 1 and len(todo) > (slots or 1):  # several at once: the longest first (cost.py)
        ranked = cost.order(str(sw.spec_path), [t.overrides() for t in todo], budget, list(spec.parameters))
        todo = [todo[i] for i in ranked]
    args = [
        (
            str(sw.spec_path.resolve()),
            t.overrides(),
            str((sw.out / "trials" / t.id).resolve()),
            spec.metric.name,
            t.id in done,
            budget,
        )  # absolute: a Ray node's working directory is not ours
        for t in todo
    ]
    for i, result in ex.run(run_trial, args):
        t = todo[i]
        if result["status"] == "interrupted":  # the signal reached the trial's own handler
            state.setdefault("signal", "SIGTERM" if "SIGTERM" in (result.get("error") or "") else "SIGINT")
            ex.stop()
            continue  # not ended: --resume continues it from its checkpoint
        history = result.pop("history", [])
        row = {
            "trial": t.id,
            "rung": k,
            "values": t.values,
            "seed": t.seed,
            "best": _better(spec.metric.goal)(history) if history else None,
            **result,
        }
        sw.rung_rows[(t.id, k)] = row
        sw.rows[t.id] = row
        append_row(sw.out, row)
        write_results(sw)
        if on_trial:
            on_trial(row)
        if row["status"] in FAILED:
            state["failures"] += 1
            if spec.max_failures and state["failures"] >= spec.max_failures and not ex.stopping:
                state["stopped"] = f"{state['failures']} trials failed (max_failures {spec.max_failures})"
                ex.stop()


def _executor(name: str, jobs: int, address: str | None):
    if name == "ray":
        from trainkit.sweep.ray import RayExecutor

        return RayExecutor(address)
    from trainkit.sweep.local import executor

    return executor(jobs)
