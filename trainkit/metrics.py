"""Metrics accumulated batch by batch over an epoch, then reported as `<split>_<metric>`.

Regression: mse, mae, r2 (uniform average over outputs, as sklearn). With target scaling
(data.scale_target) the model learns t = (y − offset) / factor. Training batches are summed
on t, their loss given in the target's units (the trainer computes it again on unscaled
outputs and targets), and mse and mae are converted to the target's units (per output:
mse_y = factor² · mse_t, mae_y = factor · mae_t; r2 is the same on y and t). Evaluated
splits are summed in the target's units directly (runs.trainer.evaluate). Classification:
accuracy; binary adds precision, recall and f1 for the positive class (label index 1).

Per batch only what changes is summed (squared and absolute errors, correct counts, a
confusion count), on the run's device: the sums are read to the host once, when the epoch's
result (or a mid-epoch checkpoint) asks for them; r2's total sum of squares depends on the split's targets alone, so it is
computed once per split (`target_stats`), which keeps tiny full-batch steps cheap.
"""

from __future__ import annotations

import numpy as np

from trainkit import registry
from trainkit.backend import to_numpy, xp
from trainkit.losses import Head, head_for

DEFAULT_METRICS = {
    "regression": ("r2", "mae", "mse"),
    "binary": ("accuracy", "precision", "recall", "f1"),
    "multiclass": ("accuracy",),
}


def default_metrics(task: str, loss_name: str, scaled: bool = False) -> list[str]:
    """The metrics reported when train.metrics is not given. The loss is reported anyway, so
    a metric of the same name is left out, unless the targets are scaled: scaled runs keep
    their mse/mae columns (for a mean-reduced loss of that name they equal the loss, both
    in the target's units)."""
    return [m for m in DEFAULT_METRICS[task] if m != loss_name or scaled]


def _host(v):
    """A running sum as host data: a Python number, or a numpy array (per-output sums)."""
    v = to_numpy(v)
    return v.item() if isinstance(v, np.generic) or (isinstance(v, np.ndarray) and v.ndim == 0) else v


def _f64(a):
    """A device number kept in float64 on the device; a host one as a Python float (faster)."""
    return float(a) if isinstance(a, np.generic) else a.astype(xp.float64)


def _items(kv):
    return kv[0], _host(kv[1])


def true_labels(target):
    if target.ndim == 1:
        return target  # class indices
    if target.shape[1] == 1:
        return target[:, 0] > 0.5  # binary 0/1 targets
    return target.argmax(axis=1)  # one-hot / class probabilities


def target_stats(T) -> np.ndarray:
    """Σ(t − t̄)² per output over a whole split: the denominator of r2."""
    t = to_numpy(T).reshape(len(T), -1).astype(np.float64)
    return ((t - t.mean(axis=0)) ** 2).sum(axis=0)


