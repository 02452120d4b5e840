"""The default shape of a speed target (:mod:`tcpade_core.shape`, frozen) on held-out runs.

Per cell (model, seed, steps, target, method), PSNR against full compute of:

* **even**: the speed target as placed today (``placement="even"``);
* **shape**: the same target on the default shape (``placement="shape"``);
* **plan**: the schedule planned from one full-compute run of another seed (:data:`CALIB_SEED`, 4 samples,
  classes 0-3; :func:`tcpade_core.calibrate.calibrated_run`);
* **grid**: the best fixed grid of the full baseline sweep (Reuse, TaylorSeer, TeaCache, TraCache) at <= the same
  computes, read from ``docs/bench.txt`` (16 samples, the same seeds: run with ``--samples 16`` to compare).

Held out: models A and B on seed 4321, model C on seeds 1234 and 4321 (``tcpade_core.research.fbcache.cases``).

    python -m tcpade_core.research.shape_bench                       # 10 / 20 / 30 steps, 1.25-3x, both methods
    python -m tcpade_core.research.shape_bench --steps 20 --models b,c --seeds 4321   # docs/shape_bench.txt
"""

from __future__ import annotations

import argparse
import time
from typing import List

import numpy as np
import torch

from .. import metrics, shape
from ..calibrate import calibrated_run
from ..config import budget, make_config
from ..engine import CacheRun
from .common import labels as _labels, sample_timed as _sample
from .fbcache import best_baseline, cases, read_bench
from .shape_fit import METHODS, TARGETS, record


def run_case(name: str, seed: int, steps: int, n_samples: int, targets, methods, bench_rows, progress) -> List[dict]:
    from ..models.zoo import load_model

    model = load_model(name)
    traj = record(name, steps)  # the calibration seed, not this one
    lab = _labels(n_samples)
    ref = _sample(model, name, lab, steps, None, seed=seed)[0]
    rows = []
    for target in targets:
        for label, method, params in methods:
            row = dict(model=name, seed=seed, steps=steps, target=target, method=label)
            for how in ("even", "shape", "plan"):
                if how == "plan":
                    run = calibrated_run(method, traj, target, **params)
                else:
                    run = CacheRun(make_config(method, target_speedup=target, placement=how, **params))
                img = _sample(model, name, lab, steps, run, seed=seed)[0]
                row[how] = (run.report.computed, metrics.psnr(img, ref), run.report.strip())
            g = best_baseline(bench_rows, budget(steps, target)) if bench_rows else None
            row["grid"] = (g[1], g[2], g[0]) if g else None
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
    for other in ("even", "plan", "grid"):
        d = [r["shape"][1] - r[other][1] for r in rows if r[other] is not None]
        if d:
            out.append(
                f"{what}: shape minus {other:5}: mean {np.mean(d):+6.2f} dB, min {min(d):+6.2f}, max {max(d):+6.2f}; "
                f"better in {sum(x > 0.005 for x in d)}, worse in {sum(x < -0.005 for x in d)} of {len(d)} cells"
            )
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="a,b,c")
    ap.add_argument("--steps", default="10,20,30")
    ap.add_argument("--targets", default=",".join(f"{t:g}" for t in TARGETS))
    ap.add_argument("--methods", default=",".join(m[0] for m in METHODS), help="labels, comma-separated")
    ap.add_argument("--seeds", default="", help="only these seeds, comma-separated (default: every held-out one)")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    targets = tuple(float(t) for t in args.targets.split(","))
    methods = tuple(m for m in METHODS if m[0] in args.methods.split(","))
    bench = read_bench()
    t0 = time.perf_counter()
    print(
        f"default shape: power {shape.POWER:g}, late {shape.LATE:g} (frozen); PSNR against full compute, "
        f"{args.samples} samples; grid: the best fixed grid of docs/bench.txt at <= K computes"
    )
    print(head(), flush=True)
    rows: List[dict] = []
    seeds = {int(s) for s in args.seeds.split(",")} if args.seeds else None
    for split, name, seed in cases("held-out", args.models.split(",")):
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
                lambda r: print(line(r), flush=True),
            )
    print()
    for line_ in summary(rows, "all held-out cells"):
        print(line_)
    for name in sorted({r["model"] for r in rows}):
        for line_ in summary([r for r in rows if r["model"] == name], f"model {name.upper()}"):
            print(line_)
    for label in sorted({r["method"] for r in rows}):
        for line_ in summary([r for r in rows if r["method"] == label], label):
            print(line_)
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
