"""The development sweep that chose the default TC-Padé reading (models A and B, seed 1234 only).

    python -m tcpade_core.research.devsweep [--samples 16] [--threads 1]
    python -m tcpade_core.research.devsweep --magcache     # MagCache's settings and ratio profiles instead
    python -m tcpade_core.research.devsweep --fbcache      # First Block Cache's sweep (tcpade_core.research.fbcache)
    python -m tcpade_core.research.devsweep --method spectrum   # Spectrum's readings and settings instead

Runs the baseline sweep of the full benchmark and the candidate readings below at 10, 20 and 30 steps on the
development runs, and prints each candidate's Pareto margin per cell (``model+steps: computed/PSNR/margin``;
margin = PSNR minus the best baseline with the same or fewer computed steps), its worst and its mean margin.
``--magcache``: MagCache's threshold x K x retention with three ratio profiles (the model's own, measured on the
calibration seed; the published FLUX profile; a flat profile, all 1.0, where only K and the retention decide),
against the same baseline front (MagCache itself left out of it). ``--method spectrum``: Spectrum's readings and
settings instead (docs/dev_tuning.md "Spectrum"), against the front without Spectrum's own rows.
It refuses model C and the held-out seed: the held-out protocol forbids tuning on them. The history of how
the candidates came about, with the earlier rounds' numbers, is in ``docs/dev_tuning.md``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from .. import metrics
from ..config import MagCacheConfig, SpectrumConfig, TCPadeConfig
from ..engine import CacheRun
from .bench import (
    EVAL_SEED,
    MAG_KS,
    MAG_RETENTIONS,
    MAG_THRESHOLDS,
    baseline_sweep,
    calibrate_magcache,
    calibrate_teacache,
    resolve,
)
from .common import DEV_MODELS, labels as _labels, sample_timed as _sample


def candidates():
    d = TCPadeConfig()
    return [
        ("default θ1.0", d),
        ("default θ0.7", replace(d, theta=0.7)),
        ("default θ1.3", replace(d, theta=1.3)),
        ("free rational (c any sign)", replace(d, numerator="rational")),
        ("λ 0.001 (no σ damping)", replace(d, lam=1e-3)),
        ("λ 5", replace(d, lam=5.0)),
        ("N 3", replace(d, interval=3)),
        ("warm-up 2", replace(d, warmup_steps=2)),
        ("linear in the step (2:-1, spacing)", replace(d, numerator="recent")),
        ("residual on the current input", replace(d, target="residual", reconstruct="current_input")),
        ("residual on the previous input", replace(d, target="residual", reconstruct="previous_input")),
        ("self-error gate tol 0.05", replace(d, gate="error", error_tolerance=0.05)),
        (
            "previous default (0.1.0)",
            TCPadeConfig(
                theta=1.0,
                lam=10.0,
                numerator="recent",
                target="residual",
                reconstruct="previous_input",
                spacing="uniform",
                schedule="interval",
                early_boundary=0.7,
                late_boundary=0.2,
            ),
        ),
    ]


def magcache_candidates():
    """(label, config or a function of the model's measured ratios) of every MagCache candidate."""
    out = []
    for d in MAG_THRESHOLDS:
        for k in MAG_KS:
            for r in MAG_RETENTIONS:
                out.append(
                    (
                        f"MagCache δ{d} K{k} r{r} cal",
                        lambda ratios, d=d, k=k, r=r: MagCacheConfig(
                            threshold=d, K=k, retention_ratio=r, ratios=ratios, always_compute=()
                        ),
                    )
                )
                out.append((f"MagCache δ{d} K{k} r{r} FLUX", MagCacheConfig(threshold=d, K=k, retention_ratio=r)))
    for k in MAG_KS:  # flat: the error never grows, so K and the retention alone decide (δ > 0)
        for r in MAG_RETENTIONS:
            out.append(
                (f"MagCache K{k} r{r} flat", MagCacheConfig(K=k, retention_ratio=r, ratios=(1.0,), always_compute=()))
            )
    return out


def spectrum_candidates():
    """Spectrum: its code's reading (step index through [0, 50], the stack output) against the other time maps and
    the residual, on its own schedule (warm-up 5 as its configs, 2 as the issue's list) and at speed targets."""
    off = SpectrumConfig(mode="official")
    w2 = replace(off, warmup_steps=2)
    out = [
        ("official w1.0 wu5", off),
        ("official w0.5 wu5", replace(off, w=0.5)),
        ("official w1.0 wu2", w2),
        ("official w0.5 wu2", replace(w2, w=0.5)),
        ("official w0.5 wu2 α1.5", replace(w2, w=0.5, alpha=1.5)),
        ("official w0.5 wu2 α3.0", replace(w2, w=0.5, alpha=3.0)),
        ("official w0.5 wu2 M3", replace(w2, w=0.5, degree=3)),
        ("official w0.75 wu2", replace(w2, w=0.75)),
        ("official w0.5 wu2 λ0.01", replace(w2, w=0.5, lam=0.01)),
    ]
    for tm in ("steps", "time"):
        out += [(f"{tm} w{w} wu2", replace(w2, w=w, time_map=tm)) for w in (1.0, 0.5)]
    out += [(f"residual w{w} wu2", replace(w2, w=w, target="residual")) for w in (1.0, 0.5)]
    for t in (2.0, 2.8):
        out += [(f"official w{w} target {t}", replace(off, w=w, target_speedup=t)) for w in (1.0, 0.5)]
        out += [
            (f"{tm} w0.5 target {t}", replace(off, w=0.5, time_map=tm, target_speedup=t)) for tm in ("steps", "time")
        ]
        out.append((f"residual w0.5 target {t}", replace(off, w=0.5, target="residual", target_speedup=t)))
    return out


def main(argv=None):
    from ..models.zoo import load_model

    ap = argparse.ArgumentParser(
        prog="python -m tcpade_core.research.devsweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--magcache", action="store_true", help="MagCache's candidates instead of TC-Padé's")
    ap.add_argument("--fbcache", action="store_true", help="First Block Cache's sweep on the development runs")
    ap.add_argument("--method", choices=("tcpade", "spectrum"), default="tcpade")
    args, rest = ap.parse_known_args(argv)
    if args.fbcache:  # the same development runs; the baseline front read from the full benchmark's output
        from . import fbcache

        return fbcache.main(["--split", "dev", "--samples", str(args.samples), *rest])
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    torch.set_num_threads(args.threads)
    labels = _labels(args.samples)
    fronts, refs, models, ratios = {}, {}, {m: load_model(m) for m in DEV_MODELS}, {}
    for m, model in models.items():
        for steps in (10, 20, 30):
            ref = refs[(m, steps)] = _sample(model, m, labels, steps, None, seed=EVAL_SEED)[0]
            coeffs = calibrate_teacache(model, m, labels, steps)
            if args.magcache:
                ratios[(m, steps)] = calibrate_magcache(model, m, labels, steps)
            pts = []
            for label, cfg in baseline_sweep(quick=False, magcache=False, first_block=False):
                if args.method == "spectrum" and label.startswith("Spectrum"):
                    continue  # Spectrum's candidates are measured against the rest of the pack
                run = CacheRun(resolve(cfg, coeffs, None))
                img = _sample(model, m, labels, steps, run, seed=EVAL_SEED)[0]
                pts.append((run.report.computed, metrics.psnr(img, ref)))
            fronts[(m, steps)] = pts
    if args.magcache:
        todo = magcache_candidates()
    else:
        todo = spectrum_candidates() if args.method == "spectrum" else candidates()
    for label, cand in todo:
        cells, margins = [], []
        for m, model in models.items():
            for steps in (10, 20, 30):
                cfg = cand(ratios[(m, steps)]) if callable(cand) else cand
                run = CacheRun(cfg)
                img = _sample(model, m, labels, steps, run, seed=EVAL_SEED)[0]
                c, p = run.report.computed, metrics.psnr(img, refs[(m, steps)])
                best = max((q for k, q in fronts[(m, steps)] if k <= c), default=float("-inf"))
                margins.append(p - best)
                cells.append(f"{m}{steps}:{c:2d}/{p:5.2f}/{p - best:+6.2f}")
        print(
            f"{label:36} {' '.join(cells)}  min {min(margins):+.2f} mean {sum(margins) / len(margins):+.2f}", flush=True
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
