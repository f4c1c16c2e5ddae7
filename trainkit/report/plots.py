"""PNG plots for compare-optimizers, with matplotlib from the optional `trainkit[plot]` extra."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainkit.errors import TrainkitError


class PlotUnavailable(TrainkitError):
    kind = "plot"


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib, which is not installed\n"
            "    help: pip install 'trainkit[plot]'  (or: pip install matplotlib)"
        ) from None
    return plt


def require_matplotlib() -> None:
    _pyplot()


def plot_comparison(comp, path: str | Path) -> None:
    plt = _pyplot()
    if comp.kind == "playground":
        _paths(plt, comp, path)
    else:
        _curves(plt, comp, path)


def _curves(plt, comp, path) -> None:
    """Train (solid) and validation (dashed) loss per epoch, log scale, one colour per optimizer."""
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for i, row in enumerate(comp.summary):
        color = f"C{i}"
        label = row["optimizer"] + (" ★" if row.get("winner") else "")
        epochs = np.arange(1, len(row["curve"]) + 1)
        ax.plot(epochs, row["curve"], color=color, label=f"{label} (train)")
        if row.get("val_curve"):
            ax.plot(
                np.arange(1, len(row["val_curve"]) + 1), row["val_curve"], color=color, ls="--", label=f"{label} (val)"
            )
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(f"compare-optimizers: loss curves (seed {comp.runs[0]['seed']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _paths(plt, comp, path) -> None:
    """Each optimizer's path over the test function's contours."""
    problem = comp.problem
    (x0, x1), (y0, y1) = problem.bounds
    for r in comp.runs:  # widen the view to show every path that stayed finite
        pts = np.array([p for p in r["path"] if np.isfinite(p).all() and np.abs(p).max() < 1e3])
        if len(pts):
            x0, x1 = min(x0, pts[:, 0].min()), max(x1, pts[:, 0].max())
            y0, y1 = min(y0, pts[:, 1].min()), max(y1, pts[:, 1].max())
    xs, ys = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
    zs = problem.f(xs, ys)
    fig, ax = plt.subplots(figsize=(8, 6), dpi=110)
    if zs.min() > 0:
        levels = np.logspace(np.log10(max(zs.min(), 1e-3)), np.log10(zs.max()), 30)
        ax.contour(xs, ys, zs, levels=levels, cmap="viridis", linewidths=0.6, alpha=0.7)
    else:
        ax.contour(xs, ys, zs, levels=30, cmap="viridis", linewidths=0.6, alpha=0.7)
    for i, run in enumerate(comp.runs):
        pts = np.array(run["path"])
        ax.plot(
            pts[:, 0], pts[:, 1], "-", color=f"C{i}", lw=1.5, label=f"{run['optimizer']['label']} ({run['status']})"
        )
        ax.plot(pts[-1, 0], pts[-1, 1], "o", color=f"C{i}", ms=5)
    ax.plot(*problem.start, "ks", ms=6, label="start")
    for m in problem.minima():
        ax.plot(*m, "r*", ms=12)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_title(f"{problem.name}: optimizer paths")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
