"""Rendering of the run views (trainkit.runs.views): the runs table, a config diff, curves
as sparklines on the terminal or as a PNG."""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import numpy as np
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from trainkit.report.terminal import STATUS_STYLE, fmt, sparkline

STATUS_STYLE = {**STATUS_STYLE, "running": "cyan", "damaged": "bold magenta"}


def _num(v) -> str:
    return "–" if v is None else fmt(float(v))


def _when(t: float | None) -> str:
    return "–" if t is None else _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def _wall(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.2f}s" if s < 60 else f"{s / 60:.1f}m" if s < 3600 else f"{s / 3600:.1f}h"


def runs_table(rows, metric: str) -> Text:
    """Aligned columns, one line per run (never wrapped: grep and awk see one run a line),
    the status coloured on terminals. Plain text, not a rich Table: a Table of 1,000 rows
    takes a second to lay out, this takes 30 ms."""
    head = ("run", "model", "optimizer", "status", "epochs", f"best {metric}", f"final {metric}", "wall", "when")
    right = {4, 5, 6, 7}
    cells = [
        (
            r.name,
            r.model or "–",
            r.optimizer or "–",
            r.status,
            "–" if r.epochs is None else str(r.epochs),
            _num(r.best),
            _num(r.final),
            _wall(r.wall_s),
            _when(r.when),
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]

    def padded(c) -> list[str]:
        return [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(c, widths))]

    text = Text("  ".join(padded(head)).rstrip() + "\n", style="bold")
    for c, r in zip(cells, rows):
        p = padded(c)
        text.append("  ".join(p[:3]) + "  ")
        text.append(p[3], style=STATUS_STYLE.get(r.status, ""))
        text.append(("  " + "  ".join(p[4:])).rstrip() + "\n")
    text.append(f"{len(rows)} run{'s' if len(rows) != 1 else ''}")
    return text


def damaged_notes(rows) -> list[str]:
    return [f"{r.name}: {r.note}" for r in rows if r.status == "damaged"]


def diff_tables(doc: dict) -> list[Table]:
    a, b = Path(doc["a"]).name or doc["a"], Path(doc["b"]).name or doc["b"]
    if a == b:
        a, b = doc["a"], doc["b"]
    from trainkit.runs.views import show

    config = Table(title="config: keys that differ", title_justify="left")
    for title in ("key", a, b):
        config.add_column(escape(title))
    for row in doc["config"]:
        config.add_row(row["key"], escape(show(row["a"])), escape(show(row["b"])))
    metrics = Table(title="final metrics", title_justify="left")
    metrics.add_column("metric")
    for title in (a, b):
        metrics.add_column(escape(title), justify="right")
    metrics.add_row("status", doc["run_status"]["a"], doc["run_status"]["b"])
    for row in doc["metrics"]:
        metrics.add_row(row["metric"], _num(row["a"]), _num(row["b"]))
    return [config, metrics]


def _finite(values) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def sparkline_table(runs: list[dict], metrics: list[str]) -> Table:
    """One row per run and metric: the curve, its first, last and best value.
    `runs`: {"label", "rows"} each."""
    from trainkit.runs.views import lower_is_better

    table = Table(title="curves", title_justify="left")
    for title, justify in (("run", "left"), ("metric", "left"), ("curve", "left")):
        table.add_column(title, justify=justify)
    for title in ("first", "last", "best (epoch)"):
        table.add_column(title, justify="right")
    for run in runs:
        for m in metrics:
            pts = [(r["epoch"], r[m]) for r in run["rows"] if r.get(m) is not None]
            if not pts:
                table.add_row(escape(run["label"]), m, "", "–", "–", "–")
                continue
            pick = min if lower_is_better(m) else max
            best = pick(pts, key=lambda p: p[1])
            table.add_row(
                escape(run["label"]),
                m,
                sparkline([v for _, v in pts], width=24),
                _num(pts[0][1]),
                _num(pts[-1][1]),
                f"{_num(best[1])} ({best[0]})",
            )
    return table


def spans_decades(values) -> bool:
    """Log scale where every value is positive and they span two decades or more."""
    vals = _finite(values)
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) >= 100


def plot_runs(runs: list[dict], metrics: list[str], path: str | Path) -> None:
    """One panel per metric, one colour per run, all runs on each panel's shared axes."""
    from trainkit.report.plots import _pyplot

    plt = _pyplot()
    with np.errstate(over="ignore"):  # a diverging run's 1e300s on a log axis
        _draw(plt, runs, metrics, path)


def _draw(plt, runs, metrics, path) -> None:
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 4.5), dpi=110, squeeze=False)
    for ax, m in zip(axes[0], metrics):
        every = []
        for i, run in enumerate(runs):
            pts = [(r["epoch"], math.nan if r.get(m) is None else r[m]) for r in run["rows"] if m in r]
            if pts:
                ax.plot(*zip(*pts), color=f"C{i % 10}", label=run["label"], lw=1.4)
                every += [v for _, v in pts]
        if spans_decades(every):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(m)
        ax.set_title(m)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
