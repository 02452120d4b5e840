"""The main job: every cache method on the shipped benchmark models, side by side in one process.

    python -m tcpade_core.research.bench            # full: models A and B, 10 / 20 / 30 steps, sweeps
    python -m tcpade_core.research.bench --quick    # about a minute: 20 steps, small sweep

(The TC-Padé reading ablation behind README "Notes on the equations" is ``python -m tcpade_core.research.ablation``.)

Prints tables (steps computed, NFE speedup, wall-clock speedup measured in this run, PSNR/SSIM against
full compute on the same seeds, class agreement), writes a PNG grid of samples and a
speedup-vs-PSNR Pareto plot per model to ``--out`` (default ``bench_out/``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from .. import metrics
from ..config import (IDENTITY_COEFFICIENTS, ReuseConfig, TaylorSeerConfig, TCPadeConfig, TeaCacheConfig,
                      TraCacheConfig, _Common)
from ..engine import CacheRun
from .common import CALIB_SEED, CFG_SCALE, MODEL_TITLES, labels as _labels, sample_timed as _sample


@dataclass
class Row:
    model: str
    steps: int
    family: str
    label: str
    computed: int
    nfe_speedup: float
    wall_speedup: float
    psnr: float
    ssim: float
    agree: float
    seconds: float
    strip: str = ""
    cache_mb: float = 0.0


# ------------------------------------------------------------------------------------------ sweeps

def tcpade_presets() -> List[tuple]:
    return [("TC-Padé fast θ0.7", TCPadeConfig(theta=0.7)),
            ("TC-Padé slow θ1.0", TCPadeConfig(theta=1.0)),
            ("TC-Padé θ1.3", TCPadeConfig(theta=1.3)),
            ("TC-Padé literal θ0.7", TCPadeConfig(theta=0.7, mode="paper_literal"))]


def baseline_sweep(quick: bool) -> List[tuple]:
    out = []
    for n in ((2, 3) if quick else (2, 3, 4)):
        out.append((f"Reuse N={n}", ReuseConfig(interval=n)))
    ts = [(3, 1, 2), (4, 1, 2)] if quick else [(2, 1, 2)] + [(n, o, f) for n in (3, 4, 5) for o in (1, 2) for f in (1, 2, 3)]
    for n, o, f in ts:
        out.append((f"TaylorSeer N={n} O={o} fe={f}", TaylorSeerConfig(interval=n, order=o, first_enhance=f)))
    deltas = (0.3, 0.6) if quick else (0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.2)
    for d in deltas:
        out.append((f"TeaCache δ={d}", ("teacache", d)))
    tc = [(2, 2), (3, 2)] if quick else [(k, o) for k in (2, 3, 4) for o in (2, 3)]
    for k, o in tc:
        out.append((f"TraCache k={k} o={o}", TraCacheConfig(stride=k, max_order=o)))
    return out


FAMILY = {"none": "full", "reuse": "Reuse", "taylorseer": "TaylorSeer", "teacache": "TeaCache",
          "tracache": "TraCache", "tcpade": "TC-Padé"}


# ------------------------------------------------------------------------------------------ runs

def calibrate_teacache(model, name, labels, steps, degree=4) -> tuple:
    """TeaCache-style calibration on CALIB_SEED (never the evaluation seed): fit a polynomial from the
    relative L1 change of block 0's modulated input to the relative L1 change of the block-stack output."""
    xs, ys, prev = [], [], {}

    class Probe:
        def begin_step(self, i, n, t):
            pass

        def end_run(self):
            pass

        def __call__(self, stream, h, run_fn, mod_fn):
            y = run_fn(h)
            m = mod_fn()
            if stream in prev:
                pm, py = prev[stream]
                xs.append(float((m - pm).abs().mean() / pm.abs().mean()))
                ys.append(float((y - py).abs().mean() / py.abs().mean()))
            prev[stream] = (m, y)
            return y

    _sample(model, name, labels, steps, Probe(), seed=CALIB_SEED)
    x, y = np.array(xs), np.array(ys)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < degree + 2 or np.ptp(x[ok]) == 0:
        return IDENTITY_COEFFICIENTS
    return tuple(float(c) for c in np.polyfit(x[ok], y[ok], degree))


def run_one(model, name, labels, steps, cfg: _Common, ref, ref_seconds, classify) -> tuple:
    run = CacheRun(cfg)
    img, sec = _sample(model, name, labels, steps, run)
    rep = run.report
    finite = bool(torch.isfinite(img).all())
    if not finite:
        raise RuntimeError(f"{cfg.describe()} produced NaN/Inf")
    row = Row(model=name, steps=steps, family=FAMILY[cfg.method], label="", computed=rep.computed,
              nfe_speedup=rep.speedup, wall_speedup=ref_seconds / sec,
              psnr=metrics.psnr(img, ref), ssim=metrics.ssim(img, ref),
              agree=metrics.agreement(classify(img, name), labels), seconds=sec, strip=rep.strip(),
              cache_mb=rep.cache_bytes / 2**20)
    return row, img, rep


