"""L-BFGS (torch.optim.LBFGS), a port of its algorithm onto the flat buffers.

One `step` runs up to `max_iter` quasi-Newton iterations on the same batch, re-evaluating the
loss and gradient through `closure` (set by the trainer before each step: it runs forward and
backward at the current parameters, fills the gradient buffer and returns the loss), exactly
as torch's `optimizer.step(closure)`. trainkit runs it full batch only (`train.batch_size: full`,
the default for lbfgs; torch allows any batch): the curvature pairs, kept across steps, assume
one fixed objective.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal, Optional

from pydantic import Field, model_validator

from trainkit.backend import scalar, xp
from trainkit.optim.optimizers import Optimizer, OptimizerConfig
from trainkit.registry import register


class LBFGSConfig(OptimizerConfig):
    """L-BFGS: quasi-Newton steps from a limited history of curvature pairs (torch.optim.LBFGS)."""

    name: Literal["lbfgs"] = "lbfgs"
    full_batch: ClassVar[bool] = True  # torch's LBFGS takes any batch; trainkit's rule is the full batch
    full_batch_why: ClassVar[str] = (
        "takes full-batch steps in trainkit: the curvature pairs it keeps from step to step (y = gₜ₊₁ − gₜ) "
        "describe one objective only when every step sees the same data, and mini-batches mix the "
        "gradients of different batches into them"
    )
    for_mini_batches: ClassVar[str] = "adam"
    lr: float = Field(1.0, ge=0, description="step length (the line search's first trial with strong_wolfe)")
    max_iter: int = Field(20, ge=1, description="iterations per optimizer step")
    max_eval: Optional[int] = Field(None, ge=1, description="function evaluations per step (default max_iter·5/4)")
    tolerance_grad: float = Field(1e-7, ge=0, description="stop when max|g| ≤ this")
    tolerance_change: float = Field(1e-9, ge=0, description="stop when the step or the loss change is below this")
    history_size: int = Field(100, ge=1, description="curvature pairs kept")
    line_search_fn: Optional[Literal["strong_wolfe"]] = None

    @model_validator(mode="after")
    def _default_max_eval(self):
        if self.max_eval is None:
            object.__setattr__(self, "max_eval", self.max_iter * 5 // 4)
        return self


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimiser of the cubic through (x1, f1, g1), (x2, f2, g2), clamped to `bounds`."""
    lo, hi = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square < 0:
        return (lo + hi) / 2.0
    d2 = math.sqrt(d2_square)
    if x1 <= x2:
        min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(min_pos, lo), hi)


