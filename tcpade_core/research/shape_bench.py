"""The default shape of a speed target (:mod:`tcpade_core.shape`, frozen) on held-out runs.

Per cell (model, seed, steps, target, method), PSNR against full compute of:

* **even**: the speed target spaced evenly, as it was placed before placement "auto" (``placement="even"``);
* **shape**: the same target on the default shape (``placement="shape"``);
* **plan**: the schedule planned from one full-compute run of another seed (:data:`CALIB_SEED`, 4 samples,
  classes 0-3; :func:`tcpade_core.calibrate.calibrated_run`);
* **grid**: the best fixed grid of the full baseline sweep (Reuse, TaylorSeer, TeaCache, TraCache) at <= the same
  computes, read from ``docs/bench.txt`` (16 samples, the same seeds: run with ``--samples 16`` to compare).

Development: models A and B on seed 1234; held out: models A and B on seed 4321, model C on seeds 1234 and 4321
(``tcpade_core.research.fbcache.cases``); ``--split`` picks them, each is summarised on its own. With ``--transfer``
each plan is also run on its own calibration samples (seed :data:`CALIB_SEED`, classes 0-3), so that its gain over
``even`` there can be compared with its gain on the evaluation seeds and classes. After the rows: the issue's targets
(calibrated plan against the grid at 20/30 steps and 2-3x; the uncalibrated placements against the grid and today;
whether computes buy quality; transfer), and with ``--plot`` a PNG of PSNR against computed steps per model and
step count (held-out means; the grid's front is the best fixed grid at <= each count).

    python -m tcpade_core.research.shape_bench --split all --transfer --plot docs/schedules.png   # docs/schedule_bench.txt
    python -m tcpade_core.research.shape_bench --steps 20 --models b,c --seeds 4321   # docs/shape_bench.txt
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from .. import calibrate as CAL, metrics, planner, shape
from ..calibrate import calibrated_run
from ..config import budget, make_config, placement_for
from ..engine import CacheRun
from .common import CALIB_SEED, PREDICTION, labels as _labels, sample_timed as _sample
from .fbcache import BENCH_TXT, best_baseline, cases, read_bench
from .shape_fit import METHODS, TARGETS, record


# the methods a run may pick (--methods): the pack's planning methods, TaylorSeer O=2 (its exact-on-uneven form on a
# plan; the order the best fixed grids use most) and every other method with a speed target, each with its defaults
CATALOGUE = METHODS + (
    ("TaylorSeer O=2", "taylorseer", dict(order=2)),
    # the node's defaults (order 1; at a target order 2 on an eps model from 20 steps, config.ORDER_BY_PREDICTION):
    # with --wired, what a calibration fills
    ("TaylorSeer node", "taylorseer", {}),
    ("TS O=2 official", "taylorseer", dict(order=2, form="official")),
    ("TraCache", "tracache", {}),
    ("TeaCache", "teacache", {}),
    ("MagCache", "magcache", {}),
    ("Spectrum", "spectrum", {}),
    ("FBCache", "first_block", {}),
)
# a seed no tool had run before the segment-power study (--split fresh: every model on it; no fixed grid was swept
# there, so it compares the placements with each other, not with the grid): held-out evidence for a choice whose
# gate already used the held-out seeds
FRESH_SEED = 9001
CALIB_SAMPLES = 4  # samples of the calibration run (classes 0 ..; --calib-samples)
_TRAJ: dict = {}  # (model, steps) -> the calibration trajectory (one full-compute run, recorded once)
_ON_CALIB: dict = {}  # (model, steps, target, method) -> (even, plan) PSNR on the calibration samples
_CAL: dict = {}  # (model, steps, calibration target) -> the Calibration of the calibration trajectory (--wired)
WIRED: Optional[float] = None  # --wired: the Calibrate node's target; the plan column runs the node's path


def _trajectory(name: str, steps: int):
    if (name, steps) not in _TRAJ:
        _TRAJ[(name, steps)] = record(name, steps, CALIB_SAMPLES)  # the calibration seed, not the evaluation one
    return _TRAJ[(name, steps)]


def _cases(split: str, models) -> list:
    """(split, model, seed) of a split: fbcache's development and held-out cases, or every model on the fresh seed."""
    return [("fresh", m, FRESH_SEED) for m in models] if split == "fresh" else cases(split, models)


