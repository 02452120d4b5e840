"""Fit the default shape of a speed target (:mod:`tcpade_core.shape`) on development runs only.

Development: models A and B (:data:`tcpade_core.research.common.DEV_MODELS`), 10 / 20 / 30 steps, targets
1.25 / 1.5 / 2 / 2.5 / 3x, the pack's speed-target methods TaylorSeer O=1 and TC-Padé. Held-out models and seeds
are refused.

Two passes:

* ``--stage predicted`` (cheap): on the full-compute trajectory of the calibration seed (777, 4 samples, classes
  0-3; what Calibrate records), each candidate (power, late)'s schedule, replayed through the engine on the
  recorded outputs (the method's signal may move a compute earlier, as in a real run), scored by the planner's
  open-loop error (:func:`tcpade_core.planner.schedule_cost`, the objective a calibrated plan minimises), in dB
  (10 log10), beside today's even spacing and the calibrated plan (the optimum of that objective).
* ``--stage psnr``: PSNR against full compute through the engine, on the development seed 1234 (``--samples``),
  for the even spacing and each candidate.

    python -m tcpade_core.research.shape_fit --stage predicted
    python -m tcpade_core.research.shape_fit --stage psnr --candidates "0.6,0;0.7,0.1" --samples 8 --threads 1
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from typing import Dict, List, Tuple

import numpy as np
import torch

from .. import metrics, planner, shape
from ..calibrate import Trajectory
from ..config import budget, make_config
from ..engine import CacheRun
from .common import CALIB_SEED, DEV_MODELS, EVAL_SEED, labels as _labels, refuse_held_out, sample_timed as _sample

STEPS = (10, 20, 30)
TARGETS = (1.25, 1.5, 2.0, 2.5, 3.0)
METHODS = (("TaylorSeer O=1", "taylorseer", dict(order=1)), ("TC-Padé", "tcpade", {}))
POWERS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
LATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def record(name: str, steps: int, samples: int = 4) -> Trajectory:
    """The full-compute trajectory of the calibration seed (``samples`` samples, classes 0 ..; 4 by default: classes
    0-3), with the sampler's weights."""
    from ..models.zoo import load_model
    from .plan_bench import _Recorder, ddim_sigmas

    model = load_model(name)
    rec = _Recorder()
    _sample(model, name, _labels(samples), steps, rec, seed=CALIB_SEED)
    traj = rec.traj
    if getattr(model, "kind", "") == "ddpm_eps":
        traj.sigmas, traj.prediction = ddim_sigmas(steps), "eps"
    return traj


def replay_schedule(cfg, traj: Trajectory) -> List[int]:
    """The steps ``cfg`` computes on the recorded trajectory (teacher-forced: the stack returns the recording)."""
    n = len(traj)
    run = CacheRun(cfg)
    for i in range(n):
        run.begin_step(i, n, traj.t[i])
        run("c", traj.inputs[i], lambda h, i=i: traj.outputs[i], None)
    rep = run.end_run()
    return [r.step for r in rep.steps if r.computed]


def candidates(spec: str) -> List[Tuple[float, float]]:
    if not spec:
        return [(p, lt) for p, lt in itertools.product(POWERS, LATES) if not (p == 1.0 and lt > 0)]
    return [tuple(float(v) for v in c.split(",")) for c in spec.split(";")]


def predicted(models, cands) -> Dict:
    """(model, steps, target, method) -> {"even": dB, "plan": dB, (power, late): dB}."""
    out = {}
    for name in models:
        for steps in STEPS:
            traj = record(name, steps)
            w = planner.step_weights(traj.t, traj.sigmas, traj.prediction)
            cum = planner.segment_costs(planner.project(traj.outputs), w, 1)
            for target in TARGETS:
                for label, method, params in METHODS:
                    base = make_config(method, target_speedup=target, **params)
                    cell = {"even": planner.schedule_cost(cum, replay_schedule(base, traj))}
                    warm = CacheRun(base).predictor.warmup
                    cell["plan"] = planner.schedule_cost(
                        cum, planner.plan(planner.project(traj.outputs), w, budget(steps, target), 1, warm)[0]
                    )
                    for p, lt in cands:
                        shape.POWER, shape.LATE = p, lt
                        cell[(p, lt)] = planner.schedule_cost(cum, replay_schedule(base.with_(placement="shape"), traj))
                    out[(name, steps, target, label)] = {k: 10 * math.log10(max(v, 1e-30)) for k, v in cell.items()}
    return out


