"""Predictors: *how* to stand in for the block stack on a skipped step.

The first half is pure math on histories (values newest first), in float32, testable on synthetic
curves; every function returns a finite tensor (NaN/Inf become 0). The second half are the predictor
objects the engine drives (:mod:`tcpade_core.engine`), one per method reading:

* ``capacity``: history entries per stream; ``stores``: ``"residual"`` (y - h) or ``"output"`` (y);
* ``State``: its per-stream state class (``reset()``), made by the engine for each stream (``st.pred``);
  ``st.history`` is the stream's history of ``capacity`` entries;
* ``provides``: capabilities a gate may read (``"self_error"``: the state keeps ``self_error`` and
  ``newest_step`` current), switched on by :meth:`Predictor.serve` when the gate asks for them;
* ``phase(index, num_steps)``: the step's phase for the report ("-" where a method has none);
* ``ready(step, st)``: enough history to predict;
* ``predict(step, st, h, rec) -> y_hat``: the stack output for input ``h`` (in ``h``'s dtype);
* ``observe(step, st, h, y)`` on a computed step, ``observe_skip(step, st, h, y_hat)`` on a skipped one.

Precision: whatever a predictor computes (residuals, differences, factors, predictions) is computed in
float32 (:func:`residual` and :meth:`ResidualHistory.latest` hand out float32); what it keeps goes
through the stream's history (:meth:`ResidualHistory.push` / :meth:`ResidualHistory.keep`), which
stores it in the stream's dtype; predictions are cast back to the input's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import FrozenSet, Iterable, List, Optional, Sequence, Tuple

import torch

from .signals import curvature_test

EPS = 1e-12


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def residual(y: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``y - h`` in float32, whatever the dtypes of ``y`` and ``h`` (one float32 temporary)."""
    return y.detach().to(torch.float32, copy=True).sub_(h.detach())


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
        return _finite(out)
    n = float(steps[0] - steps[1])
    k = float(target_step - steps[0])
    for i in range(1, order + 1):
        diff = torch.zeros_like(values[0])
        for j in range(i + 1):
            diff = diff + ((-1) ** j) * math.comb(i, j) * values[j]
        out = out + diff * (k**i) / (math.factorial(i) * n**i)
    return _finite(out)


def taylor_factors_update(old, value: torch.Tensor, distance: float, order: int) -> list:
    """TaylorSeer's official recursive derivative estimate on a computed step: factor_0 = the new value,
    factor_{i+1} = (factor_i(new) - factor_i(stored)) / distance, for as many orders as were stored (up to
    ``order``). ``old``: the stored factors (None: start over with the value alone)."""
    new = [value]
    for i in range(order):
        if old is None or i >= len(old):
            break
        new.append((new[i] - old[i]) / distance)
    return new


def taylor_factors_eval(factors, k: float) -> torch.Tensor:
    """sum_i factor_i k^i / i!  (k: steps since the computed step the factors belong to)."""
    out = factors[0].clone()
    for i in range(1, len(factors)):
        out = out + factors[i] * (k**i / math.factorial(i))
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
        return _finite(values[0].clone())
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
        return _finite(phis[0].clone()), 0
    stds = [float((phis[n] - phis[n - 1]).float().std()) for n in range(1, top + 1)]
    best = 1 + min(range(len(stds)), key=lambda i: (stds[i], i))
    return phis[best], best


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


def pade_residual(
    r1: torch.Tensor,
    r2: torch.Tensor,
    r3: torch.Tensor | None,
    *,
    lam: float,
    numerator: str,
    denominator: str,
    ratio: float = 1.0,
    pole_guard: float = 0.1,
) -> tuple[torch.Tensor, float]:
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
    make_num = NUMERATORS.get(numerator)
    if make_num is None:
        raise ValueError(f"unknown numerator {numerator!r}")
    num = make_num(r1, r2, r3, s, ratio)
    if denominator == "none":
        out = num
    else:
        scaled = DENOMINATORS.get(denominator)
        if scaled is None:
            raise ValueError(f"unknown denominator {denominator!r}")
        out = num / guard_pole(1.0 + a1 * scaled(r1), pole_guard)
    return _finite(out), s


def _literal_numerator(r1, r2, r3, s, ratio):
    if r3 is None:
        raise ValueError("numerator='literal' needs three residuals")
    return 2.0 * s * r3 - s * r2


