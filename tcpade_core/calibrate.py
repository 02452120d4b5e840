"""Calibration from one full-compute pass: fit what the methods need, offline, on the recorded trajectory.

The host records, for the leading (cond) stream, a fixed subsample of the block stack's input and output
tokens and of block 0's modulated input at every step (:class:`Trajectory`). Everything else happens here,
without another model call: each candidate setting is replayed through the real engine on that trajectory
(the stack is replaced by the recorded outputs, teacher-forced), which gives its computed-step count and the
relative error of its predictions on the skipped steps. From that:

* TeaCache: the rescale polynomial (relative L1 change of the modulated input -> of the stack output,
  numpy ``poly1d`` order, degree 4, as the TeaCache authors fit theirs) and the δ that meets the target;
* TaylorSeer: the interval and first_enhance (order 1 and 2 tried) that meet the target with the smallest
  error;
* MagCache: its magnitude ratios, measured on the stack residual as its calibration node does
  (:func:`tcpade_core.magcache_tables.measure_ratios`; on the recorded token subsample of the leading stream);
* TC-Padé: the θ that meets the target without a budget, fitted per reading on that reading's own scale
  (default: the stability score 1/(2 TSI); paper_literal: TSI itself, in [0, 1]), and the warm-up that
  predicts best under a budget.

What a calibration may change in a node's settings, and that it fills only what the user left alone, is each
method's mapping (:attr:`tcpade_core.methods.Method.calibrate`).

Offline replay ignores how skipping changes the later inputs (as TeaCache's own calibration does), so a
count it predicts holds on the real run to about one step; a speed target is met exactly by the budget
gate in any case.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .config import TaylorSeerConfig, TCPadeConfig, TeaCacheConfig, _Common, budget
from .engine import CacheRun
from .methods import build
from .planner import clamp_budget, even_steps, margin_ratio, plan, plan_table, project, sketch, step_weights
from .magcache_tables import measure_ratios
from .signals import fit_rescale, rel_l1

VERSION = 1
# where a calibrated plan is the even spacing of its budget (the planner's margin kept it), TaylorSeer runs its
# configured form instead of newton: the uncalibrated target's run on the same steps (docs/even_form.txt; a study
# until its test decides: `shape_bench --even-form 1`)
EVEN_PLAN_FORM = False  # failed its development test (docs/even_form.txt): off


@dataclass
class Trajectory:
    """One stream of a full-compute run: per step the normalised time and token subsamples (fp32, CPU)."""

    t: List[float] = field(default_factory=list)
    inputs: List[torch.Tensor] = field(default_factory=list)
    outputs: List[torch.Tensor] = field(default_factory=list)
    modulated: List[Optional[torch.Tensor]] = field(default_factory=list)
    # the sampler's noise levels (steps + 1, eps models: sigma = sqrt((1 - alphā) / alphā)) and what the model
    # predicts ("flow" or "eps"): how the planner weights each step (tcpade_core.planner.step_weights)
    sigmas: Optional[List[float]] = None
    prediction: str = "flow"
    # what the model's raw output is ("flow", "eps", "v", "x0" or "other", as nodes.host.output_kind says; None:
    # ``prediction``): a v or x0 model is weighted as "eps" above, but what a method fills at a target from the
    # prediction type (TaylorSeer's order 2, measured on eps models) must not reach it
    output: Optional[str] = None

    def __len__(self) -> int:
        return len(self.outputs)


def replay(cfg: _Common, traj: Trajectory, target: float = 0.0) -> tuple:
    """(computed steps, mean relative error of the predicted stack output on skipped steps) of ``cfg``
    replayed on the recorded trajectory."""
    n = len(traj)
    run = CacheRun(cfg, measure_error=True, target_speedup=target)
    for i in range(n):
        run.begin_step(i, n, traj.t[i])
        m = traj.modulated[i]
        run("c", traj.inputs[i], lambda h, i=i: traj.outputs[i], (lambda m=m: m) if m is not None else None)
    rep = run.end_run()
    errs = [r.error for r in rep.steps if r.error is not None]
    return rep.computed, (sum(errs) / len(errs) if errs else 0.0)


def fit_teacache(traj: Trajectory, degree: int = 4) -> tuple:
    """TeaCache's rescale polynomial for the recorded trajectory (:func:`tcpade_core.signals.fit_rescale`)."""
    xs, ys = [], []
    for i in range(1, len(traj)):
        m0, m1 = traj.modulated[i - 1], traj.modulated[i]
        if m0 is None or m1 is None:
            continue
        xs.append(rel_l1(m1, m0))
        ys.append(rel_l1(traj.outputs[i], traj.outputs[i - 1]))
    return fit_rescale(xs, ys, degree)