def psnr(models, cands, n_samples: int, progress) -> Dict:
    """(model, steps, target, method) -> {"even": (computed, PSNR), (power, late): (computed, PSNR)}."""
    from ..models.zoo import load_model

    out = {}
    lab = _labels(n_samples)
    for name in models:
        model = load_model(name)
        for steps in STEPS:
            ref = _sample(model, name, lab, steps, None, seed=EVAL_SEED)[0]
            for target in TARGETS:
                for label, method, params in METHODS:
                    cell = {}
                    for key in ["even", *cands]:
                        cfg = make_config(method, target_speedup=target, **params)
                        if key != "even":
                            shape.POWER, shape.LATE = key
                            cfg = cfg.with_(placement="shape")
                        run = CacheRun(cfg)
                        img = _sample(model, name, lab, steps, run, seed=EVAL_SEED)[0]
                        cell[key] = (run.report.computed, metrics.psnr(img, ref), run.report.strip())
                    out[(name, steps, target, label)] = cell
                    progress((name, steps, target, label), cell)
    return out


def _key(k) -> str:
    return k if isinstance(k, str) else f"p{k[0]:g} l{k[1]:g}"


def summary(table: Dict, keys, higher_better: bool) -> List[str]:
    """Per candidate: mean minus even (dB), cells better / worse than even, worst cell."""
    lines = []
    for k in keys:
        d = [(cell[k] if not isinstance(cell[k], tuple) else cell[k][1]) for cell in table.values()]
        e = [(cell["even"] if not isinstance(cell["even"], tuple) else cell["even"][1]) for cell in table.values()]
        diff = [(a - b) if higher_better else (b - a) for a, b in zip(d, e)]
        lines.append(
            f"{_key(k):14} gain over even: mean {np.mean(diff):+6.2f} dB, min {min(diff):+6.2f}, "
            f"better {sum(x > 0.005 for x in diff):2d}, worse {sum(x < -0.005 for x in diff):2d} of {len(diff)}"
        )
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=("predicted", "psnr"), default="predicted")
    ap.add_argument("--models", default=",".join(DEV_MODELS))
    ap.add_argument("--candidates", default="", help='"power,late;power,late" (default: the whole grid)')
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--exponent", type=float, default=None, help="the ranking's gap exponent (default: the module's)")
    args = ap.parse_args(argv)
    models = args.models.split(",")
    refuse_held_out(models, "shape_fit")
    torch.set_num_threads(args.threads)
    cands = candidates(args.candidates)
    if args.exponent is not None:
        shape.EXPONENT = args.exponent
    t0 = time.perf_counter()
    if args.stage == "predicted":
        table = predicted(models, cands)
        print("predicted open-loop error (dB, 10 log10; lower is better) of each schedule on the calibration seed")
        head = f"{'model':5} {'steps':>5} {'target':>6} {'method':15} {'even':>7} {'plan':>7}"
        for name in models:
            for label in (m[0] for m in METHODS):
                rows = {k: v for k, v in table.items() if k[0] == name and k[3] == label}
                best = sorted(cands, key=lambda c: np.mean([v[c] - v["even"] for v in rows.values()]))[:3]
                print(head + "".join(f" {_key(c):>12}" for c in best))
                for (m, steps, target, lab), v in rows.items():
                    print(
                        f"{m:5} {steps:5d} {target:5g}x {lab:15} {v['even']:7.2f} {v['plan']:7.2f}"
                        + "".join(f" {v[c]:12.2f}" for c in best)
                    )
        print("\nall development cells (models " + ", ".join(models) + ", both methods):")
        ranked = sorted(cands, key=lambda c: np.mean([v[c] - v["even"] for v in table.values()]))
        for line in summary(table, ["plan", *ranked], higher_better=False):
            print(line)
    else:
        print(f"PSNR against full compute, seed {EVAL_SEED}, {args.samples} samples: even spacing vs shapes")

        def progress(key, cell):
            name, steps, target, label = key
            ev = cell["even"]
            print(
                f"{name:5} {steps:5d} {target:5g}x {label:15} even {ev[0]:3d} {ev[1]:6.2f} {ev[2]:>31} |"
                + " | ".join(
                    f"{_key(k)} {c[1]:6.2f} {c[1] - ev[1]:+6.2f} {c[2]}" for k, c in cell.items() if k != "even"
                ),
                flush=True,
            )

        table = psnr(models, cands, args.samples, progress)
        print()
        for line in summary(table, cands, higher_better=True):
            print(line)
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