def _normalized(r1):
    rms = float(r1.float().pow(2).mean().sqrt())
    return r1 / rms if rms > EPS else torch.zeros_like(r1)


# Eq. 5's numerator: (r1, r2, r3, sigma, ratio) -> value; its denominator's variable q in 1 + a1 q
NUMERATORS = {"literal": _literal_numerator, "recent": lambda r1, r2, r3, s, ratio: r1 + s * ratio * (r1 - r2)}
DENOMINATORS = {"elementwise": lambda r1: r1, "normalized": _normalized}


def rational_extrapolate(
    values: Sequence[torch.Tensor],
    steps: Sequence[float],
    target: float,
    pole_guard: float = 0.1,
    saturate_only: bool = False,
) -> tuple[torch.Tensor, float]:
    """A [1/1] Padé approximant in the step variable through the three newest values (newest first):
    v(s) = v1 + B k / (1 + c k), k = s - s1, with one pole coefficient c shared by all elements and B per
    element. It passes through v1 and v2 exactly; c is fitted (least squares over all elements) to v3:
    with D = (v1 - v2) / d2 the newest secant slope, d2 = s1 - s2, d3 = s1 - s3 and g the scalar that
    best maps D onto v3 - v1, c = (g + d3) / (d3 (d2 + g)) and B = D (1 - c d2). c = 0 on a straight line
    (linear extrapolation); c > 0 saturates a decelerating trajectory; c < 0 accelerates
    (``saturate_only`` keeps c >= 0). c stays where the three points and the target lie on one branch,
    with every denominator at least ``pole_guard``. Returns (prediction, c)."""
    v1, v2, v3 = values[0], values[1], values[2]
    s1, s2, s3 = float(steps[0]), float(steps[1]), float(steps[2])
    d2, d3, k = s1 - s2, s1 - s3, float(target) - s1
    if d2 <= 0 or d3 <= d2:
        return _finite(v1.clone()), 0.0
    slope = (v1 - v2) / d2
    dn = float((slope * slope).sum())
    c = 0.0
    if dn > EPS:
        g = float((slope * (v3 - v1)).sum()) / dn
        if abs(d2 + g) > EPS:
            c = (g + d3) / (d3 * (d2 + g))
    if saturate_only:
        c = max(c, 0.0)
    c = min(c, (1.0 - pole_guard) / d3)  # 1 - c d3 >= pole_guard: the points on one branch
    if k > 0:
        c = max(c, (pole_guard - 1.0) / k)  # 1 + c k >= pole_guard: the target too
    return _finite(v1 + slope * (1.0 - c * d2) * (k / (1.0 + c * k))), c


# ================================================================ predictor objects


class PredictorState:
    """A predictor's per-stream state beyond its history (base: none). ``tensors()``: what it holds, for the
    cache's byte count."""

    def reset(self) -> None:
        pass

    def tensors(self) -> Iterable[torch.Tensor]:
        return ()


