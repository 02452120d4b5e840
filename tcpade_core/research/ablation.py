"""Measurements behind README "Notes on the equations": the paper, the authors' code and this pack's
default, point by point, on the development runs (models A and B, seed 1234).

    python -m tcpade_core.research.ablation [--models a,b] [--steps 20] [--samples 16]

Part 1 changes one switch of the default reading at a time (``TCPadeConfig``). Part 2 swaps whole
components with :class:`ComposedConfig` (any gate drives any predictor): the paper's or the authors' gate
with the default predictor, and their predictors with the default gate. Part 3 is the summary table
"paper / authors' code / this pack's default" with the measured effect of each difference (PSNR and
computed steps relative to the default). PSNR/SSIM are against full compute on the same seeds; "pred err"
is the mean relative L2 error of the predicted block-stack output on skipped steps (the truth is computed
alongside, in a separate pass that does not affect the images).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from .. import metrics
from ..config import ComposedConfig, TCPadeConfig, TCPadeOfficialConfig
from ..engine import CacheRun
from .common import CFG_SCALE, EVAL_SEED, labels as _labels, refuse_held_out, sample_timed as _sample


def switch_variants():
    """Part 1: one switch of the default at a time (the default itself first)."""
    d = TCPadeConfig()
    out = [("default", "default", d)]
    for th in (1.3, 0.7):
        out.append(("θ", f"θ={th}", replace(d, theta=th)))
    for t, rec in (("residual", "previous_input"), ("residual", "current_input"), ("output", d.reconstruct)):
        out.append(
            (
                "predicted value / base (Eq. 6)",
                f"{t}" + (f" + {rec}" if t == "residual" else ""),
                replace(d, target=t, reconstruct=rec),
            )
        )
    for num, den in (("literal", "elementwise"), ("recent", "none"), ("rational", "none"), ("rational_damped", "none")):
        out.append(("Padé form (Eq. 5)", f"{num} / {den}", replace(d, numerator=num, denominator=den)))
    out.append(
        (
            "phases (Eq. 9)",
            "paper 0.7T / 0.2T, α1 1, β 0.3",
            replace(d, early_boundary=0.7, late_boundary=0.2, alpha1=1.0, beta=0.3),
        )
    )
    out.append(("phases (Eq. 9)", "none (one predictor)", replace(d, early_boundary=1.0, late_boundary=0.0)))
    out.append(("history", "computed only", replace(d, history="computed")))
    out.append(("history", "predicted too", replace(d, history="all")))
    for lam in (1e-3, 2.0, 5.0, 10.0):
        out.append(("λ (Eq. 7)", f"λ={lam:g}", replace(d, lam=lam)))
    for sch, w in (("interval", d.warmup_steps), ("spread", 1), ("spread", 2), ("spread", 3)):
        out.append(
            (
                "schedule",
                f"{sch} warm-up {w}" if sch == "spread" else "interval (every N-th from 0)",
                replace(d, schedule=sch, warmup_steps=w),
            )
        )
    for n in (3, 4, 5):
        out.append(("interval N", f"N={n}", replace(d, interval=n)))
    for gate in ("tsi", "error"):
        out.append(("gate", gate, replace(d, gate=gate)))
    return out


def component_variants():
    """Part 2: whole components swapped (any gate drives any predictor)."""
    d, paper, code = TCPadeConfig(), TCPadeConfig(mode="paper_literal", theta=0.7), TCPadeOfficialConfig()
    return [
        ("whole method", "default", d),
        ("whole method", "paper as printed (θ 0.7)", paper),
        ("whole method", "authors' code (run.py defaults)", code),
        ("gate (when)", "paper's TSI gate + default predictor", ComposedConfig(gate=paper, predictor=d)),
        ("gate (when)", "authors' schedule + default predictor", ComposedConfig(gate=code, predictor=d)),
        ("predictor (how)", "default gate + paper's predictor", ComposedConfig(gate=d, predictor=paper)),
        ("predictor (how)", "default gate + authors' predictor", ComposedConfig(gate=d, predictor=code)),
    ]


def measure(model, name, labels, steps, cfg, ref):
    run = CacheRun(cfg)
    img, _ = _sample(model, name, labels, steps, run)
    diag = CacheRun(cfg, measure_error=True)
    _sample(model, name, labels, steps, diag)
    errs = [r.error for r in diag.report.steps if r.error is not None]
    return dict(
        computed=run.report.computed,
        psnr=metrics.psnr(img, ref),
        ssim=metrics.ssim(img, ref),
        err=sum(errs) / len(errs) if errs else float("nan"),
        strip=run.report.strip(),
    )


def summary_table(res, models, steps) -> str:
    """Part 3: paper / authors' code / default, point by point, with the measured effect."""
    d = TCPadeConfig()

    def eff(key):
        parts = []
        for m in models:
            base, r = res[(m, "default")], res.get((m, key))
            if r is None:
                continue
            parts.append(f"{m}: {r['psnr'] - base['psnr']:+.2f} dB, {r['computed'] - base['computed']:+d} computed")
        return "; ".join(parts)

    default_gate = (
        ("self-error gate" if d.gate == "error" else f"TSI gate (θ {d.theta}, {d.tsi_scale} score)")
        + f" on a {d.schedule} grid (N {d.interval}"
        + (f", warm-up {d.warmup_steps})" if d.schedule == "spread" else ")")
    )
    default_pred = (
        f"{d.target}"
        + (f" + {d.reconstruct}" if d.target == "residual" else "")
        + f"; {d.numerator} numerator, λ {d.lam:g}"
    )
    points = [
        (
            "gate",
            "TSI (Eq. 1) >= θ skips, inside N-step intervals",
            "fixed: predict when 4 < step < T-1 and step % 8 != 0; curvature test (5 residuals) vs N 1.4 always passes",
            default_gate,
            "paper's TSI gate + default predictor",
            "authors' schedule + default predictor",
        ),
        (
            "predicted value and base (Eq. 6)",
            "residual, added to the previous step's input x_(t+1)",
            "residual, added to the current input + 0.2 (input - previous input)",
            default_pred,
            "predicted value / base (Eq. 6): residual + previous_input",
            "default gate + authors' predictor",
        ),
        (
            "Padé form (Eq. 5)",
            "(2σ R_(t+3) - σ R_(t+2)) / (1 + (σ/λ) R_(t+1)), global σ",
            "elementwise σ, (2σR1 - σR2)/(1 - 0.1σ), clamp around 0.6R1+0.4R2, blend, weighted-mean fallback",
            f"{d.numerator} / {d.denominator}",
            "Padé form (Eq. 5): literal / elementwise",
            "default gate + authors' predictor",
        ),
        (
            "phases (Eq. 9)",
            "early α1 R1 + α2 R2 (t > 0.7T), late + β ΔR (t < 0.2T)",
            "step <= 6: 0.9R1 + 0.1R2; step > 16: + 0.3 ΔR (of 20 steps, hard-coded)",
            "none"
            if (d.early_boundary >= 1.0 and d.late_boundary <= 0.0)
            else f"{d.early_boundary}T / {d.late_boundary}T",
            "phases (Eq. 9): paper 0.7T / 0.2T, α1 1, β 0.3",
            "default gate + authors' predictor",
        ),
        (
            "history",
            "computed residuals (the paper does not say otherwise)",
            "every step, predicted ones too",
            d.history,
            "history: computed only",
            "history: predicted too",
        ),
    ]
    lines = [
        f"paper / authors' code / this pack's default ({steps} steps; effect = switching the default's point to "
        f"that reading, PSNR and computed steps against the default)"
    ]
    for name, paper, code, ours, paper_key, code_key in points:
        lines.append(f"  {name}")
        lines.append(f"    paper:         {paper}")
        lines.append(f"                   effect: {eff(paper_key) or 'n/a'}")
        lines.append(f"    authors' code: {code}")
        lines.append(f"                   effect: {eff(code_key) or 'n/a'}")
        lines.append(f"    default:       {ours}")
    return "\n".join(lines)


