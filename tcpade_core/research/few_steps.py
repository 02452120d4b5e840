"""Caching at few steps (distilled models, Lightning LoRAs): what it buys and what it costs at 4, 6 and 8 steps.

    python -m tcpade_core.research.few_steps       # output of today: docs/few_steps.txt

On the shipped models A, B and C (16 samples, seed 1234), every cache node at its defaults and at speed targets
1.5x and 2x, against full compute at the same step count; 10 and 20 steps for comparison. The nodes' few-step
rule (``nodes.patcher.FEW_STEPS_HOLD``) is decided from this table.
"""

from __future__ import annotations

import argparse

import torch

from .. import CacheRun, make_config, metrics
from .common import CFG_SCALE, labels, sample_timed

# (label, method, config parameters, speed target): the nodes' defaults (nodes/cache_nodes.py) and two targets
SETTINGS = [
    ("TaylorSeer defaults (N 4, O 1, fe 2)", "taylorseer", dict(interval=4, order=1, first_enhance=2), 0.0),
    ("TaylorSeer target 1.5x", "taylorseer", {}, 1.5),
    ("TaylorSeer target 2x", "taylorseer", {}, 2.0),
    ("TC-Padé slow (2x)", "tcpade", {}, 2.0),
    ("TraCache defaults (k 2)", "tracache", dict(stride=2), 0.0),
    ("reuse target 2x", "reuse", {}, 2.0),
]


def main(argv=None) -> None:
    from ..models.zoo import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="a,b,c")
    ap.add_argument("--steps", default="4,6,8,10,20")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps_list = [int(s) for s in args.steps.split(",")]
    print("PSNR (dB) against full compute at the same step count, computed steps in brackets; CFG as the bench.")
    print("| model | setting | " + " | ".join(f"{s} steps" for s in steps_list) + " |")
    print("|---|---|" + "---|" * len(steps_list))
    for name in args.models.split(","):
        model, lab = load_model(name), labels(args.samples)
        refs = {s: sample_timed(model, name, lab, s, None, seed=1234)[0] for s in steps_list}
        for label, method, params, target in SETTINGS:
            cells = []
            for s in steps_list:
                run = CacheRun(make_config(method, **params), target_speedup=target)
                img, _ = sample_timed(model, name, lab, s, run, seed=1234)
                cells.append(f"{metrics.psnr(img, refs[s]):.2f} ({run.report.computed})")
            print(f"| {name.upper()} (CFG {CFG_SCALE[name]:g}) | {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