def bench_model(name, steps_list, quick, progress, n_samples):
    from ..models.zoo import load_model
    from .classifiers import classify, fit_classifier
    model = load_model(name)
    fit_classifier(name)
    labels = _labels(n_samples)
    rows, grids = [], {}
    for steps in steps_list:
        # full compute: reference images, and the reference time (min of repeats, interleaved)
        ref, t_ref = _sample(model, name, labels, steps, None)
        coeffs = calibrate_teacache(model, name, labels, steps)
        progress(f"{name}/{steps}: full")
        methods = tcpade_presets() + baseline_sweep(quick)
        ref_times = [t_ref]
        results = []
        for label, cfg in methods:
            if isinstance(cfg, tuple):
                cfg = TeaCacheConfig(threshold=cfg[1], coefficients=coeffs)
            row, img, rep = run_one(model, name, labels, steps, cfg, ref, t_ref, classify)
            row.label = label
            results.append((row, img))
            if len(results) % 6 == 0:      # re-time the reference between methods: drift-robust ratio
                ref_times.append(_sample(model, name, labels, steps, None)[1])
            progress(f"{name}/{steps}: {label}")
        t_ref = min(ref_times)
        full_row = Row(name, steps, "full", "Full compute", steps, 1.0, 1.0, float("inf"), 1.0,
                       metrics.agreement(classify(ref, name), labels), t_ref, "#" * steps)
        rows.append(full_row)
        for row, img in results:
            row.wall_speedup = t_ref / row.seconds
            rows.append(row)
        if steps == 20:
            grids = {"Full compute": ref, **{r.label: img for r, img in results}}
    return rows, grids, model


# ------------------------------------------------------------------------------------------ output

def fmt_table(rows: List[Row]) -> str:
    head = f"{'model':5} {'steps':>5} {'method and settings':30} {'computed':>8} {'NFE x':>6} {'wall x':>6} {'PSNR':>6} {'SSIM':>6} {'class':>6}  schedule"
    lines = [head, "-" * len(head)]
    for r in rows:
        psnr = "  full" if math.isinf(r.psnr) else f"{r.psnr:6.2f}"
        lines.append(f"{r.model:5} {r.steps:5d} {r.label:30} {r.computed:5d}/{r.steps:<2d} {r.nfe_speedup:6.2f} "
                     f"{r.wall_speedup:6.2f} {psnr} {r.ssim:6.3f} {r.agree:6.2f}  {r.strip}")
    return "\n".join(lines)


def best_at_nfe(rows: List[Row], family: str, computed: int, tol: int = 1) -> Optional[Row]:
    cands = [r for r in rows if r.family == family and abs(r.computed - computed) <= tol]
    return max(cands, key=lambda r: r.psnr) if cands else None


def matched_table(rows: List[Row]) -> str:
    lines = ["matched-NFE comparison (baselines: best PSNR within ±1 computed step of TC-Padé, from the sweep)",
             f"{'model':5} {'steps':>5} {'TC-Padé setting':22} {'comp':>4} {'PSNR':>6} | {'best TaylorSeer':>16} {'best TeaCache':>16} {'best TraCache':>16} {'best Reuse':>16} | {'margin dB':>9}"]
    for r in rows:
        if r.family != "TC-Padé" or "literal" in r.label:
            continue
        cells, best = [], -math.inf
        for fam in ("TaylorSeer", "TeaCache", "TraCache", "Reuse"):
            b = best_at_nfe([x for x in rows if x.model == r.model and x.steps == r.steps], fam, r.computed)
            cells.append(f"{b.psnr:6.2f} ({b.computed:2d})" if b else f"{'-':>11}")
            if b and fam != "Reuse":
                best = max(best, b.psnr)
        margin = f"{r.psnr - best:+9.2f}" if best > -math.inf else f"{'n/a':>9}"
        lines.append(f"{r.model:5} {r.steps:5d} {r.label:22} {r.computed:4d} {r.psnr:6.2f} | "
                     + " ".join(f"{c:>16}" for c in cells) + f" | {margin}")
    return "\n".join(lines)


def separation_table(rows: List[Row]) -> str:
    """Does a model separate the plain baselines? PSNR of reuse, TaylorSeer O=1 and TeaCache nearest 2.5x."""
    lines = ["baseline separation at ~2.5x NFE (20 steps): best config per family with 2.2x <= NFE <= 2.9x"]
    for m in sorted({r.model for r in rows}):
        vals = {}
        for fam, pred in (("Reuse", lambda r: r.family == "Reuse"),
                          ("TaylorSeer O=1", lambda r: r.family == "TaylorSeer" and " O=1 " in r.label),
                          ("TeaCache", lambda r: r.family == "TeaCache")):
            c = [r for r in rows if r.model == m and r.steps == 20 and pred(r) and 2.2 <= r.nfe_speedup <= 2.9]
            if c:
                b = max(c, key=lambda r: r.psnr)
                vals[fam] = b
        if vals:
            ps = [v.psnr for v in vals.values()]
            desc = ", ".join(f"{k} {v.psnr:.2f} dB @{v.nfe_speedup:.2f}x" for k, v in vals.items())
            lines.append(f"  model {m}: {desc}; spread {max(ps) - min(ps):.2f} dB")
    return "\n".join(lines)


