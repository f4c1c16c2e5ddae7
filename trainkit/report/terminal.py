"""Terminal rendering: a rich progress bar on terminals, plain lines elsewhere, result tables.

Plain mode (not a terminal, or CI / TERM=dumb / NO_COLOR set) writes one line per logged
epoch with no ANSI codes: about 50 lines per run at most, the first and last epoch always.
"""

from __future__ import annotations

import math
import os
from typing import IO

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

SMALL_MODEL = 24  # parameters: up to this many are printed in full


def choose_mode(requested: str, stream: IO) -> str:
    if requested != "auto":
        return requested
    env = os.environ
    if env.get("CI") or env.get("TERM") == "dumb" or "NO_COLOR" in env or not stream.isatty():
        return "plain"
    return "bar"


def make_console(stream: IO, plain: bool) -> Console:
    if plain:
        return Console(file=stream, force_terminal=False, no_color=True, highlight=False, width=160)
    return Console(file=stream, highlight=False)


def fmt(v) -> str:
    if isinstance(v, float):
        if v == 0 or math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.4g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


def _row_text(row: dict) -> str:
    """The losses, the first metric of each split (r2 or accuracy) and the lr, on one line."""
    keys = [k for k in row if k.endswith("_loss")]
    for split in ("train", "val"):
        first = next((k for k in row if k.startswith(split + "_") and k != split + "_loss"), None)
        if first:
            keys.append(first)
    keys.append("lr")
    return "  ".join(f"{k}={fmt(row[k])}" for k in keys if k in row)