def _strong_wolfe(obj, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """Step length t along d meeting the strong Wolfe conditions (bracketing, then zooming by
    cubic interpolation); torch's `_strong_wolfe`, line for line. obj(t) -> (f, g) at θ + t·d."""
    d_norm = scalar(xp.abs(d).max())
    g = g.copy()
    f_new, g_new = obj(t)
    evals, gtd_new = 1, scalar(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done, ls_iter = False, 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f, bracket_g = [t_prev, t], [f_prev, f_new], [g_prev, g_new.copy()]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g, done = [t], [f_new], [g_new], True
            break
        if gtd_new >= 0:
            bracket, bracket_f, bracket_g = [t_prev, t], [f_prev, f_new], [g_prev, g_new.copy()]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        min_step, max_step = t + 0.01 * (t - t_prev), t * 10
        t_prev, t = t, _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        f_prev, g_prev, gtd_prev = f_new, g_new.copy(), gtd_new
        f_new, g_new = obj(t)
        evals += 1
        gtd_new = scalar(g_new @ d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]

    insuf_progress = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # Keep t away from the bracket's ends unless the last try made too little progress.
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj(t)
        evals += 1
        gtd_new = scalar(g_new @ d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low]:
            bracket[high], bracket_f[high], bracket_g[high], bracket_gtd[high] = t, f_new, g_new.copy(), gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                bracket[high], bracket_f[high] = bracket[low], bracket_f[low]
                bracket_g[high], bracket_gtd[high] = bracket_g[low], bracket_gtd[low]
            bracket[low], bracket_f[low], bracket_g[low], bracket_gtd[low] = t, f_new, g_new.copy(), gtd_new
    return bracket_f[low], bracket_g[low], bracket[low], evals


@register("optimizers", LBFGSConfig)
class LBFGS(Optimizer):
    """d = −H g with H from the last m pairs (s = θₜ₊₁ − θₜ, y = gₜ₊₁ − gₜ, kept when yᵀs > 1e-10) by
    the two-loop recursion, H₀ = (yᵀs/yᵀy)·I;  θ ← θ + t d with t = η (the first iteration
    ever: min(1, 1/‖g‖₁)·η), or t from the strong-Wolfe line search. Up to max_iter per step."""

    needs_closure = True

    def __init__(self, cfg, params, grads):
        super().__init__(cfg, params, grads)
        self.closure = None  # () -> loss, with the gradient buffer filled; set before each step
        self.n_iter, self.func_evals = 0, 0
        self.d = self.prev_flat_grad = None
        self.step_t, self.H_diag, self.prev_loss = None, 1.0, None
        self.old_dirs: list = []
        self.old_stps: list = []
        self.ro: list = []

    def _evaluate(self) -> tuple[float, object]:
        return float(self.closure()), self.g.copy()

    def update(self, lr):
        if self.closure is None:
            raise RuntimeError("lbfgs re-evaluates the loss inside its step: set `closure` before step()")
        c = self.cfg
        loss, flat_grad = self._evaluate()
        current_evals = 1
        self.func_evals += 1
        if scalar(xp.abs(flat_grad).max()) <= c.tolerance_grad:
            return
        d, t = self.d, self.step_t
        n_iter = 0
        while n_iter < c.max_iter:
            n_iter += 1
            self.n_iter += 1
            if self.n_iter == 1:
                d = -flat_grad
                self.old_dirs, self.old_stps, self.ro, self.H_diag = [], [], [], 1.0
            else:
                y = flat_grad - self.prev_flat_grad
                s = d * t
                ys = scalar(y @ s)
                if ys > 1e-10:
                    if len(self.old_dirs) == c.history_size:
                        self.old_dirs.pop(0), self.old_stps.pop(0), self.ro.pop(0)
                    self.old_dirs.append(y)
                    self.old_stps.append(s)
                    self.ro.append(1.0 / ys)
                    self.H_diag = ys / scalar(y @ y)
                # two-loop recursion: q ← −g, back through the pairs, scale by H₀, forward again
                al = [0.0] * len(self.old_dirs)
                q = -flat_grad
                for i in range(len(self.old_dirs) - 1, -1, -1):
                    al[i] = scalar(self.old_stps[i] @ q) * self.ro[i]
                    q -= al[i] * self.old_dirs[i]
                d = q * self.H_diag
                for i in range(len(self.old_dirs)):
                    be_i = scalar(self.old_dirs[i] @ d) * self.ro[i]
                    d += (al[i] - be_i) * self.old_stps[i]
            self.prev_flat_grad = flat_grad.copy()
            self.prev_loss = loss
            t = min(1.0, 1.0 / scalar(xp.abs(flat_grad).sum())) * lr if self.n_iter == 1 else lr
            gtd = scalar(flat_grad @ d)
            if gtd > -c.tolerance_change:
                break
            ls_func_evals = 0
            if c.line_search_fn == "strong_wolfe":
                x0 = self.p.copy()

                def obj(step, x0=x0, d=d):
                    self.p[...] = x0 + step * d
                    out = self._evaluate()
                    self.p[...] = x0
                    return out

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                    obj, t, d, loss, flat_grad, gtd, max_ls=c.max_eval - current_evals
                )
                self.p += t * d
                opt_cond = scalar(xp.abs(flat_grad).max()) <= c.tolerance_grad
            else:
                self.p += t * d
                opt_cond = False
                if n_iter != c.max_iter:
                    loss, flat_grad = self._evaluate()
                    opt_cond = scalar(xp.abs(flat_grad).max()) <= c.tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            self.func_evals += ls_func_evals
            if (
                n_iter == c.max_iter
                or current_evals >= c.max_eval
                or opt_cond
                or scalar(xp.abs(d * t).max()) <= c.tolerance_change
                or abs(loss - self.prev_loss) < c.tolerance_change
            ):
                break
        self.d, self.step_t = d, t

    def state_dict(self):
        n = self.p.size
        empty = xp.zeros((0, n), self.p.dtype)
        return {
            "t": self.t,
            "n_iter": self.n_iter,
            "func_evals": self.func_evals,
            "step_t": self.step_t,
            "H_diag": self.H_diag,
            "prev_loss": self.prev_loss,
            "d": self.d.copy() if self.d is not None else xp.zeros(0, self.p.dtype),
            "prev_flat_grad": self.prev_flat_grad.copy() if self.prev_flat_grad is not None else xp.zeros(0),
            "old_dirs": xp.stack(self.old_dirs) if self.old_dirs else empty,
            "old_stps": xp.stack(self.old_stps) if self.old_stps else empty,
            "ro": xp.asarray(self.ro, dtype=xp.float64),
        }

    def load_state_dict(self, state):
        self.t, self.n_iter, self.func_evals = int(state["t"]), int(state["n_iter"]), int(state["func_evals"])
        self.step_t = None if state["step_t"] is None else float(state["step_t"])
        self.H_diag = float(state["H_diag"])
        self.prev_loss = None if state["prev_loss"] is None else float(state["prev_loss"])
        self.d = state["d"].copy() if len(state["d"]) else None
        self.prev_flat_grad = state["prev_flat_grad"].copy() if len(state["prev_flat_grad"]) else None
        self.old_dirs = [r.copy() for r in state["old_dirs"]]
        self.old_stps = [r.copy() for r in state["old_stps"]]
        self.ro = [float(r) for r in state["ro"]]
