"""Scoring and ranking a comparison, so that a broken run never wins.

A run is broken when it diverged, or exploded without being stopped (runs/divergence.py):
its final numbers mean nothing (a float32 val loss can underflow to exactly 0.0 on its way
to 5e17). The score is the final validation loss (the train loss without a validation
split; f on a playground). The lr search keeps the rate with the lowest score among runs
that did not break; optimizers rank by (seeds broken, mean score over the others), so one
that broke on any seed ranks below every one that did not. Ties and "no winner" are said.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from trainkit.compare.specs import Contender
from trainkit.runs import divergence


def broken(run: dict, playground: bool) -> bool:
    """Diverged, or exploding on the way there (runs/divergence.py): such a run's final numbers
    mean nothing (a float32 val loss can underflow to exactly 0.0 on its way to 5e17)."""
    if run["status"] == "diverged":
        return True
    if playground:
        return not math.isfinite(run["final_value"])
    return divergence.exploding(run["history"])


def run_status(run: dict, playground: bool) -> str:
    """The run's status, or `exploding` for one that broke without being stopped."""
    return "exploding" if run["status"] != "diverged" and broken(run, playground) else run["status"]


def _score(run: dict, playground: bool) -> float:
    """What the lr search and the ranking minimise: the final validation loss (train loss
    without a validation split; f on a playground); inf for a broken run."""
    if broken(run, playground):
        return math.inf
    if playground:
        return run["final_value"]
    m = run["metrics"]
    value = m.get("val_loss", m.get("train_loss", math.inf))
    return value if math.isfinite(value) else math.inf


def pick_lr(tried: list[tuple[float, dict]], playground: bool) -> tuple[float, dict]:
    """The rate with the lowest score among runs that neither diverged nor exploded; the
    largest of tied rates; the smallest rate, said so, when every one broke."""
    scores = [(lr, _score(r, playground)) for lr, r in tried]
    entry: dict[str, Any] = {
        "scores": [
            {
                "lr": lr,
                "score": s if math.isfinite(s) else None,
                "status": run_status(r, playground),
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
        ok = [r for r in mine if not broken(r, playground)]
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
    each = [run_status(r, playground) for r in runs]
    kinds = sorted(set(each))
    return kinds[0] if len(kinds) == 1 else ", ".join(f"{s} {each.count(s)}" for s in kinds)


def _metric_order(k: str) -> tuple:
    split = {"train": 0, "val": 1, "test": 2}.get(k.split("_")[0], 3)
    return (split, 0 if k.endswith("_loss") else 1, k)
