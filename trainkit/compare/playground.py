"""Optimizer playground: 2-D test functions whose parameters are a point (x, y).

No data, no model: the optimizer minimises f(x, y) from `start` for at most `steps` steps.
These are the classic pictures of why momentum and adaptive methods behave as they do.

    problem: {name: rosenbrock, start: [-1.5, 2.0]}
    steps: 3000
"""

from __future__ import annotations

import math
import time
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from trainkit.config.base import Component, named_union


class _Problem(Component):
    start: tuple[float, float] = Field(description="starting point [x, y]")


class RosenbrockConfig(_Problem):
    """Rosenbrock's banana valley (a − x)² + b(y − x²)²; minimum at (a, a²)."""

    name: Literal["rosenbrock"] = "rosenbrock"
    start: tuple[float, float] = (-1.5, 2.0)
    a: float = 1.0
    b: float = Field(100.0, gt=0)

    def f(self, x, y):
        return (self.a - x) ** 2 + self.b * (y - x * x) ** 2

    def grad(self, x, y):
        return np.array([-2 * (self.a - x) - 4 * self.b * x * (y - x * x), 2 * self.b * (y - x * x)])

    def minima(self):
        return [(self.a, self.a**2)]

    bounds: ClassVar = ((-2.0, 2.0), (-1.0, 3.0))


class BealeConfig(_Problem):
    """Beale's function, flat plateaus and steep walls; minimum at (3, 0.5)."""

    name: Literal["beale"] = "beale"
    start: tuple[float, float] = (1.0, 1.5)

    def f(self, x, y):
        return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2

    def grad(self, x, y):
        a, b, c = 1.5 - x + x * y, 2.25 - x + x * y**2, 2.625 - x + x * y**3
        return np.array(
            [
                2 * a * (y - 1) + 2 * b * (y**2 - 1) + 2 * c * (y**3 - 1),
                2 * a * x + 2 * b * 2 * x * y + 2 * c * 3 * x * y**2,
            ]
        )

    def minima(self):
        return [(3.0, 0.5)]

    bounds: ClassVar = ((-4.5, 4.5), (-4.5, 4.5))


class HimmelblauConfig(_Problem):
    """Himmelblau's function: four equal minima; which one an optimizer finds depends on its path."""

    name: Literal["himmelblau"] = "himmelblau"
    start: tuple[float, float] = (0.0, 0.0)

    def f(self, x, y):
        return (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2

    def grad(self, x, y):
        a, b = x * x + y - 11, x + y * y - 7
        return np.array([4 * a * x + 2 * b, 2 * a + 4 * b * y])

    def minima(self):
        return [(3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)]

    bounds: ClassVar = ((-5.0, 5.0), (-5.0, 5.0))


class SaddleConfig(_Problem):
    """The saddle x² − y²: no minimum; a good optimizer escapes along y, a slow one lingers."""

    name: Literal["saddle"] = "saddle"
    start: tuple[float, float] = (1.0, 1e-3)

    def f(self, x, y):
        return x * x - y * y

    def grad(self, x, y):
        return np.array([2 * x, -2 * y])

    def minima(self):
        return []

    bounds: ClassVar = ((-1.5, 1.5), (-1.5, 1.5))


class QuadraticConfig(_Problem):
    """Ill-conditioned bowl ½(x² + κ y²) with condition number κ; minimum at (0, 0)."""

    name: Literal["quadratic"] = "quadratic"
    start: tuple[float, float] = (-2.0, 1.0)
    condition_number: float = Field(10.0, ge=1)

    def f(self, x, y):
        return 0.5 * (x * x + self.condition_number * y * y)

    def grad(self, x, y):
        return np.array([x, self.condition_number * y])

    def minima(self):
        return [(0.0, 0.0)]

    bounds: ClassVar = ((-2.5, 2.5), (-1.5, 1.5))


PROBLEMS = (RosenbrockConfig, BealeConfig, HimmelblauConfig, SaddleConfig, QuadraticConfig)
Problem = named_union(*PROBLEMS)


def run_problem(problem, optimizer_entry, opt_cfg, steps: int, tol: float = 1e-10, max_points: int = 2000) -> dict:
    """Minimise `problem` with one optimizer; the path, the final point and how it ended."""
    p = np.array(problem.start, dtype=np.float64)
    g = np.zeros(2)
    opt = optimizer_entry.build(opt_cfg, p, g)
    every = max(1, math.ceil(steps / max_points))
    path = [p.tolist()]
    values = [float(problem.f(*p))]
    value_steps = [0]
    status, taken = "completed", steps
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        if getattr(opt, "needs_closure", False):  # L-BFGS re-evaluates f and its gradient inside a step

            def closure():
                g[...] = problem.grad(*p)
                return float(problem.f(*p))

            opt.closure = closure
        for step in range(1, steps + 1):
            g[...] = problem.grad(*p)
            if float(np.linalg.norm(g)) < tol:
                status, taken = "converged", step - 1
                break
            opt.step(opt_cfg.lr)
            if not np.isfinite(p).all() or np.abs(p).max() > 1e6:
                status, taken = "diverged", step
                break
            if step % every == 0:
                path.append(p.tolist())
                values.append(float(problem.f(*p)))
                value_steps.append(step)
    if getattr(opt, "averaged_eval", False):  # schedule-free: the result is the averaged point x
        opt.switch_to_eval()
    if path[-1] != p.tolist() and np.isfinite(p).all():
        path.append(p.tolist())
        values.append(float(problem.f(*p)))
        value_steps.append(taken)
    minima = problem.minima()
    dist = min((math.dist(p, m) for m in minima), default=None) if np.isfinite(p).all() else None
    final_f = float(problem.f(*p)) if np.isfinite(p).all() else math.inf
    return {
        "status": status,
        "steps": taken,
        "final_point": p.tolist(),
        "final_value": final_f,
        "distance_to_minimum": dist,
        "path": path,
        "values": values,
        "value_steps": value_steps,
        "timing": {"wall_s": time.perf_counter() - t0},
    }