def main(argv=None):
    import argparse

    from tqdm import tqdm

    from ..models.zoo import load_model

    ap = argparse.ArgumentParser(
        prog="python -m tcpade_core.research.ablation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--models", default="a,b")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    refuse_held_out(models, "ablation")
    parts = [
        ("part 1: one switch of the default at a time", switch_variants()),
        ("part 2: whole components swapped (any gate drives any predictor)", component_variants()),
    ]
    bar = tqdm(total=sum(len(v) for _, v in parts) * len(models), desc="ablation", unit="run", dynamic_ncols=True)
    res, lines = {}, []
    for m in models:
        model = load_model(m)
        labels = _labels(args.samples)
        ref, _ = _sample(model, m, labels, args.steps, None)
        for title, variants in parts:
            lines.append(
                f"\n== {title}: model {m}, {args.steps} steps, {args.samples} samples, seed {EVAL_SEED}, "
                f"CFG {CFG_SCALE[m]}"
            )
            lines.append(
                f"{'question':32} {'variant':42} {'computed':>8} {'PSNR':>6} {'SSIM':>6} {'pred err':>8}  schedule"
            )
            last = None
            for group, label, cfg in variants:
                r = measure(model, m, labels, args.steps, cfg, ref)
                bar.update(1)
                res[(m, label if group != "default" else "default")] = r
                res[(m, f"{group}: {label}")] = r
                ps = "  full" if math.isinf(r["psnr"]) else f"{r['psnr']:6.2f}"
                lines.append(
                    f"{group if group != last else '':32} {label:42} {r['computed']:5d}/{args.steps:<2d} {ps} "
                    f"{r['ssim']:6.3f} {r['err']:8.4f}  {r['strip']}"
                )
                last = group
    bar.close()
    print("\n".join(lines))
    print()
    print(summary_table(res, models, args.steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