def on_calibration(model, name: str, steps: int, target: float, label: str, method: str, params) -> tuple:
    """PSNR of ``even`` and ``plan`` on the plan's own calibration samples (seed CALIB_SEED, classes 0 ..)."""
    key = (name, steps, target, label)
    if key not in _ON_CALIB:
        lab = _labels(CALIB_SAMPLES)
        ref = _sample(model, name, lab, steps, None, seed=CALIB_SEED)[0]
        even = CacheRun(target_config(method, name, steps, params, target_speedup=target))
        plan = planned_run(method, name, steps, target, params)
        _ON_CALIB[key] = tuple(
            metrics.psnr(_sample(model, name, lab, steps, run, seed=CALIB_SEED)[0], ref) for run in (even, plan)
        )
    return _ON_CALIB[key]


def target_config(method: str, name: str, steps: int, params, **kw):
    """``make_config(method, **params, **kw)`` at a speed target, with what a node fills from the model's prediction
    type and the step count where ``params`` leave it (``Method.at_target``: TaylorSeer's order)."""
    from ..methods import fill_at_target

    return fill_at_target(make_config(method, **params, **kw), PREDICTION[name], steps, frozenset(params))[0]


def planned_run(method: str, name: str, steps: int, target: float, params) -> CacheRun:
    """The "plan" column's run: :func:`tcpade_core.calibrate.calibrated_run` on the calibration trajectory, or,
    with :data:`WIRED` set, what a cache node with these settings (the rest at the node's defaults) runs after a
    Calibrate at target ``WIRED``: the method's calibration mapping fills what the user left alone
    (``Method.calibrate``), then the plan is read from the calibration's stored table, as the patcher does."""
    from ..calibrate import calibrate, planned_config
    from ..methods import METHODS as ALL, fill_at_target

    traj = _trajectory(name, steps)
    if WIRED is None:
        return calibrated_run(method, traj, target, **params)
    key = (name, steps, WIRED)
    if key not in _CAL:
        _CAL[key] = calibrate(traj, name, WIRED)
    cal, user = _CAL[key], frozenset(params) | {"target_speedup"}
    cfg = make_config(method, target_speedup=target, **params)
    if ALL[method].calibrate is not None:
        applied = ALL[method].calibrate(cfg, cal, target, user)
        cfg = applied.cfg.with_(target_speedup=applied.target)
    cfg = fill_at_target(cfg, PREDICTION[name], steps, user)[0]
    cfg = planned_config(cfg, cal.plan_outputs, cal.plan_weights, target, user, table=cal.plan_table)[0]
    return CacheRun(cfg)


def run_case(
    name: str,
    seed: int,
    steps: int,
    n_samples: int,
    targets,
    methods,
    bench_rows,
    progress,
    split="held-out",
    transfer=False,
) -> List[dict]:
    from ..models.zoo import load_model

    model = load_model(name)
    lab = _labels(n_samples)
    ref = _sample(model, name, lab, steps, None, seed=seed)[0]
    rows = []
    for target in targets:
        for label, method, params in methods:
            row = dict(model=name, seed=seed, steps=steps, target=target, method=label, split=split)
            for how in ("even", "shape", "plan"):
                if how == "plan":
                    run = planned_run(method, name, steps, target, params)
                else:
                    run = CacheRun(target_config(method, name, steps, params, target_speedup=target, placement=how))
                img = _sample(model, name, lab, steps, run, seed=seed)[0]
                row[how] = (run.report.computed, metrics.psnr(img, ref), run.report.strip())
            g = best_baseline(bench_rows, budget(steps, target)) if bench_rows else None
            row["grid"] = (g[1], g[2], g[0]) if g else None
            if transfer:
                row["calib"] = on_calibration(model, name, steps, target, label, method, params)
            rows.append(row)
            progress(row)
    return rows


def head() -> str:
    return (
        f"{'model':5} {'seed':>5} {'steps':>5} {'target':>6} {'method':15} {'K':>3} | {'even':>6} {'shape':>6} "
        f"{'plan':>6} {'grid':>6} | {'-even':>6} {'-plan':>6} {'-grid':>6} | shape schedule      best grid (computes)"
    )


