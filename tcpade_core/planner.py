"""Where the computes go: a schedule planned from one recorded full-compute trajectory.

Given the stack outputs of a full-compute run (a :class:`tcpade_core.calibrate.Trajectory`), a predictor's order
and a budget of K computes, :func:`plan` returns the K steps to compute that minimise the predictor's open-loop
error on that trajectory: each skipped step j is predicted from the newest computed values (order 0: the newest;
order 1: the straight line through the newest two, in the step index, exact on uneven spacing), its relative
squared error ``||pred - y_j||^2 / ||y_j||^2`` weighted by how much step j's error reaches the sample, the square
of its step size in normalised time ``(t_j - t_{j+1})^2`` (an Euler step moves the latent by its size times the
model's output). A dynamic programme over (computes used, the newest two computed steps) finds the exact minimum
of that objective; higher orders are planned with the order-1 objective (their history is longer, the state grows
with it). The outputs are compared on a fixed random projection to :data:`PROJECTION` numbers per step, so 50
steps plan in well under a second on a CPU.

The schedule is a setting: a config's ``plan`` (a tuple of step indices) makes the run compute exactly those
steps (:class:`tcpade_core.gates.PlannedGate`).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

PROJECTION = 512
INF = float("inf")


def project(outputs: Sequence[torch.Tensor], dim: int = PROJECTION, seed: int = 0) -> np.ndarray:
    """(steps, dim): each step's output flattened and projected with one fixed Gaussian matrix (a
    Johnson-Lindenstrauss sketch: squared distances are kept in expectation); outputs of at most ``dim`` numbers are
    kept as they are."""
    flat = torch.stack([o.detach().float().flatten() for o in outputs])
    if flat.shape[1] <= dim:
        return flat.double().numpy()
    g = torch.Generator().manual_seed(seed)
    proj = torch.randn(flat.shape[1], dim, generator=g) / dim ** 0.5
    return (flat @ proj).double().numpy()


def step_weights(t: Sequence[float]) -> np.ndarray:
    """The square of each step's size in normalised time (the last step runs to 0); uniform where ``t`` is flat."""
    t = np.asarray(list(t), dtype=float)
    nxt = np.append(t[1:], 0.0)
    w = (t - nxt) ** 2
    return w if w.sum() > 0 else np.ones_like(t)


def errors(Y: np.ndarray, order: int) -> np.ndarray:
    """e[a, b, j]: the relative squared error of predicting step j > b from the computed steps a < b (order 1: the
    line through them in the step index; order 0: step b's value, whatever a is). a == b stands for "b alone"
    (order 0 from b). Entries with j <= b are 0."""
    n = Y.shape[0]
    norm = np.maximum((Y ** 2).sum(axis=1), 1e-24)
    e = np.zeros((n, n, n))
    for b in range(n):
        js = np.arange(b + 1, n)
        if len(js) == 0:
            continue
        reuse = ((Y[b][None, :] - Y[js]) ** 2).sum(axis=1) / norm[js]
        e[b, b, js] = reuse
        if order == 0 or b == 0:
            e[:b, b][:, js] = reuse
            continue
        a = np.arange(b)
        slope = (Y[b][None, :] - Y[a]) / (b - a)[:, None]                                  # (b, D)
        pred = Y[b][None, None, :] + slope[:, None, :] * (js - b)[None, :, None]          # (b, |js|, D)
        e[np.ix_(a, [b], js)] = (((pred - Y[js][None]) ** 2).sum(axis=2) / norm[js][None])[:, None, :]
    return e


def plan(Y: np.ndarray, weights: np.ndarray, k: int, order: int = 1, warm: int = 1) -> Tuple[List[int], float]:
    """The ``k`` steps to compute (sorted; the first ``warm`` steps always among them) that minimise the weighted
    open-loop error of an order-``order`` predictor on ``Y`` (steps x features), and that minimum. Deterministic:
    ties go to the earlier step."""
    n = Y.shape[0]
    warm = max(1, min(int(warm), n))
    k = max(min(int(k), n), warm)
    e = errors(Y, min(order, 1)) * np.asarray(weights, dtype=float)[None, None, :]
    # cum[a, b, c] = sum_{j < c} e[a, b, j]: the error of the steps after b up to c - 1, predicted from (a, b)
    cum = np.concatenate([np.zeros((n, n, 1)), np.cumsum(e, axis=2)], axis=2)
    # the state after a compute: (a, b), the newest two computed steps (a == b: b is the only one so far)
    best = np.full((n, n), INF)
    a0, b0 = (warm - 2, warm - 1) if warm >= 2 else (0, 0)
    best[a0, b0] = 0.0
    back = []                                  # per added compute: prev[a_new, c] = the a before
    for _ in range(k - warm):
        nxt = np.full((n, n), INF)
        prev = np.zeros((n, n), dtype=int)
        for b in range(n - 1):
            col = best[:, b]
            ok = np.isfinite(col)
            if not ok.any():
                continue
            cs = np.arange(b + 1, n)
            cost = np.where(ok[:, None], col[:, None] + cum[:, b, :][:, cs], INF)     # (a, c)
            a_best = np.argmin(cost, axis=0)                                          # ties: the smallest a
            val = cost[a_best, np.arange(len(cs))]
            better = val < nxt[b, cs]
            nxt[b, cs[better]] = val[better]
            prev[b, cs[better]] = a_best[better]
        back.append(prev)
        best = nxt
    total = best + cum[:, :, n]                # the steps after the last compute are predicted from it
    a, b = (int(x) for x in np.unravel_index(int(np.argmin(total)), total.shape))
    value = float(total[a, b])
    steps = {b}
    for prev in reversed(back):
        steps.add(a)
        a, b = int(prev[a, b]), a
    return sorted(steps | set(range(warm))), value


def plan_trajectory(traj, k: int, order: int = 1, warm: int = 1) -> Tuple[List[int], float]:
    """:func:`plan` on a recorded :class:`tcpade_core.calibrate.Trajectory` (its outputs and times)."""
    return plan(project(traj.outputs), step_weights(traj.t), k, order, warm)


def check_plan(value, name: str = "plan") -> Optional[Tuple[int, ...]]:
    """A plan as a sorted tuple of distinct step indices >= 0 starting at 0, or None; ValueError otherwise."""
    if value is None:
        return None
    try:
        steps = tuple(int(s) for s in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be step indices (integers >= 0, starting at 0), got {value!r}") from None
    if not steps or steps[0] != 0 or any(b <= a for a, b in zip(steps, steps[1:])) or \
            any(isinstance(s, bool) for s in value):
        raise ValueError(f"{name} must be increasing step indices starting at 0, got {value!r}")
    return steps