class MetricAccumulator:
    """Running sums for one split over one epoch."""

    def __init__(
        self,
        task: str,
        loss_name: str,
        names=None,
        reduction: str = "mean",
        sst=None,
        head: Head | None = None,
        target_factor=None,
    ):
        """`head` (losses.head_for) turns outputs into labels; default: what the loss takes.
        `target_factor`: per-output factors of scaled regression targets (mse, mae unscaled)."""
        self.task, self.loss_name = task, loss_name
        if head is None and task != "regression":
            takes = registry.get("losses", loss_name).build.takes
            head = head_for(task, "logits" if takes == "values" else takes, loss_name)
        self.head = head
        self.loss_is_mean = reduction == "mean"
        self.factor = None if target_factor is None else np.asarray(target_factor, dtype=np.float64)
        if names is None:
            names = default_metrics(task, loss_name, self.factor is not None)
        self.names = tuple(names)
        self.sst = sst
        self._sst = None if sst is None else np.ravel(sst).tolist()
        self._sse = "mse" in self.names or "r2" in self.names
        self._sae = "mae" in self.names
        self.loss_sum = 0.0
        self.n = 0
        self.sums: dict[str, float] = {}

    def state_dict(self) -> dict:
        """The running sums as JSON-able data (floats round-trip exactly through JSON)."""
        return {
            "loss_sum": self.loss_sum,
            "n": self.n,
            "sums": {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in map(_items, self.sums.items())},
        }

    def load_state_dict(self, s: dict) -> None:
        self.loss_sum, self.n = s["loss_sum"], s["n"]
        self.sums = {k: np.array(v, dtype=np.float64) if isinstance(v, list) else v for k, v in s["sums"].items()}

    def add(self, pred, target, loss: float, n: int) -> None:
        """`loss` is the batch's loss as the loss reduces it; `target` as the loss prepared it."""
        self.loss_sum += loss * n if self.loss_is_mean else loss
        self.n += n
        if not self.names:
            return
        s = self.sums
        if self.task == "regression":
            d = pred - target.reshape(pred.shape)
            if self._sse:  # per output (an array), or a float for one output: a dot product
                if d.shape[1] == 1:
                    sse = _f64(xp.vdot(d, d))
                else:
                    sse = xp.square(d).sum(axis=0).astype(xp.float64)
                s["sse"] = s["sse"] + sse if "sse" in s else sse
            if self._sae:
                if self.factor is not None and d.shape[1] > 1:  # per output: each has its own factor
                    sae = xp.abs(d, out=d).sum(axis=0).astype(xp.float64)
                else:
                    sae = _f64(xp.abs(d, out=d).sum())
                s["sae"] = s["sae"] + sae if "sae" in s else sae
            s["outputs"] = pred.shape[1]
        else:
            labels, truth = self.head.labels(pred), true_labels(target)
            s["correct"] = s.get("correct", 0) + (labels == truth).sum()
            if self.task == "binary":
                pos, true_pos = labels == 1, truth == 1
                tp = (pos & true_pos).sum()
                s["tp"] = s.get("tp", 0) + tp
                s["fp"] = s.get("fp", 0) + pos.sum() - tp
                s["fn"] = s.get("fn", 0) + true_pos.sum() - tp

    def result(self, split: str) -> dict[str, float]:
        """Mean loss per sample (or the epoch's total for reduction: sum) and each metric."""
        n = max(self.n, 1)
        out = {f"{split}_loss": self.loss_sum / n if self.loss_is_mean else self.loss_sum}
        s = dict(map(_items, self.sums.items()))
        sse = s.get("sse", 0.0)
        sse = sse.tolist() if isinstance(sse, np.ndarray) else [sse]  # per output
        f = self.factor
        for name in self.names:
            if name == "mse":
                v = (sum(sse) if f is None else float(np.dot(sse, f * f))) / (n * s["outputs"])
            elif name == "mae":
                sae = s.get("sae", 0.0)
                v = (float(np.sum(sae)) if f is None else float(np.sum(sae * f))) / (n * s["outputs"])
            elif name == "r2":
                sst = self._sst if self._sst is not None else [1.0] * s["outputs"]
                r2 = [1.0 - e / t if t > 0 else 0.0 for e, t in zip(sse, sst)]
                v = sum(r2) / len(r2)
            elif name == "accuracy":
                v = s["correct"] / n
            elif name == "precision":
                v = s["tp"] / (s["tp"] + s["fp"]) if s["tp"] + s["fp"] else 0.0
            elif name == "recall":
                v = s["tp"] / (s["tp"] + s["fn"]) if s["tp"] + s["fn"] else 0.0
            elif name == "f1":
                d = 2 * s["tp"] + s["fp"] + s["fn"]
                v = 2 * s["tp"] / d if d else 0.0
            else:  # pragma: no cover - names are validated by the schema
                raise ValueError(name)
            out[f"{split}_{name}"] = float(v)
        return out
