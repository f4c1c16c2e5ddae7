"""Synchronized batch norm for data-parallel runs (train.sync_batch_norm): the statistics of
the global batch, as one process computes them, from every rank's rows.

Training forward, per channel over the M values of the global batch (each rank's sums all-reduced):
    μ = Σ_r Σ x / M,   σ² = Σ_r Σ (x − μ)² / M,   x̂ = (x − μ)/√(σ² + ε)
Backward: a rank's dy is ∂ of its own loss; the global loss's dy is ρ_r·dy with ρ_r = n_r/m
(mean loss; 1 for a sum), so with g = dy·γ the global means are
    ḡ = Σ_r ρ_r Σ g / M,   ḡx̂ = Σ_r ρ_r Σ g x̂ / M,   dx = inv·(g − (ḡ + x̂·ḡx̂)/ρ_r)
(in the rank's own scale again; the gradient all-reduce weights it by ρ_r). A rank with only a
stand-in row (no rows of this batch) adds nothing. Evaluation is the layer's own (each rank
evaluates whole splits).
"""

from __future__ import annotations

import types

from trainkit.backend import xp


def synchronize(layer, dp) -> None:
    """Make a batch-norm layer compute its training statistics over every rank's rows."""
    own_forward, own_backward = layer.forward, layer.backward

    def forward(self, x, training):
        self.synced = training
        if not training:
            return own_forward(x, training)
        self.batch_stats = True
        keep = 1.0 if dp.n else 0.0  # a stand-in row counts for nothing
        c = self.channels
        buf = xp.empty(c + 1, dtype=xp.float64)
        buf[:c] = x.sum(axis=self.axes) * keep
        buf[c] = (x.size // c) * keep
        dp.allreduce(buf)
        count = buf[c]
        mean = (buf[:c] / count).astype(x.dtype)
        xc = x - mean.reshape(self.bshape)
        sq = (xc * xc).sum(axis=self.axes) * keep
        dp.allreduce(sq)
        var = sq / count
        if self.track:
            self._update_running(mean, var, int(count))
        self.count = count
        self.inv = (1.0 / xp.sqrt(var + self.eps)).reshape(self.bshape).astype(x.dtype)
        self.xhat = xc * self.inv
        if not self.affine:
            return self.xhat
        return self.xhat * self.gamma.reshape(self.bshape) + self.beta.reshape(self.bshape)

    def backward(self, dy):
        if not self.synced:
            return own_backward(dy)
        axes, c = self.axes, self.channels
        g = self.affine_backward(dy)
        rho = dp.weight()
        buf = xp.empty(2 * c, dtype=xp.float64)
        buf[:c] = g.sum(axis=axes) * rho
        buf[c:] = (g * self.xhat).sum(axis=axes) * rho
        dp.allreduce(buf)
        if not rho:  # a stand-in row: its gradient is dropped
            return xp.zeros_like(g)
        mg = (buf[:c] / (self.count * rho)).astype(g.dtype).reshape(self.bshape)
        mgx = (buf[c:] / (self.count * rho)).astype(g.dtype).reshape(self.bshape)
        return self.inv * (g - mg - self.xhat * mgx)

    layer.forward = types.MethodType(forward, layer)
    layer.backward = types.MethodType(backward, layer)
