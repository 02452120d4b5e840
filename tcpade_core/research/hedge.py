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
from .shape_bench import CATALOGUE, _count, _stat, _trajectory, read_rows
from .shape_fit import replay_schedule


def ratio(name: str, steps: int, target: float, method: str, params: dict) -> float:
    """Even spacing's predicted error over the plan's, on the calibration trajectory (the plain objective): the
    plan is the one a calibrated run gets (:func:`tcpade_core.calibrate.planned_config`), the even schedule the one
    the evenly spaced target computes on that trajectory (:func:`shape_fit.replay_schedule`)."""
    tr = _trajectory(name, steps)
    Y = planner.project(tr.outputs)
    w = planner.step_weights(tr.t, tr.sigmas, tr.prediction)
    cfg, _, err = planned_config(make_config(method, **params), Y, w, target)
    even = replay_schedule(make_config(method, target_speedup=target, **params), tr)
    even_err = planner.schedule_error(Y, w, even, build(cfg)[1].plan_order)
    return float(even_err / err) if err > 0 else (1.0 if even_err == 0 else float("inf"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="saved shape_bench runs")
    ap.add_argument("--ratios", default="1,1.5,2,2.5,3")
    args = ap.parse_args(argv)
    spec = {label: (method, params) for label, method, params in CATALOGUE}
    rs: Dict[tuple, float] = {}
    for path in args.runs:
        rows = read_rows(path)
        for r in rows:
            key = (r["model"], r["steps"], r["target"], r["method"])
            if key not in rs:
                rs[key] = ratio(r["model"], r["steps"], r["target"], *spec[r["method"]])
        print(f"# {path}")
        for R in (float(x) for x in args.ratios.split(",")):
            hedged = lambda r: (
                r["plan"][1] if rs[(r["model"], r["steps"], r["target"], r["method"])] >= R else r["even"][1]
            )
            print(f"R {R:g}:")
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
            "  ratios (even over plan, predicted): "
            + ", ".join(f"{m}{s}/{t:g}x {v:.2f}" for (m, s, t, lab), v in sorted(rs.items()) if lab == "TaylorSeer O=1")
        )


if __name__ == "__main__":
    main()
