"""The sweep's final table: one row per point, best first, and the best point's command."""

from __future__ import annotations

import json

from rich.table import Table


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, ".4g")
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def sweep_table(sw, limit: int = 20) -> Table:
    from trainkit.sweep.runner import ranking

    m = sw.spec.metric
    keys = list(sw.spec.parameters)
    table = Table(title=f"sweep: {m.name} ({m.goal}), {len(sw.rows)}/{len(sw.trials)} trials ended")
    for col in ["#", *keys, m.name, *(["± std"] if sw.spec.seeds > 1 else []), "status", "trials"]:
        table.add_column(col, justify="right" if col not in ("status", "trials") else "left")
    for rank, r in enumerate(ranking(sw)[:limit], 1):
        std = [_fmt(r["std"])] if sw.spec.seeds > 1 else []
        table.add_row(
            str(rank),
            *(_fmt(r["values"][k]) for k in keys),
            _fmt(r["mean"]),
            *std,
            r["status"],
            ", ".join(r["trials"]),
        )
    return table
