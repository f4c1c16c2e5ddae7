"""Export run dirs for other tools: `trainkit export RUN --format tensorboard` writes one
TensorBoard event file into each run dir (tensorboardX, from the `tensorboard` extra), after
the fact: training never depends on it."""

from __future__ import annotations

import json
import math
from pathlib import Path

from trainkit.runs.views import ViewError, history, is_running, resolved_config


def tensorboardx():
    """The tensorboardX module, or a ViewError that says how to install it."""
    try:
        import tensorboardX
    except ImportError:
        raise ViewError(
            "--format tensorboard needs tensorboardX, which is not installed\n"
            "    help: pip install 'trainkit[tensorboard]'  (or: pip install tensorboardX)"
        ) from None
    return tensorboardX


def _hparam(v):
    """TensorBoard's hparams take numbers, strings and booleans: anything else as JSON text."""
    return v if isinstance(v, (bool, int, float, str)) else json.dumps(v)


def export_tensorboard(path: Path, overwrite: bool = False) -> dict:
    """One event file in the run dir with every finite scalar of metrics.jsonl (the lr
    included) at its epoch, and the config as hparams with the final metrics, so that
    `tensorboard --logdir DIR` shows the run. Returns what was written."""
    tbx = tensorboardx()
    from tensorboardX.summary import hparams

    if is_running(path):
        raise ViewError(f"{path}: the run is still running\n    help: export it once it has ended")
    rows = history(path)
    old = sorted(path.glob("events.out.tfevents.*"))
    if old and not overwrite:
        raise ViewError(
            f"{path}: already holds an event file ({old[0].name}); refusing to add a second\n"
            "    help: --overwrite to replace it"
        )
    config = resolved_config(path)
    n = 0
    try:
        for f in old:  # first: a new file named like the old one (the same second) is then not deleted
            f.unlink()
        writer = tbx.SummaryWriter(logdir=str(path), flush_secs=3600)
        try:
            for row in rows:
                for k, v in row.items():
                    if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(v):
                        writer.add_scalar(k, v, global_step=row["epoch"])
                        n += 1
            final = {k: v for k, v in (rows[-1] if rows else {}).items() if k != "epoch" and v is not None}
            # into the same file (SummaryWriter.add_hparams would open a second run for them)
            for s in hparams({k: _hparam(v) for k, v in config.items() if v is not None}, final):
                writer.file_writer.add_summary(s)
        finally:
            writer.close()
    except OSError as e:
        raise ViewError(f"{path}: cannot write the event file: {e.strerror or e}") from None
    (event,) = path.glob("events.out.tfevents.*")
    return {"run": str(path), "event_file": str(event), "scalars": n, "epochs": len(rows)}