def _best(cands, want):
    """The candidate meeting the budget (exactly, else within one step) with the smallest error."""
    for tol in (0, 1):
        ok = [c for c in cands if abs(c[1] - want) <= tol]
        if ok:
            return min(ok, key=lambda c: c[2])
    return None


@dataclass
class Calibration:
    """What one calibration pass found, for one model fingerprint, step count and speed target."""

    model_key: str
    steps: int
    target: float
    teacache_coefficients: tuple
    teacache_threshold: Optional[float]
    taylorseer: Optional[Dict[str, int]]  # interval, order, first_enhance
    tcpade_theta: Optional[float]  # the default reading's θ (kept for files written before per-reading θ)
    tcpade_warmup: int
    errors: Dict[str, float] = field(default_factory=dict)
    version: int = VERSION
    tcpade_thetas: Dict[str, Optional[float]] = field(default_factory=dict)  # θ per reading (mode), on its scale
    # what the planner needs (tcpade_core.planner), never images: each step's stack output projected to
    # planner.PROJECTION numbers, each step's weight, and the run it was made for (sigmas, sampler, scheduler)
    plan_outputs: Optional[List[List[float]]] = None
    plan_weights: Optional[List[float]] = None
    sigmas: Optional[List[float]] = None
    sampler: str = ""
    scheduler: str = ""
    mag_ratios: Optional[Tuple[float, ...]] = None  # MagCache's ratios, one per step (None: a file from before)
    # the plans themselves, for every budget, per "plan_order/warm-up" of the planning predictors (PLAN_KEYS):
    # {"1/1": {"10": [[steps], predicted error]}}, so that a run reads its plan (None: a file from before; the run
    # plans from plan_outputs)
    plan_table: Optional[Dict[str, Dict[str, list]]] = None

    def theta_for(self, mode: str) -> Optional[float]:
        """The θ fitted for TC-Padé's reading ``mode``: None where none was fitted (an older file has the
        default reading's only)."""
        if mode in self.tcpade_thetas:
            return self.tcpade_thetas[mode]
        return self.tcpade_theta if mode == "default" else None

    def plan_mismatch(self, sigmas: List[float], sampler: str = "") -> Optional[str]:
        """Why this calibration's plan does not fit a run with these sigmas and sampler (None: it fits)."""
        if self.sampler and sampler and sampler != self.sampler:
            return f"sampler {self.sampler}, not {sampler}"
        if self.sigmas is not None and (
            len(self.sigmas) != len(sigmas)
            or any(abs(a - b) > 1e-4 * max(1.0, abs(a)) for a, b in zip(self.sigmas, sigmas))
        ):
            return f"other sigmas (scheduler {self.scheduler or '?'}; another scheduler or denoise here)"
        return None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Calibration":
        if not isinstance(d, dict) or d.get("version") != VERSION:
            raise ValueError(
                f"calibration entry of version {d.get('version') if isinstance(d, dict) else '?'}, expected {VERSION}"
            )
        d = dict(d)
        d["teacache_coefficients"] = tuple(float(c) for c in d["teacache_coefficients"])
        if d.get("mag_ratios") is not None:
            d["mag_ratios"] = tuple(float(r) for r in d["mag_ratios"])
        return cls(**d)

    def describe(self) -> str:
        ts = self.taylorseer
        return (
            f"calibrated for {self.steps} steps at {self.target:g}x: TeaCache δ "
            f"{self.teacache_threshold if self.teacache_threshold is not None else '-'}, TaylorSeer "
            + (f"N {ts['interval']} O {ts['order']} fe {ts['first_enhance']}" if ts else "-")
            + f", TC-Padé θ {self.tcpade_theta if self.tcpade_theta is not None else '-'}"
            + (f" (paper_literal {lit})" if (lit := self.tcpade_thetas.get("paper_literal")) is not None else "")
            + f" warm-up {self.tcpade_warmup}"
            + (f", MagCache ratios ({len(self.mag_ratios)} steps)" if self.mag_ratios else "")
        )


