"""Where the computes go: a schedule planned from one recorded full-compute trajectory.

Given the stack outputs of a full-compute run (a :class:`tcpade_core.calibrate.Trajectory`), a predictor's order
and a budget of K computes, :func:`plan` returns the K steps to compute that minimise the predictor's open-loop
error on that trajectory: each skipped step j is predicted from the newest computed values (order 0: the newest;
order 1: the straight line through the newest two, in the step index, exact on uneven spacing), its relative
squared error ``||pred - y_j||^2 / ||y_j||^2`` weighted by how much step j's error reaches the sample
(:func:`step_weights`: for a flow sampler its step size in normalised time ``t_j - t_{j+1}``, as an Euler step
moves the latent by its size times the model's output; for an eps-prediction sampler its step in asinh(sigma / s)),
each gap's cost raised to :data:`SEG_POWER` (2: measured; no one gap left much worse than the rest) and summed;
for order 1 each gap also pays what errors in the computed values it starts from would reach the sample through
the line (:func:`closed_loop_costs`, :data:`CLOSED_LOOP`: measured), and is shrunk by every compute after it, which
pulls an error in the latent back toward the data (:func:`contraction`, :data:`CONTRACT`: measured). A
dynamic programme over (computes used, the newest two computed steps) finds the exact minimum of that objective; an order-2 predictor (TaylorSeer at order 2 and up, the quadratic through its newest three
values) over (computes used, the newest three) with :func:`quadratic_costs` and its own closed-loop term
(:data:`CLOSED_LOOP2`; the objective chosen on development runs:
``docs/dev_tuning.md``); other predictors of higher order are planned with the order-1 objective. The outputs are compared on a fixed random projection to :data:`PROJECTION` numbers per step, so 50
steps plan in about 0.3 s on a 2-core CPU at either order (``docs/plan_timing.txt``).

The schedule is a setting: a config's ``plan`` (a tuple of step indices) makes the run compute exactly those
steps (:class:`tcpade_core.gates.PlannedGate`).
"""

from __future__ import annotations

import bisect
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

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
    proj = torch.randn(flat.shape[1], dim, generator=g) / dim**0.5
    return (flat @ proj).double().numpy()


def step_sizes(t: Sequence[float]) -> np.ndarray:
    """Each step's size in normalised time (the last step runs to 0); 1 everywhere where ``t`` is flat."""
    t = np.asarray(list(t), dtype=float)
    dt = np.abs(t - np.append(t[1:], 0.0))
    return dt if dt.sum() > 0 else np.ones_like(t)


# s of the eps weights (step_weights): chosen on development model A (DDIM, seed 1234, 10/20/30 steps, 2-3x) among
# 0.5, 0.25, 0.1, 0.03, 0.01, 0.003 (`plan_bench --models a --s-data S`); 0.03 planned best (below it the plans no
# longer change), and it is frozen here before the held-out runs (seed 4321).
S_DATA = 0.03


# s of a flow model's weights (flow_keep_steps; None: the plain step sizes in t): what the rest of a rectified-flow
# run keeps of a change made at time t is, for data of scale s, s / sqrt(s^2 (1-t)^2 + t^2). s = 3 planned best on
# development model B (seed 1234; none, 0.1 .. 8 tried; docs/flow_weights.txt) and lost held out (-0.85 dB mean over
# 54 cells, model C -1.79), so the plain step sizes stay; `shape_bench --s-flow S` studies it.
S_FLOW: Optional[float] = None


# p of the planner's aggregate over segments: the DP minimises sum_segments cost^p (1: the plain sum; as p grows the
# plan approaches LeMiCa's minimax over segments, no one gap left much worse than the rest). Chosen on development
# runs (models A and B, seed 1234; TaylorSeer O=1 at 20/30 steps and 2-3x, plan minus the best fixed grid: p = 1
# +1.50 dB, 1.5 +1.90, 2 +2.29, 3 +2.10, 4 and 8 +1.93; at p = 2 every planning method's plan gained over p = 1 on
# development, +0.50 dB mean over 102 cells, 21 better / 5 worse) and frozen here before the held-out runs
# (docs/seg_power.txt; `shape_bench --seg-power P` studies it).
SEG_POWER: float = 2.0


# lambda of a closed-loop term the planner adds to the coherent segment costs of order 1 (closed_loop_costs,
# closed_loop_lambda; 0: open loop only; the error a plan reports stays the open-loop one): each computed value a
# prediction starts from is taken to be off by an error of squared size lambda times the trajectory's mean squared
# one-step change, independently, and the segment pays what that error reaches the latent through the prediction,
# so a line stretched far from two close computes costs more than the open-loop error says. Chosen on development
# runs (A and B, seed 1234; TaylorSeer O=1 at 20/30 steps and 2-3x, plan minus the best fixed grid, mean / min over
# 12 cells: lambda 0 +2.29 / -1.53 dB, 0.05 +1.96 / -2.97, 0.1 +2.49 / -0.32, 0.25 +1.92 / -0.32, 0.5 +1.78 /
# -2.71, 1 +1.34 / -3.14, 4 -0.68 / -5.00; the rule, fixed before: the largest minimum among means >= +1, ties to
# the smaller; TC-Padé at 0.1 -0.24 dB against 0) and frozen here before the held-out runs (docs/closed_loop.txt;
# `shape_bench --closed-loop L` studies it). Held out, TaylorSeer O=1 and TC-Padé at 20/30 steps and 2-3x gained
# +0.09 dB over lambda 0 (16 better / 8 worse of 48), so it stays. The reuse predictors (order 0: TeaCache,
# MagCache, First Block Cache) lost with it on development (-0.45 dB, 4 better / 12 worse of 36) and plan without.
CLOSED_LOOP: float = 0.1