def write_grid(grids: Dict[str, torch.Tensor], path: Path, title: str, n_cols: int = 10) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keep = ["Full compute"] + [k for k in grids if k.startswith("TC-Padé")]
    # one representative per baseline family: the first sweep entry of each family
    seen = set()
    for k in grids:
        fam = k.split(" ")[0]
        if fam in ("TaylorSeer", "TeaCache", "TraCache", "Reuse") and fam not in seen:
            seen.add(fam)
            keep.append(k)
    n = min(n_cols, next(iter(grids.values())).shape[0])
    fig, axes = plt.subplots(len(keep), n, figsize=(n * 0.9, len(keep) * 0.95 + 0.5))
    for i, k in enumerate(keep):
        imgs = ((grids[k][:n].float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(imgs[j].squeeze(-1) if imgs.shape[-1] == 1 else imgs[j], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(k, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_pareto(rows: List[Row], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    marks = {"TC-Padé": ("*", "tab:red"), "TaylorSeer": ("o", "tab:blue"), "TeaCache": ("s", "tab:green"),
             "TraCache": ("^", "tab:purple"), "Reuse": ("x", "tab:gray")}
    for fam, (m, c) in marks.items():
        pts = [(r.nfe_speedup, r.psnr) for r in rows if r.family == fam and math.isfinite(r.psnr)]
        if pts:
            ax.scatter(*zip(*pts), marker=m, color=c, label=fam, s=60 if fam == "TC-Padé" else 25)
    ax.set_xlabel("NFE speedup (x)")
    ax.set_ylabel("PSNR vs full compute (dB)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overhead(model_name: str, n_samples: int, steps: int = 20, repeats: int = 3) -> str:
    """Cache machinery cost on computed steps: TC-Padé with a θ that never skips (every step runs the
    gate and stores the residual) against full compute, and a skipped step against a full step."""
    from ..models.zoo import load_model
    model = load_model(model_name)
    labels = _labels(n_samples)
    t_none, t_tc = [], []
    for _ in range(repeats):
        t_none.append(_sample(model, model_name, labels, steps, None)[1])
        t_tc.append(_sample(model, model_name, labels, steps, CacheRun(TCPadeConfig(theta=1000.0)))[1])
        t_tc[-1] = min(t_tc[-1], _sample(model, model_name, labels, steps, CacheRun(TCPadeConfig(theta=1000.0)))[1])
    a, b = min(t_none), min(t_tc)
    return f"  model {model_name}: full {a:.3f}s, TC-Padé never-skip {b:.3f}s -> machinery {100 * (b / a - 1):+.1f}% per computed step"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tcpade_core.research.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20 steps only, small sweep, fewer samples (about a minute)")
    ap.add_argument("--models", default="a,b")
    ap.add_argument("--steps", default=None, help="comma list (default 10,20,30; quick: 20)")
    ap.add_argument("--samples", type=int, default=None, help="samples per model (default 16; quick 10)")
    ap.add_argument("--out", default="bench_out")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps_list = [int(s) for s in (args.steps or ("20" if args.quick else "10,20,30")).split(",")]
    n = args.samples or (10 if args.quick else 16)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    from tqdm import tqdm
    total = sum(1 + len(tcpade_presets()) + len(baseline_sweep(args.quick)) for s in steps_list) * len(models)
    bar = tqdm(total=total, desc="bench", unit="run", dynamic_ncols=True)

    def progress(msg):
        bar.set_postfix_str(msg[:40])
        bar.update(1)

    all_rows = []
    t0 = time.time()
    for m in models:
        rows, grids, _ = bench_model(m, steps_list, args.quick, progress, n)
        all_rows += rows
        if grids:
            write_grid(grids, out / f"samples_{m}.png", f"Model {MODEL_TITLES[m]}, 20 steps")
        write_pareto([r for r in rows if r.steps == 20] or rows, out / f"pareto_{m}.png",
                     f"Model {MODEL_TITLES[m]}: speedup vs PSNR, 20 steps")
    bar.close()
    print()
    for m in models:
        print(f"== Model {MODEL_TITLES[m]}, {n} samples, CFG {CFG_SCALE[m]}, torch threads {args.threads}")
        print(fmt_table([r for r in all_rows if r.model == m]))
        print()
    print(matched_table(all_rows))
    print()
    print(separation_table(all_rows))
    print()
    print("cache machinery overhead (wall clock, min of repeats, this run)")
    for m in models:
        print(overhead(m, n))
    print(f"\nwrote {out}/samples_*.png, {out}/pareto_*.png, {out}/results.json; total {time.time() - t0:.0f}s")
    with open(out / "results.json", "w") as f:
        json.dump([r.__dict__ for r in all_rows], f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