def calibrate(traj: Trajectory, model_key: str, target: float, default: TCPadeConfig = None) -> Calibration:
    """Fit every method's settings for ``target`` on a recorded full-compute trajectory."""
    n = len(traj)
    want = budget(n, target)
    coeffs = fit_teacache(traj)
    errors: Dict[str, float] = {}
    # TeaCache: the δ whose count meets the budget (count falls as δ rises: bisection on a log scale)
    tea = []
    for d in np.geomspace(0.01, 5.0, 40):
        c, e = replay(TeaCacheConfig(threshold=float(d), coefficients=coeffs), traj)
        tea.append((round(float(d), 4), c, e))
    best = _best(tea, want)
    tea_delta = best[0] if best else None
    if best:
        errors["teacache"] = best[2]
    # TaylorSeer: interval / order / first_enhance
    ts = []
    for N in range(2, 9):
        for O in (1, 2):
            for fe in (1, 2, 3):
                c, e = replay(TaylorSeerConfig(interval=N, order=O, first_enhance=fe), traj)
                ts.append((dict(interval=N, order=O, first_enhance=fe), c, e))
    best = _best(ts, want)
    taylor = best[0] if best else None
    if best:
        errors["taylorseer"] = best[2]
    # TC-Padé: θ without a budget, per reading on its own scale; warm-up under the budget
    d = default or TCPadeConfig()
    thetas = {
        mode: _fit_theta(d if mode == d.mode else d.with_(mode=mode), traj, want, grid)
        for mode, grid in THETA_GRIDS.items()
    }
    wu = [(w, *replay(replace(d, warmup_steps=w), traj, target)) for w in (1, 2, 3)]
    w_best = min(wu, key=lambda c: c[2])
    errors["tcpade"] = w_best[2]
    outputs, weights = plan_data(traj)
    table = stored_plans(outputs, weights)
    return Calibration(
        model_key,
        n,
        float(target),
        coeffs,
        tea_delta,
        taylor,
        thetas.get("default"),
        int(w_best[0]),
        errors,
        tcpade_thetas=thetas,
        plan_outputs=outputs,
        plan_weights=weights,
        sigmas=[float(s) for s in traj.sigmas] if traj.sigmas is not None else None,
        mag_ratios=measure_ratios(traj.inputs, traj.outputs),
        plan_table=table,
    )


def plan_keys() -> List[Tuple[int, int]]:
    """(plan order, warm-up) of every predictor a planning node can run: every planning method's
    (:attr:`tcpade_core.methods.Method.plans`) at its defaults, TaylorSeer at order 0, 1 and 2 (2 and up plan
    alike) and TC-Padé's three modes; a calibration stores the plans of each."""
    from .config import make_config
    from .methods import METHODS

    cfgs = [make_config(name) for name, m in METHODS.items() if m.plans]
    cfgs += [make_config("taylorseer", order=o) for o in (0, 1, 2)]
    cfgs += [make_config("tcpade", mode=m) for m in ("default", "paper_literal", "official")]
    return sorted({(p.plan_order, p.warmup) for p in (build(c)[1] for c in cfgs)})


def plan_key(order: int, warm: int) -> str:
    """The key of one predictor's plans in :attr:`Calibration.plan_table`: its plan order and warm-up, and the
    planner's segment power where it is not 1 (:data:`tcpade_core.planner.SEG_POWER`) and the target its plans nest
    above, if any (:data:`tcpade_core.planner.NEST_TARGET`), and the closed-loop term's lambda, the contraction's
    rho and the margin over even spacing where that order plans with them
    (:func:`tcpade_core.planner.closed_loop_lambda`, :func:`tcpade_core.planner.contraction_rho`,
    :func:`tcpade_core.planner.margin_ratio`), so that plans stored under another objective are not read: the
    plan is made again from the stored outputs."""
    from . import planner

    return (
        f"{order}/{warm}"
        + ("" if planner.SEG_POWER == 1.0 else f"/p{planner.SEG_POWER:g}")
        + ("" if planner.NEST_TARGET is None else f"/n{planner.NEST_TARGET:g}")
        + ("" if not planner.closed_loop_lambda(order) else f"/cl{planner.closed_loop_lambda(order):g}")
        + ("" if not planner.contraction_rho(order) else f"/ct{planner.contraction_rho(order):g}")
        + ("" if planner.margin_ratio(order) == 1.0 else f"/mg{planner.margin_ratio(order):g}")
    )


def stored_plans(outputs, weights) -> Dict[str, Dict[str, list]]:
    """The plans a calibration stores (:attr:`Calibration.plan_table`), from the values it stores (so a plan read
    from it is the plan :func:`planned_config` would make from them)."""
    Y, w = np.asarray(outputs, dtype=float), np.asarray(weights, dtype=float)
    return {
        plan_key(order, warm): {str(k): [steps, err] for k, (steps, err) in plan_table(Y, w, order, warm).items()}
        for order, warm in plan_keys()
    }


def plan_data(traj: Trajectory) -> tuple:
    """(projected outputs, step weights) of a trajectory, as plain lists (6 significant digits): what a stored
    calibration keeps for the planner."""
    Y = project(traj.outputs)
    w = step_weights(traj.t, traj.sigmas, traj.prediction)
    return [[float(f"{v:.6g}") for v in row] for row in Y], [float(f"{v:.6g}") for v in w]


