"""An order chosen from the calibration (a study; nothing in the pack runs it): TaylorSeer at order 2 on its plan
where the calibration predicts it much better than order 1 on its own, else order 1.

Both orders' plans are the ones a calibrated run gets (:func:`tcpade_core.calibrate.planned_config`, order 2 at
``--closed-loop2``), valued the same way on the calibration trajectory (seed ``CALIB_SEED``, 4 samples): the sum
over the plan's gaps of the plain open-loop cost plus the closed-loop term at lambda :data:`LAMBDA` (order 1:
:func:`tcpade_core.planner.closed_loop_costs`; order 2: :func:`tcpade_core.planner.quadratic_costs`), unpowered,
no contraction. Order 2 is chosen where its value is ``R`` times lower. Both orders' plans are already measured in
saved ``shape_bench`` runs, so the choice is evaluated on them exactly; only the values are computed here.
docs/order2_closed_loop.txt holds the rules.

    python -m tcpade_core.research.order_select --order1 docs/schedule_bench.txt --order2 docs/runs/o2_cl_dev.txt \\
        --closed-loop2 L --ratios 1,1.5,2,3
"""

from __future__ import annotations

import argparse
from typing import Dict, Tuple

from .. import planner
from ..calibrate import planned_config
from ..config import make_config
from .shape_bench import _count, _stat, _trajectory, read_rows

LAMBDA = 0.1  # the closed-loop term both orders are valued with (planner.CLOSED_LOOP, order 1's)


def values(name: str, steps: int, target: float) -> Tuple[float, float]:
    """(order 1's value, order 2's value) of their calibrated plans at ``target`` (see the module's docstring)."""
    tr = _trajectory(name, steps)
    Y = planner.sketch(tr.outputs)
    w = planner.step_weights(tr.t, tr.sigmas, tr.prediction)
    flat = Y.reshape(Y.shape[0], -1)
    one = planner.gap_costs(flat, w, 1, "coherent", LAMBDA)[1]
    two = planner.quadratic_costs(flat, w, LAMBDA)
    out = []
    for order, cost, term in ((1, one, planner._term1), (2, two, planner._term2)):
        steps_ = planned_config(make_config("taylorseer", order=order), Y, w, target, keep=frozenset({"order"}))[1]
        out.append(planner._total(term, cost, sorted(steps_)))
    return out[0], out[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--order1", required=True, help="a saved shape_bench run with TaylorSeer O=1 rows")
    ap.add_argument("--order2", required=True, help="a saved shape_bench run with TaylorSeer O=2 rows")
    ap.add_argument(
        "--closed-loop2",
        type=float,
        default=None,
        help="planner.CLOSED_LOOP2 of the order-2 run (default: the frozen one)",
    )
    ap.add_argument("--ratios", default="1,1.5,2,3")
    ap.add_argument("--split", default="dev", choices=("dev", "held-out", "fresh"))
    args = ap.parse_args(argv)
    if args.closed_loop2 is not None:
        planner.CLOSED_LOOP2 = args.closed_loop2
    key = lambda r: (r["model"], r["seed"], r["steps"], r["target"])
    o1 = {key(r): r for r in read_rows(args.order1) if r["method"] == "TaylorSeer O=1" and r["split"] == args.split}
    o2 = {key(r): r for r in read_rows(args.order2) if r["method"] == "TaylorSeer O=2" and r["split"] == args.split}
    cells = sorted(set(o1) & set(o2))
    vals: Dict[tuple, Tuple[float, float]] = {}
    print(f"{'model':5} {'seed':>5} {'steps':>5} {'target':>6} | {'O=1':>6} {'O=2':>6} | {'value1/value2':>13}")
    for c in cells:
        v = vals.setdefault(c[:1] + c[2:], values(c[0], c[2], c[3]))
        ratio = v[0] / v[1] if v[1] > 0 else float("inf")
        print(
            f"{c[0]:5} {c[1]:5d} {c[2]:5d} {c[3]:5g}x | {o1[c]['plan'][1]:6.2f} {o2[c]['plan'][1]:6.2f} | {ratio:13.3f}"
        )
    print()
    for r in (float(x) for x in args.ratios.split(",")):
        pick = {c: 2 if vals[c[:1] + c[2:]][0] > r * vals[c[:1] + c[2:]][1] else 1 for c in cells}
        gain = {c: (o2[c] if pick[c] == 2 else o1[c])["plan"][1] - o1[c]["plan"][1] for c in cells}
        chosen = [c for c in cells if c[2] in (20, 30) and c[3] >= 2]
        grid = [
            (o2[c] if pick[c] == 2 else o1[c])["plan"][1] - o1[c]["grid"][1]
            for c in chosen
            if o1[c]["grid"] is not None
        ]
        print(
            f"R {r:g}: order 2 in {sum(p == 2 for p in pick.values())} of {len(cells)} cells; chosen minus order 1 "
            f"{_count(list(gain.values()))}; at 20/30 steps and 2-3x: minus order 1 {_stat([gain[c] for c in chosen])}, "
            f"minus the grid {_stat(grid)}"
        )


if __name__ == "__main__":
    main()