def line(r: dict) -> str:
    e, s, p, g = r["even"], r["shape"], r["plan"], r["grid"]
    gp = f"{g[1]:6.2f}" if g else f"{'-':>6}"
    dg = f"{s[1] - g[1]:+6.2f}" if g else f"{'-':>6}"
    return (
        f"{r['model']:5} {r['seed']:5d} {r['steps']:5d} {r['target']:5g}x {r['method']:15} {s[0]:3d} | {e[1]:6.2f} "
        f"{s[1]:6.2f} {p[1]:6.2f} {gp} | {s[1] - e[1]:+6.2f} {s[1] - p[1]:+6.2f} {dg} | {s[2]}  "
        + (f"{g[2]} ({g[0]})" if g else "")
    )


def summary(rows: List[dict], what: str) -> List[str]:
    out = []
    for a, b in (("shape", "even"), ("shape", "plan"), ("shape", "grid"), ("plan", "even")):
        d = _d(rows, a, b)
        if d:
            out.append(
                f"{what}: {a:5} minus {b:5}: mean {np.mean(d):+6.2f} dB, min {min(d):+6.2f}, max {max(d):+6.2f}; "
                f"better in {sum(x > 0.005 for x in d)}, worse in {sum(x < -0.005 for x in d)} of {len(d)} cells"
            )
    return out


def _count(d) -> str:
    return (
        f"{np.mean(d):+6.2f} dB ({sum(x > 0.005 for x in d)} better / {sum(x < -0.005 for x in d)} worse of {len(d)})"
    )


_ROW = re.compile(
    r"^(\w+)\s+(\d+)\s+(\d+)\s+([\d.]+)x\s+(.+?)\s+(\d+) \|\s+([\d.-]+)\s+([\d.-]+)\s+([\d.-]+)\s+(\S+) \|"
)


def read_rows(path: str) -> List[dict]:
    """The rows of a saved run of this benchmark (its printed lines; "(dev)" marks development rows, "(fresh)" the
    fresh seed's)."""
    rows = []
    for text in open(path, encoding="utf-8"):
        m = _ROW.match(text)
        if m:
            g = m.groups()
            rows.append(
                dict(
                    model=g[0],
                    seed=int(g[1]),
                    steps=int(g[2]),
                    target=float(g[3]),
                    method=g[4],
                    split="dev" if "(dev)" in text else "fresh" if "(fresh)" in text else "held-out",
                    even=(0, float(g[6])),
                    shape=(0, float(g[7])),
                    plan=(0, float(g[8])),
                    grid=None if g[9] == "-" else (0, float(g[9])),
                )
            )
    return rows


def compare(path: str, against: str = "", rename: str = "") -> List[str]:
    """Per split and method of a saved run: plan minus even, over all its cells, by step count, model and target;
    with ``against`` (another saved run), its plan minus that run's plan on the cells both hold, by the same groups;
    where the run holds two or three methods, each method minus each other (plan, and even) on the cells both hold.
    The split prefixes each line where the run holds more than one. ``rename``: "label=other label", comma-separated:
    the run's rows of that method are compared as the other's."""
    names = dict(pair.split("=", 1) for pair in rename.split(",") if pair)
    rows = [dict(r, method=names.get(r["method"], r["method"])) for r in read_rows(path)]
    key = lambda r: (r["model"], r["seed"], r["steps"], r["target"], r["method"], r["split"])
    other = {key(r): r for r in read_rows(against)} if against else {}
    out = []
    splits = [s for s in ("dev", "held-out", "fresh") if any(r["split"] == s for r in rows)]
    for split in splits:
        pre = f"{split}: " if len(splits) > 1 else ""
        here = [r for r in rows if r["split"] == split]
        labels = sorted({r["method"] for r in here})
        for label in labels + (["all methods"] if len(labels) > 1 else []):
            mine = [r for r in here if label in (r["method"], "all methods")]
            for what, diff in (
                ("plan minus even", lambda r: r["plan"][1] - r["even"][1]),
                (f"plan minus the plan of {against}", lambda r: r["plan"][1] - other[key(r)]["plan"][1]),
            ):
                cells = [r for r in mine if what == "plan minus even" or key(r) in other]
                if cells:
                    out += _groups(f"{pre}{label}: {what}", cells, diff)
        if 2 <= len(labels) <= 3:
            cell = lambda r: (r["model"], r["seed"], r["steps"], r["target"])
            by = {(cell(r), r["method"]): r for r in here}
            for i, x in enumerate(labels):
                for y in labels[i + 1 :]:
                    pairs = [(by[(c, x)], by[(c, y)]) for c, m in by if m == x and (c, y) in by]
                    for how in ("plan", "even"):
                        out.append(f"{pre}{x} minus {y}, {how}: {_count([a[how][1] - b[how][1] for a, b in pairs])}")
    return out


