"""First Block Cache / DBCache on the benchmark models, against the baseline front of the full benchmark.

    python -m tcpade_core.research.devsweep --fbcache          # development: models A and B, seed 1234 (tuning)
    python -m tcpade_core.research.fbcache --split held-out    # held-out: A/B seed 4321, C seeds 1234 and 4321

Per cell (model, seed, steps): the uncached reference, then every setting of :func:`sweep` (thresholds x leading
blocks Fn x predictor reuse / TaylorSeer), each with its computed steps, PSNR and Pareto margin: its PSNR minus the
best PSNR any baseline setting of the full benchmark (Reuse, TaylorSeer, TeaCache, TraCache; ``docs/bench.txt``)
reaches with the same or fewer computed steps. The baseline rows are read from ``docs/bench.txt`` (the full
benchmark's output) rather than run again; one of them is re-run per cell and must match it (printed as a check).
Then the default First Block Cache at the speed targets 1.5 / 2 / 2.5 / 3x beside TaylorSeer and TC-Padé at the
same targets (same computed steps; their rows also from ``docs/bench.txt``).

A skipped step still runs the Fn leading blocks (bench models have 5-6 blocks), so a First Block Cache run costs
``computed + skipped * Fn / depth`` stack computes: the ``cost`` column. The margins compare computed steps, as
for every other method; FBCache's real saving is smaller by that cost. Fn = 8 (DBCache's default) exceeds the
depth of every bench model (the leading blocks are clamped to depth - 1, one block cached), so the sweep uses
Fn 1 and 2 (DBCache's 8 of FLUX's 57 blocks is 14 %; one block of six is 17 %).

``--trailing 0,1`` adds DBCache's trailing blocks Bn (the last Bn blocks run on every step too, on the cached
blocks' computed or predicted output; default 0 only, the rows and labels of docs/fbcache.txt): a setting with
Bn > 0 is labelled ``F{Fn}B{Bn}`` and costs ``computed + skipped * (Fn + Bn) / depth``.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from .. import metrics
from ..config import FirstBlockConfig, TaylorSeerConfig
from ..engine import CacheRun
from ..methods import split_blocks
from .common import DEV_MODELS, EVAL_SEED, labels as _labels, sample_timed as _sample

HELD_OUT_SEED = 4321
BENCH_TXT = Path(__file__).resolve().parents[2] / "docs" / "bench.txt"
BASELINE_FAMILIES = ("Reuse", "TaylorSeer", "TeaCache", "TraCache")
THRESHOLDS = (0.04, 0.08, 0.12, 0.16, 0.24, 0.32)
LEADING = (1, 2)
PREDICTORS = ("reuse", "taylorseer")
TARGETS = (1.5, 2.0, 2.5, 3.0)
CHECK_LABEL = "TaylorSeer N=3 O=1 fe=1"  # re-run per cell: the baseline rows read from bench.txt must be this run's
CHECK_CFG = TaylorSeerConfig(interval=3, order=1, first_enhance=1)


def sweep(thresholds=THRESHOLDS, trailing=(0,)) -> List[Tuple[str, FirstBlockConfig]]:
    """Every First Block Cache setting of the sweep: thresholds x Fn x predictor (the full benchmark's too), for
    each trailing block count Bn of ``trailing`` (Bn 0: the labels of before; Bn > 0: ``F{Fn}B{Bn}``)."""
    return [
        (
            f"FBCache F{f}{f'B{b}' if b else ''} {p} thr={t:g}",
            FirstBlockConfig(threshold=t, leading_blocks=f, predictor=p, trailing_blocks=b),
        )
        for b in trailing
        for p in PREDICTORS
        for f in LEADING
        for t in thresholds
    ]


def read_bench(path: Path = BENCH_TXT) -> Dict[Tuple[str, str, int, int], List[Tuple[str, int, float]]]:
    """The rows of the full benchmark's output: (split, model, seed, steps) -> [(label, computed, PSNR)]."""
    out: Dict[Tuple[str, str, int, int], List[Tuple[str, int, float]]] = {}
    case = None
    row = re.compile(r"^(\w)\s+(\d+) (.{34}) +(\d+)/(\d+)\s+\S+\s+\S+\s+(\S+)")
    for line in path.read_text().splitlines():
        m = re.match(r"^== (dev|held-out): model (\w):.*, seed (\d+),", line)
        if m:
            case = (m.group(1), m.group(2).lower(), int(m.group(3)))
            continue
        if line.startswith("Pareto margin"):
            case = None
        m = row.match(line)
        if case is None or not m or m.group(6) == "full":
            continue
        key = (*case, int(m.group(2)))
        out.setdefault(key, []).append((m.group(3).strip(), int(m.group(4)), float(m.group(6))))
    return out


def family(label: str) -> str:
    return label.split(" ")[0]


def best_baseline(rows, computed: int):
    c = [r for r in rows if family(r[0]) in BASELINE_FAMILIES and r[1] <= computed]
    return max(c, key=lambda r: r[2]) if c else None


def cases(split: str, models: List[str]) -> List[Tuple[str, str, int]]:
    if split == "dev":
        return [("dev", m, EVAL_SEED) for m in models if m in DEV_MODELS]
    out = [("held-out", m, HELD_OUT_SEED) for m in models if m in DEV_MODELS]
    return out + [("held-out", m, s) for m in models if m not in DEV_MODELS for s in (EVAL_SEED, HELD_OUT_SEED)]


def depth(model) -> int:
    return model.num_blocks


def run_cell(model, name, seed, steps, lab, bench_rows, settings, default_cfg, out):
    """One cell: the check, every setting's row, and the default at the speed targets."""
    w = max([30] + [len(label) for label, _ in settings])  # 30: the labels of docs/fbcache.txt
    ref = _sample(model, name, lab, steps, None, seed=seed)[0]
    chk = CacheRun(CHECK_CFG)
    p = metrics.psnr(_sample(model, name, lab, steps, chk, seed=seed)[0], ref)
    want = next((r for r in bench_rows if r[0] == CHECK_LABEL), None)
    ok = want is not None and abs(want[2] - p) < 0.006 and want[1] == chk.report.computed
    out.append(
        f"  check: {CHECK_LABEL} {chk.report.computed}/{p:.2f} here, bench.txt {want}: {'ok' if ok else 'DIFFERS'}"
    )
    d = depth(model)
    rows = []
    for label, cfg in settings:
        run = CacheRun(cfg)
        img = _sample(model, name, lab, steps, run, seed=seed)[0]
        if not bool(torch.isfinite(img).all()):
            raise RuntimeError(f"{label} produced NaN/Inf")
        c = run.report.computed
        ps = metrics.psnr(img, ref)
        b = best_baseline(bench_rows, c)
        lead, trail, _ = split_blocks(d, cfg.leading_blocks, cfg.trailing_blocks)
        cost = c + (steps - c) * (lead + trail) / d
        margin = ps - b[2] if b else None
        rows.append((label, c, ps, margin))
        bl = f"{b[0]:28} {b[1]:3d} {b[2]:6.2f}" if b else f"{'(none this low)':28} {'':3} {'':6}"
        mg = f"{margin:+7.2f}" if margin is not None else f"{'n/a':>7}"
        out.append(
            f"  {label:{w}} {c:3d}/{steps:<2d} cost {cost:5.1f} {steps / c:5.2f}x {ps:6.2f} | {bl} | {mg}  "
            f"{run.report.strip()}"
        )
    out.append(
        f"  targets (default {default_cfg.describe()}): computed/wanted PSNR | TaylorSeer | TC-Padé (bench.txt, "
        f"same target)"
    )
    for t in TARGETS:
        run = CacheRun(default_cfg, target_speedup=t)
        img = _sample(model, name, lab, steps, run, seed=seed)[0]
        ps = metrics.psnr(img, ref)
        others = []
        for m in ("TaylorSeer", "TC-Padé"):
            r = next((x for x in bench_rows if x[0] == f"target {t:g}x {m}"), None)
            others.append(f"{r[1]:3d} {r[2]:6.2f}" if r else f"{'-':>10}")
        out.append(
            f"    {t:4g}x: {run.report.computed:3d}/{int(steps / t + 0.5):<3d} {ps:6.2f} | {others[0]} | {others[1]}"
        )
    return rows


def main(argv=None, split: str = None):
    from ..models.zoo import load_model

    ap = argparse.ArgumentParser(prog="python -m tcpade_core.research.fbcache", description=__doc__)
    ap.add_argument("--split", choices=("dev", "held-out"), default=split or "held-out")
    ap.add_argument("--models", default="a,b,c")
    ap.add_argument("--steps", default="10,20,30")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--small",
        action="store_true",
        help="only the default threshold (x Fn x predictor) and the targets, not the whole threshold sweep",
    )
    ap.add_argument(
        "--trailing",
        default="0",
        help="DBCache's trailing blocks Bn to sweep, comma-separated (default 0: the settings of docs/fbcache.txt)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bench = read_bench()
    lab = _labels(args.samples)
    default_cfg = FirstBlockConfig()
    trailing = tuple(int(b) for b in args.trailing.split(","))
    settings = sweep((default_cfg.threshold,) if args.small else THRESHOLDS, trailing)
    steps_list = [int(s) for s in args.steps.split(",")]
    summary: Dict[str, List[Tuple[int, float, float]]] = {}
    for split_, name, seed in cases(args.split, [m.strip() for m in args.models.split(",")]):
        model = load_model(name)
        for steps in steps_list:
            out = [f"== {split_}: model {name.upper()}, seed {seed}, {steps} steps, {args.samples} samples"]
            rows = run_cell(
                model, name, seed, steps, lab, bench.get((split_, name, seed, steps), []), settings, default_cfg, out
            )
            for label, c, ps, margin in rows:
                summary.setdefault(label, []).append((steps / c, ps, margin))
            print("\n".join(out), flush=True)
    print(
        f"\nsummary over the {args.split} cells: mean NFE speed-up, mean PSNR and mean / worst Pareto margin over the "
        f"cells that skipped; a cell that computed every step counts margin 0 (no saving, no loss) in 'rule mean'"
    )
    w = max([30] + [len(label) for label in summary])
    for label, vals in summary.items():
        skipped = [v for v in vals if math.isfinite(v[1])]
        ms = [m for _, p, m in skipped if m is not None]
        rule = [m if math.isfinite(p) else 0.0 for _, p, m in vals if m is not None]
        mean_psnr = sum(v[1] for v in skipped) / max(len(skipped), 1)
        print(
            f"  {label:{w}} {sum(v[0] for v in vals) / len(vals):5.2f}x {mean_psnr:6.2f} dB"
            f"  margin mean {sum(ms) / max(len(ms), 1):+6.2f} worst {min(ms, default=float('nan')):+6.2f}"
            f"  rule mean {sum(rule) / max(len(rule), 1):+6.2f}  full in {len(vals) - len(skipped)}/{len(vals)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
