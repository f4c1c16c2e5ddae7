"""Knowledge distillation (Hinton, Vinyals & Dean 2015): a student learns from a trained
teacher run's outputs as well as from the labels.

Classification (loss cross_entropy, on logits s of the student and t of the teacher):

    L = α · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α) · CE(s, y),
    ∂L/∂s = α · T · (softmax(s/T) − softmax(t/T)) · r + (1 − α) · ∂CE/∂s,

KL summed over classes and reduced over samples as the CE is (mean: torch's `batchmean`,
r = 1/n; sum: r = 1). Regression (loss mse): L = α · MSE(s, t) + (1 − α) · MSE(s, y).
The T² keeps the soft term's gradient on the scale of the hard one as T grows.

The teacher's outputs are computed by trainkit, batch by batch, from the teacher run's
checkpoint (runs.inference.open_run): in evaluation mode, on the student's (augmented) batch,
with the inputs and outputs converted between the two runs' scalings when they differ.
Only training batches are distilled: validation and test losses are the plain loss, so they
compare with an undistilled run's.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydantic import Field

from trainkit.backend import xp
from trainkit.config.base import Strict

SUPPORTED = {"cross_entropy": "classification", "mse": "regression"}


class DistillConfig(Strict):
    """Train on a teacher run's outputs as well as the labels."""

    teacher: str = Field(description="the teacher's run directory (relative to this config file)")
    temperature: float = Field(4.0, gt=0, description="softens both softmaxes (classification)")
    alpha: float = Field(0.9, ge=0, le=1, description="weight of the teacher term; 1 − alpha weighs the labels")


def _log_softmax(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


class DistillLoss:
    """The base loss (cross_entropy or mse) mixed with the teacher term while `teacher_out`
    holds the teacher's outputs for the batch; the base loss alone when it is None."""

    def __init__(self, base, temperature: float, alpha: float):
        if base.cfg.name not in SUPPORTED:
            raise ValueError(f"distillation works with loss cross_entropy or mse, not {base.cfg.name}")
        self.base, self.T, self.alpha = base, float(temperature), float(alpha)
        self.classify = base.cfg.name == "cross_entropy"
        self.teacher_out = None
        self._soft_grad = None

    def __getattr__(self, name):  # cfg, task, takes, prepare_targets: the base loss's
        if name == "base":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.base, name)

    def forward(self, pred, target) -> float:
        hard = self.base.forward(pred, target)
        t = self.teacher_out
        if t is None:
            self._soft_grad = None
            return hard
        a, T = self.alpha, self.T
        if self.classify:
            r = self.base._scale(len(pred))
            log_ps, log_pt = _log_softmax(pred / T), _log_softmax(t / T)
            p_t = xp.exp(log_pt)
            soft = float((p_t * (log_pt - log_ps)).sum()) * r * T * T
            self._soft_grad = (xp.exp(log_ps) - p_t) * (a * T * r)
        else:
            r = self.base._scale(pred.size)
            d = pred - t
            soft = float(xp.vdot(d, d)) * r
            self._soft_grad = d * (2.0 * a * r)
        return a * soft + (1.0 - a) * hard

    def backward(self):
        g = self.base.backward()
        if self._soft_grad is None:
            return g
        g = g * (1.0 - self.alpha)
        g += self._soft_grad
        return g


