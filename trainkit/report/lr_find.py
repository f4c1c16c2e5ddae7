"""Rendering of the learning-rate range test: a table, a sparkline, and a PNG."""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from trainkit.report.terminal import fmt, sparkline


def lr_find_report(result, console: Console, rows: int = 12) -> None:
    """About `rows` evenly spaced steps of the ramp, the curve, why it stopped, the suggestion."""
    n = len(result.lrs)
    picks = sorted({round(i * (n - 1) / (rows - 1)) for i in range(rows)}) if n > rows else range(n)
    marks = {"minimum": result.minimum_lr, "steepest": result.steepest_lr}
    table = Table(title="lr-find", title_justify="left")
    for col in ("step", "lr", "loss", "smoothed"):
        table.add_column(col, justify="right")
    for i in picks:
        table.add_row(str(i + 1), f"{result.lrs[i]:.3g}", fmt(result.losses[i]), fmt(result.smoothed[i]))
    console.print(table)
    finite = [s for s in result.smoothed if math.isfinite(s)]
    console.print(f"smoothed loss {sparkline(finite, 40)}  ({result.lrs[0]:.1e} → {result.lrs[-1]:.1e})")
    console.print(f"stopped: {result.stop_reason}")
    for name, lr in marks.items():
        what = "the smoothed minimum's rate / 10" if name == "minimum" else "steepest fall of the smoothed loss"
        console.print(f"{name:>9}: {'—' if lr is None else format(lr, '.3g')}  ({what})")
    if result.suggested_lr is not None:
        console.print(f"suggested lr: {result.suggested_lr:.3g} ({result.suggestion})")


def plot_lr_find(result, path: str | Path) -> None:
    from trainkit.report.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.plot(result.lrs, result.losses, color="0.75", lw=0.8, label="batch loss")
    ax.plot(result.lrs, result.smoothed, color="C0", label="smoothed")
    for name, lr, color in (("minimum/10", result.minimum_lr, "C1"), ("steepest", result.steepest_lr, "C2")):
        if lr is not None:
            ax.axvline(lr, color=color, ls="--", label=f"{name}: {lr:.3g}")
    finite = [s for s in result.smoothed if math.isfinite(s)]
    if finite:  # from the lowest batch loss to a bit above the start: the divergence spike is off-scale
        lo, hi = min(min(finite), min(v for v in result.losses if math.isfinite(v))), finite[0]
        ax.set_ylim(lo - 0.1 * (hi - lo + 1e-12), max(hi, lo) + 0.6 * (hi - lo + 1e-12))
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    chosen = "none" if result.suggested_lr is None else f"{result.suggested_lr:.3g} ({result.suggestion})"
    ax.set_title(f"lr-find, {result.info.get('optimizer', '')}: suggested lr {chosen}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
