"""TC-Padé's TSI in a planned schedule (issue 18 item 5): as the planner's error proxy, and as an online correction.

Per cell (model, seed, steps, target, method), PSNR against full compute, at exactly the same computes, of:

* **even**: the speed target as placed today (evenly spaced; the method's signal may move a compute earlier);
* **plan**: the schedule planned from one full-compute run of the calibration seed (777, 4 samples, classes 0-3)
  with today's objective (``"coherent"``: the predictor's open-loop error on the recorded outputs);
* **tsi**: planned with the TSI of the recorded outputs as the error proxy instead
  (:func:`tcpade_core.planner.tsi_costs`);
* **c+tsi**: planned with the open-loop error, each step's weight raised where the TSI is high (``"coherent_tsi"``);
* **corr θ**: today's plan with the online correction (:class:`tcpade_core.gates.PlannedGate` ``tsi_theta``):
  the next planned compute moves earlier, from half its gap, when the stability score 1/(2 TSI) of the three
  newest computed residuals is below θ.

Development runs only unless ``--held-out`` (models A and B, seed 1234):

    python -m tcpade_core.research.tsi_bench --steps 20 --samples 8 --threads 1
"""

from __future__ import annotations

import argparse
import time
from typing import List

import numpy as np
import torch

from .. import metrics
from ..calibrate import plan_data, planned_config
from ..config import make_config
from ..engine import CacheRun
from ..gates import PlannedGate
from .common import EVAL_SEED, labels as _labels, refuse_held_out, sample_timed as _sample
from .shape_fit import METHODS, record


def planned_run(method: str, params: dict, outputs, weights, target: float, objective="coherent", theta=None):
    """A CacheRun on the schedule planned with ``objective`` (as calibrated_run), with the TSI correction at
    ``theta`` (None: off)."""
    cfg, steps, _ = planned_config(
        make_config(method, **params), outputs, weights, target, keep=frozenset(params), objective=objective
    )
    run = CacheRun(cfg)
    if theta is not None:
        run.gate = PlannedGate(run.gate.base, cfg.plan, tsi_theta=theta)
    return run


def variants(objectives, thetas):
    out = [("even", None, None), ("plan", "coherent", None)]
    out += [({"tsi": "tsi", "coherent_tsi": "c+tsi"}.get(o, o), o, None) for o in objectives]
    out += [(f"corr {t:g}", "coherent", t) for t in thetas]
    return out


def run_case(name, seed, steps, n_samples, targets, methods, vars_, progress) -> List[dict]:
    from ..models.zoo import load_model

    model = load_model(name)
    outputs, weights = plan_data(record(name, steps))  # the calibration seed, not this one
    lab = _labels(n_samples)
    ref = _sample(model, name, lab, steps, None, seed=seed)[0]
    rows = []
    for target in targets:
        for label, method, params in methods:
            row = dict(model=name, seed=seed, steps=steps, target=target, method=label, cells={})
            for key, objective, theta in vars_:
                if objective is None:
                    run = CacheRun(make_config(method, target_speedup=target, placement="even", **params))
                else:
                    run = planned_run(method, params, outputs, weights, target, objective, theta)
                img = _sample(model, name, lab, steps, run, seed=seed)[0]
                row["cells"][key] = (run.report.computed, metrics.psnr(img, ref), run.report.strip())
            rows.append(row)
            progress(row)
    return rows


def head(vars_) -> str:
    return f"{'model':5} {'seed':>5} {'steps':>5} {'target':>6} {'method':15} {'K':>3} | " + " ".join(
        f"{k:>8}" for k, _, _ in vars_
    )


def line(r: dict) -> str:
    c = r["cells"]
    k = c["plan"][0]
    counts = {v[0] for v in c.values()}
    s = f"{r['model']:5} {r['seed']:5d} {r['steps']:5d} {r['target']:5g}x {r['method']:15} {k:3d} | " + " ".join(
        f"{v[1]:8.2f}" for v in c.values()
    )
    s += "" if len(counts) == 1 else f"  (computes {sorted(counts)})"
    return s + "  " + "  ".join(f"{key}:{v[2]}" for key, v in c.items() if key not in ("even",))


def summary(rows, what: str) -> List[str]:
    out = []
    keys = [k for k in rows[0]["cells"] if k not in ("even", "plan")] if rows else []
    for k in keys:
        for base in ("plan", "even"):
            d = [r["cells"][k][1] - r["cells"][base][1] for r in rows]
            out.append(
                f"{what}: {k:8} minus {base:4}: mean {np.mean(d):+6.2f} dB, min {min(d):+6.2f}, max {max(d):+6.2f}; "
                f"better in {sum(x > 0.005 for x in d)}, worse in {sum(x < -0.005 for x in d)} of {len(d)} cells"
            )
    if rows:
        d = [r["cells"]["plan"][1] - r["cells"]["even"][1] for r in rows]
        out.append(
            f"{what}: plan     minus even: mean {np.mean(d):+6.2f} dB, better in {sum(x > 0.005 for x in d)}, "
            f"worse in {sum(x < -0.005 for x in d)} of {len(d)} cells"
        )
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="a,b")
    ap.add_argument("--steps", default="20")
    ap.add_argument("--targets", default="2,2.5,3")
    ap.add_argument("--methods", default=",".join(m[0] for m in METHODS), help="labels, comma-separated")
    ap.add_argument("--objectives", default="tsi,coherent_tsi", help="planner objectives besides 'coherent'")
    ap.add_argument("--thetas", default="1,2.5", help="θ of the online TSI correction ('' : none)")
    ap.add_argument("--seeds", default=str(EVAL_SEED))
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--held-out", action="store_true", help="allow held-out models and seeds (a frozen variant only)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = args.models.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    if not args.held_out:
        refuse_held_out(models, "tsi_bench")
        if seeds != [EVAL_SEED]:
            raise SystemExit(f"tsi_bench: seed(s) {seeds} are held out (development seed: {EVAL_SEED})")
    objectives = [o for o in args.objectives.split(",") if o]
    thetas = [float(t) for t in args.thetas.split(",") if t]
    vars_ = variants(objectives, thetas)
    methods = tuple(m for m in METHODS if m[0] in args.methods.split(","))
    targets = tuple(float(t) for t in args.targets.split(","))
    t0 = time.perf_counter()
    print(f"PSNR against full compute, {args.samples} samples; plans calibrated on seed 777 (4 samples)")
    print(head(vars_), flush=True)
    rows: List[dict] = []
    for name in models:
        for seed in seeds:
            for steps in (int(s) for s in args.steps.split(",")):
                rows += run_case(
                    name, seed, steps, args.samples, targets, methods, vars_, lambda r: print(line(r), flush=True)
                )
    print()
    for s in summary(rows, "all cells"):
        print(s)
    for label in sorted({r["method"] for r in rows}):
        for s in summary([r for r in rows if r["method"] == label], label):
            print(s)
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
