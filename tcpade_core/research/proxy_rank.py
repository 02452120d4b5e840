"""How well does the planner's objective rank schedules? (a study; nothing in the pack runs it, and it chooses
nothing).

A calibrated plan is the schedule that minimises the planner's objective on one recorded full-compute run. Held
out, the plan loses to even spacing on model C (issue 18's calibrated minimum), and the question is whether that is
transfer (the plan is right for the calibration samples, not for others) or the objective (it ranks schedules
wrongly even on the samples it was computed from). This study asks the second question directly, on the
calibration samples themselves (seed ``CALIB_SEED``, 4 samples, classes 0-3; no evaluation seed is run).

Per cell (model, steps, target): the candidate schedules are the calibrated plan of TaylorSeer O=1, the schedule
the evenly spaced target computes, and ``--moves`` local variations of the two (one or two computes moved by one or
two steps; deterministic). Each runs closed loop through the engine (TaylorSeer O=1, the form that is exact on
uneven spacing) on the calibration samples, PSNR against their full compute. Every proxy in :data:`PROXIES` is
evaluated on the same recorded trajectory; per cell the study reports each proxy's Spearman correlation with PSNR
(lower predicted error against higher PSNR: +1 ranks perfectly) and its regret (the best measured PSNR among the
candidates minus the PSNR of the candidate the proxy picks). Development models (A, B) and the held-out one (C) are
summarised apart.

    python -m tcpade_core.research.proxy_rank --threads 2   # docs/proxy_rank.txt
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import metrics, planner
from ..calibrate import planned_config, schedule_strip
from ..config import budget, make_config
from ..engine import CacheRun
from .common import CALIB_SEED, DEV_MODELS, labels as _labels, sample_timed as _sample
from .shape_bench import CALIB_SAMPLES, _trajectory
from .shape_fit import replay_schedule


def variations(bases: Sequence[Sequence[int]], n: int, warm: int, count: int, seed: int = 0) -> List[Tuple[int, ...]]:
    """``count`` distinct schedules, none of them one of ``bases``, each a base (taken in turn) with one or two of its
    computes after the warm-up moved by one or two steps (within ``warm .. n - 1``, onto a step not computed):
    the same number of computes, the warm-up kept. Deterministic in ``seed``; fewer where no more exist."""
    rng = np.random.default_rng(seed)
    seen = {tuple(b) for b in bases}
    out: List[Tuple[int, ...]] = []
    for tries in range(50 * count):
        if len(out) == count:
            break
        steps = list(bases[tries % len(bases)])
        movable = [i for i, s in enumerate(steps) if s >= warm]
        if not movable:
            break
        for _ in range(int(rng.integers(1, 3))):
            i = int(rng.choice(movable))
            to = steps[i] + int(rng.choice((-2, -1, 1, 2)))
            if warm <= to < n and to not in steps:
                steps[i] = to
        cand = tuple(sorted(steps))
        if cand not in seen:
            seen.add(cand)
            out.append(cand)
    return out


def spearman(pred: Sequence[float], psnr: Sequence[float]) -> float:
    """Spearman's rank correlation of ``-pred`` (lower predicted error ranks higher) with ``psnr``; ties take their
    mean rank; 0 where either side is constant."""

    def ranks(x):
        x = np.asarray(x, dtype=float)
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for v in np.unique(x):  # ties: their mean rank
            r[x == v] = r[x == v].mean()
        return r

    a, b = ranks(-np.asarray(pred, dtype=float)), ranks(psnr)
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _gap_costs(Y, w, lam: float = 0.0, objective: str = "coherent") -> np.ndarray:
    return planner.gap_costs(Y, w, 1, objective, lam)[1]


def _sum(cost: np.ndarray, power: float = 1.0, keep: Optional[np.ndarray] = None) -> Callable:
    """schedule -> the sum over its gaps of each gap's cost (scaled and raised to ``power`` as the planner does),
    each shrunk by the contraction ``keep`` of every compute after it (:func:`tcpade_core.planner.contraction`)."""
    scale = (float(cost.max()) or 1.0) if power != 1.0 else 1.0  # the planner's scaling before a power
    powered = (cost / scale) ** power if power != 1.0 else cost
    return lambda steps: planner.objective_value(powered, steps, keep)


def _max(cost: np.ndarray) -> Callable:
    return lambda steps: max(planner._term1(cost, steps, i) for i in range(len(steps)))


def _unevenness(n: int, k: int) -> Callable:
    g = n / k
    return lambda steps: float(sum((b - a - g) ** 2 for a, b in zip(steps, list(steps[1:]) + [n])))


def planner_objective(Y, w, contract: bool = True) -> Callable:
    """schedule -> the planner's own objective for an order-1 predictor (each gap's coherent cost with the
    closed-loop term, to the segment power, shrunk by the contraction of every compute after it, summed): what
    :func:`tcpade_core.planner.plan` minimises (``contract`` False: the objective before the contraction)."""
    keep = planner.contraction(w, planner.contraction_rho(1)) if contract else None
    return _sum(_gap_costs(Y, w, planner.CLOSED_LOOP), planner.SEG_POWER, keep)


# name -> (Y, step weights, n, k) -> (schedule -> predicted error; lower is better)
PROXIES: Dict[str, Callable] = {
    "planner (p2, cl 0.1, ct 0.1)": lambda Y, w, n, k: planner_objective(Y, w),
    "planner (p2, cl 0.1)": lambda Y, w, n, k: planner_objective(Y, w, contract=False),
    "open loop (reported)": lambda Y, w, n, k: _sum(_gap_costs(Y, w)),
    "open loop p2": lambda Y, w, n, k: _sum(_gap_costs(Y, w), 2.0),
    "closed loop 1": lambda Y, w, n, k: _sum(_gap_costs(Y, w, 1.0)),
    "independent": lambda Y, w, n, k: _sum(_gap_costs(Y, w, objective="independent")),
    "minimax gap": lambda Y, w, n, k: _max(_gap_costs(Y, w)),
    "unevenness": lambda Y, w, n, k: _unevenness(n, k),
}


def run_cell(model, name: str, steps: int, target: float, moves: int, ref, lab) -> dict:
    """The candidates of one cell, their PSNR on the calibration samples and every proxy's predicted error."""
    tr = _trajectory(name, steps)
    Y = planner.project(tr.outputs)
    w = planner.step_weights(tr.t, tr.sigmas, tr.prediction)
    ts = make_config("taylorseer", order=1)
    _, plan, _ = planned_config(ts, Y, w, target)
    even = replay_schedule(ts.with_(target_speedup=target), tr)
    k = budget(steps, target)
    cands = [tuple(plan), tuple(even)] if tuple(plan) != tuple(even) else [tuple(plan)]
    cands += variations(cands, steps, 1, moves, seed=steps * 100 + int(target * 10))
    psnr = []
    for st in cands:
        cfg = make_config("taylorseer", order=1, form="newton", target_speedup=target, plan=st)
        psnr.append(metrics.psnr(_sample(model, name, lab, steps, CacheRun(cfg), seed=CALIB_SEED)[0], ref))
    scorers = {p: f(Y, w, steps, k) for p, f in PROXIES.items()}  # each proxy's costs built once per cell
    pred = {p: [score(list(st)) for st in cands] for p, score in scorers.items()}
    return dict(model=name, steps=steps, target=target, cands=cands, psnr=psnr, pred=pred, even=tuple(even))