class Distiller:
    """The trainer's hook: the teacher's outputs for each training batch, set before the
    forward pass (`begin_step`) and cleared once the step is taken."""

    name = "distill"

    def __init__(self, loss: DistillLoss, teacher):
        self.loss, self.teacher = loss, teacher

    def begin_step(self, xb) -> None:
        self.loss.teacher_out = self.teacher(xb)

    def after_backward(self) -> None:
        pass

    def after_step(self) -> None:
        self.loss.teacher_out = None

    def end_epoch(self, row: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _affine(offset, factor):
    return (None, None) if offset is None else (np.asarray(offset, np.float64), np.asarray(factor, np.float64))


def teacher_fn(teacher, student_state, dtype):
    """x (the student's inputs) → the teacher's outputs in the student's units, as `dtype`."""
    s_off, s_fac = _affine(student_state.offset, student_state.factor)
    t_off, t_fac = _affine(teacher.state.offset, teacher.state.factor)
    same_in = student_state.offset == teacher.state.offset and student_state.factor == teacher.state.factor
    s_toff, s_tfac = _affine(student_state.target_offset, student_state.target_factor)
    t_toff, t_tfac = _affine(teacher.state.target_offset, teacher.state.target_factor)
    same_out = (
        student_state.target_offset == teacher.state.target_offset
        and student_state.target_factor == teacher.state.target_factor
    )
    tdtype = teacher.net.flat.dtype

    def outputs(x):
        if not same_in:  # student-scaled → raw → teacher-scaled, as DataState.features scales
            raw = x.reshape(len(x), -1).astype(xp.float64)
            if s_off is not None:
                raw = raw * s_fac + s_off
            if t_off is not None:
                raw = (raw - t_off) / t_fac
            x = raw
        out = teacher.net.forward(xp.asarray(x, dtype=tdtype), training=False)
        if not same_out:  # teacher-scaled targets → raw → student-scaled
            out = out.astype(xp.float64)
            if t_toff is not None:
                out = out * t_tfac + t_toff
            if s_toff is not None:
                out = (out - s_toff) / s_tfac
        return xp.asarray(out, dtype=dtype).copy()

    return outputs


def check_not_own_run(loaded, run_dir: Path) -> None:
    """The teacher cannot be the student's own run directory: --overwrite would delete the
    teacher, and a resume would distill the student from itself."""
    path = Path(os.path.normpath(loaded.resolve_path(loaded.config.distill.teacher)))
    if path.resolve() == Path(run_dir).resolve():
        raise loaded.error(
            ("distill", "teacher"),
            f"the teacher {path} is this run's own output directory: training would overwrite it",
            "train the student into another --output-dir",
        )


def attach(exp) -> None:
    """Open the config's teacher run, check that it fits the student's data, and make the
    trainer distill from it. A teacher that is missing or does not fit is a ConfigError on
    `distill.teacher`."""
    from trainkit.errors import DataError
    from trainkit.runs.inference import open_run

    loaded, tr, state = exp.loaded, exp.trainer, exp.state
    cfg = loaded.config.distill
    key = ("distill", "teacher")
    path = Path(os.path.normpath(loaded.resolve_path(cfg.teacher)))
    first = f"train the teacher first (trainkit train TEACHER.yaml --output-dir {path}); the path is relative to the config file"
    if path.exists() and not path.is_dir():
        hint = "pass the teacher's run directory (its --output-dir), not a file in it"
        raise loaded.error(key, f"teacher {path} is a file, not a run directory", hint)
    if not path.is_dir():
        raise loaded.error(key, f"teacher run directory not found: {path}", first)
    try:
        teacher = open_run(path)
    except DataError as e:
        raise loaded.error(
            key, f"teacher {path}: {e.message}", first if "checkpoint" in e.message else e.hint
        ) from None
    except Exception as e:  # noqa: BLE001 - the teacher's own config no longer loads, etc.
        raise loaded.error(key, f"teacher {cfg.teacher} cannot be opened: {e}") from None
    ts = teacher.state
    n_feat, t_feat = len(state.feature_names), len(ts.feature_names)
    if t_feat != n_feat:
        raise loaded.error(
            key,
            f"the teacher takes {t_feat} features, this run's data has {n_feat}",
            "distill from a teacher trained on the same features",
        )
    if ts.feature_names != state.feature_names:
        diff = next(f"{a!r} vs {b!r}" for a, b in zip(ts.feature_names, state.feature_names) if a != b)
        raise loaded.error(key, f"the teacher's features are not this run's ({diff})")
    if ts.task != state.task:
        raise loaded.error(key, f"the teacher was trained for {ts.task}, this run's task is {state.task}")
    t_out, n_out = teacher.net.out_features, exp.info["n_outputs"]
    if state.task in ("binary", "multiclass"):
        t_cls, n_cls = len(ts.classes or ()), len(state.classes or ())
        if t_cls != n_cls:
            raise loaded.error(
                key,
                f"the teacher has {t_cls} classes, this run's data has {n_cls}",
                "distill from a teacher trained on the same classes",
            )
        if list(ts.classes) != list(state.classes):
            raise loaded.error(key, f"the teacher's classes {ts.classes} are not this run's {state.classes}")
    if t_out != n_out:
        raise loaded.error(key, f"the teacher has {t_out} outputs, this run's model has {n_out}")
    loss_name, t_loss = tr.loss.cfg.name, teacher.loss.cfg.name
    if loss_name not in SUPPORTED:
        raise loaded.error(
            ("loss", "name") if loaded.config.loss is not None else key,
            f"distillation works with loss cross_entropy (classification) or mse (regression), not {loss_name}",
        )
    if t_loss != loss_name:
        raise loaded.error(key, f"the teacher was trained with loss {t_loss}, this run uses {loss_name}")
    tr.loss = DistillLoss(tr.loss, cfg.temperature, cfg.alpha)
    tr.hooks.append(Distiller(tr.loss, teacher_fn(teacher, state, exp.net.flat.dtype)))
    exp.info["teacher"] = str(teacher.path)