def _groups(head: str, cells: List[dict], diff) -> List[str]:
    out = [f"{head}: {_count([diff(r) for r in cells])}"]
    for group in ("steps", "model", "target"):
        for v in sorted({r[group] for r in cells}):
            shown = f"{v:g}" if isinstance(v, float) else v
            out.append(f"    {group} {shown}: {_count([diff(r) for r in cells if r[group] == v])}")
    return out


def _d(rows, a, b, where=lambda r: True):
    return [r[a][1] - r[b][1] for r in rows if r.get(b) is not None and where(r)]


def _stat(d) -> str:
    if not d:
        return "no cells"
    return f"mean {np.mean(d):+6.2f} dB, min {min(d):+6.2f}, max {max(d):+6.2f} over {len(d)} cells"


def with_auto(rows: List[dict]) -> List[dict]:
    """The rows with an ``auto`` column: what placement ``"auto"`` runs in each cell, read from the measured ones
    (:func:`tcpade_core.config.placement_for` on the model's prediction and the step count: the ``shape`` column
    below 2x on a flow model from 20 steps, else ``even``)."""
    pick = lambda r: placement_for("auto", PREDICTION[r["model"]], r["target"], r["steps"])
    return [dict(r, auto=r[pick(r)]) for r in rows]


def target_checks(rows: List[dict], what: str) -> List[str]:
    """The issue's targets, measured (a benchmark reports them; nothing here asserts). ``even``: the evenly spaced
    target (the speed target as it was); ``auto``: the default placement (:func:`with_auto`)."""
    out = [f"{what}: the targets of issue 18, per method"]
    rows = with_auto(rows)
    for label in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == label]
        cal = _d(mine, "plan", "grid", lambda r: r["steps"] in (20, 30) and r["target"] >= 2.0)
        ok = bool(cal) and np.mean(cal) >= 1.0 and min(cal) >= -0.3
        out.append(
            f"  {label}: calibrated plan minus grid (20/30 steps, 2-3x; target mean >= +1, min >= -0.3): {_stat(cal)}  {'met' if ok else 'MISSED'}"
        )
        for how in ("auto", "even", "shape"):
            dg = _d(mine, how, "grid")
            out.append(
                f"  {label}: uncalibrated {how:5} minus grid (target >= -0.5 in every cell): {_stat(dg)}; "
                f"below -0.5 in {sum(x < -0.5 for x in dg)}  {'met' if dg and min(dg) >= -0.5 else 'MISSED'}"
            )
        for how in ("auto", "shape"):
            ds = _d(mine, how, "even")
            out.append(
                f"  {label}: {how} minus even spacing, the target as it was (target >= 0 in every cell): {_stat(ds)}"
                f"{f'; below -0.5 in {sum(x < -0.5 for x in ds)}' if ds else ''}  "
                f"{'met' if ds and min(ds) >= -0.005 else 'MISSED'}"
            )
        for how in ("auto", "even", "shape", "plan"):
            falls, lift = [], []
            cells = {(r["model"], r["seed"], r["steps"]) for r in mine}
            for cell in sorted(cells):
                by_t = {r["target"]: r[how][1] for r in mine if (r["model"], r["seed"], r["steps"]) == cell}
                ts = sorted(by_t)
                falls += [by_t[a] - by_t[b] for a, b in zip(ts, ts[1:])]  # lower target minus higher target
                if 1.25 in by_t and 2.0 in by_t:
                    lift.append(by_t[1.25] - by_t[2.0])
            worst = min(falls) if falls else 0.0
            out.append(
                f"  {label}: {how:5} computes buy quality: lowering the target loses > 0.3 dB in "
                f"{sum(x < -0.3 for x in falls)} of {len(falls)} pairs (worst {worst:+.2f})"
                + (f"; 1.25x minus 2x: {_stat(lift)}, below +3 dB in {sum(x < 3.0 for x in lift)}" if lift else "")
            )
        tr = [
            (r["plan"][1] - r["even"][1]) - (r["calib"][1] - r["calib"][0]) for r in mine if r.get("calib") is not None
        ]
        if tr:
            out.append(
                f"  {label}: transfer: gain over even on evaluation minus gain on the calibration samples "
                f"(target within 0.5 dB): {_stat(tr)}; beyond -0.5 in {sum(x < -0.5 for x in tr)}"
                + f"  {'met' if min(tr) >= -0.5 else 'MISSED'}"
            )
    return out


