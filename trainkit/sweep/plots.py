"""`trainkit sweep --plot F`: the metric against each swept parameter, one panel each, every
ended trial a point (log x for log_uniform keys; categories for values that are not numbers)."""

from __future__ import annotations

import json
import math
from pathlib import Path


def plot_sweep(sw, path: str | Path) -> None:
    from trainkit.report.plots import _pyplot

    plt = _pyplot()
    keys = list(sw.spec.parameters)
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4), squeeze=False)
    rows = [(t, sw.rows[t.id]) for t in sw.trials if t.id in sw.rows]
    name = sw.spec.metric.name
    for ax, key in zip(axes[0], keys):
        p = sw.spec.parameters[key]
        pts = [(t.values[key], r["final"], r["status"]) for t, r in rows if r.get("final") is not None]
        pts = [(x, y, s) for x, y, s in pts if math.isfinite(y)]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _, _ in pts)
        if not numeric:  # categories, in the order the spec lists them
            order = [json.dumps(v) for v in (p.values or [])]
            pts = [(order.index(json.dumps(x)), y, s) for x, y, s in pts]
            ax.set_xticks(range(len(order)), order, rotation=30)
        for status, marker in (("completed", "o"), ("early_stopped", "o"), ("pruned", "x")):
            mine = [(x, y) for x, y, s in pts if s == status]
            if mine:
                ax.scatter(*zip(*mine), marker=marker, label=status, alpha=0.8)
        if p.distribution == "log_uniform":
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"sweep: {name} ({sw.spec.metric.goal}) against each parameter")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
