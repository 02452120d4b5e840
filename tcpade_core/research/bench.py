"""The main job: every cache method on the shipped benchmark models, side by side in one process.

    python -m tcpade_core.research.bench            # full: 10 / 20 / 30 steps, development and held-out
    python -m tcpade_core.research.bench --quick    # about a minute: 20 steps, models A and B, small sweep

Protocol (README "Benchmark"): every default of the pack was chosen on the *development* runs, models A
and B with seed 1234, and frozen before the *held-out* runs were made: models A and B with a fresh seed
(4321) and model C (never used for tuning) with both seeds. The two are printed separately.

For every run: steps computed, NFE speedup, wall-clock speedup measured in this run, PSNR/SSIM against
full compute on the same seeds, class agreement. Then, for each TC-Padé setting, the Pareto margin:
its PSNR minus the best PSNR any baseline setting of the sweep reaches with the same or fewer computed
steps (the ±1-step table is kept as a second view). PNGs in ``--out`` (default ``bench_out/``): a grid of
samples per model and the speedup-vs-PSNR fronts per model and step count.
(The TC-Padé reading ablation is ``python -m tcpade_core.research.ablation``.)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from .. import metrics
from ..config import (
    MagCacheConfig,
    FirstBlockConfig,
    ReuseConfig,
    SpectrumConfig,
    TaylorSeerConfig,
    TCPadeConfig,
    TCPadeOfficialConfig,
    TeaCacheConfig,
    TraCacheConfig,
)
from ..engine import CacheRun, Stack
from ..magcache_tables import measure_ratios
from ..methods import METHODS, fill_at_target
from ..signals import fit_rescale, rel_l1
from .common import (
    CALIB_SEED,
    CFG_SCALE,
    DEV_MODELS,
    PREDICTION,
    EVAL_SEED,
    MODEL_TITLES,
    labels as _labels,
    sample_timed as _sample,
)

HELD_OUT_SEED = 4321
# families by the methods' own labels (tcpade_core/methods.py)
BASELINE_FAMILIES = tuple(
    METHODS[m].label for m in ("taylorseer", "teacache", "tracache", "reuse", "magcache", "spectrum")
)
# the front a TC-Padé setting is measured against: every baseline family, First Block Cache (full sweep) too
FRONT_FAMILIES = BASELINE_FAMILIES + (METHODS["first_block"].label,)
THETAS = (0.7, 1.0, 1.3)


@dataclass
class Row:
    split: str  # "dev" or "held-out"
    model: str
    seed: int
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
    worst: float = float("inf")  # the lowest PSNR of one image of the batch (the mean hides an image that changed)


def cases(quick: bool, models: List[str]) -> List[Tuple[str, str, int]]:
    """(split, model, seed) of every run set: development A/B seed 1234; held-out A/B seed 4321 and C."""
    out = [("dev", m, EVAL_SEED) for m in models if m in DEV_MODELS]
    if not quick:
        out += [("held-out", m, HELD_OUT_SEED) for m in models if m in DEV_MODELS]
        out += [("held-out", m, s) for m in models if m not in DEV_MODELS for s in (EVAL_SEED, HELD_OUT_SEED)]
    return out


# ------------------------------------------------------------------------------------------ sweeps


def tcpade_settings(quick: bool) -> List[tuple]:
    """The default reading at θ 0.7 / 1.0 / 1.3, the paper as printed, and the authors' code (its defaults
    and, in full mode, a small sweep of interval and start step)."""
    out = [("TC-Padé slow (2x target)", TCPadeConfig(), 2.0), ("TC-Padé fast (2.8x target)", TCPadeConfig(), 2.8)]
    out += [(f"TC-Padé θ{th}", TCPadeConfig(theta=th)) for th in THETAS]
    out.append(("TC-Padé paper_literal θ0.7", TCPadeConfig(theta=0.7, mode="paper_literal")))
    out.append(("TC-Padé official (code defaults)", TCPadeOfficialConfig()))
    if not quick:
        out += [
            (f"TC-Padé official N={iv} start={st}", TCPadeOfficialConfig(interval=iv, start_step=st))
            for iv in (3, 4, 6)
            for st in (1, 2)
        ]
    return out


def baseline_sweep(quick: bool, magcache: bool = True, first_block: bool = True) -> List[tuple]:
    """Every baseline setting. The full sweep (not ``quick``, so the quick run stays as it was) adds MagCache's
    (``magcache`` False leaves it out), swept twice: with the ratios measured on the model's own full-compute run
    (on the calibration seed, as TeaCache's polynomial) and with the published FLUX profile; and First Block
    Cache's (thresholds x Fn x predictor, :func:`tcpade_core.research.fbcache.sweep`) unless ``first_block`` is False
    (the TC-Padé development sweep's front, as documented in docs/dev_tuning.md)."""
    out = [(f"Reuse N={n}", ReuseConfig(interval=n)) for n in ((2, 3, 4) if quick else (2, 3, 4, 5, 6))]
    ts = (
        [(n, o, f) for n in (3, 4) for o in (1, 2) for f in (1, 2)]
        if quick
        else [(n, o, f) for n in (2, 3, 4, 5, 6) for o in (1, 2) for f in (1, 2, 3)]
    )
    out += [
        (f"TaylorSeer N={n} O={o} fe={f}", TaylorSeerConfig(interval=n, order=o, first_enhance=f)) for n, o, f in ts
    ]
    deltas = (0.2, 0.3, 0.6) if quick else (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.2)
    out += [(f"TeaCache δ={d}", ("teacache", d)) for d in deltas]
    tc = [(2, 2), (3, 2)] if quick else [(k, o) for k in (2, 3, 4, 5) for o in (2, 3)]
    out += [(f"TraCache k={k} o={o}", TraCacheConfig(stride=k, max_order=o)) for k, o in tc]
    if magcache and not quick:
        out += magcache_sweep()
    if not quick and first_block:
        from .fbcache import sweep

        out += sweep()
    return out + spectrum_sweep(quick)


MAG_THRESHOLDS = (0.06, 0.12, 0.24, 0.5)
MAG_KS = (2, 5)
MAG_RETENTIONS = (0.1, 0.2)


def magcache_sweep() -> List[tuple]:
    """MagCache's threshold x K x retention, with the model's own calibrated ratios (a ("magcache", δ, K, r)
    marker the run resolves) and with the FLUX profile (its node's table, step 11 always computed)."""
    out = []
    for d in MAG_THRESHOLDS:
        for k in MAG_KS:
            for r in MAG_RETENTIONS:
                out.append((f"MagCache δ={d} K={k} r={r} cal", ("magcache", d, k, r)))
                out.append((f"MagCache δ={d} K={k} r={r} FLUX", MagCacheConfig(threshold=d, K=k, retention_ratio=r)))
    return out

    return out


def spectrum_sweep(quick: bool) -> List[tuple]:
    """Spectrum on its own schedule: w 0.5 / 1.0 (its README's range), M 3 / 4, and its schedule's warm-up
    (5: its configs; 2: the issue's list) and growth α (0.75: its README; 1.5; 3.0: its fast setting)."""
    sched = ((5, 0.75), (2, 0.75)) if quick else ((5, 0.75), (5, 3.0), (2, 0.75), (2, 1.5), (2, 3.0))
    ms = (4,) if quick else (3, 4)
    return [
        (f"Spectrum w={w} M={m} wu={wu} α={a}", SpectrumConfig(w=w, degree=m, warmup_steps=wu, alpha=a))
        for wu, a in sched
        for w in (0.5, 1.0)
        for m in ms
    ]


TARGETS = (1.5, 2.0, 2.5, 3.0)
TARGET_METHODS = tuple(
    METHODS[m].label for m in ("tcpade", "taylorseer", "teacache", "tracache", "magcache", "first_block", "spectrum")
)
# the default reading's rows: its presets (speed targets) and its θ values
DEFAULT_TC_LABELS = ("TC-Padé θ", "TC-Padé slow", "TC-Padé fast")


def target_settings() -> List[tuple]:
    """Speed targets for every cache method at its default settings, and the fixed settings of the default
    TC-Padé reading they are compared with (same computed steps)."""
    defaults = (
        TCPadeConfig(),
        TaylorSeerConfig(),
        ("teacache", 0.4),
        TraCacheConfig(),
        ("magcache", 0.06, 2, 0.2),
        FirstBlockConfig(),
        SpectrumConfig(),
    )
    methods = tuple(zip(TARGET_METHODS, defaults))
    out = [(f"target {t:g}x {name}", cfg, t) for t in TARGETS for name, cfg in methods]
    out += [
        (f"fixed TC-Padé N={n} warm-up {w} θ{th}", TCPadeConfig(interval=n, warmup_steps=w, theta=th), 0.0)
        for n in (2, 3, 4, 5, 6)
        for w in (1, 2)
        for th in (0.7, 1.3)
    ]
    return out


# a row's family: its method's label ("full" for the reference)
FAMILY = {name: ("full" if name == "none" else m.label) for name, m in METHODS.items()}


# ------------------------------------------------------------------------------------------ runs


class _TeaCacheProbe(Stack):
    """Computes every call (the stack protocol's base) and keeps TeaCache's (x, y) pairs per stream: the relative L1
    change of block 0's modulated input and of the block-stack output."""

    def __init__(self):
        self.xs, self.ys, self.prev = [], [], {}

    def observe(self, stream, h, y, modulated_fn):
        m = modulated_fn()
        if stream in self.prev:
            pm, py = self.prev[stream]
            self.xs.append(rel_l1(m, pm))
            self.ys.append(rel_l1(y, py))
        self.prev[stream] = (m, y)


def calibrate_teacache(model, name, labels, steps, degree=4) -> tuple:
    """TeaCache-style calibration on CALIB_SEED (never the evaluation seed): fit a polynomial from the
    relative L1 change of block 0's modulated input to the relative L1 change of the block-stack output."""
    probe = _TeaCacheProbe()
    _sample(model, name, labels, steps, probe, seed=CALIB_SEED)
    return fit_rescale(probe.xs, probe.ys, degree)


class _MagRatioProbe(Stack):
    """Computes every call and keeps the stack input and output of the first call of each step (the leading
    stream, as the Calibrate node records it): MagCache's ratios are measured on them."""

    def __init__(self):
        self.inputs, self.outputs, self._new = [], [], False

    def begin_step(self, index, num_steps, t=0.0, active=True):
        self._new = True

    def observe(self, stream, h, y, modulated_fn):
        if self._new:
            self.inputs.append(h.detach().float().cpu())
            self.outputs.append(y.detach().float().cpu())
            self._new = False


def calibrate_magcache(model, name, labels, steps) -> tuple:
    """MagCache's ratios measured on one full-compute run on CALIB_SEED (never the evaluation seed)."""
    probe = _MagRatioProbe()
    _sample(model, name, labels, steps, probe, seed=CALIB_SEED)
    return measure_ratios(probe.inputs, probe.outputs)


def resolve(cfg, coeffs, mag_ratios):
    """A sweep entry's config: TeaCache's and MagCache's markers take this model's calibration."""
    if not isinstance(cfg, tuple):
        return cfg
    if cfg[0] == "magcache":
        return MagCacheConfig(threshold=cfg[1], K=cfg[2], retention_ratio=cfg[3], ratios=mag_ratios, always_compute=())
    return TeaCacheConfig(threshold=cfg[1], coefficients=coeffs)


def bench_case(split: str, name: str, seed: int, steps_list, quick: bool, progress, n_samples: int):
    from ..models.zoo import load_model
    from .classifiers import classify, fit_classifier

    model = load_model(name)
    fit_classifier(name)
    labels = _labels(n_samples)
    rows, grids = [], {}
    for steps in steps_list:
        # full compute: reference images, and the reference time (min of repeats, interleaved)
        ref, t_ref = _sample(model, name, labels, steps, None, seed=seed)
        coeffs = calibrate_teacache(model, name, labels, steps)
        mag_ratios = calibrate_magcache(model, name, labels, steps) if not quick else None
        progress(f"{name}/{seed}/{steps}: full")
        ref_times, results = [t_ref], []

        def measure(label, cfg, target, family=None):
            """One cached run of this case: its row (wall speed-up filled in below) and its images."""
            cfg = resolve(cfg, coeffs, mag_ratios)
            if target:  # a node's defaults at a target on this model (TaylorSeer's order)
                cfg = fill_at_target(cfg.with_(target_speedup=target), PREDICTION[name], steps)[0]
            run = CacheRun(cfg, target_speedup=target, prediction=PREDICTION[name])  # as a node on this model
            img, sec = _sample(model, name, labels, steps, run, seed=seed)
            if not bool(torch.isfinite(img).all()):
                raise RuntimeError(f"{cfg.describe()} produced NaN/Inf")
            rep = run.report
            results.append(
                (
                    Row(
                        split,
                        name,
                        seed,
                        steps,
                        family or FAMILY[cfg.method],
                        label,
                        rep.computed,
                        rep.speedup,
                        0.0,
                        metrics.psnr(img, ref),
                        metrics.ssim(img, ref),
                        metrics.agreement(classify(img, name), labels),
                        sec,
                        rep.strip(),
                        rep.cache_bytes / 2**20,
                        worst_psnr(img, ref),
                    ),
                    img,
                )
            )
            progress(f"{name}/{seed}/{steps}: {label}")

        for label, cfg, *target in tcpade_settings(quick) + baseline_sweep(quick):
            measure(label, cfg, target[0] if target else 0.0)
            if len(results) % 6 == 0:  # re-time the reference between methods: drift-robust ratio
                ref_times.append(_sample(model, name, labels, steps, None, seed=seed)[1])
        if not quick:
            # speed targets on every run (the recommendation is checked on the held-out runs); the fixed TC-Padé
            # grid they are compared with on the evaluation seed only
            for label, cfg, target in target_settings():
                if target or seed == EVAL_SEED:
                    measure(label, cfg, target, "target" if target else "TC-Padé fixed")
        t_ref = min(ref_times)
        rows.append(
            Row(
                split,
                name,
                seed,
                steps,
                "full",
                "Full compute",
                steps,
                1.0,
                1.0,
                float("inf"),
                1.0,
                metrics.agreement(classify(ref, name), labels),
                t_ref,
                "#" * steps,
            )
        )
        for row, img in results:
            row.wall_speedup = t_ref / row.seconds
            rows.append(row)
        if steps == 20:
            grids = {"Full compute": ref, **{r.label: img for r, img in results}}
    return rows, grids


# ------------------------------------------------------------------------------------------ analysis


def worst_psnr(img: torch.Tensor, ref: torch.Tensor) -> float:
    """The lowest PSNR of one image against its reference (what the Compare node shows beside the mean)."""
    return min(metrics.psnr_per_image(img, ref))


def same_run(rows: List[Row], r: Row) -> List[Row]:
    return [x for x in rows if (x.split, x.model, x.seed, x.steps) == (r.split, r.model, r.seed, r.steps)]


def best_baseline_at_most(rows: List[Row], r: Row) -> Optional[Row]:
    """The best baseline of the sweep (highest PSNR) with the same or fewer computed steps than ``r``."""
    c = [x for x in same_run(rows, r) if x.family in FRONT_FAMILIES and x.computed <= r.computed]
    return max(c, key=lambda x: x.psnr) if c else None


def psnr_diff(a: float, b: float) -> float:
    """``a - b`` of two PSNRs; 0 where both are infinite (both runs computed every step: the same samples)."""
    return 0.0 if math.isinf(a) and math.isinf(b) and a == b else a - b


def pareto_margin(rows: List[Row], r: Row) -> Tuple[Optional[float], Optional[Row]]:
    b = best_baseline_at_most(rows, r)
    return (psnr_diff(r.psnr, b.psnr) if b is not None else None), b


def best_at_nfe(rows: List[Row], family: str, computed: int, tol: int = 1) -> Optional[Row]:
    cands = [r for r in rows if r.family == family and abs(r.computed - computed) <= tol]
    return max(cands, key=lambda r: r.psnr) if cands else None


# ------------------------------------------------------------------------------------------ output


def case_title(split: str, model: str, seed: int) -> str:
    return f"{split}: model {MODEL_TITLES[model]}, seed {seed}"


def fmt_table(rows: List[Row]) -> str:
    head = (
        f"{'model':5} {'steps':>5} {'method and settings':34} {'computed':>8} {'NFE x':>6} {'wall x':>6} "
        f"{'PSNR':>6} {'worst':>6} {'SSIM':>6} {'class':>6}  schedule"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        psnr = "  full" if math.isinf(r.psnr) else f"{r.psnr:6.2f}"
        worst = "     -" if math.isinf(r.worst) else f"{r.worst:6.2f}"
        lines.append(
            f"{r.model:5} {r.steps:5d} {r.label:34} {r.computed:5d}/{r.steps:<2d} {r.nfe_speedup:6.2f} "
            f"{r.wall_speedup:6.2f} {psnr} {worst} {r.ssim:6.3f} {r.agree:6.2f}  {r.strip}"
        )
    return "\n".join(lines)


def _tcpade_rows_table(rows: List[Row], split: str, title: str, head: str, cells) -> str:
    """One line per TC-Padé row of ``split``: model, seed, steps, setting, computed steps and PSNR, then ``cells(r)``."""
    lines = [title, f"{'model':5} {'seed':>5} {'steps':>5} {'TC-Padé setting':34} {'comp':>4} {'PSNR':>6} | " + head]
    for r in rows:
        if r.split != split or r.family != "TC-Padé":
            continue
        lines.append(f"{r.model:5} {r.seed:5d} {r.steps:5d} {r.label:34} {r.computed:4d} {r.psnr:6.2f} | " + cells(r))
    return "\n".join(lines)


def margin_table(rows: List[Row], split: str) -> str:
    def cells(r):
        m, b = pareto_margin(rows, r)
        bl = f"{b.label:34} {b.computed:4d} {b.psnr:6.2f}" if b else f"{'(none computes this little)':34} {'':4} {'':6}"
        return f"{bl} | " + (f"{m:+7.2f}" if m is not None else f"{'n/a':>7}")

    return _tcpade_rows_table(
        rows,
        split,
        f"Pareto margin, {split}: TC-Padé PSNR minus the best baseline setting with the same or fewer computed steps",
        f"{'best baseline at <= comp':34} {'comp':>4} {'PSNR':>6} | {'margin':>7}",
        cells,
    )


def _families(rows: List[Row]) -> Tuple[str, ...]:
    """The baseline families that have rows (MagCache runs in the full benchmark only)."""
    return tuple(f for f in BASELINE_FAMILIES if any(r.family == f for r in rows))


def matched_table(rows: List[Row], split: str) -> str:
    def cells(r):
        run = same_run(rows, r)
        out, best = [], -math.inf
        for fam in _families(rows):
            b = best_at_nfe(run, fam, r.computed)
            out.append(f"{b.psnr:6.2f} ({b.computed:2d})" if b else f"{'-':>13}")
            if b:
                best = max(best, b.psnr)
        margin = f"{psnr_diff(r.psnr, best):+7.2f}" if best > -math.inf else f"{'n/a':>7}"
        return " ".join(f"{c:>13}" for c in out) + f" | {margin}"

    return _tcpade_rows_table(
        rows,
        split,
        f"second view, {split}: best PSNR per baseline family within ±1 computed step of each TC-Padé setting",
        " ".join(f"{f:>13}" for f in _families(rows)) + f" | {'margin':>7}",
        cells,
    )


def targets_speed_table(rows: List[Row]) -> str:
    """Speed targets: computed steps against round(steps / target); TC-Padé's PSNR against the best fixed
    setting of the default reading that computes the same number of steps."""
    lines = [
        "speed targets (computed vs. wanted = round(steps / target); TC-Padé: PSNR vs. the best fixed setting "
        "with the same computed steps)",
        f"{'model/seed':10} {'steps':>5} {'target':>6} | " + " ".join(f"{m:>10}" for m in TARGET_METHODS) + " | "
        f"{'TC-Padé PSNR':>12} {'best fixed':>10} {'Δ dB':>6}  best fixed setting",
    ]
    for key in sorted({(r.model, r.seed, r.steps) for r in rows if r.family == "target"}):
        run = [r for r in rows if (r.model, r.seed, r.steps) == key]
        tag = f"{key[0]}/{key[1]}"
        for t in TARGETS:
            want = int(key[2] / t + 0.5)
            cells, tc = [], None
            for name in TARGET_METHODS:
                r = next(x for x in run if x.label == f"target {t:g}x {name}")
                cells.append(f"{r.computed:3d}/{want:<2d}{' ok' if abs(r.computed - want) <= 1 else ' !!'}")
                tc = r if name == "TC-Padé" else tc
            fixed = [x for x in run if x.family == "TC-Padé fixed" and x.computed == tc.computed]
            best = max(fixed, key=lambda x: x.psnr) if fixed else None
            cmp_ = (
                f"{best.psnr:10.2f} {tc.psnr - best.psnr:+6.2f}  {best.label[14:]}"
                if best
                else f"{'-':>10} {'':6}  (no fixed setting computes {tc.computed})"
            )
            lines.append(
                f"{tag:10} {key[2]:5d} {t:5g}x | " + " ".join(f"{c:>10}" for c in cells) + f" | {tc.psnr:12.2f} {cmp_}"
            )
    return "\n".join(lines)


def recommend_table(rows: List[Row]) -> str:
    """Which method to use at a speed target: every method at its default settings with the same target (so the
    same computed steps), PSNR against full compute, the best of each cell, and per split how far each method
    stays below the best on average."""
    lines = [
        "which method at a speed target: PSNR of each method at its default settings, same target "
        "(the same computed steps)",
        f"{'split':8} {'model/seed':10} {'steps':>5} {'target':>6} | "
        + " ".join(f"{m:>10}" for m in TARGET_METHODS)
        + " | best",
    ]
    below = {}
    for key in sorted({(r.split, r.model, r.seed, r.steps) for r in rows if r.family == "target"}):
        run = {r.label: r for r in rows if (r.split, r.model, r.seed, r.steps) == key}
        for t in TARGETS:
            ps = {m: run[f"target {t:g}x {m}"].psnr for m in TARGET_METHODS}
            best = max(ps, key=ps.get)
            for m, p in ps.items():
                below.setdefault(key[0], {}).setdefault(m, []).append(ps[best] - p)
            lines.append(
                f"{key[0]:8} {key[1] + '/' + str(key[2]):10} {key[3]:5d} {t:5g}x | "
                + " ".join(f"{ps[m]:10.2f}" for m in TARGET_METHODS)
                + f" | {best}"
            )
    for split, d in below.items():
        desc = ", ".join(
            f"{m} {sum(v) / len(v):.2f} dB (best in {sum(x == 0 for x in v)}/{len(v)})"
            for m, v in sorted(d.items(), key=lambda kv: sum(kv[1]))
        )
        lines.append(f"  {split}: mean distance to the best method: {desc}")
    return "\n".join(lines)


def regime_table(rows: List[Row]) -> str:
    """How hard is each model for caching: the best of plain reuse and TeaCache near 2.5x NFE at 20 steps
    (the paper's FLUX figures for those baselines are 17-18 dB)."""
    lines = ["regime at 20 steps: best reuse / TeaCache / TaylorSeer O=1 with 2.2x <= NFE <= 2.9x"]
    for key in sorted({(r.split, r.model, r.seed) for r in rows}):
        vals = {}
        for fam, pred in (
            ("Reuse", lambda r: r.family == "Reuse"),
            ("TeaCache", lambda r: r.family == "TeaCache"),
            ("TaylorSeer O=1", lambda r: r.family == "TaylorSeer" and " O=1 " in r.label),
        ):
            c = [
                r
                for r in rows
                if (r.split, r.model, r.seed) == key and r.steps == 20 and pred(r) and 2.2 <= r.nfe_speedup <= 2.9
            ]
            if c:
                vals[fam] = max(c, key=lambda r: r.psnr)
        if vals:
            desc = ", ".join(f"{k} {v.psnr:.2f} dB @{v.nfe_speedup:.2f}x" for k, v in vals.items())
            lines.append(f"  {key[0]:8} model {key[1]} seed {key[2]}: {desc}")
    return "\n".join(lines)


def targets_table(rows: List[Row]) -> str:
    """The issue's targets, each with what this run measured (met / MISSED)."""
    lines = ["targets (the default reading; margins are Pareto margins)"]
    ok = lambda b: "met" if b else "MISSED"
    for split in ("dev", "held-out"):
        for key in sorted({(r.model, r.seed) for r in rows if r.split == split}):
            for steps in sorted({r.steps for r in rows if r.split == split and (r.model, r.seed) == key}):
                run = [r for r in rows if r.split == split and (r.model, r.seed) == key and r.steps == steps]
                tcs = [r for r in run if r.label.startswith(DEFAULT_TC_LABELS)]
                ms = [(r.label, pareto_margin(rows, r)[0]) for r in tcs]
                desc = ", ".join(f"{lab[8:]} {m:+.2f}" if m is not None else f"{lab[8:]} n/a" for lab, m in ms)
                worst = min((m for _, m in ms if m is not None), default=None)
                lines.append(
                    f"  {split:8} {key[0]} seed {key[1]} {steps:2d} steps: margin >= 0 dB: "
                    f"{ok(worst is not None and worst >= 0)} ({desc})"
                )
    for key in sorted({(r.model, r.seed) for r in rows if r.model == "c"}):
        c20 = [
            r
            for r in rows
            if (r.model, r.seed) == key
            and r.steps == 20
            and r.nfe_speedup >= 2.5
            and r.label.startswith(DEFAULT_TC_LABELS)
        ]
        ms = [pareto_margin(rows, r)[0] for r in c20]
        best = max((m for m in ms if m is not None), default=None)
        lines.append(
            f"  C seed {key[1]} at 20 steps, >= 2.5x NFE, margin >= +2 dB: {ok(best is not None and best >= 2)} "
            f"({'best ' + format(best, '+.2f') if best is not None else 'no TC-Padé setting reaches 2.5x'})"
        )
    for key in sorted({(r.split, r.model, r.seed, r.steps) for r in rows}):
        sp = {
            r.label: r for r in rows if (r.split, r.model, r.seed, r.steps) == key and r.label.startswith("TC-Padé θ")
        }
        if len(sp) == len(THETAS):
            x = [sp[f"TC-Padé θ{th}"].nfe_speedup for th in (1.3, 1.0, 0.7)]
            lines.append(
                f"  θ 1.3 / 1.0 / 0.7 speedups on {key[1]} seed {key[2]} {key[3]} steps: "
                f"{x[0]:.2f} / {x[1]:.2f} / {x[2]:.2f}x: rising {ok(x[0] < x[1] < x[2])}, "
                f"non-decreasing {ok(x[0] <= x[1] <= x[2])}, above 1 {ok(min(x) > 1)}"
            )
    return "\n".join(lines)


def write_grid(grids: Dict[str, torch.Tensor], path: Path, title: str, n_cols: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = ["Full compute"] + [
        k
        for k in grids
        if k.startswith(("TC-Padé slow", "TC-Padé fast", "TC-Padé θ1.0")) or k == "TC-Padé official (code defaults)"
    ]
    # one representative per baseline family: the first sweep entry of each family
    seen = set()
    for k in grids:
        fam = k.split(" ")[0]
        if fam in ("TaylorSeer", "TeaCache", "TraCache", "Reuse", "MagCache", "Spectrum") and fam not in seen:
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


def write_fronts(rows: List[Row], path: Path, title: str) -> None:
    """Per step count: the baseline front (best PSNR with at most c computed steps, a staircase), every
    baseline point, and TC-Padé's points and front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps_list = sorted({r.steps for r in rows})
    fig, axes = plt.subplots(1, len(steps_list), figsize=(5 * len(steps_list), 4), squeeze=False)
    for ax, steps in zip(axes[0], steps_list):
        run = [r for r in rows if r.steps == steps and math.isfinite(r.psnr)]
        for fams, color, name in (
            (FRONT_FAMILIES, "tab:blue", "best baseline"),
            (("TC-Padé",), "tab:red", "TC-Padé"),
        ):
            pts = [r for r in run if r.family in fams]
            if not pts:
                continue
            cs = sorted({r.computed for r in pts})
            front = [(steps / c, max(r.psnr for r in pts if r.computed <= c)) for c in cs]
            ax.step([f[0] for f in front], [f[1] for f in front], where="post", color=color, label=f"{name} front")
            ax.scatter([steps / r.computed for r in pts], [r.psnr for r in pts], color=color, s=14, alpha=0.5)
        for r in run:
            if r.label.startswith(DEFAULT_TC_LABELS):
                ax.annotate(r.label[8:].split(" (")[0], (r.nfe_speedup, r.psnr), fontsize=7, color="tab:red")
        ax.set_title(f"{steps} steps", fontsize=9)
        ax.set_xlabel("NFE speedup (x)")
        ax.set_ylabel("PSNR vs full compute (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def overhead(model_name: str, n_samples: int, steps: int = 20, repeats: int = 3) -> str:
    """Cache machinery cost on computed steps: TC-Padé with a θ that never skips (every step runs the gate
    and stores what the predictor needs) against full compute."""
    from ..models.zoo import load_model

    model = load_model(model_name)
    labels = _labels(n_samples)
    t_none, t_tc = [], []
    never = TCPadeConfig(theta=1000.0)
    for _ in range(repeats):
        t_none.append(_sample(model, model_name, labels, steps, None)[1])
        t_tc.append(min(_sample(model, model_name, labels, steps, CacheRun(never))[1] for _ in range(2)))
    a, b = min(t_none), min(t_tc)
    return f"  model {model_name}: full {a:.3f}s, TC-Padé never-skip {b:.3f}s -> machinery {100 * (b / a - 1):+.1f}% per computed step"


def _parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="python -m tcpade_core.research.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="20 steps, models A and B (development seed), small sweep")
    ap.add_argument("--models", default=None, help="comma list (default a,b,c; quick: a,b)")
    ap.add_argument("--steps", default=None, help="comma list (default 10,20,30; quick: 20)")
    ap.add_argument("--samples", type=int, default=None, help="samples per run (default 16; quick 10)")
    ap.add_argument("--out", default="bench_out")
    ap.add_argument("--threads", type=int, default=2)
    return ap.parse_args(argv)


def _shipped_models(models_arg: Optional[str], quick: bool) -> List[str]:
    """The models asked for (``--models`` or the default list) that have shipped weights; the others are skipped
    with a message."""
    from ..models.zoo import MODEL_FILES, WEIGHTS_DIR

    models = [m.strip() for m in (models_arg or ("a,b" if quick else "a,b,c")).split(",") if m.strip()]
    missing = [m for m in models if not (WEIGHTS_DIR / MODEL_FILES.get(m, "?")).is_file()]
    for m in missing:
        print(f"!!! model {m}: no shipped weights, skipped")
    return [m for m in models if m not in missing]


def _progress_bar(todo, steps_list, quick: bool):
    """A progress bar over every sampling run the cases ``todo`` make."""
    from tqdm import tqdm

    per = 1 + len(tcpade_settings(quick)) + len(baseline_sweep(quick))
    extra = (
        0
        if quick
        else sum(len([x for x in target_settings() if x[2] or seed == EVAL_SEED]) for _, _, seed in todo)
        * len(steps_list)
    )
    return tqdm(total=per * len(steps_list) * len(todo) + extra, desc="bench", unit="run", dynamic_ncols=True)


class _Progress:
    """bench_case's progress callback: one tick of ``bar`` per run, the run's name next to it."""

    def __init__(self, bar):
        self.bar = bar

    def __call__(self, msg):
        self.bar.set_postfix_str(msg[:40])
        self.bar.update(1)


def _run_cases(todo, steps_list, quick: bool, bar, n: int, out: Path) -> List[Row]:
    """Every case of ``todo`` (its runs tick ``bar``): all their rows; each case's sample grid and fronts go
    to ``out``."""
    progress = _Progress(bar)
    all_rows = []
    for split, m, seed in todo:
        rows, grids = bench_case(split, m, seed, steps_list, quick, progress, n)
        all_rows += rows
        tag = f"{m}_{seed}"
        if grids:
            write_grid(grids, out / f"samples_{tag}.png", f"{case_title(split, m, seed)}, 20 steps")
        write_fronts(rows, out / f"fronts_{tag}.png", case_title(split, m, seed))
    return all_rows


def _print_tables(all_rows: List[Row], todo, n: int, threads: int) -> None:
    """Each case's table, then the margin, matched, target, recommendation, regime and target tables."""
    print()
    for split, m, seed in todo:
        print(f"== {case_title(split, m, seed)}, {n} samples, CFG {CFG_SCALE[m]}, torch threads {threads}")
        print(fmt_table([r for r in all_rows if (r.split, r.model, r.seed) == (split, m, seed)]))
        print()
    for split in ("dev", "held-out"):
        if any(r.split == split for r in all_rows):
            print(margin_table(all_rows, split))
            print()
            print(matched_table(all_rows, split))
            print()
    if any(r.family == "target" for r in all_rows):
        print(targets_speed_table(all_rows))
        print()
        print(recommend_table(all_rows))
        print()
    print(regime_table(all_rows))
    print()
    print(targets_table(all_rows))
    print()


def main(argv=None):
    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps_list = [int(s) for s in (args.steps or ("20" if args.quick else "10,20,30")).split(",")]
    n = args.samples or (10 if args.quick else 16)
    models = _shipped_models(args.models, args.quick)
    todo = cases(args.quick, models)
    bar = _progress_bar(todo, steps_list, args.quick)
    t0 = time.time()
    all_rows = _run_cases(todo, steps_list, args.quick, bar, n, out)
    bar.close()
    _print_tables(all_rows, todo, n, args.threads)
    print("cache machinery overhead (wall clock, min of repeats, this run)")
    for m in models:
        print(overhead(m, n))
    print(f"\nwrote {out}/samples_*.png, {out}/fronts_*.png, {out}/results.json; total {time.time() - t0:.0f}s")
    with open(out / "results.json", "w") as f:
        json.dump([r.__dict__ for r in all_rows], f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