def plot(rows: List[dict], bench: dict, path: str) -> None:
    """PSNR against computed steps, one panel per model and step count, held-out cells averaged per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    held = [r for r in rows if r["split"] == "held-out"] or rows
    models, steps = sorted({r["model"] for r in held}), sorted({r["steps"] for r in held})
    fig, axes = plt.subplots(len(models), len(steps), figsize=(4.2 * len(steps), 3.4 * len(models)), squeeze=False)
    style = {"even": ":", "shape": "--", "plan": "-"}
    for i, name in enumerate(models):
        for j, n in enumerate(steps):
            ax = axes[i][j]
            cell = [r for r in held if r["model"] == name and r["steps"] == n]
            for k, label in enumerate(sorted({r["method"] for r in held})):
                for how, ls in style.items():
                    pts = {}
                    for r in cell:
                        if r["method"] == label:
                            pts.setdefault(r[how][0], []).append(r[how][1])
                    xs = sorted(pts)
                    ax.plot(
                        xs, [np.mean(pts[x]) for x in xs], ls, color=f"C{k}", marker="o", ms=3, label=f"{label} {how}"
                    )
            fronts = []
            for split, m, seed, k in bench:
                if m == name and k == n and split == "held-out":
                    fronts.append([best_baseline(bench[(split, m, seed, k)], c) for c in range(1, n + 1)])
            if fronts:
                xs = [c for c in range(1, n + 1) if all(f[c - 1] for f in fronts)]
                ys = [np.mean([f[c - 1][2] for f in fronts]) for c in xs]
                ax.step(xs, ys, where="post", color="k", lw=1, label="best fixed grid (<= computes)")
            ax.set_title(f"model {name.upper()}, {n} steps (held-out mean)", fontsize=9)
            ax.set_xlabel("computed steps", fontsize=8)
            ax.set_ylabel("PSNR vs full compute (dB)", fontsize=8)
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=90)


def main(argv=None) -> None:
    global CALIB_SAMPLES, FRESH_SEED, WIRED
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="a,b,c")
    ap.add_argument("--steps", default="10,20,30")
    ap.add_argument("--targets", default=",".join(f"{t:g}" for t in TARGETS))
    ap.add_argument(
        "--methods",
        default=",".join(m[0] for m in METHODS),
        help="labels, comma-separated, of: " + ", ".join(m[0] for m in CATALOGUE),
    )
    ap.add_argument("--calib-samples", type=int, default=CALIB_SAMPLES, help="samples of the calibration run")
    ap.add_argument(
        "--s-flow",
        type=float,
        default=None,
        help="s of a flow model's planner weights (planner.flow_keep_steps; default: the frozen planner.S_FLOW; 0: "
        "the plain step sizes in t)",
    )
    ap.add_argument(
        "--seg-power",
        type=float,
        default=None,
        help="p of the planner's aggregate over segments, sum of cost^p (planner.SEG_POWER; default: the frozen one)",
    )
    ap.add_argument(
        "--tail",
        type=int,
        default=None,
        help="the most steps a plan may leave predicted after its last compute (planner.TAIL; default: the frozen one)",
    )
    ap.add_argument(
        "--closed-loop",
        type=float,
        default=None,
        help="lambda of the planner's closed-loop term (planner.CLOSED_LOOP; 0: open loop; default: the frozen one)",
    )
    ap.add_argument(
        "--closed-loop2",
        type=float,
        default=None,
        help="lambda of the closed-loop term of order-2 plans (planner.CLOSED_LOOP2; default: the frozen one)",
    )
    ap.add_argument(
        "--contract",
        type=float,
        default=None,
        help="rho of the planner's contraction (planner.CONTRACT; 0: off; default: the frozen one)",
    )
    ap.add_argument(
        "--margin",
        type=float,
        default=None,
        help="R of the planner's margin over even spacing (planner.MARGIN; 1: off; default: the frozen one)",
    )
    ap.add_argument(
        "--margin2",
        type=float,
        default=None,
        help="R of the same margin for order-2 plans (planner.MARGIN2; 1: off; default: the frozen one)",
    )
    ap.add_argument(
        "--even-form",
        type=int,
        choices=(0, 1),
        default=None,
        help="1: where a plan is even spacing TaylorSeer runs its configured form (calibrate.EVEN_PLAN_FORM; "
        "default: the frozen one)",
    )
    ap.add_argument(
        "--nest",
        type=float,
        default=None,
        help="nest plans in the budget above this target's computes (planner.NEST_TARGET; 0: off; default: the "
        "frozen one)",
    )
    ap.add_argument(
        "--per-sample",
        default=None,
        choices=("max", "sum"),
        help="plan on each calibration sample's costs apart, each gap their largest or their sum (planner.PER_SAMPLE; "
        "default: the frozen one)",
    )
    ap.add_argument(
        "--fresh-seed", type=int, default=None, help=f"the seed of --split fresh (default {FRESH_SEED}, already used)"
    )
    ap.add_argument(
        "--wired",
        type=float,
        default=None,
        help="the plan column runs what a cache node does after a Calibrate at this target (its calibration mapping "
        "fills what the method's settings leave at the node's defaults; the Calibrate node's default: 2)",
    )
    ap.add_argument("--seeds", default="", help="only these seeds, comma-separated (default: every held-out one)")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--split", default="held-out", choices=("dev", "held-out", "all", "fresh"))
    ap.add_argument("--transfer", action="store_true", help="also run each plan on its calibration samples")
    ap.add_argument("--plot", default="", help="write the PSNR-against-computes PNG here")
    ap.add_argument(
        "--bench",
        default="",
        help="the saved full benchmark(s) the grid column reads, comma-separated (default docs/bench.txt; model D: "
        "docs/bench_d.txt)",
    )
    ap.add_argument("--checks", default="", help="run nothing: the targets of issue 18 on this saved run, per split")
    ap.add_argument("--compare", default="", help="run nothing: summarise this saved run (plan minus even per method)")
    ap.add_argument("--against", default="", help="with --compare: another saved run, plan minus its plan")
    ap.add_argument(
        "--rename", default="", help='with --compare: "label=other label", comma-separated: compare as the other'
    )
    args = ap.parse_args(argv)
    if args.checks:
        rows = read_rows(args.checks)
        for split in ("dev", "held-out", "fresh"):
            if any(r["split"] == split for r in rows):
                print("\n".join(target_checks([r for r in rows if r["split"] == split], split)) + "\n")
        return
    if args.compare:
        print("\n".join(compare(args.compare, args.against, args.rename)))
        return
    torch.set_num_threads(args.threads)
    CALIB_SAMPLES = args.calib_samples
    WIRED = args.wired
    if args.fresh_seed is not None:
        FRESH_SEED = args.fresh_seed
    if args.s_flow is not None:
        planner.S_FLOW = args.s_flow if args.s_flow > 0 else None
    if args.seg_power is not None:
        planner.SEG_POWER = args.seg_power
    if args.tail is not None:
        planner.TAIL = args.tail if args.tail >= 0 else None
    if args.closed_loop is not None:
        planner.CLOSED_LOOP = args.closed_loop
    if args.closed_loop2 is not None:
        planner.CLOSED_LOOP2 = args.closed_loop2
    if args.contract is not None:
        planner.CONTRACT = args.contract
    if args.margin is not None:
        planner.MARGIN = args.margin
    if args.margin2 is not None:
        planner.MARGIN2 = args.margin2
    if args.even_form is not None:
        CAL.EVEN_PLAN_FORM = bool(args.even_form)
    if args.nest is not None:
        planner.NEST_TARGET = args.nest if args.nest > 0 else None
    if args.per_sample is not None:
        planner.PER_SAMPLE = args.per_sample
    targets = tuple(float(t) for t in args.targets.split(","))
    methods = tuple(m for m in CATALOGUE if m[0] in args.methods.split(","))
    bench = {}
    for path in [Path(p) for p in args.bench.split(",")] if args.bench else [BENCH_TXT]:
        bench.update(read_bench(path))
    t0 = time.perf_counter()
    print(
        f"default shape: power {shape.POWER:g}, late {shape.LATE:g} (frozen); PSNR against full compute, "
        f"{args.samples} samples; calibration: {CALIB_SAMPLES} samples of seed {CALIB_SEED}; grid: the best fixed "
        "grid of "
        + (args.bench or "docs/bench.txt")
        + " at <= K computes"
        + (
            "; flow weights: step sizes in t"
            if planner.S_FLOW is None
            else f"; flow weights: flow_keep_steps, s = {planner.S_FLOW:g}"
        )
        + ("" if planner.SEG_POWER == 1.0 else f"; segment power {planner.SEG_POWER:g}")
        + ("" if planner.TAIL is None else f"; at most {planner.TAIL} steps predicted after the last compute")
        + ("" if planner.NEST_TARGET is None else f"; plans nested above {planner.NEST_TARGET:g}x")
        + ("" if planner.CLOSED_LOOP == 0 else f"; closed-loop term {planner.CLOSED_LOOP:g}")
        + ("" if not planner.CLOSED_LOOP2 else f"; order 2: closed-loop term {planner.CLOSED_LOOP2:g}")
        + ("" if planner.PER_SAMPLE is None else f"; per sample: {planner.PER_SAMPLE}")
        + ("" if not planner.CONTRACT else f"; contraction {planner.CONTRACT:g}")
        + ("" if planner.MARGIN == 1.0 else f"; margin over even spacing {planner.MARGIN:g}")
        + ("" if planner.MARGIN2 == 1.0 else f"; order 2: margin {planner.MARGIN2:g}")
        + ("" if not CAL.EVEN_PLAN_FORM else "; even-spaced plans: the configured form")
        + ("" if WIRED is None else f"; plan: as a node runs it after a Calibrate at {WIRED:g}x")
    )
    print(head(), flush=True)
    rows: List[dict] = []
    seeds = {int(s) for s in args.seeds.split(",")} if args.seeds else None
    models = args.models.split(",")
    splits = ("dev", "held-out") if args.split == "all" else (args.split,)
    for split, name, seed in [c for sp in splits for c in _cases(sp, models)]:
        if seeds is not None and seed not in seeds:
            continue
        for steps in (int(s) for s in args.steps.split(",")):
            rows += run_case(
                name,
                seed,
                steps,
                args.samples,
                targets,
                methods,
                bench.get((split, name, seed, steps), []),
                lambda r: print(line(r) + ("" if r["split"] == "held-out" else f"  ({r['split']})"), flush=True),
                split,
                args.transfer,
            )
    for split in splits:
        mine = [r for r in rows if r["split"] == split]
        if not mine:
            continue
        print()
        for line_ in summary(mine, f"all {split} cells"):
            print(line_)
        for name in sorted({r["model"] for r in mine}):
            for line_ in summary([r for r in mine if r["model"] == name], f"{split} model {name.upper()}"):
                print(line_)
        for label in sorted({r["method"] for r in mine}):
            for line_ in summary([r for r in mine if r["method"] == label], f"{split} {label}"):
                print(line_)
        print()
        for line_ in target_checks(mine, split):
            print(line_)
    if args.plot:
        plot(rows, bench, args.plot)
        print(f"wrote {args.plot}")
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