# lambda of the same closed-loop term for an order-2 plan (TaylorSeer at order 2 and up; 0: open loop): each of the
# three computed values a quadratic starts from is off by that error, and the segment pays what reaches the latent
# through the quadratic's weights (quadratic_costs). Chosen on development runs (A, B seed 1234; TaylorSeer O=2 at
# 20/30 steps and 2-3x, plan minus the best fixed grid, mean / min over 12 cells: 0 +0.86 / -5.32 dB, 0.1 +2.47 /
# -3.16, 0.25 +1.78 / -5.04, 0.5 +1.09 / -5.04, 1 +0.05 / -7.51; order 1's rule) and frozen before the held-out
# runs: 0.1 minus 0 held out +1.09 dB (35 better / 12 worse of 60 cells on A, B seed 4321 and C), on model G, trained
# for the test, +2.38 (19 / 5 of 30). docs/order2_closed_loop.txt; `shape_bench --closed-loop2 L` studies it.
CLOSED_LOOP2: float = 0.1


def closed_loop_lambda(order: int, objective: str = "coherent") -> float:
    """The closed-loop term's lambda the planner uses for an order-``order`` predictor: :data:`CLOSED_LOOP` for
    order 1 on the coherent objective, :data:`CLOSED_LOOP2` for order 2 and up, else 0 (the reuse predictors lost
    with it). A stored plan's key names it (:func:`tcpade_core.calibrate.plan_key`)."""
    if objective != "coherent":
        return 0.0
    return CLOSED_LOOP if order == 1 else CLOSED_LOOP2 if order >= 2 else 0.0


# rho of a contraction in the planner's objective (order 1: TaylorSeer O=1 and TC-Padé; 0: off; `shape_bench
# --contract RHO` studies it; plans nested by NEST_TARGET add their computes without it): a sampler's step from
# noise level sigma_j to sigma_(j+1) with the model computed pulls an error already in the latent back toward the
# data by about the fraction of the remaining way it covers, (sigma_j - sigma_(j+1)) / sigma_j (for a denoiser whose
# prediction follows the latent off the data: Euler on a rectified flow, DDIM), and a skipped step, whose
# prediction does not see the latent, pulls nothing. Each gap's cost is therefore shrunk by every compute after it:
# c_j = 1 - rho * w_j / sum_(i >= j) w_i per computed step j (w: the step weights; for a flow model the step
# size over the time still to go), squared (the costs are squared norms) and raised to the segment power. The DP
# stays exact: a compute multiplies the total so far by its factor (:func:`contraction`). Chosen on development runs
# (A, B seed 1234; TaylorSeer O=1 at 20/30 steps and 2-3x, plan minus the best fixed grid, mean / min over 12 cells:
# rho 0 +2.49 / -0.32 dB, 0.1 +2.49 / -0.01, 0.25 +1.82 / -1.69, 0.5 +1.68 / -1.69; the closed-loop term's rule,
# written before) and frozen before the held-out runs: rho 0.1 minus 0 held out +0.25 dB (16 better / 2 worse of 48
# cells on A, B seed 4321 and C), on model E, trained for the test, +0.43 (8 / 0 of 24), on D -0.03 (4 / 4 of 24);
# docs/contraction.txt.
CONTRACT: float = 0.1


def contraction_rho(order: int, objective: str = "coherent") -> float:
    """The contraction's rho the planner uses for an order-``order`` predictor: :data:`CONTRACT` for order 1 on the
    coherent objective (TaylorSeer O=1 and TC-Padé, where it was measured), else 0. A stored plan's key names it
    (:func:`tcpade_core.calibrate.plan_key`)."""
    return CONTRACT if order == 1 and objective == "coherent" else 0.0


def contraction(dt: np.ndarray, rho: float) -> Optional[np.ndarray]:
    """Per step j, the factor by which computing step j shrinks the powered cost of every gap before it
    (:data:`CONTRACT`) at ``rho``, or None where ``rho`` is 0."""
    if not rho:
        return None
    w = np.asarray(dt, dtype=float)
    rest = np.cumsum(w[::-1])[::-1]
    frac = np.where(rest > 0, w / np.where(rest > 0, rest, 1.0), 0.0)
    return np.clip(1.0 - rho * frac, 0.0, 1.0) ** (2.0 * SEG_POWER)


# R of a margin over even spacing (every order-1 plan: TaylorSeer O=1 and TC-Padé, where it was measured, and First
# Block Cache's TaylorSeer predictor; 1: off; `shape_bench --margin R` studies it): a calibrated plan replaces the even spacing of its budget (:func:`even_steps`, what the speed target spaces
# without a calibration) only where the planner's objective rates it at least R times lower; elsewhere the plan is
# the even spacing. The objective is a proxy measured on one run of four samples: a small predicted gain is within
# its error, and a plan that moves off even spacing for one loses on other seeds. Chosen on development runs (A, B
# seed 1234; TaylorSeer O=1 and TC-Padé over the whole grid, 60 cells, plan minus the best fixed grid: R 1 and 1.25
# +2.90 dB, 1.5 +3.05, 2 +3.03, 3 +2.96 but its 20/30-step 2-3x minimum falls; the rule written before) and frozen
# before the held-out runs: R 1.5 minus 1 held out +0.20 dB (22 better / 4 worse of 120 cells on A, B seed 4321 and
# C; TaylorSeer's worst cell at 20/30 steps and 2-3x -1.29 -> -0.90), on model F, trained for the test, +0.15 (8 / 7
# of 60); reported: E +0.29, D -0.10 (1 / 11). docs/plan_margin.txt.
MARGIN: float = 1.5
# the same margin for order-2 plans (TaylorSeer O=2, valued on order 2's own objective; 1: off; `shape_bench
# --margin2 R`). Chosen on development (A, B seed 1234, TaylorSeer O=2, plan minus the best fixed grid over 30 cells:
# R 1 / 1.5 / 2 / 3 +2.81 / +2.81 / +2.86 / +1.92 dB) and frozen (f1f08af) before the held-out run: R 2 minus 1
# +0.27 dB on A, B seed 4321 and C (9 better / 1 worse of 60 cells), +0.12 on model H (4 / 0 of 30).
# docs/order2_margin.txt.
MARGIN2: float = 2.0