class Predictor:
    """Base: nothing to predict (full compute)."""

    capacity = 0
    stores = "residual"
    State = PredictorState
    provides: FrozenSet[str] = frozenset()
    warmup = 1  # computed steps before it can predict (a planned schedule computes these first)
    plan_order = 0  # the order of the open-loop error a planner minimises for it (tcpade_core.planner)

    def serve(self, capabilities: FrozenSet[str]) -> None:
        """Keep these capabilities current for the gate (a subset of ``provides``; checked by the method table)."""

    def phase(self, index: int, num_steps: int) -> str:
        return "-"

    def ready(self, step, st) -> bool:
        return False

    def predict(self, step, st, h: torch.Tensor, rec) -> torch.Tensor:
        raise NotImplementedError

    def observe(self, step, st, h: torch.Tensor, y: torch.Tensor) -> None:
        st.history.push(step.index, step.t, y if self.stores == "output" else residual(y, h))

    def observe_skip(self, step, st, h: torch.Tensor, y_hat: torch.Tensor) -> None:
        pass

    def _output(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The stack output from a predicted value: the value itself, or input + predicted residual."""
        return (v if self.stores == "output" else h.float() + v).to(h.dtype)


class NoPredictor(Predictor):
    def observe(self, step, st, h, y) -> None:
        pass


class ReusePredictor(Predictor):
    """FORA / TeaCache: the newest computed residual, added to the current input."""

    capacity = 1

    def ready(self, step, st) -> bool:
        return len(st.history) >= 1

    def predict(self, step, st, h, rec):
        (r1,) = st.history.latest(1, h.device)
        return self._output(r1.value, h)


@dataclass
class TaylorState(PredictorState):
    factors: Optional[List[torch.Tensor]] = None  # the official recursion's factors (orders 0..O)
    factor_step: Optional[int] = None  # the computed step they belong to

    def reset(self) -> None:
        self.factors, self.factor_step = None, None

    def tensors(self):
        return tuple(self.factors or ())


class TaylorPredictor(Predictor):
    """TaylorSeer: order-O extrapolation in the step index of the stack output (or residual).

    ``form="official"``: the official code's recursive factors (:func:`taylor_factors_update`), kept in the
    stream's state; ``"eq10"`` / ``"newton"``: :func:`taylor_eq10` / :func:`newton` on the newest O+1
    computed values. ``first_enhance``: as in the official code, the factors of order >= 1 are only
    updated from step ``first_enhance - 1`` on.
    """

    State = TaylorState

    def __init__(self, order: int, form: str, target: str, first_enhance: int = 0):
        self.order, self.form, self.stores, self.first_enhance = order, form, target, first_enhance
        self.capacity = 0 if form == "official" else order + 1
        # order 2 and up are planned as order 2 (the newest three values), exactly for the exact-on-uneven forms
        self.plan_order = min(order, 2)
        self._fn = {"eq10": taylor_eq10, "newton": newton}.get(form)

    def ready(self, step, st) -> bool:
        return st.pred.factors is not None if self.form == "official" else len(st.history) >= 1

    def observe(self, step, st, h, y):
        if self.form != "official":
            return super().observe(step, st, h, y)
        ps: TaylorState = st.pred
        value = y.detach().float() if self.stores == "output" else residual(y, h)
        old, last = ps.factors, ps.factor_step
        keep_old = old is not None and step.index >= self.first_enhance - 1 and step.index != last
        old = [f.to(value.device, torch.float32) for f in old] if keep_old else None
        new = taylor_factors_update(old, value, float(step.index - last) if keep_old else 1.0, self.order)
        ps.factors = [st.history.keep(f) for f in new]
        ps.factor_step = step.index

    def predict(self, step, st, h, rec):
        if self.form == "official":
            ps: TaylorState = st.pred
            factors = [f.to(h.device, torch.float32) for f in ps.factors]
            v = taylor_factors_eval(factors, float(step.index - ps.factor_step))
            rec.order = len(factors) - 1
            return self._output(v, h)
        es = st.history.latest(self.capacity, h.device)
        vals, steps = [e.value for e in es], [e.step for e in es]
        v = self._fn(vals, steps, step.index, self.order)
        rec.order = min(self.order, len(vals) - 1)
        return self._output(v, h)


class LagrangePredictor(Predictor):
    """TraCache: Lagrange interpolation in normalised time through the newest n+1 values, n chosen per
    step by dynamic order selection (:func:`lagrange_dynamic`)."""

    def __init__(self, max_order: int, target: str):
        self.max_order, self.capacity, self.stores = max_order, max_order + 1, target
        self.plan_order = 1

    def ready(self, step, st) -> bool:
        return len(st.history) >= 1

    def predict(self, step, st, h, rec):
        es = st.history.latest(self.capacity, h.device)
        v, rec.order = lagrange_dynamic([e.value for e in es], [e.t for e in es], step.t, self.max_order)
        return self._output(v, h)


def phase_of(index: int, num_steps: int, early: float, late: float) -> str:
    """Eq. 9's phases with t = T - index counting down: early t > early*T, late t < late*T."""
    t = num_steps - index
    if t > early * num_steps:
        return "early"
    if t < late * num_steps:
        return "late"
    return "mid"


@dataclass
class PadeState(PredictorState):
    prev_input: Optional[torch.Tensor] = None  # reconstruct="previous_input": the last step's input
    last_pred_residual: Optional[torch.Tensor] = None  # history="all": this step's prediction, kept on a skip
    self_error: Optional[Tuple[float, int]] = None  # capability "self_error": (relative error, distance k0)
    newest_step: Optional[int] = None  # the step of the newest history entry

    def reset(self) -> None:
        self.prev_input = self.last_pred_residual = self.self_error = self.newest_step = None

    def tensors(self):
        return tuple(t for t in (self.prev_input, self.last_pred_residual) if t is not None)


class PadePredictor(Predictor):
    """TC-Padé's step-phase predictor (Eq. 5-9) and reconstruction (Eq. 6).

    Early phase: alpha1 V1 + (1 - alpha1) V2. Mid: the Padé value (:func:`pade_residual`, or with
    ``numerator="rational"`` the [1/1] approximant in the step variable, :func:`rational_extrapolate`,
    its increment damped by sigma_stab). Late: Padé + beta (V1 - V2). ``target="residual"``: V is the stack
    residual and the output is ``base + V`` with ``base`` the current input or, as Eq. 6 prints it, the
    previous step's input; ``target="output"``: V is the stack output itself.
    ``cfg`` is a :class:`tcpade_core.config.TCPadeConfig`. It provides ``"self_error"``: on every computed
    step, how far its prediction of that step would have been from the truth.
    """

    capacity = 3
    State = PadeState
    provides = frozenset({"self_error"})

    def __init__(self, cfg):
        self.cfg = cfg
        self.stores = cfg.target
        self.self_check = False
        self.plan_order = 1  # warmup 1: with one computed value it predicts by reuse (see value())
        rational = cfg.numerator in ("rational", "rational_damped")
        self._mid = self._mid_rational if rational else self._mid_pade

    def serve(self, capabilities) -> None:
        self.self_check = "self_error" in capabilities

    def phase(self, index, num_steps):
        return phase_of(index, num_steps, self.cfg.early_boundary, self.cfg.late_boundary)

    def ready(self, step, st) -> bool:
        if self._base_is_previous() and st.pred.prev_input is None:
            return False
        return len(st.history) >= 1

    def _base_is_previous(self) -> bool:
        return self.cfg.target == "residual" and self.cfg.reconstruct == "previous_input"

    def value(self, step_index: int, phase: str, es, rec=None) -> torch.Tensor:
        """The predicted value (residual or output) at ``step_index`` from history entries ``es`` (newest first).

        With fewer entries than its phase's form reads it steps down, so that any schedule runs at exactly its
        budget: one entry is reused as it is (sigma_stab 1: nothing to compare), and the printed numerator,
        which reads three, takes the two-value ``"recent"`` form."""
        c = self.cfg
        if len(es) == 1:
            if rec is not None:
                rec.order = 0
            return es[0].value.float().clone()
        r1, r2 = es[0].value, es[1].value
        if phase == "early":
            return c.alpha1 * r1 + (1.0 - c.alpha1) * r2
        r, s = self._mid(step_index, es)
        if rec is not None:
            rec.sigma_stab = s
        if phase == "late":
            r = r + c.beta * (r1 - r2)
        return r

    def _mid_rational(self, step_index: int, es):
        c = self.cfg
        r1, r2 = es[0].value, es[1].value
        s = sigma_stab(r1, r2, c.lam)
        if len(es) <= 2:
            ratio = (step_index - es[0].step) / (es[0].step - es[1].step) if es[0].step != es[1].step else 1.0
            return r1 + s * ratio * (r1 - r2), s
        ext, _ = rational_extrapolate(
            [r1, r2, es[2].value],
            [e.step for e in es[:3]],
            step_index,
            c.pole_guard,
            saturate_only=c.numerator == "rational_damped",
        )
        return r1 + s * (ext - r1), s

    def _mid_pade(self, step_index: int, es):
        c = self.cfg
        ratio = 1.0
        if c.spacing == "steps" and es[0].step != es[1].step:
            ratio = (step_index - es[0].step) / (es[0].step - es[1].step)
        r3 = es[2].value if len(es) > 2 else None
        return pade_residual(
            es[0].value,
            es[1].value,
            r3,
            lam=c.lam,
            numerator="recent" if r3 is None and c.numerator == "literal" else c.numerator,
            denominator=c.denominator,
            ratio=ratio,
            pole_guard=c.pole_guard,
        )

    def predict(self, step, st, h, rec):
        c = self.cfg
        ps: PadeState = st.pred
        r = self.value(step.index, step.phase, st.history.latest(3, h.device), rec)
        if c.target == "output":
            out = r
        else:
            base = h if c.reconstruct == "current_input" else ps.prev_input.to(h.device)
            out = r + base
        if c.history == "all":
            ps.last_pred_residual = r
        return _finite(out).to(h.dtype)

    def observe(self, step, st, h, y):
        if self.self_check:
            self._self_check(step, st, h, y)
        st.pred.last_pred_residual = None  # a prediction of this step's extra call: not kept
        super().observe(step, st, h, y)
        st.pred.newest_step = step.index
        self._keep_input(st, h)

    def _self_check(self, step, st, h, y):
        """For the error gate: how well would the predictor have predicted this computed step?"""
        es = [e for e in st.history.latest(3, y.device) if e.computed]
        if len(es) < 2:
            return
        truth = y.float() if self.cfg.target == "output" else residual(y, h)
        guess = self.value(step.index, "mid", es)
        # relative to what is predicted (the output, or the residual): a residual's error over the output's norm
        # made the estimate as small as the residual is against the output
        err = float(torch.linalg.vector_norm(guess - truth) / torch.linalg.vector_norm(truth).clamp_min(1e-12))
        st.pred.self_error = (err, step.index - es[0].step)

    def observe_skip(self, step, st, h, y_hat):
        ps: PadeState = st.pred
        if self.cfg.history == "all":
            st.history.push(step.index, step.t, ps.last_pred_residual, computed=False)
            ps.last_pred_residual = None
            ps.newest_step = step.index
        self._keep_input(st, h)

    def _keep_input(self, st, h):
        if self._base_is_previous():
            st.pred.prev_input = st.history.keep(h)


@dataclass
class OfficialState(PredictorState):
    last_input: Optional[torch.Tensor] = None  # the previous step's input
    last_pred_residual: Optional[torch.Tensor] = None  # this step's prediction, stored on a skip
    order: Optional[int] = None  # the adaptive order (2-4)
    stability: float = 1.0  # the stability factor, in [0.8, 1.2]

    def reset(self) -> None:
        self.last_input = self.last_pred_residual = self.order = None
        self.stability = 1.0

    def tensors(self):
        return tuple(t for t in (self.last_input, self.last_pred_residual) if t is not None)


class OfficialPadePredictor(Predictor):
    """The authors' residual predictor (``ResidualPredictor`` in their ``utils/predict.py``), per stream.

    ``cfg`` is a :class:`tcpade_core.config.TCPadeOfficialConfig`. Every step's residual is stored (a
    predicted step stores prediction - input); the stream keeps the previous step's input, the adaptive
    order (2-4, from the cosine similarity of the newest residuals) and the stability factor
    clip(1 / (1 + 10 ||R1 - R2||), 0.8, 1.2). Their weighted-mean fallback, clamp and blend are kept as
    written; the denominator's "curvature sign" is the boolean curvature test (their ``< 0`` test on it
    never fires), so it is 1 - 0.1 sf when the test passes and 1 otherwise.
    """

    WEIGHTS = (0.4, 0.3, 0.2, 0.1)
    State = OfficialState

    def __init__(self, cfg):
        self.cfg = cfg
        self.capacity = cfg.history_size
        # their readiness (``initialized``: min(3, order) residuals; two at least, as their early phase reads two),
        # kept as the code has it: a speed target or a plan computes these first and counts them
        self.warmup, self.plan_order = max(2, min(3, cfg.order)), 1

    def _total(self, num_steps: int) -> int:
        return 20 if self.cfg.phase_steps == "coded" else num_steps

    def phase(self, index, num_steps):
        t = self._total(num_steps)
        return "late" if index > 0.8 * t else "mid" if index > 0.3 * t else "early"

    def ready(self, step, st) -> bool:
        return len(st.history) >= self.warmup and st.pred.last_input is not None

    def predict(self, step, st, h, rec):
        es = st.history.latest(self.capacity, h.device)
        r = [e.value for e in es]  # newest first
        ps: OfficialState = st.pred
        if step.phase == "early":
            res = 0.9 * r[0] + 0.1 * r[1]
        else:
            res = self._pade(r, ps, curvature_test(st.history, self.cfg.threshold)[0])
            if step.phase == "late":
                res = res + 0.3 * (r[0] - r[1])
        hf = h.float()
        res = res + 0.2 * (hf - ps.last_input.to(h.device, torch.float32))
        ps.last_pred_residual = res
        return _finite(hf + res).to(h.dtype)

    def _pade(self, r, ps: OfficialState, curve_ok: bool) -> torch.Tensor:
        order = ps.order if ps.order is not None else self.cfg.order
        if len(r) < order + 1:
            k = min(len(r), order)
            w = self.WEIGHTS[:k]
            return sum((wi / sum(w)) * ri for wi, ri in zip(w, r)) * ps.stability
        r1, r2 = r[0], r[1]
        delta = (r1 - r2).abs()
        avg_mag = 0.5 * (r1.abs() + r2.abs())
        sf = torch.exp(-5.0 * delta / (avg_mag + 1e-7))
        den = 1.0 - 0.1 * sf if curve_ok else torch.ones_like(sf)
        result = (2.0 * sf * r1 - sf * r2) / den
        recent = 0.6 * r1 + 0.4 * r2
        max_dev = torch.maximum(0.5 * delta, 0.1 * avg_mag)
        result = recent + torch.maximum(torch.minimum(result - recent, max_dev), -max_dev)
        blend = 0.7 * sf + 0.3
        result = blend * result + (1.0 - blend) * recent
        if not bool(torch.isfinite(result).all()):
            result = r1 + 0.5 * (r1 - r2)
        return result

    def observe(self, step, st, h, y):
        st.pred.last_pred_residual = None
        self._record(step, st, h, residual(y, h), True)

    def observe_skip(self, step, st, h, y_hat):
        pred, st.pred.last_pred_residual = st.pred.last_pred_residual, None
        self._record(step, st, h, pred, False)

    def _record(self, step, st, h, residual, computed: bool):
        st.history.push(step.index, step.t, residual, computed=computed)
        ps: OfficialState = st.pred
        ps.last_input = st.history.keep(h)
        if len(st.history) >= 3:
            r1, r2, r3 = (e.value for e in st.history.latest(3))
            cos = lambda a, b: (
                0.0
                if float(a.norm()) == 0 or float(b.norm()) == 0
                else float(torch.nn.functional.cosine_similarity(a.flatten()[None], b.flatten()[None]))
            )
            sim = (cos(r1, r2) + cos(r2, r3)) / 2
            ps.order = min(self.cfg.order, 4) if sim > 0.98 else min(self.cfg.order, 3) if sim > 0.90 else 2
            ps.stability = max(0.8, min(1.2, 1.0 / (1.0 + 10.0 * float(torch.linalg.vector_norm(r1 - r2)))))


# ---------------------------------------------------------------- Spectrum (Chebyshev ridge forecast)

# Spectrum's time maps: (step index, time t, the run's step count) -> tau, the Chebyshev variable
SPECTRUM_TIME_MAPS = {
    # the official code (``BaseForecaster._taus``): the step index through a FIXED affine map of [0, 50] onto [-1, 1]
    "fixed50": lambda index, t, num_steps: (index - 25.0) / 25.0,
    # the step index through [0, num_steps] onto [-1, 1]: the same reading at every step count
    "steps": lambda index, t, num_steps: 2.0 * index / max(num_steps, 1) - 1.0,
    # the normalised time t (1 = noise, 0 = clean; sigma-like) onto [-1, 1]
    "time": lambda index, t, num_steps: 1.0 - 2.0 * t,
}


def chebyshev_design(taus: Sequence[float], degree: int) -> torch.Tensor:
    """Rows [T_0(tau), ..., T_M(tau)] by the three-term recurrence T_m = 2 tau T_{m-1} - T_{m-2} (float64)."""
    x = torch.as_tensor(list(taus), dtype=torch.float64).reshape(-1, 1)
    cols = [torch.ones_like(x), x]
    for _ in range(2, degree + 1):
        cols.append(2.0 * x * cols[-1] - cols[-2])
    return torch.cat(cols[: degree + 1], dim=1)


def chebyshev_ridge_weights(taus: Sequence[float], tau_star: float, degree: int, lam: float) -> List[float]:
    """The ridge forecast as weights on the stored values: the fit C = (X^T X + lam I)^-1 X^T H (Spectrum's
    ``ChebyshevForecaster``) predicts x(tau*) C = a^T H with a = X (X^T X + lam I)^-1 x(tau*), X the Chebyshev
    design of ``taus`` (one row per stored value). Solved by Cholesky in float64 (a (M+1)x(M+1) system); a
    factorisation that fails gets the official code's jitter, and if it fails again (non-finite times) the
    forecast is the newest value. ``lam`` > 0 keeps the system positive definite."""
    X = chebyshev_design(taus, degree)
    x_star = chebyshev_design([tau_star], degree)[0]
    A = X.T @ X + lam * torch.eye(degree + 1, dtype=torch.float64)
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        A = A + 1e-6 * float(A.diagonal().mean()) * torch.eye(degree + 1, dtype=torch.float64)
        L, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        return [1.0] + [0.0] * (len(taus) - 1)
    a = X @ torch.cholesky_solve(x_star.reshape(-1, 1), L).reshape(-1)
    return [float(v) if math.isfinite(float(v)) else 0.0 for v in a]


def newton_forward_weights(times: Sequence[float], t_star: float, order: int) -> List[float]:
    """Spectrum's discrete Taylor term (``Spectrum._local_taylor_discrete``) as weights on the newest values
    (``times`` newest first): with k = (t* - t_1) / (t_1 - t_2) in units of the last spacing,
    h_1 + k D1 + C(k,2) D2 + C(k,3) D3, D_j the j-th backward difference of consecutive stored values
    (D1 = h_1 - h_2, D2 = h_1 - 2 h_2 + h_3, ...). As its code writes it: the coefficients are C(k, j) =
    k (k-1) ... (k-j+1) / j!, the Newton-forward ones, so the term is exact on lines (order 1, the official
    setting) and not on higher degrees. One value: itself."""
    n = len(times)
    if n < 2:
        return [1.0]
    k = (t_star - times[0]) / max(times[0] - times[1], 1e-8)
    w = [1.0 + k, -k]
    if order >= 2 and n >= 3:
        c2 = 0.5 * k * (k - 1.0)
        w = [w[0] + c2, w[1] - 2.0 * c2, c2]
    if order >= 3 and n >= 4:
        c3 = k * (k - 1.0) * (k - 2.0) / 6.0
        w = [w[0] + c3, w[1] - 3.0 * c3, w[2] + 3.0 * c3, -c3]
    return w


def spectrum_weights(
    times: Sequence[float], t_star: float, degree: int, lam: float, w: float, taylor_order: int
) -> List[float]:
    """Spectrum's forecast h = (1 - w) h_taylor + w h_cheb as weights on the stored values (newest first).
    From a single value: that value (the Taylor term's rule; a one-point ridge fit would only shrink it)."""
    if len(times) == 1:
        return [1.0]
    cheb = chebyshev_ridge_weights(times, t_star, degree, lam) if w != 0.0 else [0.0] * len(times)
    tay = newton_forward_weights(times, t_star, taylor_order) if w != 1.0 else []
    tay = tay + [0.0] * (len(times) - len(tay))
    return [w * c + (1.0 - w) * t for c, t in zip(cheb, tay)]


class SpectrumPredictor(Predictor):
    """Spectrum (hanjq17/Spectrum, CVPR 2026): a Chebyshev ridge forecast of the stack output (or residual)
    over the newest ``window`` computed values, optionally blended with a discrete Newton-forward Taylor term
    (:func:`spectrum_weights`). ``time_map``: how a step becomes the Chebyshev variable
    (:data:`SPECTRUM_TIME_MAPS`; ``"fixed50"`` is the official code's). Only computed steps are kept."""

    def __init__(self, degree: int, lam: float, w: float, window: int, taylor_order: int, time_map: str, target: str):
        if time_map not in SPECTRUM_TIME_MAPS:
            raise ValueError(f"unknown time_map {time_map!r}")
        self.degree, self.lam, self.w, self.taylor_order = degree, lam, w, taylor_order
        self.capacity, self.stores, self.plan_order = window, target, 1
        self._tau = SPECTRUM_TIME_MAPS[time_map]

    def ready(self, step, st) -> bool:
        return len(st.history) >= 1

    def predict(self, step, st, h, rec):
        es = st.history.latest(self.capacity, h.device)
        taus = [self._tau(e.step, e.t, step.num_steps) for e in es]
        tau_star = self._tau(step.index, step.t, step.num_steps)
        weights = spectrum_weights(taus, tau_star, self.degree, self.lam, self.w, self.taylor_order)
        out = torch.zeros_like(es[0].value)
        for a, e in zip(weights, es):
            if a != 0.0:
                out.add_(e.value, alpha=a)
        rec.order = min(self.degree, len(es) - 1)
        return self._output(_finite(out), h)
