"""Muon (torch.optim.Muon): momentum orthogonalised by a Newton–Schulz iteration, for 2-D weights.

torch.optim.Muon accepts 2-D parameters only and its documentation says to optimise the others
(biases, norm scales, conv kernels) with "a standard method such as AdamW" in a second
optimizer. trainkit's `muon` is that pair in one: 2-D tensors follow Muon's rule, every other
tensor follows AdamW with the `adamw_*` hyperparameters. A schedule scales both rates alike
(the AdamW rate is adamw_lr · ηₜ/η₀), as one LambdaLR on each of torch's two optimizers would.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

from pydantic import Field, field_validator

from trainkit.backend import scalar, xp
from trainkit.optim.optimizers import AdamW, AdamWConfig, Optimizer, OptimizerConfig
from trainkit.optim.tensors import tensor_slices
from trainkit.registry import register


class MuonConfig(OptimizerConfig):
    """Muon: Newton–Schulz-orthogonalised momentum for 2-D weights, AdamW for the rest (torch.optim.Muon)."""

    name: Literal["muon"] = "muon"
    weight_decay: float = Field(0.1, ge=0, description="decoupled decay of the 2-D weights: θ ← θ(1 − ηλ)")
    momentum: float = Field(0.95, ge=0, description="momentum factor μ")
    nesterov: bool = True
    ns_coefficients: tuple[float, float, float] = Field(
        (3.4445, -4.7750, 2.0315), description="(a, b, c) of the quintic Newton–Schulz polynomial"
    )
    eps: float = Field(1e-7, ge=0, description="floor of the norm the matrix is divided by")
    ns_steps: int = Field(5, ge=0, lt=100, description="Newton–Schulz iterations")
    adjust_lr_fn: Optional[Literal["original", "match_rms_adamw"]] = Field(
        None, description="original: η·√max(1, A/B); match_rms_adamw: 0.2·η·√max(A, B)"
    )
    adamw_lr: float = Field(3e-4, ge=0, description="AdamW rate for the tensors that are not 2-D")
    adamw_betas: tuple[float, float] = (0.9, 0.999)
    adamw_eps: float = Field(1e-8, ge=0)
    adamw_weight_decay: float = Field(0.01, ge=0)

    @field_validator("adamw_betas")
    @classmethod
    def _betas_in_range(cls, v):
        return AdamWConfig._betas_in_range(v)


def newton_schulz(G, coefficients, steps: int, eps: float):
    """≈ UVᵀ for G = USVᵀ: X ← G/‖G‖_F (transposed to be wide), then `steps` times
    X ← aX + (bXXᵀ + c(XXᵀ)²)X. torch runs this in bfloat16 (a GPU speed choice);
    here it runs in the parameters' dtype, so float64 runs are exact."""
    a, b, c = coefficients
    tall = G.shape[0] > G.shape[1]
    X = G.T if tall else G
    X = X / max(scalar(xp.linalg.norm(X)), eps)
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return X.T if tall else X


def adjusted_lr(lr: float, fn: str | None, shape) -> float:
    A, B = shape[:2]
    if fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(A, B))
    return lr * math.sqrt(max(1.0, A / B))


@register("optimizers", MuonConfig)
class Muon(Optimizer):
    """2-D W:  B ← μB + (1 − μ)G;  U = (1 − μ)G + μB (Nesterov) or B;  O = NS(U);
    W ← W(1 − ηλ) − η_adj O with η_adj = η·√max(1, A/B) (rows A, columns B).
    Other tensors: AdamW (see the module docstring)."""

    uses_shapes = True

    def __init__(self, cfg, params, grads, shapes=None):
        super().__init__(cfg, params, grads)
        layout = tensor_slices(shapes, params.size)
        self.matrices = [
            (k, params[sl].reshape(s), grads[sl].reshape(s)) for k, (sl, s) in layout.items() if len(s) == 2
        ]
        for k, w, _ in self.matrices:
            self.state[f"momentum_buffer/{k}"] = xp.zeros_like(w)
        # The other tensors, gathered into buffers of their own for the AdamW fallback.
        rest = [xp.arange(params.size)[sl] for sl, s in layout.values() if len(s) != 2]
        self.rest = xp.concatenate(rest) if rest else xp.zeros(0, dtype=xp.intp)
        self.rest_p, self.rest_g = params[self.rest], grads[self.rest]
        adamw_cfg = AdamWConfig(
            lr=cfg.adamw_lr, betas=cfg.adamw_betas, eps=cfg.adamw_eps, weight_decay=cfg.adamw_weight_decay
        )
        self.adamw = AdamW(adamw_cfg, self.rest_p, self.rest_g) if self.rest.size else None

    def update(self, lr):
        c, mu = self.cfg, self.cfg.momentum
        for k, w, g in self.matrices:
            buf = self.state[f"momentum_buffer/{k}"]
            buf += (1.0 - mu) * (g - buf)
            u = g + mu * (buf - g) if c.nesterov else buf
            o = newton_schulz(u, c.ns_coefficients, c.ns_steps, c.eps)
            w *= 1.0 - lr * c.weight_decay
            w -= adjusted_lr(lr, c.adjust_lr_fn, w.shape) * o
        if self.adamw is not None:
            self.rest_p[...] = self.p[self.rest]
            self.rest_g[...] = self.g[self.rest]
            self.adamw.step(c.adamw_lr * (lr / c.lr if c.lr else 1.0))
            self.p[self.rest] = self.rest_p

    def state_dict(self):
        out = super().state_dict()
        if self.adamw is not None:
            out.update({f"adamw/{k}": v for k, v in self.adamw.state_dict().items()})
        return out

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if self.adamw is not None:
            self.adamw.load_state_dict({k[len("adamw/") :]: v for k, v in state.items() if k.startswith("adamw/")})
