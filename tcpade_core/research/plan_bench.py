"""Where the computes go: each method at a speed target as the nodes place it today (evenly spaced, the method's
signal may move a compute earlier) against the same method on a schedule planned from one calibration run
(tcpade_core.calibrate.calibrated_run), at exactly the same number of computes.

Protocol: the plan is calibrated on one full-compute run of CALIB_SEED (4 samples, classes 0-3) and evaluated on
other seeds (the development seed of the benchmark, and the held-out seed), every class. PSNR against full compute.

    python -m tcpade_core.research.plan_bench            # models A, B, C; 10 / 20 / 30 steps; both seeds
    python -m tcpade_core.research.plan_bench --models a,b,c --steps 20,30 --targets 2,2.5,3 \
        --methods "TaylorSeer O=1,TC-Padé"               # the part docs/plan_bench.txt holds
    python -m tcpade_core.research.plan_bench --quick    # model B at 20 steps, 2x and 3x, TaylorSeer O=1 and
                                                         # TC-Padé, the development seed
"""

from __future__ import annotations

import argparse
import time
from typing import List

import numpy as np
import torch

from .. import metrics, planner
from ..calibrate import Trajectory, calibrated_run
from ..config import make_config
from ..engine import CacheRun, Stack
from .bench import HELD_OUT_SEED
from .sampling import ddim_timesteps, ddpm_alphas_cumprod
from .common import CALIB_SEED, EVAL_SEED, labels as _labels, sample_timed as _sample

TARGETS = (1.25, 1.5, 2.0, 2.5, 3.0)
METHODS = (
    ("TaylorSeer O=1", "taylorseer", dict(order=1)),
    ("TaylorSeer O=2", "taylorseer", dict(order=2)),
    ("TC-Padé", "tcpade", {}),
    ("TraCache", "tracache", {}),
)


class _Recorder(Stack):
    """Computes every call and records the cond stream's stack input and output per step (a Trajectory)."""

    def __init__(self):
        self.traj, self._t, self._seen = Trajectory(), 0.0, set()

    def begin_step(self, index, num_steps, t=0.0, active=True):
        self._t, self._seen = float(t), set()

    def observe(self, stream, h, y, modulated_fn):
        if stream in self._seen or stream not in ("cond", "all"):
            return
        self._seen.add(stream)
        self.traj.t.append(self._t)
        self.traj.inputs.append(h.detach().float().cpu())
        self.traj.outputs.append(y.detach().float().cpu())
        self.traj.modulated.append(None)


def ddim_sigmas(steps: int) -> List[float]:
    """The DDIM run's noise levels, sigma = sqrt((1 - alphā) / alphā) per step, then 0 (the sample)."""
    acp = ddpm_alphas_cumprod()
    return [float(((1 - acp[t]) / acp[t]) ** 0.5) for t in ddim_timesteps(steps)] + [0.0]


def run_case(
    name: str, steps: int, seeds, n_samples: int, targets, methods, progress, weights: str = "sampler"
) -> List[tuple]:
    from ..models.zoo import load_model

    model = load_model(name)
    rec = _Recorder()
    _sample(model, name, _labels(4), steps, rec, seed=CALIB_SEED)
    traj = rec.traj
    if getattr(model, "kind", "") == "ddpm_eps" and weights == "sampler":
        traj.sigmas, traj.prediction = ddim_sigmas(steps), "eps"
    rows = []
    for seed in seeds:
        labels = _labels(n_samples)
        ref, _ = _sample(model, name, labels, steps, None, seed=seed)
        for target in targets:
            for label, method, params in methods:
                cells = []
                for how in ("target", "planned"):
                    run = (
                        CacheRun(make_config(method, **params), target_speedup=target)
                        if how == "target"
                        else calibrated_run(method, traj, target, **params)
                    )
                    img, _ = _sample(model, name, labels, steps, run, seed=seed)
                    cells.append((run.report.computed, metrics.psnr(img, ref), run.report.strip()))
                rows.append((name, seed, steps, target, label, *cells))
                progress(rows[-1])
    return rows


def row_line(row) -> str:
    name, seed, steps, target, label, (c0, p0, _), (c1, p1, s1) = row
    return (
        f"{name:5} {seed:5d} {steps:5d} {target:5g}x {label:15} | {c0:4d} {p0:7.2f} | {c1:4d} {p1:7.2f} | "
        f"{p1 - p0:+6.2f}  {s1}"
    )


