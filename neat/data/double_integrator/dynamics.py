"""The double integrator x'' = u under zero-order hold: exact simulation, the minimum-energy
control that reaches the origin, and the cost rewards and evaluation compare answers by."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["control_cost", "optimal_controls", "simulate", "step_dt"]


def step_dt(steps: int, horizon: float) -> float:
    """How long each control is held."""
    return horizon / steps


def simulate(
    position: float, velocity: float, controls: Sequence[float], dt: float
) -> tuple[float, float]:
    """The final (position, velocity): each control held for `dt` is integrated exactly."""
    p, v = float(position), float(velocity)
    for u in controls:
        p += v * dt + 0.5 * u * dt * dt
        v += u * dt
    return p, v


def optimal_controls(
    position: float, velocity: float, steps: int, horizon: float, bound: float
) -> list[float]:
    """The least sum of u^2 among the `steps` controls that reach (0, 0) exactly at `horizon`,
    clipped to [-bound, bound] (then the origin may be missed).

    Minimum-energy control of a reachable linear system, e.g. Lewis, Vrabie & Syrmos, Optimal
    Control, ch. 2: with x_N = A^N x0 + G u and G = [A^{N-1}B, ..., AB, B], the least-norm
    solution of G u = -A^N x0 is u = G^T (G G^T)^{-1} (-A^N x0). Here A^k B = [dt^2 (k + 1/2),
    dt], so u is affine in k: a ramp.
    """
    dt = step_dt(steps, horizon)
    powers = np.arange(steps - 1, -1, -1, dtype=np.float64)  # column k is A^{N-1-k} B
    gramian_rows = np.stack([dt * dt * (powers + 0.5), np.full(steps, dt)])
    target = -np.array([position + steps * dt * velocity, velocity], dtype=np.float64)
    u = gramian_rows.T @ np.linalg.solve(gramian_rows @ gramian_rows.T, target)
    return [float(x) for x in np.clip(u, -bound, bound)]


def control_cost(
    position: float,
    velocity: float,
    controls: Sequence[float],
    *,
    steps: int,
    horizon: float,
    bound: float,
    terminal_weight: float = 10.0,
) -> float:
    """terminal_weight * (p_T^2 + v_T^2) + sum(u^2) * dt of what the actuator applies: the
    first `steps` controls (zeros after the last one given), each saturated at +-bound."""
    applied = [min(max(float(u), -bound), bound) for u in controls[:steps]]
    applied += [0.0] * (steps - len(applied))
    dt = step_dt(steps, horizon)
    p, v = simulate(position, velocity, applied, dt)
    return terminal_weight * (p * p + v * v) + sum(u * u for u in applied) * dt
