"""Trajectory signals that gates, predictors and calibration share, each written once.

* :func:`turn`: how far the direction of a residual sequence turns over three values (TC-Padé Eq. 1's TSI, and
  the authors' curvature score, which only guards the norms differently);
* :func:`curvature_test`: the authors' ``curvetest`` on a stored history;
* :func:`rel_l1`: TeaCache's relative L1 change ``mean|a - b| / mean|b|``;
* :func:`fit_rescale`: TeaCache's rescale polynomial fitted on (x, y) pairs of relative L1 changes.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch

EPS = 1e-12


def turn(r1: torch.Tensor, r2: torch.Tensor, r3: torch.Tensor, guard: str = "zero", eps: float = EPS) -> float:
    """0.5 ||u1 - u2|| with u1 = unit(r1 - r2), u2 = unit(r2 - r3), values newest first: 0 on a straight line,
    sqrt(2)/2 at a right angle, 1 at a reversal.

    ``guard="zero"`` (Eq. 1 as this pack reads it): if either difference has a norm <= ``eps`` the residual is not
    moving and the result is 0; it is capped at 1. ``guard="add"`` (the authors' code): ``eps`` is added to each
    norm, nothing else."""
    d1 = (r1 - r2).flatten().float()
    d2 = (r2 - r3).flatten().float()
    if guard == "add":
        u1 = d2 / (torch.linalg.vector_norm(d2) + eps)
        u2 = d1 / (torch.linalg.vector_norm(d1) + eps)
        return 0.5 * float(torch.linalg.vector_norm(u1 - u2))
    n1, n2 = float(torch.linalg.vector_norm(d1)), float(torch.linalg.vector_norm(d2))
    if n1 <= eps or n2 <= eps:
        return 0.0
    return min(1.0, 0.5 * float(torch.linalg.vector_norm(d1 / n1 - d2 / n2)))


CURVATURE_MIN_ENTRIES = 5  # the authors' test passes until this many residuals are stored


def curvature_test(hist, threshold: float) -> Tuple[bool, Optional[float]]:
    """(passes, score): the authors' ``curvetest`` over a history's newest three values. Fewer than
    :data:`CURVATURE_MIN_ENTRIES` stored values pass (score None)."""
    if len(hist) < CURVATURE_MIN_ENTRIES:
        return True, None
    r_new, r_mid, r_old = (e.value for e in hist.latest(3))
    score = turn(r_new, r_mid, r_old, guard="add")
    return score < threshold, score


def rel_l1(a: torch.Tensor, b: torch.Tensor) -> float:
    """TeaCache's relative L1 change of ``a`` against the reference ``b``: mean|a - b| / mean|b| (in float32)."""
    a, b = a.float(), b.float()
    return float((a - b).abs().mean() / b.abs().mean().clamp_min(EPS))


IDENTITY = (1.0, 0.0)


def fit_rescale(xs: Sequence[float], ys: Sequence[float], degree: int = 4) -> Tuple[float, ...]:
    """TeaCache's rescale polynomial (numpy ``poly1d`` order, highest power first) from the relative L1 change of
    the modulated input (``xs``) to that of the stack output (``ys``); the identity (1, 0) when the finite pairs
    cannot determine it."""
    x, y = np.array(xs, dtype=float), np.array(ys, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < degree + 2 or np.ptp(x[ok]) == 0:
        return IDENTITY
    return tuple(float(c) for c in np.polyfit(x[ok], y[ok], degree))
