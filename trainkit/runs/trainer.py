"""The training loop: epochs of (shuffled) mini-batches, validation, history, stopping.

One step: gather a batch → forward → loss → backward (chain rule, layer by layer) →
regularization gradient → clipping → optimizer update with the scheduled learning rate.
After each epoch: validation in evaluation mode, the history row, callbacks, stop checks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainkit.backend import scalar, take_rows, to_device, to_numpy, xp
from trainkit.metrics import MetricAccumulator, default_metrics, target_stats
from trainkit.runs import divergence

_EMPTY_SUMS = {"loss_sum": 0.0, "n": 0, "sums": {}}


@dataclass
class RunResult:
    """What a run produced; `to_dict()` is the `--json` document."""

    status: str  # completed | early_stopped | diverged | interrupted
    epochs_run: int
    metrics: dict[str, float]
    params: dict[str, np.ndarray]
    history: list[dict[str, float]]
    timing: dict[str, float]
    stop_reason: str
    best_epoch: int | None = None
    message: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # task, sizes, classes
    config: dict[str, Any] = field(default_factory=dict)
    params_epoch: int | None = None  # the epoch whose parameters `params` are (None: diverged)
    run_dir: str | None = None

    def to_dict(self) -> dict:
        """The `--json` document. Non-finite numbers (a diverged run's loss or parameters)
        are left as floats here; writers turn them into null (rundir.json_text)."""
        return {
            "status": self.status,
            "epochs_run": self.epochs_run,
            "stop_reason": self.stop_reason,
            "best_epoch": self.best_epoch,
            "params_epoch": self.params_epoch,
            "message": self.message,
            "metrics": self.metrics,
            "params": {k: v.tolist() for k, v in self.params.items()},
            "history": self.history,
            "timing": self.timing,
            "info": self.info,
            "config": self.config,
            "run_dir": self.run_dir,
        }


class EarlyStopping:
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs."""

    def __init__(self, cfg):
        self.cfg = cfg
        mode = cfg.mode
        if mode == "auto":
            mode = "min" if cfg.monitor.endswith(("loss", "mse", "mae")) else "max"
        self.sign = 1.0 if mode == "min" else -1.0
        self.best = math.inf
        self.best_epoch: int | None = None
        self.best_params: np.ndarray | None = None
        self.wait = 0

    def update(self, epoch: int, row: dict, flat) -> bool:
        """Record this epoch; True when training should stop."""
        value = self.sign * row[self.cfg.monitor]
        if value < self.best - self.cfg.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.cfg.restore_best:
                self.best_params = flat.copy()
        else:
            self.wait += 1
        return self.wait >= self.cfg.patience

    def state_dict(self) -> dict:
        return {
            "best": self.best,
            "best_epoch": -1 if self.best_epoch is None else self.best_epoch,
            "wait": self.wait,
        }

    def load_state_dict(self, s: dict) -> None:
        self.best, self.wait = float(s["best"]), int(s["wait"])
        self.best_epoch = None if int(s["best_epoch"]) < 0 else int(s["best_epoch"])


class Trainer:
    def __init__(
        self,
        net,
        loss,
        optimizer,
        schedule,
        train_cfg,
        reg_cfg,
        task: str,
        loss_name: str,
        shuffle_rng: np.random.Generator,
        metric_names=None,
        augment=(),
        augment_rng=None,
        n_classes: int | None = None,
        head=None,
        target_scaling=None,
    ):
        """`target_scaling`: (offset, factor) per output of scaled regression targets: the
        optimizer minimises the loss on the scaled targets; every reported number is in the
        target's units (outputs unscaled, out · factor + offset, in float64): the train loss
        of each batch is computed again on the unscaled outputs and targets, the training
        mse/mae are converted, and evaluated splits have their targets unscaled."""
        self.net, self.loss, self.opt, self.schedule = net, loss, optimizer, schedule
        self.cfg, self.reg = train_cfg, reg_cfg
        self.task, self.loss_name = task, loss_name
        self.head = head  # losses.Head: how outputs become labels
        self.target_factor = None if target_scaling is None else target_scaling[1]
        self.unscale = None if target_scaling is None else unscaler(*target_scaling)
        if metric_names is None and target_scaling is not None:  # the same columns in every split
            metric_names = default_metrics(task, loss_name, scaled=True)
        self.rng = shuffle_rng
        self.metric_names = metric_names
        self.augment, self.augment_rng, self.n_classes = list(augment), augment_rng, n_classes
        self.early = EarlyStopping(train_cfg.early_stopping) if train_cfg.early_stopping else None
        self.stop_requested: str | None = None  # set from a signal handler: "SIGINT" / "SIGTERM"
        self.epoch = 0  # epochs completed
        # The last epoch's parameters, kept when the run ends on its best epoch's: the
        # optimizer state belongs to these, so a resumed run continues from them.
        self.last_flat = None
        self.history: list[dict] = []
        # A run stopped mid-epoch keeps where it was (steps done, running sums, the shuffle
        # generator's state at the epoch's start) so that a resume continues bit-exactly.
        self.partial: dict | None = None
        self.per_step_lr = getattr(schedule.cfg, "interval", "epoch") == "step"
        self.last_lr = schedule.lr(0)
        self._accs: dict[tuple, tuple] = {}  # (id(T), evaluating) -> (T, its MetricAccumulator)
        self._reg_slices = None
        # Step hooks (compress.prune.Pruner, compress.distill.Distiller): begin_step(xb) before
        # the forward pass, after_backward(), after_step(), end_epoch(row); their state_dict is checkpointed.
        self.hooks: list = []
        self.dp = None  # data-parallel over MPI (trainkit.parallel.mpi.DataParallel.attach)
        if reg_cfg.l1 or reg_cfg.l2:
            self._reg_slices = [slice(0, net.flat.size)] if reg_cfg.apply_to_bias else net.weight_slices()

    # ------------------------------------------------------------------ pieces

    def reg_loss(self) -> float:
        if self._reg_slices is None:
            return 0.0
        p, total = self.net.flat, 0.0
        for sl in self._reg_slices:
            w = p[sl]
            if self.reg.l1:
                total += self.reg.l1 * scalar(xp.abs(w).sum())
            if self.reg.l2:
                total += self.reg.l2 * scalar(xp.vdot(w, w))
        return total

    def _reg_grad(self) -> None:
        """∂/∂w of l1·Σ|w| + l2·Σw² is l1·sign(w) + 2·l2·w."""
        p, g = self.net.flat, self.net.grad
        for sl in self._reg_slices:
            if self.reg.l1:
                g[sl] += self.reg.l1 * xp.sign(p[sl])
            if self.reg.l2:
                g[sl] += (2.0 * self.reg.l2) * p[sl]

    def _clip(self) -> None:
        g = self.net.grad
        if self.cfg.clip_grad_value is not None:
            v = self.cfg.clip_grad_value
            xp.clip(g, -v, v, out=g)
        if self.cfg.clip_grad_norm is not None:
            # torch.nn.utils.clip_grad_norm_: scale by max_norm / (‖g‖ + 1e-6) when that is < 1
            coef = self.cfg.clip_grad_norm / (math.sqrt(scalar(xp.vdot(g, g))) + 1e-6)
            if coef < 1.0:
                g *= coef

    def _accumulator(self, T=None, evaluating: bool = False):
        """Empty running sums for one epoch on targets T: one accumulator per split, reused
        (r2's denominator is computed once per T; a new one per epoch cost a tiny run's step
        a few microseconds)."""
        cached = self._accs.get((id(T), evaluating))
        if cached is not None and cached[0] is T:
            cached[1].load_state_dict(_EMPTY_SUMS)
            return cached[1]
        sst = target_stats(T) if T is not None and self.task == "regression" else None
        acc = MetricAccumulator(
            self.task, self.loss_name, self.metric_names, self.loss.cfg.reduction, sst, self.head,
            None if evaluating else self.target_factor,
        )  # fmt: skip
        self._accs[id(T), evaluating] = (T, acc)
        return acc

    def _loss_in_units(self, pred, tb) -> float:
        """A batch's loss on scaled targets, computed again in the target's units (outputs,
        targets and a distillation teacher's outputs unscaled), as val_loss is."""
        teacher = getattr(self.loss, "teacher_out", None)
        if teacher is not None:
            self.loss.teacher_out = self.unscale(teacher)
        try:
            return self.loss.forward(self.unscale(pred), self.unscale(tb))
        finally:
            if teacher is not None:
                self.loss.teacher_out = teacher

    def evaluate(self, X, T, split: str, batch_size: int = 4096) -> dict[str, float]:
        """Loss and metrics of the current parameters on (X, T), in evaluation mode."""
        return evaluate(self.net, self.loss, self._accumulator(T, True), X, T, split, batch_size, self.unscale)

    # ------------------------------------------------------------------ the loop

    def fit(self, X, T, X_val=None, T_val=None, on_epoch: Callable[[dict], None] | None = None) -> dict:
        """Train until the epoch budget, early stopping, divergence or a stop request.

        Returns {status, stop_reason, message, train_s, epoch_times, params_epoch}:
        params_epoch is the epoch whose parameters the network holds now (the best one when
        early stopping restores it, else the last; None after divergence). Every report of
        the run reads its metrics from that epoch."""
        n = len(X)
        bs = n if self.cfg.batch_size in (None, "full") else min(int(self.cfg.batch_size), n)
        # One batch of everything: the order changes nothing but rounding, so don't shuffle it.
        batches = _Batches(X, T, bs, self.cfg.shuffle and bs < n)
        epoch_times: list[float] = []
        status, reason = "completed", f"ran all {self.cfg.epochs} epochs"
        t_start = time.perf_counter()
        with np.errstate(all="ignore"):  # overflow surfaces as a non-finite loss, reported below
            while self.epoch < self.cfg.epochs:
                t0 = time.perf_counter()
                epoch = self.epoch
                lr = self.schedule.lr(epoch)
                acc = self._accumulator(T)
                skip = 0
                if self.partial is not None:
                    self.rng.bit_generator.state = self.partial["shuffle_state"]
                    acc.load_state_dict(self.partial["acc"])
                    if self.dp is not None:
                        self.dp.keep_on_root(acc)
                    skip, self.partial = self.partial["step"], None
                averaged = getattr(self.opt, "averaged_eval", False)  # schedule-free: step at y, evaluate at x
                if averaged:
                    self.opt.switch_to_train()
                failure = self._train_epoch(batches, lr, acc, skip)
                # Stopped mid-epoch, stay at y: the checkpoint must hold y itself, since y rebuilt
                # from x and z differs in the last bits and the resumed run would not be exact.
                if averaged and (failure is None or failure[0] != "interrupted"):
                    self.opt.switch_to_eval()
                if failure:
                    status, reason = failure
                    break
                row = {"epoch": epoch + 1, **acc.result("train")}
                if self._reg_slices is not None:
                    row["reg_loss"] = self.reg_loss()
                if X_val is not None:
                    row.update(self.evaluate(X_val, T_val, "val"))
                row["lr"] = self.last_lr
                for h in self.hooks:
                    h.end_epoch(row)
                exploded = divergence.check(self.history, row, self.net.flat)  # once per epoch
                if exploded:
                    status, reason = "diverged", exploded
                    break
                self.history.append(row)
                self.epoch += 1
                epoch_times.append(time.perf_counter() - t0)
                self.schedule.observe(epoch, row)
                stop = self.early.update(epoch + 1, row, self.net.flat) if self.early else False
                if on_epoch:
                    on_epoch(row)
                if stop:
                    status = "early_stopped"
                    reason = (
                        f"no improvement in {self.early.cfg.monitor} for {self.early.cfg.patience} epochs; "
                        f"stopped at epoch {epoch + 1}, best epoch {self.early.best_epoch}"
                    )
                    break
                if self.stop_requested and self.epoch < self.cfg.epochs:
                    status, reason = (
                        "interrupted",
                        f"stopped by {self.stop_requested} after epoch {epoch + 1}",
                    )
                    break
        message, params_epoch = None, self.epoch
        if status == "diverged":
            params_epoch = None
            message = (
                f"training diverged: {reason}. Try a smaller learning rate (optimizer.lr is "
                f"{getattr(self.opt.cfg, 'lr', '?')}), gradient clipping (train.clip_grad_norm), "
                "or standardized inputs."
            )
        elif (
            status != "interrupted"
            and self.early
            and self.early.best_params is not None
            and self.early.cfg.restore_best
            and self.early.best_epoch != self.epoch
        ):
            self.last_flat = self.net.flat.copy()
            self.net.flat[...] = self.early.best_params
            params_epoch = self.early.best_epoch
        return {
            "params_epoch": params_epoch,
            "status": status,
            "stop_reason": reason,
            "message": message,
            "train_s": time.perf_counter() - t_start,
            "epoch_times": epoch_times,
        }

    def _train_epoch(self, batches, lr: float, acc, skip: int = 0) -> tuple[str, str] | None:
        """One pass over the training set (its first `skip` batches already done);
        (status, reason) if the run must end now."""
        net, loss, opt = self.net, self.loss, self.opt
        epoch = self.epoch + 1
        # Reading the generator's state costs ~1.5 µs: only a shuffled epoch uses it (at the
        # epoch's start); otherwise it is still the same when a stop request needs it.
        shuffle_state = self.rng.bit_generator.state if batches.shuffle else None
        for step, (xb, tb) in enumerate(batches.epoch(self.rng, skip), start=skip + 1):
            for aug in self.augment:
                xb, tb = aug(xb, tb, self.augment_rng, self.n_classes)
            n = len(xb)
            if self.dp is not None:  # data-parallel: this rank's rows of the global batch
                xb, tb = self.dp.local(xb, tb)
                n = self.dp.n  # 0: no rows for this rank, a stand-in row whose gradient is dropped
            for h in self.hooks:  # on this rank's rows: a teacher's outputs must match them
                h.begin_step(xb)
            pred = net.forward(xb, training=True)
            if self.unscale is not None and n:  # scaled targets: train_loss reported in their units, as val_loss
                shown = self._loss_in_units(pred, tb)
            value = loss.forward(pred, tb)  # after `shown`: the backward pass uses this one's cache
            total = value if self.dp is None else self.dp.batch_loss(value, n, self)
            if not math.isfinite(total):
                return "diverged", f"loss became {total} at epoch {epoch}, step {step}"
            if n:
                acc.add(pred, tb, value if self.unscale is None else shown, n)
            net.backward(loss.backward())
            if self.dp is not None:
                self.dp.allreduce_grad(net.grad, n)
            for h in self.hooks:
                h.after_backward()
            if self._reg_slices is not None:
                self._reg_grad()
            if self.cfg.clip_grad_norm is not None or self.cfg.clip_grad_value is not None:
                self._clip()
            if self.per_step_lr:
                lr = self.schedule.lr(opt.t)  # opt.t: optimizer steps taken so far
            if getattr(opt, "needs_closure", False):  # L-BFGS re-evaluates on this batch inside its step
                opt.closure = lambda xb=xb, tb=tb: self.loss_and_grad(xb, tb)
            opt.step(lr)
            for h in self.hooks:
                h.after_step()
            self.last_lr = lr
            if self.stop_requested and step < batches.n_batches:
                if self.dp is not None:
                    self.dp.end_epoch(acc, net)
                state = shuffle_state or self.rng.bit_generator.state
                self.partial = {"step": step, "acc": acc.state_dict(), "shuffle_state": state}
                return "interrupted", f"stopped by {self.stop_requested} in epoch {epoch} after step {step}"
        if self.dp is not None:
            self.dp.end_epoch(acc, net)
        if not bool(to_numpy(xp.isfinite(net.flat).all())):
            return "diverged", f"parameters became non-finite in epoch {epoch}"
        return None

    def loss_and_grad(self, xb, tb) -> float:
        """Loss (regularization included) and gradient at the current parameters on one batch,
        the gradient left in the network's buffer: L-BFGS's closure (torch's `step(closure)`), lr-find's step."""
        value = self.loss.forward(self.net.forward(xb, training=True), tb)
        self.net.backward(self.loss.backward())
        if self._reg_slices is not None:
            self._reg_grad()
            value += self.reg_loss()
        if self.cfg.clip_grad_norm is not None or self.cfg.clip_grad_value is not None:
            self._clip()
        return value

    def params(self) -> dict[str, np.ndarray]:
        return {k: to_numpy(v).copy() for k, v in self.net.params.items()}


def evaluate(net, loss, acc, X, T, split: str, batch_size: int = 4096, unscale=None) -> dict[str, float]:
    """Loss and metrics of `net` on (X, T) in evaluation mode, summed in batches into `acc`
    (a fresh MetricAccumulator); with `unscale` (scaled regression targets) the outputs are
    unscaled and T holds the targets in their own units. Training (val, test) and
    `trainkit evaluate` both report through this."""
    for i in range(0, len(X), batch_size):
        xb, tb = (X, T) if len(X) <= batch_size else (X[i : i + batch_size], T[i : i + batch_size])
        pred = net.forward(xb, training=False)
        if unscale is not None:
            pred = unscale(pred)
        acc.add(pred, tb, loss.forward(pred, tb), len(xb))
    return acc.result(split)


def unscaler(offset, factor):
    """Outputs (n, outputs) of a model trained on scaled targets back in the target's units,
    out · factor + offset, in float64 (targets in large units lose digits in float32)."""
    offset, factor = xp.asarray(offset, dtype=xp.float64), xp.asarray(factor, dtype=xp.float64)
    return lambda out: out.astype(xp.float64) * factor + offset


class _Batches:
    """Mini-batches of (X, T): gathered in shuffled order into two reused buffers, or sliced
    in file order without copying."""

    def __init__(self, X, T, batch_size: int, shuffle: bool):
        self.X, self.T, self.bs, self.shuffle = X, T, batch_size, shuffle
        self.n = len(X)
        self.n_batches = -(-self.n // batch_size)
        if shuffle:
            self.xbuf = xp.empty((batch_size,) + X.shape[1:], X.dtype)
            self.tbuf = xp.empty((batch_size,) + T.shape[1:], T.dtype)

    def epoch(self, rng, skip: int = 0):
        """The epoch's batches, leaving out the first `skip`."""
        X, T, bs, n = self.X, self.T, self.bs, self.n
        if self.n_batches == 1 and not skip:  # full batch: no slicing, no shuffling
            yield X, T
            return
        if not self.shuffle:
            for start in range(skip * bs, n, bs):
                yield X[start : start + bs], T[start : start + bs]
            return
        order = to_device(rng.permutation(n))
        for start in range(skip * bs, n, bs):
            idx = order[start : start + bs]
            m = len(idx)
            yield take_rows(X, idx, self.xbuf[:m]), take_rows(T, idx, self.tbuf[:m])