def margin_ratio(order: int, objective: str = "coherent") -> float:
    """The margin over even spacing the planner asks of an order-``order`` plan on the coherent objective:
    :data:`MARGIN` for order 1, :data:`MARGIN2` for order 2, else 1 (off). A stored plan's key names it
    (:func:`tcpade_core.calibrate.plan_key`)."""
    if objective != "coherent":
        return 1.0
    return MARGIN if order == 1 else MARGIN2 if order == 2 else 1.0


def even_steps(n: int, k: int, warm: int = 1) -> List[int]:
    """The ``k`` steps of ``n`` a speed target computes without a plan (:class:`tcpade_core.gates.BudgetGate` with
    placement ``"even"`` and no signal moving a compute): the first ``warm`` (the predictor's warm-up), then each
    step whose gap from the last compute reaches the steps left over the computes left."""
    k, warm = clamp_budget(n, k, warm)
    steps = list(range(warm))
    for i in range(warm, n):
        b, r = k - len(steps), n - i
        if b <= 0:
            break
        if b >= r or i - steps[-1] >= r / b - 1e-9:
            steps.append(i)
    return steps


def objective_value(cost: np.ndarray, steps: Sequence[int], keep: Optional[np.ndarray] = None) -> float:
    """The value of the planner's order-0/1 objective for computing exactly ``steps`` (sorted): each gap's cost on
    ``cost`` (:func:`segment_costs`, as the planner powers it), shrunk by the contraction ``keep`` of every compute
    after it (:func:`contraction`), summed; what :func:`_plans1` minimises, for any schedule."""
    shrink = (lambda later: float(np.prod(keep[list(later)]))) if keep is not None else (lambda later: 1.0)
    return sum(_term1(cost, steps, i) * shrink(steps[i + 1 :]) for i in range(len(steps)))


# plans nested in the budget above this target's computes (None: every budget its own optimum): a plan of more
# computes is the plan of one fewer and the one compute that lowers the objective most, so that lowering the target
# only adds computes. A study: `shape_bench --nest T`.
NEST_TARGET: Optional[float] = None


# how a plan weighs the calibration's samples (None: the batch as one vector, each gap's cost its summed error;
# "max": each sample projected apart (project_samples), and each gap costs the largest of the samples' costs, each
# relative to its own largest, so that no one sample's gap is left much worse than the rest; "sum": the samples'
# costs, each relative to its own largest and to the segment power, summed). Orders 0 and 1 on the
# coherent objective; a plan's reported error stays the batch's. A study: `shape_bench --per-sample max`
# (development, TaylorSeer O=1 at 20/30 steps and 2-3x, plan minus the best fixed grid: None +2.49 / -0.32 dB mean
# / min, "max" +2.66 / -0.32, "sum" +2.41 / -0.32); held out, "max" minus None +0.07 dB (4 better / 6 worse of 48, the
# misses unchanged): the candidate for the default, which waits for calibrations that store each sample's sketch
# (docs/per_sample.txt).
PER_SAMPLE: Optional[str] = None


def project_samples(outputs: Sequence[torch.Tensor], dim: int = PROJECTION, seed: int = 0) -> np.ndarray:
    """(steps, samples, dim): :func:`project` of each sample of the batch (the outputs' first axis) apart, with the
    same matrix, so that the samples side by side are the batch's sketch."""
    return np.stack([project([o[i] for o in outputs], dim, seed) for i in range(outputs[0].shape[0])], axis=1)


def sketch(outputs: Sequence[torch.Tensor]) -> np.ndarray:
    """What the planner compares of a run's outputs: :func:`project` of the batch, or of each sample apart
    (:func:`project_samples`) where :data:`PER_SAMPLE` is set."""
    return project_samples(outputs) if PER_SAMPLE else project(outputs)


# the most steps a plan may leave predicted after its last compute (None: as many as the objective likes). A study:
# `shape_bench --tail T`.
TAIL: Optional[int] = None


def _limit_tail(total: np.ndarray) -> np.ndarray:
    """The DP's final totals (last axis: the plan's last compute) with the states that leave more than :data:`TAIL`
    steps predicted at the end ruled out; unchanged where no state is left (a budget too small to reach the end)."""
    n = total.shape[-1]
    near = np.where(np.arange(n) >= (0 if TAIL is None else n - 1 - TAIL), total, INF)
    return near if np.isfinite(near).any() else total


def _powered(cost: np.ndarray, scale: float) -> np.ndarray:
    """``(cost / scale) ** SEG_POWER`` (``cost`` itself at the default power 1)."""
    return cost if SEG_POWER == 1.0 else (cost / scale) ** SEG_POWER


def flow_keep_steps(t: Sequence[float], s: float) -> np.ndarray:
    """Each step's ``integral s dtau / sqrt(s^2 (1 - tau)^2 + tau^2)`` over [t_(j+1), t_j] (the last step runs to 0):
    its step size in t, weighted by what the rest of a rectified-flow run keeps of a change made at that time."""
    t = np.asarray(list(t), dtype=float)
    a, b, c = s * s + 1.0, -2.0 * s * s, s * s  # s^2 (1 - tau)^2 + tau^2 = a tau^2 + b tau + c

    def prim(x):
        return s / np.sqrt(a) * np.log(2.0 * np.sqrt(a) * np.sqrt(a * x * x + b * x + c) + 2.0 * a * x + b)

    lo = np.append(t[1:], 0.0)
    return np.abs(prim(t) - prim(lo))