def cell_lines(c: dict) -> List[str]:
    n, best = c["steps"], max(c["psnr"])
    out = [f"{c['model']} {n} steps {c['target']:g}x: {len(c['cands'])} schedules, PSNR on the calibration samples"]
    for st, p in zip(c["cands"], c["psnr"]):
        tag = "plan" if st == c["cands"][0] else "even" if st == c["even"] else ""
        out.append(f"    {schedule_strip(st, n)}  {p:6.2f}  {tag}")
    for name, pred in c["pred"].items():
        pick = int(np.argmin(pred))
        out.append(f"  {name:22} spearman {spearman(pred, c['psnr']):+5.2f}  regret {best - c['psnr'][pick]:5.2f} dB")
    return out


def summary(cells: List[dict], what: str) -> List[str]:
    if not cells:
        return []
    out = [f"{what} ({len(cells)} cells): mean Spearman / mean regret / worst regret"]
    for name in PROXIES:
        rho = [spearman(c["pred"][name], c["psnr"]) for c in cells]
        reg = [max(c["psnr"]) - c["psnr"][int(np.argmin(c["pred"][name]))] for c in cells]
        out.append(f"  {name:22} {np.mean(rho):+5.2f}  {np.mean(reg):5.2f} dB  {max(reg):5.2f} dB")
    d = [c["psnr"][0] - c["psnr"][c["cands"].index(c["even"])] for c in cells]
    out.append(f"  plan minus even on these samples: mean {np.mean(d):+.2f} dB, min {min(d):+.2f}, max {max(d):+.2f}")
    return out


def main(argv=None) -> None:
    from ..models.zoo import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="a,b,c")
    ap.add_argument("--steps", default="20,30")
    ap.add_argument("--targets", default="2,2.5,3")
    ap.add_argument("--moves", type=int, default=12, help="local variations per cell")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cells = []
    for name in args.models.split(","):
        model = load_model(name)
        lab = _labels(CALIB_SAMPLES)
        for steps in (int(s) for s in args.steps.split(",")):
            ref = _sample(model, name, lab, steps, None, seed=CALIB_SEED)[0]
            for target in (float(t) for t in args.targets.split(",")):
                cells.append(run_cell(model, name, steps, target, args.moves, ref, lab))
                print("\n".join(cell_lines(cells[-1])), flush=True)
    print()
    for line in summary([c for c in cells if c["model"] in DEV_MODELS], "development models (A, B)") + summary(
        [c for c in cells if c["model"] not in DEV_MODELS], "held-out model (C)"
    ):
        print(line)
    print(f"# {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
