"""`trainkit compress`'s output: the storage of every tensor and the metrics before and after."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from trainkit.report.terminal import fmt


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def storage_table(done) -> Table:
    table = Table(title="storage (dense = float32)", title_justify="left")
    for col in ("tensor", "params", "nonzeros", "sparsity", "dense", "stored", "ratio", "as"):
        table.add_column(col, justify="left" if col in ("tensor", "as") else "right")
    for r in done.tensors:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.1f}×"
        table.add_row(
            r["name"], str(r["params"]), str(r["nonzeros"]), f"{r['sparsity']:.1%}",
            _kb(r["bytes_dense_float32"]), _kb(r["bytes_stored"]), ratio, f"{r['encoding']} {r['dtype']}",
        )  # fmt: skip
    t = done.total
    table.add_row(
        "total", str(t["params"]), str(t["nonzeros"]), f"{t['sparsity']:.1%}",
        _kb(t["bytes_dense_float32"]), _kb(t["bytes_stored"]), f"{t['ratio']:.1f}×", "", style="bold",
    )  # fmt: skip
    table.add_row("file", "", "", "", "", _kb(t["file_bytes"]), f"{t['file_ratio']:.1f}×", ".npz")
    return table


def metrics_change_table(before: dict, after: dict) -> Table:
    table = Table(title="metrics", title_justify="left")
    for col in ("metric", "before", "after", "change"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for k, b in before.items():
        a = after.get(k)
        change = "" if a is None or b is None else f"{a - b:+.4g}"
        table.add_row(k, fmt(b), fmt(a), change)
    return table


def render_compressed(done, console: Console) -> None:
    s = done.settings
    what = []
    if s["sparsity"] is not None:
        what.append(f"{s['sparsity']:g} sparsity ({s['scope']})")
    if s["finetune_epochs"]:
        what.append(f"fine-tuned {s['finetune_epochs']} epochs")
    if s["int8"]:
        what.append(f"int8 {s['int8'].replace('_', ' ')}")
    console.print(f"compressed {done.run}: {', '.join(what)}", markup=False)
    console.print(storage_table(done))
    if done.before:
        console.print(metrics_change_table(done.before, done.after))
    else:
        console.print("the run held out no validation or test split: no metrics to compare", markup=False)
    console.print(f"wrote {done.path}", markup=False)