def step_weights(t: Sequence[float], sigmas: Optional[Sequence[float]] = None, prediction: str = "flow") -> np.ndarray:
    """How much an error in step j's model output reaches the sample, per step (the planner's weights).

    ``"flow"`` (velocity prediction, sigma = t): the step size in t (:func:`step_sizes`), measured on model B (with
    :data:`S_FLOW` set: weighted by what the rest of the run keeps, :func:`flow_keep_steps`; not adopted).
    ``"eps"`` (noise prediction; ``sigmas``: the sampler's ``steps + 1`` noise levels in the variance-exploding
    convention, sigma = sqrt((1 - alphā) / alphā), ComfyUI's for eps models): an error e in the predicted noise moves
    the sample by dsigma * e, and what the rest of the run keeps of a change made at noise level sigma is about
    s / sqrt(s^2 + sigma^2) (s: :data:`S_DATA`; a Gaussian's denoiser keeps that much), so the weight is
    ``integral s dsigma / sqrt(s^2 + sigma^2)``: the step size in asinh(sigma / s). Step sizes in t weight the
    first, noisiest steps of a DDIM run as much as the last ones."""
    if prediction == "flow" or sigmas is None:
        return step_sizes(t) if S_FLOW is None else flow_keep_steps(t, S_FLOW)
    if prediction != "eps":
        raise ValueError(f"prediction must be 'flow' or 'eps', got {prediction!r}")
    u = np.arcsinh(np.asarray(list(sigmas), dtype=float) / S_DATA)
    if len(u) != len(list(t)) + 1:
        raise ValueError(f"sigmas must hold steps + 1 = {len(list(t)) + 1} noise levels, got {len(u)}")
    w = np.abs(u[:-1] - u[1:])
    return w if w.sum() > 0 else np.ones_like(w)


def _predictions(Y: np.ndarray, a: int, b: int, js: np.ndarray, order: int) -> np.ndarray:
    """(len(js), D): the order-0 (step b's value) or order-1 (the line through a < b) predictions of steps js."""
    if order == 0 or a == b:
        return np.broadcast_to(Y[b], (len(js), Y.shape[1]))
    return Y[b][None, :] + (Y[b] - Y[a])[None, :] * ((js - b) / (b - a))[:, None]


def errors(Y: np.ndarray, order: int) -> np.ndarray:
    """e[a, b, j]: the relative squared error of predicting step j > b from the computed steps a < b (order 1: the
    line through them in the step index; order 0: step b's value, whatever a is). a == b stands for "b alone"
    (order 0 from b). Entries with j <= b are 0."""
    n = Y.shape[0]
    norm = np.maximum((Y**2).sum(axis=1), 1e-24)
    e = np.zeros((n, n, n))
    for b in range(n):
        js = np.arange(b + 1, n)
        for a in range(b + 1):
            if len(js):
                e[a, b, js] = ((_predictions(Y, a, b, js, order) - Y[js]) ** 2).sum(axis=1) / norm[js]
    return e


def segment_costs(Y: np.ndarray, dt: np.ndarray, order: int, objective: str = "coherent") -> np.ndarray:
    """cost[a, b, c] (c = 0..n): the error of the steps b+1 .. c-1, skipped and predicted from the computed a <= b.

    ``"coherent"`` (the default, measured): the squared norm of the sum of the step-size-weighted prediction errors
    of the segment, relative to the mean squared output: an Euler step adds dt_j times the model's output to the
    latent, so a segment's errors add up as vectors before they reach the sample (a line extrapolated too far is off
    to the same side at every step of a gap, and the cost grows with the gap's length squared).
    ``"independent"``: the sum over the segment of dt_j^2 times each step's relative squared error.
    ``"tsi"``: the TSI of the recorded trajectory as the error proxy instead (:func:`tsi_costs`; no magnitudes).
    ``"coherent_tsi"``: the coherent objective with each step's weight raised where the trajectory turns,
    ``dt_j (1 + tsi_j / mean tsi)`` (the open-loop error weighted with the TSI)."""
    n = Y.shape[0]
    dt = np.asarray(dt, dtype=float)
    scale = max(float((Y**2).sum(axis=1).mean()), 1e-24)
    cost = np.zeros((n, n, n + 1))
    if objective == "independent":
        e = errors(Y, order) * (dt**2)[None, None, :]
        cost[:, :, 1:] = np.cumsum(e, axis=2)
        return cost
    if objective == "tsi":
        return tsi_costs(Y, dt)
    if objective == "coherent_tsi":
        tsi = turns(Y)
        mean = float(tsi.mean())
        dt = dt * (1.0 + (tsi / mean if mean > 0 else 0.0))
        objective = "coherent"
    if objective != "coherent":
        raise ValueError(f"unknown objective {objective!r}")
    for b in range(n):
        js = np.arange(b + 1, n)
        if not len(js):
            continue
        for a in range(b + 1):
            acc = np.cumsum((_predictions(Y, a, b, js, order) - Y[js]) * dt[js][:, None], axis=0)
            cost[a, b, b + 2 :] = (acc**2).sum(axis=1) / scale  # c = b+2 .. n: the steps b+1 .. c-1
    return cost


