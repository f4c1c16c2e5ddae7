"""Plots for compare-optimizers, with matplotlib from the optional `trainkit[plot]` extra.

Loss curves: per optimizer, the mean train (solid) and validation (dashed) loss per epoch
over the seeds, with a band from the lowest to the highest seed when there are several.
Playground: each optimizer's path over the test function's contours.
"""

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


def check_plot_path(path: str | Path) -> None:
    """Refuse, before any training, a plot path that could not be written: matplotlib
    missing, an extension it cannot write, a folder that does not exist, or an existing file."""
    _pyplot()
    from matplotlib.backend_bases import FigureCanvasBase

    p = Path(path)
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    ext = p.suffix.lower().lstrip(".")
    if ext not in formats:
        got = f"extension .{ext}" if ext else "no extension"
        raise PlotUnavailable(
            f"--plot {path}: {got}; the format follows the extension\n"
            f"    help: use .png (or one of: {', '.join('.' + f for f in formats)})"
        )
    folder = p.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise PlotUnavailable(
            f"--plot {path}: the folder {folder} {what}\n    help: create it first, or plot elsewhere"
        )
    if p.is_dir():
        raise PlotUnavailable(f"--plot {path}: is a folder\n    help: name a file, e.g. {p / 'compare.png'}")
    if p.exists():  # these commands have no --overwrite: a file the user has is never replaced
        raise PlotUnavailable(f"--plot {path}: already exists\n    help: choose another file, or delete it first")


def plot_comparison(comp, path: str | Path) -> None:
    plt = _pyplot()
    if comp.kind == "playground":
        _paths(plt, comp, path)
    else:
        _curves(plt, comp, path)


def _label(row: dict) -> str:
    return f"{row['optimizer']} (lr {row['lr']:g})" + (" ★" if row.get("winner") else "")


def _band(histories: list[list[dict]], key: str):
    """Epochs, mean, low and high of `key` over the seeds, up to the shortest history."""
    series = [[h[key] for h in hist if key in h] for hist in histories]
    n = min((len(s) for s in series), default=0)
    if n == 0:
        return None
    a = np.array([s[:n] for s in series], dtype=np.float64)
    with np.errstate(all="ignore"):
        return np.arange(1, n + 1), a.mean(axis=0), a.min(axis=0), a.max(axis=0)


def _curves(plt, comp, path) -> None:
    """Train (solid) and validation (dashed) loss per epoch, log scale, one colour per optimizer."""
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    seeds = sorted({r["seed"] for r in comp.runs})
    for i, row in enumerate(comp.summary):
        color = f"C{i}"
        hists = [r["history"] for r in comp.runs if r["optimizer"]["label"] == row["optimizer"]]
        for key, ls, part in (("train_loss", "-", "train"), ("val_loss", "--", "val")):
            band = _band(hists, key)
            if band is None:
                continue
            epochs, mean, lo, hi = band
            ax.plot(epochs, mean, color=color, ls=ls, label=f"{_label(row)} {part}")
            if len(hists) > 1:
                ax.fill_between(epochs, lo, hi, color=color, alpha=0.15, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss" + (f" (mean of {len(seeds)} seeds, band: min to max)" if len(seeds) > 1 else ""))
    which = f"seeds {seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"
    ax.set_title(f"compare-optimizers: loss curves ({which})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _paths(plt, comp, path) -> None:
    """Each optimizer's path over the test function's contours (faint, so the paths show)."""
    import matplotlib.patheffects as pe

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
    contour = dict(cmap="Greys_r", linewidths=0.5, alpha=0.45, zorder=1)
    if zs.min() > 0:
        levels = np.logspace(np.log10(max(zs.min(), 1e-3)), np.log10(zs.max()), 30)
        ax.contour(xs, ys, zs, levels=levels, **contour)
    else:
        ax.contour(xs, ys, zs, levels=30, **contour)
    halo = [pe.Stroke(linewidth=3.5, foreground="white"), pe.Normal()]
    lrs = {r["optimizer"]: r["lr"] for r in comp.summary}
    for i, run in enumerate(comp.runs):
        pts = np.array(run["path"])
        label = run["optimizer"]["label"]
        ax.plot(
            pts[:, 0],
            pts[:, 1],
            "-",
            color=f"C{i}",
            lw=1.8,
            zorder=3,
            path_effects=halo,
            label=f"{label} (lr {lrs.get(label, run['optimizer']['lr']):g}, {run['status']})",
        )
        ax.plot(pts[-1, 0], pts[-1, 1], "o", color=f"C{i}", ms=6, mec="white", zorder=4)
    ax.plot(*problem.start, "ks", ms=7, label="start", zorder=5)
    for j, m in enumerate(problem.minima()):
        ax.plot(*m, "r*", ms=13, mec="white", zorder=5, label="minimum" if j == 0 else None)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"{problem.name}: optimizer paths over contours of f(x, y)")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
