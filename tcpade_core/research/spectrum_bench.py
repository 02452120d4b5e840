"""Spectrum against the rest of the pack at matched compute (docs/spectrum.txt).

    python -m tcpade_core.research.spectrum_bench [--split held-out] [--steps 10,20,30] [--samples 16]

For each run of the split (dev: models A and B, seed 1234; held-out: A and B with seed 4321, C with 1234 and
4321) and step count: Spectrum at its frozen default (its own schedule) and at w 1.0, each against the best
setting of the pack's sweep (Reuse, TaylorSeer, TeaCache, TraCache as in the benchmark, and TC-Padé θ 0.7 / 1.0 /
1.3) with the same or fewer computed steps (the margin); then every speed target with Spectrum, TaylorSeer and
TC-Padé at their defaults (the same computed steps). Nothing here tunes: the defaults were frozen on the
development runs (docs/dev_tuning.md "Spectrum").
"""

from __future__ import annotations

import argparse

import torch

from .. import metrics
from ..config import SpectrumConfig, TaylorSeerConfig, TCPadeConfig, TeaCacheConfig
from ..engine import CacheRun
from .bench import EVAL_SEED, HELD_OUT_SEED, THETAS, TARGETS, baseline_sweep, calibrate_teacache
from .common import labels as _labels, sample_timed as _sample

SPLITS = {
    "dev": (("a", EVAL_SEED), ("b", EVAL_SEED)),
    "held-out": (("c", EVAL_SEED), ("c", HELD_OUT_SEED), ("a", HELD_OUT_SEED), ("b", HELD_OUT_SEED)),
}


def pack_sweep():
    """The pack's settings Spectrum is measured against (the benchmark's baseline sweep without Spectrum, and the
    default TC-Padé reading at its three θ)."""
    out = [(label, cfg) for label, cfg in baseline_sweep(quick=False) if not label.startswith("Spectrum")]
    return out + [(f"TC-Padé θ{th}", TCPadeConfig(theta=th)) for th in THETAS]


def spectrum_rows():
    d = SpectrumConfig()
    off = d.with_(mode="official")
    return [
        ("Spectrum default", d),
        ("Spectrum w=1.0", d.with_(w=1.0)),
        ("Spectrum official", off),
        ("Spectrum paper", off.with_(w=1.0, warmup_steps=5)),
    ]


TARGET_ROWS = (("TaylorSeer", TaylorSeerConfig()), ("TC-Padé", TCPadeConfig()), ("Spectrum", SpectrumConfig()))


def run_cell(model, name, seed, steps, labels):
    """(Spectrum rows [(label, computed, psnr, best pack label, its computed, its psnr)], target rows
    [(target, computed, {method: psnr})]) of one run and step count."""
    ref = _sample(model, name, labels, steps, None, seed=seed)[0]
    coeffs = calibrate_teacache(model, name, labels, steps)

    def psnr(cfg, target=0.0):
        if isinstance(cfg, tuple):
            cfg = TeaCacheConfig(threshold=cfg[1], coefficients=coeffs)
        run = CacheRun(cfg, target_speedup=target)
        img = _sample(model, name, labels, steps, run, seed=seed)[0]
        if not bool(torch.isfinite(img).all()):
            raise RuntimeError(f"{cfg.describe()} produced NaN/Inf")
        return run.report.computed, metrics.psnr(img, ref)

    front = [(label, *psnr(cfg)) for label, cfg in pack_sweep()]
    rows = []
    for label, cfg in spectrum_rows():
        c, p = psnr(cfg)
        best = max((f for f in front if f[1] <= c), key=lambda f: f[2], default=("(none)", 0, float("-inf")))
        rows.append((label, c, p, *best))
    targets = []
    for t in TARGETS:
        got = {m: psnr(cfg, t) for m, cfg in TARGET_ROWS}
        targets.append((t, got["Spectrum"][0], {m: v[1] for m, v in got.items()}))
    return rows, targets


def main(argv=None):
    from ..models.zoo import load_model

    ap = argparse.ArgumentParser(
        prog="python -m tcpade_core.research.spectrum_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--split", choices=tuple(SPLITS), default="held-out")
    ap.add_argument("--steps", default="10,20,30")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    labels = _labels(args.samples)
    steps_list = [int(s) for s in args.steps.split(",")]
    print(f"Spectrum default: {SpectrumConfig().describe()}; {args.split} runs, {args.samples} samples")
    print(
        f"{'run':8} {'steps':>5} {'Spectrum setting':18} {'comp':>4} {'PSNR':>6} | "
        f"{'best of the pack at <= comp':28} {'comp':>4} {'PSNR':>6} | {'margin':>7}"
    )
    margins, target_lines, wins = [], [], {m: 0 for m, _ in TARGET_ROWS}
    for name, seed in SPLITS[args.split]:
        model = load_model(name)
        for steps in steps_list:
            rows, targets = run_cell(model, name, seed, steps, labels)
            for label, c, p, bl, bc, bp in rows:
                m = p - bp
                if label == "Spectrum default":
                    margins.append(m)
                print(f"{name}/{seed:<5} {steps:5d} {label:18} {c:4d} {p:6.2f} | {bl:28} {bc:4d} {bp:6.2f} | {m:+7.2f}")
            for t, c, ps in targets:
                best = max(ps, key=ps.get)
                wins[best] += 1
                target_lines.append(
                    f"{name}/{seed:<5} {steps:5d} {t:5g}x {c:4d} | "
                    + " ".join(f"{ps[m]:10.2f}" for m, _ in TARGET_ROWS)
                    + f" | {best}"
                )
    print(
        f"Spectrum default: mean margin {sum(margins) / len(margins):+.2f} dB, min {min(margins):+.2f}, "
        f"above the pack's best in {sum(m > 0 for m in margins)}/{len(margins)} cells"
    )
    print()
    print("speed targets (every method at its defaults, the same computed steps)")
    print(
        f"{'run':8} {'steps':>5} {'target':>6} {'comp':>4} | "
        + " ".join(f"{m:>10}" for m, _ in TARGET_ROWS)
        + " | best"
    )
    print("\n".join(target_lines))
    print("best at a target: " + ", ".join(f"{m} {n}/{len(target_lines)}" for m, n in wins.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