def table(rows) -> str:
    lines = [
        "PSNR against full compute: a speed target as placed today vs the plan from one calibration run "
        "(same computes)",
        f"{'model':5} {'seed':>5} {'steps':>5} {'target':>6} {'method':15} | {'comp':>4} {'today':>7} | "
        f"{'comp':>4} {'planned':>7} | {'gain':>6}  planned schedule",
    ]
    lines += [row_line(r) for r in rows]
    gains = [r[6][1] - r[5][1] for r in rows]
    if gains:
        lines.append(
            f"planned minus today: mean {sum(gains) / len(gains):+.2f} dB, min {min(gains):+.2f}, "
            f"max {max(gains):+.2f} over {len(gains)} cells"
        )
    return "\n".join(lines)


def timing(repeats: int = 200) -> None:
    """What a plan costs (random outputs of the stored size, 512 numbers per step): planning one budget, storing
    every budget's plan at Calibrate (:func:`tcpade_core.calibrate.stored_plans`), and reading one in a run."""
    import time

    from ..calibrate import planned_config, stored_plans
    from ..config import make_config

    rng = np.random.default_rng(0)
    print(
        "steps | plan one budget: order 1 | order 2 (TaylorSeer O>=2) | store every budget, all orders (Calibrate) "
        "| read a stored plan (each run)"
    )
    for n in (20, 30, 50):
        Y, w = rng.standard_normal((n, planner.PROJECTION)).tolist(), [1.0 / n] * n
        cfg = make_config("taylorseer", target_speedup=2.0)
        t0 = time.perf_counter()
        planned_config(cfg, Y, w, 2.0)
        t1 = time.perf_counter()
        planned_config(cfg.with_(order=2), Y, w, 2.0)
        t1b = time.perf_counter()
        table = stored_plans(Y, w)
        t2 = time.perf_counter()
        for _ in range(repeats):
            planned_config(cfg, Y, w, 2.0, table=table)
        t3 = time.perf_counter()
        print(
            f"{n:5d} | {1e3 * (t1 - t0):21.1f} ms | {1e3 * (t1b - t1):22.1f} ms | {t2 - t1b:41.2f} s "
            f"| {1e3 * (t3 - t2) / repeats:26.3f} ms"
        )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--models", default="a,b,c")
    ap.add_argument("--steps", default="10,20,30")
    ap.add_argument("--targets", default=",".join(f"{t:g}" for t in TARGETS))
    ap.add_argument("--methods", default=",".join(m[0] for m in METHODS), help="labels, comma-separated")
    ap.add_argument(
        "--weights",
        default="sampler",
        choices=("sampler", "time"),
        help="the planner's step weights: the sampler's (eps models: asinh(sigma/s) steps) or step sizes in t",
    )
    ap.add_argument("--s-data", type=float, default=None, help="the data scale s of the eps weights (default: frozen)")
    ap.add_argument("--timing", action="store_true", help="only time planning, storing and reading a plan, and exit")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    if args.timing:
        return timing()
    models, step_list = args.models.split(","), [int(s) for s in args.steps.split(",")]
    targets = tuple(float(t) for t in args.targets.split(","))
    methods = tuple(m for m in METHODS if m[0] in args.methods.split(","))
    seeds = (EVAL_SEED, HELD_OUT_SEED)
    if args.quick:
        models, step_list, seeds = ["b"], [20], (EVAL_SEED,)
        targets, methods = (2.0, 3.0), tuple(m for m in methods if m[0] in ("TaylorSeer O=1", "TC-Padé"))
    if args.s_data is not None:
        planner.S_DATA = args.s_data
    t0 = time.perf_counter()
    rows = []
    print(table([]), flush=True)
    for name in models:
        for steps in step_list:
            rows += run_case(
                name,
                steps,
                seeds,
                args.samples,
                targets,
                methods,
                lambda r: print(row_line(r), flush=True),
                args.weights,
            )
    print(table(rows))
    dev = [r for r in rows if r[0] in ("a", "b") and r[1] == EVAL_SEED]
    held = [r for r in rows if r not in dev]
    for what, part in (
        ("development (A, B; seed %d)" % EVAL_SEED, dev),
        ("held out (C, and seed %d)" % HELD_OUT_SEED, held),
    ):
        if part:
            g = [r[6][1] - r[5][1] for r in part]
            print(
                f"{what}: planned minus today mean {sum(g) / len(g):+.2f} dB, min {min(g):+.2f}, max {max(g):+.2f}, "
                f"{sum(x > 0 for x in g)} of {len(g)} cells better"
            )
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