def closed_loop_costs(Y: np.ndarray, dt: np.ndarray, order: int, lam: Optional[float] = None) -> np.ndarray:
    """extra[a, b, c]: what the planner adds to a segment's coherent cost (:func:`segment_costs`; for the orders
    :func:`closed_loop_lambda` names) for the run being closed-loop: the computed values a and b a prediction starts
    from are taken to be off by errors of squared size ``lam`` (default :data:`CLOSED_LOOP`) times the trajectory's
    mean squared one-step change (relative to the mean squared output), independently, and each reaches the latent with its weight in the prediction (1 + r and -r for
    the line, r = (j - b) / (b - a); 1 for a reuse), summed over the gap as the errors are:
    ``noise * ((sum dt (1 + r))^2 + (sum dt r)^2)``. All zeros at ``lam`` 0."""
    lam = CLOSED_LOOP if lam is None else lam
    n = Y.shape[0]
    extra = np.zeros((n, n, n + 1))
    if not lam or n < 2:
        return extra
    dt = np.asarray(dt, dtype=float)
    scale = max(float((Y**2).sum(axis=1).mean()), 1e-24)
    noise = lam * float((np.diff(Y, axis=0) ** 2).sum(axis=1).mean()) / scale
    for b in range(n - 1):
        js = np.arange(b + 1, n)
        for a in range(b + 1):
            r = (js - b) / (b - a) if order >= 1 and a < b else np.zeros(len(js))
            extra[a, b, b + 2 :] = noise * (np.cumsum(dt[js] * (1 + r)) ** 2 + np.cumsum(dt[js] * r) ** 2)
    return extra


def gap_costs(Y: np.ndarray, dt: np.ndarray, order: int, objective: str = "coherent", lam: float = 0.0) -> tuple:
    """(plain, full): the segment costs of an order-0 or order-1 predictor (:func:`segment_costs`) and the same with
    the closed-loop term at ``lam`` added (:func:`closed_loop_costs`; ``full`` is ``plain`` at ``lam`` 0): what a
    plan minimises before the segment power."""
    plain = segment_costs(Y, dt, min(order, 1), objective)
    return plain, (plain + closed_loop_costs(Y, dt, 1, lam) if lam else plain)


OBJECTIVES = ("coherent", "independent", "tsi", "coherent_tsi")


def turns(Y: np.ndarray) -> np.ndarray:
    """tsi[k]: TC-Padé's trajectory stability index (Eq. 1, 0.5 ||u_k - u_{k-1}||, u_k the unit direction from
    step k to step k+1) at each step of the recorded outputs ``Y``: 0 on a straight line, sqrt(2)/2 at a right
    angle, 1 at a reversal; 0 at the first and last step and where the trajectory does not move."""
    n = Y.shape[0]
    out = np.zeros(n)
    if n < 3:
        return out
    d = np.diff(Y, axis=0)
    norm = np.linalg.norm(d, axis=1)
    ok = norm > 1e-12
    u = np.where(ok[:, None], d / np.where(ok, norm, 1.0)[:, None], 0.0)
    tsi = 0.5 * np.linalg.norm(u[1:] - u[:-1], axis=1)
    out[1:-1] = np.where(ok[1:] & ok[:-1], np.minimum(tsi, 1.0), 0.0)
    return out