def planned_config(
    cfg: _Common, outputs, weights, target: float, keep=frozenset(), objective: str = "coherent", table=None
) -> tuple:
    """(config on its planned schedule, the steps, the predicted error) for a run of ``len(outputs)`` steps at
    ``target``: exactly ``budget(n, target)`` computes, the predictor's own warm-up first. TaylorSeer runs the
    form that is right on uneven spacing (``newton``) unless ``form`` is in ``keep`` (the user set it) or, with
    :data:`EVEN_PLAN_FORM`, the plan is the even spacing of its budget (then its configured form).
    ``objective``: the planner's (:data:`tcpade_core.planner.OBJECTIVES`; the default is the measured one).
    ``table``: a calibration's stored plans (:attr:`Calibration.plan_table`): the plan is read from it where it
    holds this predictor's, else planned here."""
    configured = cfg
    if cfg.method == "taylorseer" and "form" not in keep:
        cfg = cfg.with_(form="newton")
    _, pred = build(cfg)
    n = len(outputs)
    k, _ = clamp_budget(n, budget(n, target), pred.warmup)
    stored = (
        (table or {}).get(plan_key(pred.plan_order, pred.warmup), {}).get(str(k)) if objective == "coherent" else None
    )
    if stored is not None:
        steps, err = [int(s) for s in stored[0]], float(stored[1])
    else:
        Y = np.asarray(outputs, dtype=float)
        steps, err = plan(Y, np.asarray(weights, dtype=float), k, pred.plan_order, pred.warmup, objective)
    if EVEN_PLAN_FORM and cfg != configured and list(steps) == even_steps(n, k, pred.warmup):
        cfg = configured  # even spacing: the configured form, the uncalibrated target's run (docs/even_form.txt)
    return cfg.with_(target_speedup=target, plan=tuple(steps)), steps, err


def margin_note(cfg: _Common, steps, n: int) -> str:
    """What a planned run of ``n`` steps says when its plan is the even spacing of its budget under the planner's
    margin (:func:`tcpade_core.planner.margin_ratio`: no schedule beat it that many times), else ``""``."""
    pred = build(cfg)[1]
    r = margin_ratio(pred.plan_order)
    if r == 1.0 or list(steps) != even_steps(n, len(steps), pred.warmup):
        return ""
    return f"the plan is the even spacing: no schedule beat it {r:g} times in predicted error"


def schedule_strip(steps, n: int) -> str:
    """``#`` for a computed step, ``.`` for a skipped one."""
    on = set(steps)
    return "".join("#" if i in on else "." for i in range(n))


# the θ tried per reading: the default's stability score 1/(2 TSI) lies in [0.5, 100]; paper_literal compares
# θ with TSI itself, in [0, 1]
THETA_GRIDS = {
    "default": np.round(np.linspace(0.3, 2.0, 18), 2),
    "paper_literal": np.round(np.linspace(0.05, 1.0, 20), 2),
}


def _fit_theta(cfg: TCPadeConfig, traj: Trajectory, want: int, grid) -> Optional[float]:
    """The θ of ``grid`` whose count meets ``want`` computes with the smallest error (None: none does)."""
    tc = []
    for th in grid:
        c, e = replay(replace(cfg, theta=float(th)), traj)
        tc.append((float(th), c, e))
    best = _best(tc, want)
    return best[0] if best else None


def calibrated_run(method: str, traj: Trajectory, target: float, **params) -> CacheRun:
    """A :class:`CacheRun` for a run of ``len(traj)`` steps at ``target``, on the schedule planned for ``method``'s
    predictor from this recorded full-compute trajectory (:mod:`tcpade_core.planner`): exactly
    ``budget(len(traj), target)`` computes, the predictor's own warm-up first. ``method`` is a name of
    :data:`tcpade_core.methods.METHODS`; ``params`` are that method's config parameters. TaylorSeer plans with a
    form that is exact on uneven spacing (``newton``) unless ``form`` is given; what a node fills at a target from
    the prediction type (``Method.at_target``: TaylorSeer's order) is filled from ``traj.output`` (else
    ``traj.prediction``) where ``params`` leave it. The run's report notes the plan and its predicted error."""
    from .config import check_target, make_config
    from .methods import fill_at_target

    target = check_target(target, off=False)
    cfg = make_config(method, **params).with_(target_speedup=target)
    cfg = fill_at_target(cfg, traj.output or traj.prediction, len(traj), frozenset(params))[0]  # as a node does
    cfg, steps, err = planned_config(
        cfg,
        sketch(traj.outputs),
        step_weights(traj.t, traj.sigmas, traj.prediction),
        target,
        keep=frozenset(params),
    )
    n = len(traj)
    run = CacheRun(cfg)
    run.report.notes.append(f"planned from calibration: {len(steps)} of {n} computes, predicted error {err:.3g}")
    kept = margin_note(cfg, steps, n)
    if kept:
        run.report.notes.append(kept)
    return run
