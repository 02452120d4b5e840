"""Predictors: pure math on histories, in float32, testable on synthetic curves.

Each function takes values newest first and returns a tensor, never NaN or Inf.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

EPS = 1e-12
RECIPROCAL_CAP = 100.0


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


# ---------------------------------------------------------------- reuse

def reuse(values: Sequence[torch.Tensor]) -> torch.Tensor:
    """FORA / TeaCache: the newest cached value, unchanged."""
    return values[0]


# ---------------------------------------------------------------- Taylor (TaylorSeer Eq. 10)

def taylor_eq10(values: Sequence[torch.Tensor], steps: Sequence[float], target_step: float, order: int) -> torch.Tensor:
    """TaylorSeer Eq. 10: F(t-k) = F(t) + sum_i Delta^i F / (i! N^i) * k^i.

    ``values``/``steps`` newest first; N is the distance between the two newest entries (the
    computation interval); Delta^i is the i-th backward difference (Eq. 8). The order used is
    ``min(order, len(values) - 1)``. Exact on polynomials of degree <= 1 (the finite differences
    approximate derivatives, Eq. 9, so higher degrees carry a truncation error by construction).
    """
    order = min(order, len(values) - 1)
    out = values[0].clone()
    if order <= 0:
        return out
    n = float(steps[0] - steps[1])
    k = float(target_step - steps[0])
    for i in range(1, order + 1):
        diff = torch.zeros_like(values[0])
        for j in range(i + 1):
            diff = diff + ((-1) ** j) * math.comb(i, j) * values[j]
        out = out + diff * (k ** i) / (math.factorial(i) * n ** i)
    return _finite(out)


# ---------------------------------------------------------------- Lagrange (TraCache Eq. 6)

def lagrange_weights(times: Sequence[float], t: float) -> list[float]:
    """l_k(t) = prod_{q != k} (t - t_q) / (t_k - t_q)."""
    w = []
    for k, tk in enumerate(times):
        num, den = 1.0, 1.0
        for q, tq in enumerate(times):
            if q != k:
                num *= t - tq
                den *= tk - tq
        w.append(num / den if den != 0 else 0.0)
    return w


def lagrange(values: Sequence[torch.Tensor], times: Sequence[float], t: float) -> torch.Tensor:
    """The polynomial of degree len-1 through (times[k], values[k]), evaluated at t. Exact on
    polynomials of degree <= len(values) - 1. Repeated times fall back to the newest value."""
    if len(values) == 1 or len(set(times)) != len(times):
        return values[0].clone()
    out = torch.zeros_like(values[0])
    for v, w in zip(values, lagrange_weights(times, t)):
        out = out + w * v
    return _finite(out)


def newton(values: Sequence[torch.Tensor], steps: Sequence[float], target_step: float, order: int) -> torch.Tensor:
    """Exact order-O polynomial extrapolation through the newest O+1 values (Newton form == Lagrange)."""
    m = min(order, len(values) - 1) + 1
    return lagrange(values[:m], steps[:m], target_step)


def lagrange_dynamic(values: Sequence[torch.Tensor], times: Sequence[float], t: float, max_order: int):
    """TraCache dynamic order selection (Eq. 7): n* = argmin_n std(phi_n - phi_(n-1)), n in 1..max_order,
    phi_0 = the newest cached value. Returns (prediction, chosen order)."""
    top = min(max_order, len(values) - 1)
    phis = [values[0]]
    for n in range(1, top + 1):
        phis.append(lagrange(values[: n + 1], times[: n + 1], t))
    if top <= 0:
        return phis[0].clone(), 0
    stds = [float((phis[n] - phis[n - 1]).float().std()) for n in range(1, top + 1)]
    best = 1 + min(range(len(stds)), key=lambda i: (stds[i], i))
    return phis[best], best


# ---------------------------------------------------------------- TSI (TC-Padé Eq. 1)

def tsi_literal(r1: torch.Tensor, r2: torch.Tensor, r3: torch.Tensor) -> float:
    """Eq. 1 as printed: 1/2 ||u_{t+1} - u_{t+2}||, u_{t+1} = unit(R_{t+1} - R_{t+2}),
    u_{t+2} = unit(R_{t+2} - R_{t+3}). 0 on a straight line, sqrt(2)/2 at a right angle, 1 at a
    reversal. If either difference has zero norm the residual is not moving: TSI = 0 (steady)."""
    d1 = (r1 - r2).flatten().float()
    d2 = (r2 - r3).flatten().float()
    n1, n2 = float(torch.linalg.vector_norm(d1)), float(torch.linalg.vector_norm(d2))
    if n1 <= EPS or n2 <= EPS:
        return 0.0
    return min(1.0, 0.5 * float(torch.linalg.vector_norm(d1 / n1 - d2 / n2)))


def stability_score(tsi: float, scale: str) -> float:
    """Map Eq. 1's TSI to the score compared against theta (skip when score >= theta).

    - ``literal``: TSI itself (in [0, 1]; as printed, larger means *less* steady).
    - ``cosine``: 1 + cos(angle between u_{t+1} and u_{t+2}) = 2 - 2 TSI^2, in [0, 2]: 2 on a
      straight line, 1 at a right angle, 0 at a reversal (the default, see README).
    - ``sum_norm``: ||u_{t+1} + u_{t+2}|| = 2 sqrt(1 - TSI^2): 2, sqrt(2), 0.
    - ``reciprocal``: 1 / (2 TSI) = 1 / ||u_{t+1} - u_{t+2}||, in [0.5, 100] (capped so reports stay
      finite JSON): 100 on a straight line,
      1/sqrt(2) at a right angle, 0.5 at a reversal. theta = 1.3 / 1.0 / 0.7 then skip while the
      direction turns by less than 45 / 60 / 91 degrees (the default, see README).
    """
    if scale == "reciprocal":
        return RECIPROCAL_CAP if tsi <= 0.5 / RECIPROCAL_CAP else 1.0 / (2.0 * tsi)
    if scale == "literal":
        return tsi
    if scale == "cosine":
        return 2.0 - 2.0 * tsi * tsi
    if scale == "sum_norm":
        return 2.0 * math.sqrt(max(0.0, 1.0 - tsi * tsi))
    raise ValueError(f"unknown tsi_scale {scale!r}")


# ---------------------------------------------------------------- Padé (TC-Padé Eq. 5-9)

def sigma_stab(r1: torch.Tensor, r2: torch.Tensor, lam: float) -> float:
    """Eq. 7: exp(-lambda ||R1 - R2|| / ||R1 + R2||); 1 for identical residuals, in (0, 1]."""
    num = float(torch.linalg.vector_norm((r1 - r2).float()))
    den = float(torch.linalg.vector_norm((r1 + r2).float()))
    if num <= EPS:
        return 1.0
    if den <= EPS:
        return 0.0
    return math.exp(-lam * num / den)


def guard_pole(d: torch.Tensor, eps: float) -> torch.Tensor:
    """Keep a denominator at least ``eps`` away from zero, keeping its sign (0 counts as +)."""
    sign = torch.where(d < 0, -torch.ones_like(d), torch.ones_like(d))
    return torch.where(d.abs() < eps, sign * eps, d)


@dataclass
class PadeTerms:
    sigma: float
    phase: str


def pade_residual(r1: torch.Tensor, r2: torch.Tensor, r3: torch.Tensor | None, *, lam: float,
                  numerator: str, denominator: str, ratio: float = 1.0, pole_guard: float = 0.1) -> tuple[torch.Tensor, float]:
    """Eq. 5 with Eq. 7-8 coefficients: b0 = 2 sigma, b1 = -sigma, a1 = sigma / lambda.

    ``numerator="literal"``: b0 R_{t+3} + b1 R_{t+2} as printed (needs r3).
    ``numerator="recent"``: the b0:b1 = 2:-1 second-order difference on the two newest residuals,
    normalised so that a constant residual is predicted exactly: R1 + sigma * ratio * (R1 - R2)
    (sigma -> 1: linear extrapolation 2 R1 - R2; sigma -> 0: reuse R1). ``ratio`` scales the step
    for non-uniform spacing.
    ``denominator``: ``"elementwise"`` 1 + a1 R_{t+1} as printed, ``"normalized"`` 1 + a1 R1/rms(R1),
    ``"none"`` 1. Denominators are kept ``pole_guard`` away from zero.
    Returns (prediction, sigma_stab).
    """
    s = sigma_stab(r1, r2, lam)
    a1 = s / lam
    if numerator == "literal":
        if r3 is None:
            raise ValueError("numerator='literal' needs three residuals")
        num = 2.0 * s * r3 - s * r2
    elif numerator == "recent":
        num = r1 + s * ratio * (r1 - r2)
    else:
        raise ValueError(f"unknown numerator {numerator!r}")
    if denominator == "none":
        out = num
    else:
        if denominator == "elementwise":
            q = r1
        elif denominator == "normalized":
            rms = float(r1.float().pow(2).mean().sqrt())
            q = r1 / rms if rms > EPS else torch.zeros_like(r1)
        else:
            raise ValueError(f"unknown denominator {denominator!r}")
        out = num / guard_pole(1.0 + a1 * q, pole_guard)
    return _finite(out), s
