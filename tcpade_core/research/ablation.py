"""Measurements behind README "Notes on the equations": each ambiguous point of the TC-Padé paper,
its literal reading against the alternatives, on the shipped models at 20 steps.

    python -m tcpade_core.research.ablation [--models a,b] [--samples 20]

Each variant changes one switch of the default reading (``TCPadeConfig``); PSNR/SSIM are against
full compute on the same seeds; "pred err" is the mean relative L2 error of the predicted block-stack
output on skipped steps (the truth is computed alongside, in a separate pass that does not affect the
images).
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch

from .. import metrics
from ..config import TCPadeConfig
from ..engine import CacheRun
from .common import CFG_SCALE, labels as _labels, sample_timed as _sample


def variants():
    d = TCPadeConfig()
    out = []
    for scale in ("reciprocal", "cosine", "literal"):
        for th in (1.3, 1.0, 0.7):
            out.append(("TSI scale (Eq. 1)", f"{scale} θ={th}", replace(d, tsi_scale=scale, theta=th)))
    for th in (1.0, 0.7):
        out.append(("Eq. 5 numerator", f"recent θ={th}", replace(d, theta=th)))
        out.append(("Eq. 5 numerator", f"literal (R_t+3, R_t+2) θ={th}", replace(d, numerator="literal", theta=th)))
    for den in ("none", "normalized", "elementwise"):
        out.append(("Eq. 5 denominator", f"{den} θ=0.7", replace(d, denominator=den, theta=0.7)))
    for rec in ("current_input", "previous_input"):
        out.append(("Eq. 6 base", f"{rec} θ=0.7", replace(d, reconstruct=rec, theta=0.7)))
    for hist in ("computed", "all"):
        out.append(("history", f"{hist} θ=0.7", replace(d, history=hist, theta=0.7)))
    for sp in ("uniform", "steps"):
        out.append(("spacing", f"{sp} θ=0.7", replace(d, spacing=sp, theta=0.7)))
    for n in (3, 4, 5):
        out.append(("interval N", f"N={n} θ=0.7", replace(d, interval=n, theta=0.7)))
    for lam in (5.0, 10.0, 15.0):
        out.append(("λ (Eq. 7)", f"λ={lam:g} θ=0.7", replace(d, lam=lam, theta=0.7)))
    for a in (0.5, 0.75, 1.0):
        out.append(("α1 (Eq. 9 early)", f"α1={a} θ=0.7", replace(d, alpha1=a, theta=0.7)))
    for b in (0.0, 0.1, 0.3, 0.5):
        out.append(("β (Eq. 9 late)", f"β={b} θ=0.7", replace(d, beta=b, theta=0.7)))
    for th in (1.0, 0.7, 0.3):
        out.append(("whole reading", f"paper_literal θ={th}", TCPadeConfig(mode="paper_literal", theta=th)))
        out.append(("whole reading", f"default θ={th}", TCPadeConfig(theta=th)))
    return out


def main(argv=None):
    import argparse

    from tqdm import tqdm

    from ..models.zoo import load_model
    ap = argparse.ArgumentParser(prog="python -m tcpade_core.research.ablation", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="a,b")
    ap.add_argument("--samples", type=int, default=None, help="samples per model (default 20)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    n = args.samples or 20
    steps = 20
    vs = variants()
    bar = tqdm(total=len(vs) * len(models) * 2, desc="ablation", unit="run", dynamic_ncols=True)
    for m in models:
        model = load_model(m)
        labels = _labels(n)
        ref, _ = _sample(model, m, labels, steps, None)
        print(f"\n== model {m}, {steps} steps, {n} samples, CFG {CFG_SCALE[m]}")
        print(f"{'question':20} {'variant':30} {'computed':>8} {'NFE x':>6} {'PSNR':>6} {'SSIM':>6} {'pred err':>8}  schedule")
        last = None
        for group, label, cfg in vs:
            run = CacheRun(cfg)
            img, _ = _sample(model, m, labels, steps, run)
            bar.update(1)
            diag = CacheRun(cfg, measure_error=True)
            _sample(model, m, labels, steps, diag)
            bar.update(1)
            errs = [r.error for r in diag.report.steps if r.error is not None]
            err = sum(errs) / len(errs) if errs else float("nan")
            rep = run.report
            psnr = metrics.psnr(img, ref)
            ps = "  full" if math.isinf(psnr) else f"{psnr:6.2f}"
            g = group if group != last else ""
            last = group
            bar.clear()
            print(f"{g:20} {label:30} {rep.computed:5d}/{steps:<2d} {rep.speedup:6.2f} {ps} "
                  f"{metrics.ssim(img, ref):6.3f} {err:8.4f}  {rep.strip()}")
    bar.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