class Progress:
    """Per-epoch progress: `bar`, `plain` or `none`. The bar appears when training starts
    (`start`): a resumed run that has nothing left to do shows none."""

    def __init__(self, mode: str, stream: IO, epochs: int, log_every: int | None = None):
        self.mode, self.stream, self.epochs = mode, stream, epochs
        self.every = log_every or max(1, math.ceil(epochs / 50))
        self._bar = None
        self._task = None

    def __enter__(self):
        return self

    def _open_bar(self, done: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("[bold]epoch"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=Console(file=self.stream),
            transient=False,
        )
        self._bar.__enter__()
        self._task = self._bar.add_task("train", total=self.epochs, completed=done, status="")

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start(self, exp) -> None:
        """Show the bar (from the epoch a resumed run continues at), or announce the run
        (plain mode): what is trained on what."""
        if self.mode == "bar":
            self._open_bar(exp.trainer.epoch)
        elif self.mode == "plain":
            i = exp.info
            cfg = exp.loaded.config
            print(
                f"training {cfg.model.name} ({i['n_params']} parameters) on {i['n_train']} samples "
                f"[{i['task']}] with {cfg.optimizer.name}, loss {cfg.loss.name}, {cfg.train.epochs} epochs",
                file=self.stream,
                flush=True,
            )

    def update(self, row: dict) -> None:
        e = row["epoch"]
        if self._bar is not None:
            status = "loss " + fmt(row["train_loss"])
            if "val_loss" in row:
                status += "  val " + fmt(row["val_loss"])
            self._bar.update(self._task, completed=e, status=status)
        elif self.mode == "plain" and (e == 1 or e % self.every == 0 or e == self.epochs):
            width = len(str(self.epochs))
            print(f"epoch {e:>{width}}/{self.epochs}  {_row_text(row)}", file=self.stream, flush=True)


def params_table(params: dict[str, np.ndarray]) -> Table:
    total = sum(v.size for v in params.values())
    table = Table(title="parameters", title_justify="left")
    table.add_column("name")
    table.add_column("shape")
    if total <= SMALL_MODEL:
        table.add_column("value")
        for k, v in params.items():
            text = np.array2string(v, precision=4, separator=", ", suppress_small=True)
            table.add_row(k, str(tuple(v.shape)), escape(text))  # "[inf]" is not a style tag
    else:
        for col in ("mean", "std", "L2 norm"):
            table.add_column(col, justify="right")
        for k, v in params.items():
            table.add_row(
                k,
                str(tuple(v.shape)),
                fmt(float(v.mean())),
                fmt(float(v.std())),
                fmt(float(np.linalg.norm(v))),
            )
    return table


def metrics_table(metrics: dict[str, float]) -> Table:
    splits = [s for s in ("train", "val", "test", "data") if any(k.startswith(s + "_") for k in metrics)]
    names: list[str] = []
    for k in metrics:
        for s in splits:
            if k.startswith(s + "_") and k[len(s) + 1 :] not in names:
                names.append(k[len(s) + 1 :])
    table = Table(title="metrics", title_justify="left")
    table.add_column("metric")
    for s in splits:
        table.add_column(s, justify="right")
    for n in names:
        table.add_row(n, *[fmt(metrics[f"{s}_{n}"]) if f"{s}_{n}" in metrics else "" for s in splits])
    extra = {k: v for k, v in metrics.items() if not any(k.startswith(s + "_") for s in splits)}
    for k, v in extra.items():
        table.add_row(k, fmt(v), *[""] * (len(splits) - 1))
    return table


STATUS_STYLE = {
    "completed": "green",
    "early_stopped": "green",
    "diverged": "bold red",
    "interrupted": "yellow",
}


def render_result(result, console: Console) -> None:
    style = STATUS_STYLE.get(result.status, "")
    console.print(
        f"[{style}]{result.status}[/]: {escape(result.stop_reason)} "
        f"({result.epochs_run} epochs, {result.timing['train_s']:.2f}s)"
    )
    if result.message:
        console.print(escape(result.message))
    if result.params_epoch and result.params_epoch != result.epochs_run:
        console.print(f"metrics and parameters of epoch {result.params_epoch}, the best (early_stopping.restore_best)")
    if result.metrics:
        console.print(metrics_table(result.metrics))
    if result.info.get("sparsity"):
        console.print(sparsity_table(result.info["sparsity"], result.params))
    console.print(params_table(result.params))


def sparsity_table(sparsity: dict[str, float], params: dict[str, np.ndarray]) -> Table:
    """Pruned tensors (prune: block): weights, nonzeros, sparsity; the total last."""
    table = Table(title="sparsity", title_justify="left")
    for col in ("name", "weights", "nonzero", "sparsity"):
        table.add_column(col, justify="left" if col == "name" else "right")
    total = nonzero = 0
    for name, s in sparsity.items():
        n = params[name].size if name in params else 0
        nz = int(np.count_nonzero(params[name])) if name in params else 0
        total, nonzero = total + n, nonzero + nz
        table.add_row(name, str(n), str(nz), f"{s:.2%}")
    table.add_row("total", str(total), str(nonzero), f"{1 - nonzero / total:.2%}" if total else "")
    return table


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values, width: int = 16) -> str:
    """A unicode sparkline of a loss curve, on a log scale when all values are positive."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return ""
    if len(vals) > width:
        vals = [vals[round(i * (len(vals) - 1) / (width - 1))] for i in range(width)]
    if min(vals) > 0:
        vals = [math.log10(v) for v in vals]
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12:
        return SPARKS[0] * len(vals)
    return "".join(SPARKS[min(7, int((v - lo) / (hi - lo) * 8))] for v in vals)


def _short(v) -> str:
    """A number in at most 8 characters (3 significant digits), for the comparison table."""
    if v is None:
        return "–"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e7:  # a mean of step counts
        return str(int(v))
    if isinstance(v, float) and v != 0 and math.isfinite(v) and not 1e-3 <= abs(v) < 1e5:
        return f"{v:.2e}".replace("e-0", "e-").replace("e+0", "e+")
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _pm(row: dict, key: str) -> str:
    v = row.get(key)
    if v is None:
        return "–"
    sd = row.get(key + "_std")
    return _short(v) + (f"±{sd:.1g}" if sd and row.get("runs", 1) > 1 else "")


def comparison_table(comp) -> Table:
    """The comparison, one row per optimizer, in at most 80 columns for the usual set:
    what the lr search and the ★ went by is in the title, the test split has its own column."""
    from rich import box

    playground = comp.kind == "playground"
    rows = comp.summary
    picked = getattr(comp, "picked_on", "") or ("final f" if playground else "val loss")
    test = ", never on test" if any("test_loss" in r for r in rows) else ""
    n = max((r.get("runs", 1) for r in rows), default=1)
    seeds = f" (means of {n} seeds)" if n > 1 else ""
    table = Table(
        title=f"optimizers compared{seeds}",
        title_justify="left",
        caption=f"lr picked on {picked}{test}" if comp.lr_search else None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,  # a space between columns, a rule under the header: room for the numbers
        padding=(0, 0),
        show_edge=False,
    )
    table.add_column("optimizer", style="bold")
    table.add_column("lr", justify="right")
    if playground:
        cols = [("final point", None), ("f", "final_value"), ("to min", "distance_to_minimum"), ("steps", "steps")]
    else:
        has_val = any("val_loss" in r for r in rows)  # then the train loss is in --json, not here
        cols = [("val", "val_loss"), ("best@ep", "best_val_loss")] if has_val else [("train", "train_loss")]
        if any("test_loss" in r for r in rows):
            cols.append(("test", "test_loss"))
        for split in ("test", "val", "train"):
            if any(f"{split}_accuracy" in r for r in rows):
                cols.append((f"{split} acc", f"{split}_accuracy"))
                break
    if any("reached_target" in r for r in rows):
        cols.append(("to target", None))
    cols += [("status", None), ("curve", None)] if playground else [("time", None), ("status", None), ("curve", None)]
    for title, _ in cols:
        table.add_column(title, justify="left" if title in ("status", "curve", "final point") else "right")
    score_key = {"val loss": "val_loss", "train loss": "train_loss", "final f": "final_value"}.get(picked)
    for r in rows:
        cells = [("★ " if r.get("winner") else "  ") + r["optimizer"], f"{r['lr']:g}"]
        for title, key in cols:
            if key == "best_val_loss":
                cells.append(f"{_short(r[key])}@{round(r['best_epoch'])}" if r.get(key) is not None else "–")
            elif key:  # ± std over the seeds for the number that ranks; the rest are means
                cells.append(_pm(r, key) if key == score_key else _short(r.get(key)))
            elif title == "final point":
                cells.append("(" + ", ".join(f"{v:.3g}" for v in r["final_point"]) + ")")
            elif title == "to target":
                v = r.get(f"to_target_{'step' if playground else 'epoch'}")
                text = "–" if v is None else str(round(v))
                cells.append(text + (f" [{r['reached_target']}]" if r.get("runs", 1) > 1 else ""))
            elif title == "time":
                cells.append(f"{r['wall_s']:.2f}s" if r.get("wall_s") is not None else "–")
            elif title == "status":
                cells.append(r["status"].replace("early_stopped", "stopped"))
            elif title == "curve":
                cells.append(sparkline(r["curve"], width=8))
        table.add_row(*(escape(c) for c in cells))
    return table


class CompareProgress:
    """compare-optimizers' progress on `stream` (stderr): a transient bar on a terminal, one
    plain line per finished run elsewhere."""

    def __init__(self, stream: IO, mode: str = "auto"):
        self.stream, self.mode = stream, choose_mode(mode, stream)
        self._bar = self._task = None

    def __enter__(self):
        if self.mode == "bar":
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]runs"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[last]}"),
                console=Console(file=self.stream),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("compare", total=None, last="")
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def update(self, done: int, total: int, line: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=total, completed=done, last=escape(line))
        elif self.mode == "plain":
            print(f"[{done:>{len(str(total))}}/{total}] {line}", file=self.stream, flush=True)
