"""Where "another picture" begins: the per-image PSNR that separates a cached copy of an image from other content.

    python -m tcpade_core.research.content_floor      # output of today: docs/content_floor.txt

For each shipped model (A, B, C; 20 steps, 16 samples, seed 1234 against 4321, same class labels) it prints the
per-image PSNR of full-compute images of the same class from another seed (other content) and of the cached runs
of the benchmark's speed targets (TaylorSeer and TC-Padé at 2x / 2.8x / 3x, reuse at 2x) against their own
full-compute image. The Compare node marks an image whose PSNR is below ``tcpade_core.metrics.CHANGED_FLOOR_DB``
as "changed content"; this command shows where that floor sits between the two populations.
"""

from __future__ import annotations

import argparse

import torch

from .. import CacheRun, make_config, metrics
from .common import labels, sample_timed

CACHED = [("taylorseer", 2.0), ("taylorseer", 3.0), ("tcpade", 2.8), ("reuse", 2.0)]


def main(argv=None) -> None:
    from ..models.zoo import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="a,b,c")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    floor = metrics.CHANGED_FLOOR_DB
    print(f"Per-image PSNR (dB), 20 steps, {args.samples} samples; the Compare node's floor: {floor:g} dB")
    print(
        f"| model | other content (another seed): min / median / max | marked (< {floor:g} dB) | cached runs: "
        f"min / 5th pct / median | marked (< {floor:g} dB) | lowest cached run |"
    )
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        model, lab = load_model(name), labels(args.samples)
        ref, _ = sample_timed(model, name, lab, 20, None, seed=1234)
        other, _ = sample_timed(model, name, lab, 20, None, seed=4321)
        diff = sorted(metrics.psnr_per_image(other, ref))
        cached = []
        for method, target in CACHED:
            img, _ = sample_timed(model, name, lab, 20, CacheRun(make_config(method), target_speedup=target), seed=1234)
            cached += [(p, f"{method} {target:g}x") for p in metrics.psnr_per_image(img, ref)]
        cached.sort()
        vals = [p for p, _ in cached]
        low_d, low_c = sum(p < floor for p in diff), sum(p < floor for p in vals)
        print(
            f"| {name.upper()} | {diff[0]:.2f} / {diff[len(diff) // 2]:.2f} / {diff[-1]:.2f} | {low_d}/{len(diff)} | "
            f"{vals[0]:.2f} / {vals[len(vals) // 20]:.2f} / {vals[len(vals) // 2]:.2f} | {low_c}/{len(vals)} | "
            f"{cached[0][1]} |"
        )


if __name__ == "__main__":
    main()
