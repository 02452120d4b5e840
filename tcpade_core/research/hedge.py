"""A hedge on a calibrated plan (a study; nothing in the pack runs it): keep the evenly spaced target unless the
plan's predicted gain is large.

A plan is chosen on one calibration run (4 samples of one seed); on other seeds and classes its gain over even
spacing varies by several dB either way (issue 18's transfer target). The planner predicts both schedules' errors
on the calibration trajectory; the hedge runs the plan only where even spacing's predicted error is at least ``R``
times the plan's, and the evenly spaced target otherwise. Both columns are already measured in a saved
``shape_bench`` run (``even`` and ``plan``), so the hedge is evaluated on them exactly; only the ratio is computed
here, from the same calibration run (seed ``CALIB_SEED``, 4 samples) the plans came from.

    python -m tcpade_core.research.hedge docs/runs/segpower2_dev.txt --ratios 1,1.5,2,2.5,3
"""

from __future__ import annotations

import argparse
from typing import Dict

from .. import planner
from ..calibrate import planned_config
from ..config import make_config
from ..methods import build
from .proxy_rank import planner_objective
from .shape_bench import CATALOGUE, _count, _stat, _trajectory, read_rows
from .shape_fit import replay_schedule


def ratios(name: str, steps: int, target: float, method: str, params: dict, bases=("plain",)) -> Dict[str, float]:
    """basis -> even spacing's predicted error over the plan's, on the calibration trajectory: "plain", the plain
    open-loop sum (what a node reports); "objective", the planner's own objective (order 1:
    :func:`tcpade_core.research.proxy_rank.planner_objective`). The plan is the one a calibrated run gets
    (:func:`tcpade_core.calibrate.planned_config`), the even schedule the one the evenly spaced target computes on
    that trajectory (:func:`shape_fit.replay_schedule`); both are made once for every basis."""
    tr = _trajectory(name, steps)
    Y = planner.project(tr.outputs)
    w = planner.step_weights(tr.t, tr.sigmas, tr.prediction)
    cfg, plan_steps, plain = planned_config(make_config(method, **params), Y, w, target)
    even = replay_schedule(make_config(method, target_speedup=target, **params), tr)
    order = build(cfg)[1].plan_order
    out = {}
    for basis in bases:
        if basis == "objective":
            if order != 1:
                raise ValueError(f"basis 'objective' is for order-1 planners, {method} plans at order {order}")
            value = planner_objective(Y, w)
            err, even_err = value(sorted(plan_steps)), value(sorted(even))
        else:
            err, even_err = plain, planner.schedule_error(Y, w, even, order)
        out[basis] = float(even_err / err) if err > 0 else (1.0 if even_err == 0 else float("inf"))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="saved shape_bench runs")
    ap.add_argument("--ratios", default="1,1.5,2,2.5,3")
    ap.add_argument("--basis", default="plain", help="plain, objective, or both comma-separated (see ratio)")
    ap.add_argument("--methods", default="", help="only these method labels, comma-separated (default: all)")
    ap.add_argument("--steps", default="", help="only these step counts, comma-separated (default: all)")
    ap.add_argument("--min-target", type=float, default=0.0, help="only targets at least this")
    ap.add_argument("--split", default="", help="only this split's rows (dev, held-out, fresh; default: all)")
    args = ap.parse_args(argv)
    spec = {label: (method, params) for label, method, params in CATALOGUE}
    keep = lambda r: (
        (not args.methods or r["method"] in args.methods.split(","))
        and (not args.steps or str(r["steps"]) in args.steps.split(","))
        and r["target"] >= args.min_target
        and (not args.split or r["split"] == args.split)
    )
    rows = [r for path in args.runs for r in read_rows(path) if keep(r)]
    print("# " + " ".join(args.runs) + f": {len(rows)} cells")
    bases = args.basis.split(",")
    every: Dict[tuple, Dict[str, float]] = {}
    for r in rows:
        key = (r["model"], r["steps"], r["target"], r["method"])
        if key not in every:
            every[key] = ratios(r["model"], r["steps"], r["target"], *spec[r["method"]], bases=bases)
    for basis in bases:
        rs = {key: v[basis] for key, v in every.items()}
        for R in (float(x) for x in args.ratios.split(",")):
            hedged = lambda r: (
                r["plan"][1] if rs[(r["model"], r["steps"], r["target"], r["method"])] >= R else r["even"][1]
            )
            print(f"{basis} R {R:g}:")
            for label in sorted({r["method"] for r in rows}) + ["all methods"]:
                mine = [r for r in rows if label in (r["method"], "all methods")]
                kept = sum(rs[(r["model"], r["steps"], r["target"], r["method"])] < R for r in mine)
                line = f"  {label}: hedge minus plan {_count([hedged(r) - r['plan'][1] for r in mine])}, even kept in {kept}"
                cal = [
                    hedged(r) - r["grid"][1]
                    for r in mine
                    if r.get("grid") is not None and r["steps"] in (20, 30) and r["target"] >= 2.0
                ]
                if cal:
                    line += f"; hedge minus grid (20/30 steps, 2-3x): {_stat(cal)}"
                print(line)
        print(
            f"  ratios ({basis}; even over plan, predicted): "
            + ", ".join(f"{m}{s}/{t:g}x {lab[:2]} {v:.2f}" for (m, s, t, lab), v in sorted(rs.items()))
        )


if __name__ == "__main__":
    main()
