"""MagCache at matched compute: the settings frozen from the development sweep, each against the pack's methods
asked for exactly the same number of computed steps.

    python -m tcpade_core.research.magcache_heldout                 # held-out: model C, seeds 4321 and 1234
    python -m tcpade_core.research.magcache_heldout --split held-out-all  # also A and B with seed 4321
    python -m tcpade_core.research.magcache_heldout --split dev     # the same table on the development runs

For every case (model, seed) and step count (``--steps``, default 10 / 20 / 30): MagCache's ratios are measured on the model's own
full-compute run on the calibration seed (as TeaCache's polynomial is fitted); each frozen MagCache setting runs
and computes c steps; then TC-Padé, TaylorSeer, TeaCache (δ 0.4, calibrated polynomial) and TraCache at their
defaults run with the speed target steps / c, which computes exactly c steps (the budget gate). Printed: PSNR
against full compute on the same seed, the best other method and MagCache's margin to it.

The settings were chosen on the development runs only (``python -m tcpade_core.research.devsweep --magcache``,
docs/dev_tuning.md "MagCache") and frozen in :data:`FROZEN` before this ran on the held-out runs.
"""

from __future__ import annotations

import argparse
from typing import List, Tuple

import torch

from .. import magcache_tables as MT
from .. import metrics
from ..config import MagCacheConfig, TaylorSeerConfig, TCPadeConfig, TeaCacheConfig, TraCacheConfig
from ..engine import CacheRun
from .bench import HELD_OUT_SEED, calibrate_magcache, calibrate_teacache
from .common import EVAL_SEED, labels as _labels, sample_timed as _sample

# (label, profile, δ, K, retention): profile "cal" is the model's own measured ratios, "flat" the pack's
# uncalibrated default for a model without a table. Frozen from the development sweep (docs/dev_tuning.md
# "MagCache"): its node's defaults calibrated and uncalibrated, and the setting with the best mean margin there.
FROZEN: Tuple[Tuple[str, str, float, int, float], ...] = (
    ("node defaults, calibrated", "cal", 0.06, 2, 0.2),
    ("node defaults, uncalibrated", "flat", 0.06, 2, 0.2),
    ("dev best: δ0.06 K2 r0.1, cal", "cal", 0.06, 2, 0.1),
)

OTHERS = (
    ("TC-Padé", lambda coeffs: TCPadeConfig()),
    ("TaylorSeer", lambda coeffs: TaylorSeerConfig()),
    ("TeaCache", lambda coeffs: TeaCacheConfig(threshold=0.4, coefficients=coeffs)),
    ("TraCache", lambda coeffs: TraCacheConfig()),
)
SPLITS = {
    "held-out": (("c", HELD_OUT_SEED), ("c", EVAL_SEED)),
    "held-out-all": (("c", HELD_OUT_SEED), ("c", EVAL_SEED), ("a", HELD_OUT_SEED), ("b", HELD_OUT_SEED)),
    "dev": (("a", EVAL_SEED), ("b", EVAL_SEED)),
}


def magcache_config(profile: str, d: float, k: int, r: float, ratios) -> MagCacheConfig:
    if profile == "cal":
        return MagCacheConfig(threshold=d, K=k, retention_ratio=r, ratios=ratios, always_compute=())
    t = MT.table(profile)
    return MagCacheConfig(threshold=d, K=k, retention_ratio=r, ratios=t.profile(), always_compute=t.always_compute)


def main(argv=None) -> int:
    from ..models.zoo import load_model

    ap = argparse.ArgumentParser(
        prog="python -m tcpade_core.research.magcache_heldout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--split", choices=tuple(SPLITS), default="held-out")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--steps", default="10,20,30", help="comma list of step counts")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    labels = _labels(args.samples)
    names = [n for n, _ in OTHERS]
    print(
        f"{'model/seed':10} {'steps':>5} {'MagCache setting':28} {'comp':>4} {'PSNR':>6} | "
        + " ".join(f"{n:>10}" for n in names)
        + f" | {'best other':>10} {'margin':>7}"
    )
    margins: List[Tuple[str, float]] = []
    for name, seed in SPLITS[args.split]:
        model = load_model(name)
        for steps in [int(x) for x in args.steps.split(",")]:
            ref = _sample(model, name, labels, steps, None, seed=seed)[0]
            coeffs = calibrate_teacache(model, name, labels, steps)
            ratios = calibrate_magcache(model, name, labels, steps)
            for label, profile, d, k, r in FROZEN:
                run = CacheRun(magcache_config(profile, d, k, r, ratios))
                img = _sample(model, name, labels, steps, run, seed=seed)[0]
                c, p = run.report.computed, metrics.psnr(img, ref)
                others = {}
                for oname, make in OTHERS:
                    orun = CacheRun(make(coeffs), target_speedup=steps / c)
                    oimg = _sample(model, name, labels, steps, orun, seed=seed)[0]
                    if orun.report.computed != c:  # the budget could not be met (a warm-up longer than it)
                        continue
                    others[oname] = metrics.psnr(oimg, ref)
                best = max(others, key=others.get)
                margin = p - others[best]
                if c < steps:
                    margins.append((label, margin))
                print(
                    f"{name + '/' + str(seed):10} {steps:5d} {label:28} {c:4d} {p:6.2f} | "
                    + " ".join(f"{others[n]:10.2f}" if n in others else f"{'-':>10}" for n in names)
                    + f" | {best:>10} {margin:+7.2f}",
                    flush=True,
                )
    print(f"\nmargin = MagCache's PSNR minus the best other method at the same computed steps ({args.split})")
    for label, *_ in FROZEN:
        ms = [m for lab, m in margins if lab == label]
        if ms:
            print(
                f"  {label:28} mean {sum(ms) / len(ms):+6.2f} dB, min {min(ms):+6.2f}, max {max(ms):+6.2f}, "
                f"best in {sum(m >= 0 for m in ms)}/{len(ms)} cells"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