def tsi_costs(Y: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """cost[a, b, c] of the ``"tsi"`` objective: the error of the skipped steps b+1 .. c-1 estimated from the TSI
    alone (:func:`turns`), as if the trajectory moved one unit per step and turned by the angle theta_k = 2
    asin(tsi_k) at each step k. A line through the computed steps a < b leaves step j off by about
    ``D = (j - b) * 0.5 * sum_{a<k<b} theta_k + sum_{b<=k<j} (j - k) theta_k`` (the chord through a and b misses
    half the turning between them; every turn from b on bends the path away from the line by its angle times the
    steps still to go), the small-angle deviation of a unit-speed polyline from its extrapolated chord; b alone
    (a == b: reuse) leaves it off by the distance, j - b. The segment's deviations are weighted by the step
    weights and added (they lie on the same side of the line), then squared, as the coherent objective adds its
    errors: ``(sum_j dt_j D_j)^2``. No magnitudes enter: the computes go where the trajectory turns."""
    n = Y.shape[0]
    dt = np.asarray(dt, dtype=float)
    theta = 2.0 * np.arcsin(np.clip(turns(Y), 0.0, 1.0))
    cost = np.zeros((n, n, n + 1))
    ctheta = np.concatenate([[0.0], np.cumsum(theta)])  # ctheta[k] = sum of theta[:k]
    for b in range(n):
        js = np.arange(b + 1, n)
        if not len(js):
            continue
        ks = np.arange(b, n)
        # bend[j] = sum_{b <= k < j} (j - k) theta_k
        bend = np.array([float(((j - ks[: j - b]) * theta[b:j]).sum()) for j in js])
        for a in range(b + 1):
            if a == b:
                dev = (js - b).astype(float)
            else:
                dev = (js - b) * 0.5 * (ctheta[b] - ctheta[a + 1]) + bend
            acc = np.cumsum(dev * dt[js])
            cost[a, b, b + 2 :] = acc**2
    return cost


def plan(
    Y: np.ndarray, dt: np.ndarray, k: int, order: int = 1, warm: int = 1, objective: str = "coherent"
) -> Tuple[List[int], float]:
    """The ``k`` steps to compute (sorted; the first ``warm`` steps always among them) that minimise the open-loop
    error (:func:`segment_costs`, each gap's cost to the power :data:`SEG_POWER`, summed) of an order-``order``
    predictor on ``Y`` (steps x features) with step sizes ``dt``, and that schedule's plain error (the sum of its
    gaps' costs). Deterministic: ties go to the earlier step. ``objective``: :data:`OBJECTIVES`
    (:func:`segment_costs`); the default, ``"coherent"``, is the measured one."""
    n = Y.shape[0]
    k, warm = clamp_budget(n, k, warm)
    return _plans(Y, dt, k, order, warm, objective, every=False)[k]


def clamp_budget(n: int, k: int, warm: int) -> Tuple[int, int]:
    """(budget, warm-up) as a plan of ``n`` steps takes them: the warm-up within 1 .. n, the budget within warm .. n
    (the key of :func:`plan_table` that holds what :func:`plan` returns for budget ``k``)."""
    warm = max(1, min(int(warm), n))
    return max(min(int(k), n), warm), warm


def plan_table(
    Y: np.ndarray, dt: np.ndarray, order: int = 1, warm: int = 1, objective: str = "coherent"
) -> Dict[int, Tuple[List[int], float]]:
    """:func:`plan` for every budget from ``warm`` to the step count, in one pass of the same programme (each entry
    is what :func:`plan` returns for that budget): what a calibration stores, so that a run reads its plan."""
    n = Y.shape[0]
    _, warm = clamp_budget(n, n, warm)
    return _plans(Y, dt, n, order, warm, objective, every=True)


def quadratic_costs(Y: np.ndarray, dt: np.ndarray, lam: float = 0.0) -> List[List[Optional[np.ndarray]]]:
    """:func:`quadratic_cost_pair`'s costs with the closed-loop term at ``lam`` (0: the open-loop costs)."""
    return quadratic_cost_pair(Y, dt, lam)[1]


def quadratic_cost_pair(Y: np.ndarray, dt: np.ndarray, lam: float = 0.0) -> tuple:
    """The ``"coherent"`` segment costs of an order-2 predictor (the quadratic through the newest three computed
    steps, in the step index: :func:`tcpade_core.predictors.newton`): ``out[b][c][a, d]`` (a <= b <= c < d <= n) is
    the cost of the steps c+1 .. d-1, skipped and predicted from the computed a < b < c; a == b < c stands for "the
    two computed b < c" (their line) and a == b == c for "c alone" (reuse), as a predictor with fewer values
    predicts. Each skipped step's prediction is a fixed combination of the three values, so the weighted sum of
    a segment's errors is ``Ca Y_a + Cb Y_b + Cc Y_c - (P_d - P_(c+1))`` (P: prefix sums of dt_j Y_j) and its
    squared norm is read from the Gram matrix of Y and P: no step's outputs are touched again, 50 steps cost
    under a second. Returns (open loop, with the closed-loop term at ``lam`` added, ``noise * (Ca^2 + Cb^2 + Cc^2)``:
    :data:`CLOSED_LOOP2`; :func:`closed_loop_costs` for order 1), made in one pass; the second is the first at
    ``lam`` 0."""
    n = Y.shape[0]
    dt = np.asarray(dt, dtype=float)
    scale = max(float((Y**2).sum(axis=1).mean()), 1e-24)
    noise = lam * float((np.diff(Y, axis=0) ** 2).sum(axis=1).mean()) / scale if lam and n >= 2 else 0.0
    P = np.vstack([np.zeros((1, Y.shape[1])), np.cumsum(dt[:, None] * Y, axis=0)])  # P[m] = sum_{j<m} dt_j Y_j
    G, H, M = Y @ Y.T, Y @ P.T, P @ P.T
    out: List[List[Optional[np.ndarray]]] = [[None] * n for _ in range(n)]
    full: List[List[Optional[np.ndarray]]] = [[None] * n for _ in range(n)]
    ds = np.arange(n + 1)
    for c in range(n):
        js = np.arange(c + 1, n)
        w = dt[js]
        for b in range(c + 1):
            a = np.arange(b + 1)
            # per (a, j): the weights of Y_a, Y_b, Y_c in the prediction of step j
            u = (js - c).astype(float)[None, :]
            if b == c:  # c alone: reuse
                ka, kb, kc = np.zeros((len(a), len(js))), np.zeros((len(a), len(js))), np.ones((len(a), len(js)))
            else:
                h1 = float(c - b)
                v = u * (js - b)[None, :]
                quad = (a < b)[:, None]
                h0 = np.where(a < b, b - a, 1).astype(float)[:, None]
                ca = np.where(a < b, c - a, 1).astype(float)[:, None]
                ka = np.where(quad, v / (h0 * ca), 0.0)
                kb = -u / h1 + np.where(quad, -v * (1.0 / h1 + 1.0 / h0) / ca, 0.0)
                kc = 1.0 + u / h1 + np.where(quad, v / (h1 * ca), 0.0)
            # Ca[a, d] = sum_{c < j < d} dt_j ka[a, j]: d = c+1 .. n (d = c+1: an empty segment)
            zero = np.zeros((len(a), 1))
            Ca, Cb, Cc = (np.hstack([zero, np.cumsum(k * w[None, :], axis=1)]) for k in (ka, kb, kc))
            dd = ds[c + 1 :]
            q = lambda x: H[x][:, dd] - H[x][:, c + 1][:, None]  # <Y_x, P_d - P_(c+1)>, (len(x), len(dd))
            qa, qb, qc = q(a), q(np.array([b])), q(np.array([c]))
            qq = M[dd, dd] - 2 * M[dd, c + 1] + M[c + 1, c + 1]
            e = (
                Ca**2 * G[a, a][:, None]
                + Cb**2 * G[b, b]
                + Cc**2 * G[c, c]
                + 2 * Ca * Cb * G[a, b][:, None]
                + 2 * Ca * Cc * G[a, c][:, None]
                + 2 * Cb * Cc * G[b, c]
                - 2 * (Ca * qa + Cb * qb + Cc * qc)
                + qq[None, :]
            )
            cost = np.zeros((len(a), n + 1))
            cost[:, c + 1 :] = np.maximum(e, 0.0) / scale
            out[b][c] = cost
            if noise:
                full[b][c] = cost.copy()
                full[b][c][:, c + 1 :] += noise * (Ca**2 + Cb**2 + Cc**2)
    return out, (full if noise else out)


def _plans2(plain, cost, n: int, k: int, warm: int, every: bool) -> Dict[int, Tuple[List[int], float]]:
    """:func:`_plans1` for an order-2 predictor: the state after a compute is the newest three computed steps
    (a, b, c) (a == b: fewer than three; :func:`quadratic_costs`, powered: ``cost``), the exact minimum over the
    same objective."""
    best = np.full((n, n, n), INF)
    s = [max(warm - 3, 0), max(warm - 2, 0), warm - 1]
    best[s[0], s[1], s[2]] = 0.0
    back = []  # per added compute: prev[b, c, d] = the a before
    # per newest compute c, the costs as one array: q[c][b, a, d - c - 1] = cost[b][c][a, d] (a <= b <= c < d <= n;
    # INF where a > b), so that each step of the programme is one vectorised minimum per c
    q = []
    for c in range(n):
        qc = np.full((c + 1, c + 1, n - c), INF)
        for b in range(c + 1):
            qc[b, : b + 1, :] = cost[b][c][:, c + 1 :]
        q.append(qc)

    def trace():
        total = np.full((n, n, n), INF)
        for c in range(n):
            total[: c + 1, : c + 1, c] = (best[: c + 1, : c + 1, c].T + q[c][:, :, -1]).T
        total = _limit_tail(total)
        a, b, c = (int(x) for x in np.unravel_index(int(np.argmin(total)), total.shape))
        value = float(total[a, b, c])
        steps = {c}
        for prev in reversed(back):
            steps.add(b)
            a, b, c = int(prev[a, b, c]), a, b
        return sorted(steps | set(range(warm))), value

    out = {warm: trace()} if every or k == warm else {}
    for _ in range(k - warm):
        nxt = np.full((n, n, n), INF)
        prev = np.zeros((n, n, n), dtype=np.int16)  # step indices (n < 32768): 1/4 of the memory of int64
        for c in range(n - 1):
            col = best[: c + 1, : c + 1, c].T  # (b, a)
            if not np.isfinite(col).any():
                continue
            tot = col[:, :, None] + q[c][:, :, :-1]  # (b, a, d = c+1 .. n-1)
            a_best = np.argmin(tot, axis=1)  # ties: the smallest a
            val = np.take_along_axis(tot, a_best[:, None, :], axis=1)[:, 0, :]
            ok = np.isfinite(val)
            nxt[: c + 1, c, c + 1 :] = np.where(ok, val, INF)
            prev[: c + 1, c, c + 1 :] = np.where(ok, a_best, 0)
        back.append(prev)
        best = nxt
        if every or len(back) == k - warm:
            out[warm + len(back)] = trace()
    return out


def nest_anchor(n: int, warm: int) -> Optional[int]:
    """The budget above which plans are nested (:data:`NEST_TARGET`'s computes over ``n`` steps, at least the
    warm-up), or None where every budget is its own optimum."""
    if NEST_TARGET is None:
        return None
    from .config import budget

    return max(budget(n, NEST_TARGET), warm)


def _plans(Y, dt, k: int, order: int, warm: int, objective: str, every: bool) -> Dict[int, Tuple[List[int], float]]:
    """The plans of budget ``k`` (``every``: of every budget from ``warm`` to ``k``), each with its plain error:
    the exact optimum up to :func:`nest_anchor`, above it the plan of one budget less and the one compute that
    lowers the objective most (ties: the earlier step)."""
    n = Y.shape[0]
    samples = Y if Y.ndim == 3 and PER_SAMPLE and order <= 1 and objective == "coherent" else None
    Y = Y.reshape(n, -1)  # per-sample sketches side by side: the batch's
    if order >= 2 and objective == "coherent":
        lam, keep = closed_loop_lambda(order, objective), None
        plain, full = quadratic_cost_pair(Y, dt, lam)
        top = max((float(x.max()) for row in full for x in row if x is not None), default=0.0) or 1.0
        cost = [[None if x is None else _powered(x, top) for x in row] for row in full]
        free, term = _plans2, _term2
    else:
        lam = closed_loop_lambda(order, objective)
        if samples is None:
            plain, full = gap_costs(Y, dt, order, objective, lam)
            cost = _powered(full, float(full.max()) or 1.0)
        else:  # PER_SAMPLE: the samples' costs, each relative to its own largest: their largest, or their sum
            plain = segment_costs(Y, dt, min(order, 1), objective)  # the batch's, for the reported error
            each = [
                f / (float(f.max()) or 1.0)
                for f in (gap_costs(x, dt, order, objective, lam)[1] for x in samples.transpose(1, 0, 2))
            ]
            cost = (
                np.max(np.stack(each), axis=0) ** SEG_POWER if PER_SAMPLE == "max" else sum(e**SEG_POWER for e in each)
            )
        keep = contraction(dt, contraction_rho(order, objective))
        free, term = partial(_plans1, keep=keep), _term1
    anchor = nest_anchor(n, warm)
    out = free(plain, cost, n, min(k, anchor or k), warm, every)
    if anchor is not None and k > anchor:
        steps = list(out[anchor][0])
        out = out if every else {}
        for m in range(anchor + 1, k + 1):
            steps = _add_best(term, cost, steps, n)
            if every or m == k:
                out[m] = (steps, 0.0)
    r = margin_ratio(order, objective)
    if r != 1.0:  # the margin over even spacing (coherent, orders 1 and 2): a plan must beat it r times to replace it
        value_of = partial(objective_value, cost, keep=keep) if term is _term1 else partial(_total, term, cost)
        for m, (steps, value) in list(out.items()):
            even = even_steps(n, m, warm)
            if value_of(even) <= r * value_of(steps):
                out[m] = (even, value)
    if SEG_POWER != 1.0 or anchor is not None or lam or samples is not None or keep is not None or r != 1.0:
        out = {m: (steps, _total(term, plain, steps)) for m, (steps, _) in out.items()}  # the plain error
    return out


def _plans1(plain, cum, n: int, k: int, warm: int, every: bool, keep=None) -> Dict[int, Tuple[List[int], float]]:
    """The exact optima of an order-0 or order-1 predictor on the segment costs ``cum`` (:func:`segment_costs`,
    powered), each with its value on ``cum`` (``keep``: each compute's factor on the total before it,
    :func:`contraction`)."""
    # the state after a compute: (a, b), the newest two computed steps (a == b: b is the only one so far)
    best = np.full((n, n), INF)
    a0, b0 = (warm - 2, warm - 1) if warm >= 2 else (0, 0)
    best[a0, b0] = 0.0
    back = []  # per added compute: prev[a_new, c] = the a before
    out = {warm: _trace(best, back, cum, n, warm)} if every or k == warm else {}
    for _ in range(k - warm):
        nxt = np.full((n, n), INF)
        prev = np.zeros((n, n), dtype=int)
        for b in range(n - 1):
            col = best[:, b]
            ok = np.isfinite(col)
            if not ok.any():
                continue
            cs = np.arange(b + 1, n)
            cost = np.where(ok[:, None], col[:, None] + cum[:, b, :][:, cs], INF)  # (a, c)
            a_best = np.argmin(cost, axis=0)  # ties: the smallest a
            val = cost[a_best, np.arange(len(cs))]
            if keep is not None:
                val = val * keep[cs]
            better = val < nxt[b, cs]
            nxt[b, cs[better]] = val[better]
            prev[b, cs[better]] = a_best[better]
        back.append(prev)
        best = nxt
        if every or len(back) == k - warm:
            out[warm + len(back)] = _trace(best, back, cum, n, warm)
    return out


def _trace(best: np.ndarray, back: list, cum: np.ndarray, n: int, warm: int) -> Tuple[List[int], float]:
    """The optimum over the states ``best`` (the steps after the last compute predicted from it) and its steps."""
    total = _limit_tail(best + cum[:, :, n])
    a, b = (int(x) for x in np.unravel_index(int(np.argmin(total)), total.shape))
    value = float(total[a, b])
    steps = {b}
    for prev in reversed(back):
        steps.add(a)
        a, b = int(prev[a, b]), a
    return sorted(steps | set(range(warm))), value


def _term1(cum: np.ndarray, steps: Sequence[int], i: int) -> float:
    """The cost of the gap after the ``i``-th computed step of ``steps`` (orders 0 and 1: :func:`segment_costs`)."""
    b = steps[i]
    a = steps[i - 1] if i > 0 else b
    c = steps[i + 1] if i + 1 < len(steps) else cum.shape[0]
    return float(cum[a, b, c])


def _term2(cost, steps: Sequence[int], i: int) -> float:
    """:func:`_term1` for an order-2 predictor (:func:`quadratic_costs`)."""
    c = steps[i]
    b = steps[i - 1] if i > 0 else c
    a = steps[i - 2] if i > 1 else b
    d = steps[i + 1] if i + 1 < len(steps) else len(cost)
    return float(cost[b][c][a, d])


def _total(term, cost, steps: Sequence[int]) -> float:
    """The sum of ``term`` (:func:`_term1` or :func:`_term2`) over the gaps of ``steps`` (sorted)."""
    total = 0.0
    for i in range(len(steps)):
        total += term(cost, steps, i)
    return total


def schedule_cost(cum: np.ndarray, steps: Sequence[int]) -> float:
    """The open-loop error of computing exactly ``steps`` (sorted, starting at 0) on the segment costs ``cum``
    (:func:`segment_costs`): what :func:`plan` minimises, for any schedule."""
    return _total(_term1, cum, sorted(int(s) for s in steps))


def _add_best(term, cost, steps: List[int], n: int) -> List[int]:
    """``steps`` and the one step more that lowers their objective (the sum of ``term`` over the computed steps)
    most; ties go to the earlier step. A new compute changes only the gaps of its neighbours (two on each side at
    most), so each candidate is scored by that change."""
    best, pick = INF, -1
    for c in range(n):
        pos = bisect.bisect_left(steps, c)
        if pos < len(steps) and steps[pos] == c:
            continue
        new = steps[:pos] + [c] + steps[pos:]
        change = sum(term(cost, new, j) for j in range(max(pos - 1, 0), min(pos + 3, len(new))))
        change -= sum(term(cost, steps, j) for j in range(max(pos - 1, 0), min(pos + 2, len(steps))))
        if change < best:
            best, pick = change, c
    return sorted(steps + [pick])


def schedule_error(Y: np.ndarray, dt: np.ndarray, steps: Sequence[int], order: int = 1) -> float:
    """The plain open-loop error (the sum of its gaps' costs) of computing exactly ``steps`` with an
    order-``order`` predictor on ``Y``: what :func:`plan` reports for its own schedule, for any schedule."""
    if order >= 2:
        return _total(_term2, quadratic_costs(Y, dt), sorted(int(s) for s in steps))
    return schedule_cost(segment_costs(Y, dt, order), steps)


def plan_trajectory(
    traj, k: int, order: int = 1, warm: int = 1, objective: str = "coherent"
) -> Tuple[List[int], float]:
    """:func:`plan` on a recorded :class:`tcpade_core.calibrate.Trajectory` (its outputs, and its times or its
    sampler's noise levels: :func:`step_weights`)."""
    w = step_weights(traj.t, getattr(traj, "sigmas", None), getattr(traj, "prediction", "flow"))
    return plan(sketch(traj.outputs), w, k, order, warm, objective)


def check_plan(value, name: str = "plan") -> Optional[Tuple[int, ...]]:
    """A plan as a sorted tuple of distinct step indices >= 0 starting at 0, or None; ValueError otherwise."""
    if value is None:
        return None
    try:
        steps = tuple(int(s) for s in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be step indices (integers >= 0, starting at 0), got {value!r}") from None
    if (
        not steps
        or steps[0] != 0
        or any(b <= a for a, b in zip(steps, steps[1:]))
        or any(isinstance(s, bool) for s in value)
    ):
        raise ValueError(f"{name} must be increasing step indices starting at 0, got {value!r}")
    return steps
